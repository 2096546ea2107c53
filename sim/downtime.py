"""Broker restarts at run time: the SimPy process that stops and starts the broker.

From the validated ``broker.restarts`` settings (:class:`sim.restarts.Restarts`): at each
stop the broker closes every connection and keeps aside what it will start from
(:meth:`sim.broker.Broker.stop`); while it is down no client can connect, publishers buffer
or lose what they produce (their ``offline buffer``); when it is back it restores that state
(:meth:`sim.broker.Broker.start`) and every client that wants to be connected reconnects, at
the first attempt of its block's reconnect back-off at or after the broker's return (at once
without back-off), consumers before publishers. A client whose own network is down meanwhile
reconnects when its own outage ends, as usual. A client with ``auto reconnect: false`` does not
come back: the stop is its departure.

Random restarts draw from their own stream (the run's third seed child), so the clients'
outages and publishes are the same with and without restarts (common random numbers).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import simpy

from .broker import Broker
from .outage_plan import DrawBuffer, reconnect_time
from .restarts import Restarts
from .timing import PRIORITY_CONNECTION, PRIORITY_EXPIRY, Alarm


class Downtime:
    """Stops and starts one broker on the ``restarts`` plan; reconnects the fleets' clients."""

    def __init__(self, env: simpy.Environment, broker: Broker, restarts: Restarts, fleets: list,
                 seed: np.random.SeedSequence):
        self.env, self.broker, self.restarts, self.fleets = env, broker, restarts, fleets
        self.rng = np.random.default_rng(seed)

    def start(self) -> None:
        """Begin: autosaves from t = 0, and the restart process."""
        self.broker.autosaves()
        self.env.process(self.process())

    def plan(self) -> Iterator[tuple[float, float]]:
        """The (stop at, back at) pairs: the trace, or drawn (the broker runs ~ ``up`` after
        each start, then stays down ~ ``down``)."""
        r = self.restarts
        if r.trace is not None:
            yield from r.trace
            return
        up_rng, down_rng = self.rng.spawn(2)
        ups, downs = DrawBuffer(r.up, up_rng), DrawBuffer(r.down, down_rng)
        t = 0.0
        while True:
            stop = t + ups.next()
            t = stop + downs.next()
            yield stop, t

    def process(self):
        env, horizon = self.env, self.broker.horizon
        for stop, back in self.plan():
            if stop >= horizon:
                return
            yield Alarm(env, stop - env.now, PRIORITY_CONNECTION)
            # a client that does not reconnect by itself (auto reconnect false) leaves for good with
            # this drop; as for its own drops, that is decided before the drop is processed
            leaving = [c for c in self.clients() if c.connected and not c.block.auto_reconnect]
            for c in leaving:
                c.leaving()
            self.broker.stop(self.restarts.kind)
            for c in self.clients():
                if c.connected:
                    c.broker_stopped()
            for c in leaving:
                c.want = None
                c.depart()
            if back >= horizon:
                return
            # the broker is back before the connection changes of that instant (it restores first)
            yield Alarm(env, back - env.now, PRIORITY_EXPIRY)
            self.broker.start()
            for c in self.clients():
                if c.want is not None and not c.departed:
                    c.restart_token += 1
                    token = c.restart_token
                    at = reconnect_time(back, stop, c.block.outages.reconnect, c.backoff_rng)
                    self.broker.schedule(at - env.now, PRIORITY_CONNECTION, lambda c=c, token=token: c.broker_back(token))

    def clients(self):
        """Every client of every fleet, consumers first (the order they connect at t = 0)."""
        for f in self.fleets:
            yield from f.clients

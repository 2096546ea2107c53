"""``sim.run(scenario, seed)``: one simulation run and its :class:`Result`.

Randomness: one ``numpy.random.SeedSequence`` per run, spawned into one child per block and
one per client slot, and each slot's into one stream per source of randomness (up-times and
down-times, back-off jitter, publish times). The same seed therefore gives the same run, and
two policies run with the same seed see the same outages and publishes (common random numbers).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy

from .broker import Broker
from .clients import Fleet, Publisher
from .config import Scenario
from .ledger import FATE_INDEX, Ledger
from .protocol import LOSS_CAUSES


@dataclass
class Result:
    """What one run produced: tidy pandas objects (see docs/api-contract.md)."""

    scenario: Scenario
    seed: int
    summary: pd.Series
    fates: pd.DataFrame
    memory: pd.DataFrame
    events: pd.DataFrame
    messages: pd.DataFrame | None
    wall_seconds: float

    def __repr__(self) -> str:
        s = self.summary
        return (f"<Result {self.scenario.name!r} seed={self.seed}: routed={int(s['routed'])} "
                f"lost={int(s['lost'])} loss_ratio={s['loss_ratio']:.4g} peak={s['memory_peak_bytes']:.0f} B>")


def client_id_prefixes(blocks) -> list[str]:
    """Client-id prefix of each block: its ``client id``, with the block index added when
    several blocks share one (clients are then ``<prefix>-<n>``)."""
    names = [b.client_id for b in blocks]
    return [f"{n}-{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def run(scenario: Scenario, seed: int = 0, *, record_messages: bool | None = None, record_events: bool = True,
        record_memory: bool = True) -> Result:
    """Simulate ``scenario`` from time 0 to its horizon with random seed ``seed``.

    ``record_messages`` keeps one row per (message, consumer) pair in ``Result.messages``;
    None records them when every publisher block publishes on a schedule. Events at or after
    the horizon are not simulated. Raises :class:`~sim.ledger.ConservationError` if a pair
    ends with no fate or with two.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"run() needs a sim.Scenario (from sim.load_scenario), not {type(scenario).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: {seed!r} must be an integer >= 0")
    if record_messages is None:
        record_messages = bool(scenario.publishers) and all(p.schedule is not None for p in scenario.publishers)
    started = time.perf_counter()
    env = simpy.Environment()
    ledger = Ledger(record_messages=record_messages, record_events=record_events, record_memory=record_memory)
    ledger.memory(0.0, 0)  # the step function starts at 0 bytes
    broker = Broker(env, scenario.broker, ledger, scenario.horizon)
    consumer_seed, publisher_seed = np.random.SeedSequence(int(seed)).spawn(2)
    counter = itertools.count()
    fleets = [Fleet(env, broker, b, i, p, s) for (i, b), p, s in
              zip(enumerate(scenario.consumers), client_id_prefixes(scenario.consumers),
                  consumer_seed.spawn(len(scenario.consumers)))]
    fleets += [Fleet(env, broker, b, i, p, s, next_id=lambda: next(counter)) for (i, b), p, s in
               zip(enumerate(scenario.publishers), client_id_prefixes(scenario.publishers),
                   publisher_seed.spawn(len(scenario.publishers)))]
    for f in fleets:  # consumers first: at t = 0 they connect before anything is published
        f.start()
    env.run(until=scenario.horizon)
    _finish(broker, fleets)
    ledger.close_memory(scenario.horizon)
    ledger.check_conservation()
    summary = _summary(scenario, seed, ledger, broker)
    return Result(scenario, int(seed), summary, ledger.fates_frame(), ledger.memory_frame(), ledger.events_frame(),
                  ledger.messages_frame() if record_messages else None, time.perf_counter() - started)


def _finish(broker: Broker, fleets: list[Fleet]) -> None:
    """At the horizon, give every undecided pair ``pending`` or ``stranded``."""
    broker.finish()
    broker.flush_all()  # book the pairs of members in a bulk mode
    for f in fleets:
        for c in f.clients:
            if isinstance(c, Publisher) and not c.departed:
                for msg in c.unrouted():
                    broker.settle_unrouted(msg, None)


def _summary(scenario: Scenario, seed: int, ledger: Ledger, broker: Broker) -> pd.Series:
    counts = np.array(ledger.counts, dtype=np.int64).reshape(len(ledger.counts), -1).sum(axis=0) \
        if ledger.counts else np.zeros(len(FATE_INDEX) + 2, dtype=np.int64)
    fates = {f: int(counts[i]) for f, i in FATE_INDEX.items()}
    routed = int(counts[len(FATE_INDEX)])
    lost = sum(fates[c] for c in LOSS_CAUSES)
    data: dict[str, float] = {
        "published": ledger.published,
        "routed": routed,
        "delivered": fates["delivered"],
        "duplicates": int(counts[len(FATE_INDEX) + 1]),
        "lost": lost,
        **{f"lost_{c}": fates[c] for c in LOSS_CAUSES},
        "pending": fates["pending"],
        "stranded": fates["stranded"],
        "loss_ratio": lost / routed if routed else math.nan,
        **ledger.memory_stats(scenario.horizon),
        "sessions_expired": ledger.counters["sessions_expired"],
        "sessions_discarded": ledger.counters["sessions_discarded"],
        "sessions_ended": ledger.counters["sessions_ended"],
        "sessions_final": len(broker.sessions),
        "connects": ledger.counters["connects"],
        "disconnects": ledger.counters["disconnects"],
        "departures": ledger.counters["departures"],
        "protocol_errors": ledger.counters["protocol_errors"],
        "horizon": scenario.horizon,
        "seed": int(seed),
    }
    return pd.Series(data, name=scenario.name)

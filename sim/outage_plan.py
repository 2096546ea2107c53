"""The connection life of a client slot at run time: its next outage, and when it is back.

From the validated settings of :mod:`sim.outages`: an :class:`OutagePlan` gives a slot's
outages one at a time (drawn, or from a trace), and :func:`reconnect_time` applies the
reconnect back-off with jitter. Each slot draws from its own random streams, so the outage
history of a slot is the same whatever session policy is simulated (common random numbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .outages import Distribution


class DrawBuffer:
    """Draws from one distribution and one stream, a block at a time (numpy is slow per draw)."""

    __slots__ = ("dist", "rng", "buf", "i", "block")

    def __init__(self, dist: Distribution, rng: np.random.Generator, block: int = 64):
        self.dist, self.rng, self.block = dist, rng, block
        self.buf: list[float] = []
        self.i = 0

    def next(self) -> float:
        if self.i >= len(self.buf):
            self.buf = self.dist.sample(self.rng, self.block).tolist()
            self.i = 0
        x = self.buf[self.i]
        self.i += 1
        return x


@dataclass
class Outage:
    """One disconnection: the client drops at ``start``; the network is back at ``end``.

    ``end`` None: the client leaves for good. ``kind`` (network | clean) and ``clean_start``
    (of the reconnect) override the block's settings for this outage when not None.
    """

    start: float
    end: float | None
    kind: str | None = None
    clean_start: bool | None = None


class OutagePlan:
    """The outages of one client slot, one at a time, from the moment it (re)connects.

    With distributions: the next drop comes an up-time ~ ``outages.up`` after the client is
    connected again (so back-off delays do not eat into the next up-time), and lasts a
    down-time ~ ``outages.down``; each drop is for good with probability ``leave
    probability`` (its own stream, so it does not shift the up/down draws). With a trace:
    the slot's pairs as absolute times; a drop that the trace puts before the client is back
    (because of back-off) happens the moment it is back.
    """

    def __init__(self, outages, slot: int, rng: np.random.Generator, joined: float | None = None):
        self.outages = outages
        self.trace = None
        if outages.traces is not None:  # a replacement that joined at ``joined`` follows what is left
            opts = outages.trace_options[slot] if outages.trace_options else [(None, None)] * len(outages.traces[slot])
            self.trace = [(off, on, *o) for (off, on), o in zip(outages.traces[slot], opts)
                          if joined is None or off > joined]
        if outages.up is not None:
            up_rng, down_rng, self.leave_rng = rng.spawn(3)
            self.ups, self.downs = DrawBuffer(outages.up, up_rng), DrawBuffer(outages.down, down_rng)

    def next(self, now: float) -> Outage | None:
        """The next outage for a client connected at ``now``; None if it never drops again."""
        if self.trace is not None:
            while self.trace:
                off, on, kind, clean_start = self.trace.pop(0)
                if on is None or on > now:
                    return Outage(max(off, now), on, kind, clean_start)
            return None
        if self.outages.up is None:
            return None
        start = now + self.ups.next()
        down = self.downs.next()
        p_leave = self.outages.leave_probability
        if p_leave > 0 and self.leave_rng.random() < p_leave:
            return Outage(start, None)
        return Outage(start, start + down)


def reconnect_time(outage_end: float, outage_start: float, backoff, rng: np.random.Generator | None) -> float:
    """When the client is connected again: the first back-off attempt at or after the network returns.

    Without back-off the client reconnects the moment the network is back. With back-off the
    k-th attempt comes ``d_k`` after the previous one, ``d_k = min(initial * multiplier**k,
    max)`` scaled by a uniform draw in ``[1 - jitter, 1]`` (:func:`attempts`).
    """
    if backoff is None:
        return outage_end
    for t in attempts(outage_start, backoff, rng):
        if t >= outage_end:
            return t
    raise AssertionError("unreachable: attempts never ends")


def attempts(drop: float, backoff, rng: np.random.Generator | None) -> Iterator[float]:
    """The reconnect attempts of a client that dropped at ``drop``, one jitter draw each (see
    :func:`reconnect_time`); endless."""
    t, delay = drop, backoff.initial_delay
    while True:
        scale = 1.0 if backoff.jitter == 0 or rng is None else 1.0 - backoff.jitter * rng.random()
        t += delay * scale
        yield t
        delay = min(delay * backoff.multiplier, backoff.max_delay)

"""Connection-failure models: up/down-time distributions, departures, traces, back-off.

A client's connection alternates between *up* (connected) and *down* (no network). Each
client draws from its own random stream (see :mod:`sim.run`), so the outage history of a
client slot is the same whatever session policy is simulated: common random numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .units import ScenarioError, parse_duration, parse_number

DISTRIBUTIONS = {
    # kind: (duration parameters, shape parameters)
    "exponential": (("mean",), ()),
    "lognormal": (("median", "mean"), ("sigma",)),
    "weibull": (("scale",), ("shape",)),
    "pareto": (("scale",), ("shape",)),
    "fixed": (("value",), ()),
}


@dataclass(frozen=True)
class Distribution:
    """A positive duration distribution, in seconds.

    - ``exponential(mean)``
    - ``lognormal(median, sigma)`` or ``lognormal(mean, sigma)``: log-duration ~ Normal(mu, sigma)
    - ``weibull(shape, scale)``
    - ``pareto(shape, scale)``: classical Pareto, support >= scale, P(X > x) = (scale/x)^shape
    - ``fixed(value)``
    """

    kind: str
    params: tuple[tuple[str, float], ...]

    def p(self, name: str) -> float:
        return dict(self.params)[name]

    @property
    def mu(self) -> float:
        """Lognormal location (mean of the log-duration)."""
        d = dict(self.params)
        if "median" in d:
            return math.log(d["median"])
        return math.log(d["mean"]) - d["sigma"] ** 2 / 2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (seconds)."""
        k = self.kind
        if k == "exponential":
            return rng.exponential(self.p("mean"), size)
        if k == "lognormal":
            return rng.lognormal(self.mu, self.p("sigma"), size)
        if k == "weibull":
            return self.p("scale") * rng.weibull(self.p("shape"), size)
        if k == "pareto":
            return self.p("scale") * (1.0 + rng.pareto(self.p("shape"), size))
        return np.full(size, self.p("value"))

    @property
    def mean(self) -> float:
        """The distribution's mean in seconds (inf for a Pareto with shape <= 1)."""
        k = self.kind
        if k == "exponential":
            return self.p("mean")
        if k == "lognormal":
            return math.exp(self.mu + self.p("sigma") ** 2 / 2)
        if k == "weibull":
            return self.p("scale") * math.gamma(1 + 1 / self.p("shape"))
        if k == "pareto":
            a = self.p("shape")
            return math.inf if a <= 1 else a * self.p("scale") / (a - 1)
        return self.p("value")

    def scipy(self):
        """The equivalent frozen ``scipy.stats`` distribution (for closed-form cross-checks)."""
        from scipy import stats

        k = self.kind
        if k == "exponential":
            return stats.expon(scale=self.p("mean"))
        if k == "lognormal":
            return stats.lognorm(s=self.p("sigma"), scale=math.exp(self.mu))
        if k == "weibull":
            return stats.weibull_min(self.p("shape"), scale=self.p("scale"))
        if k == "pareto":
            return stats.pareto(self.p("shape"), scale=self.p("scale"))
        raise ValueError("a fixed duration has no scipy distribution")

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.kind, **dict(self.params)}


def parse_distribution(value: object, field: str) -> Distribution:
    """``{distribution: exponential, mean: 6h}`` and friends; see :class:`Distribution`."""
    if not isinstance(value, Mapping):
        raise ScenarioError(field, value, "must be a mapping like {distribution: exponential, mean: 6h}")
    d = {str(k).strip().lower().replace(" ", "_"): v for k, v in value.items()}
    kind = d.pop("distribution", None)
    if not isinstance(kind, str) or kind.strip().lower() not in DISTRIBUTIONS:
        raise ScenarioError(f"{field}.distribution", kind, f"is not a known distribution: use one of {', '.join(DISTRIBUTIONS)}")
    kind = kind.strip().lower()
    durations, shapes = DISTRIBUTIONS[kind]
    for key in d:
        if key not in durations + shapes:
            raise ScenarioError(f"{field}.{key}", d[key], f"is not a parameter of {kind}: use {', '.join(durations + shapes)}")
    params: list[tuple[str, float]] = []
    given = [k for k in durations if k in d]
    if kind == "lognormal":
        if len(given) != 1:
            raise ScenarioError(f"{field}.median", d.get("median"), "lognormal needs exactly one of median or mean, and sigma")
    elif not given:
        raise ScenarioError(f"{field}.{durations[0]}", None, f"is missing: {kind} needs {', '.join(durations + shapes)}")
    for key in given:
        params.append((key, parse_duration(d[key], f"{field}.{key}")))
    for key in shapes:
        if key not in d:
            raise ScenarioError(f"{field}.{key}", None, f"is missing: {kind} needs {', '.join(given + list(shapes))}")
        params.append((key, parse_number(d[key], f"{field}.{key}", lo=0.0)))
    return Distribution(kind, tuple(params))


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

    ``end`` None: the client leaves for good.
    """

    start: float
    end: float | None


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
            self.trace = [p for p in outages.traces[slot] if joined is None or p[0] > joined]
        if outages.up is not None:
            up_rng, down_rng, self.leave_rng = rng.spawn(3)
            self.ups, self.downs = DrawBuffer(outages.up, up_rng), DrawBuffer(outages.down, down_rng)

    def next(self, now: float) -> Outage | None:
        """The next outage for a client connected at ``now``; None if it never drops again."""
        if self.trace is not None:
            while self.trace:
                off, on = self.trace.pop(0)
                if on is None or on > now:
                    return Outage(max(off, now), on)
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
    max)`` scaled by a uniform draw in ``[1 - jitter, 1]``.
    """
    if backoff is None:
        return outage_end
    t, delay = outage_start, backoff.initial_delay
    while True:
        scale = 1.0 if backoff.jitter == 0 or rng is None else 1.0 - backoff.jitter * rng.random()
        t += delay * scale
        if t >= outage_end:
            return t
        delay = min(delay * backoff.multiplier, backoff.max_delay)

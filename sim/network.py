"""Network outages at run time: when they hold, which client slots they take down, when a
client is back, and the reconnect storm that follows.

From the validated settings (:class:`sim.outages.NetworkOutages`) a :class:`NetworkPlan`
lays out every network outage of the run before it starts (a trace, or up/down draws from
t = 0) and draws, per outage, which client slots of the affected blocks it takes down. A
client slot's share is :class:`SlotWindows`; :func:`offline_period` says when a client that
dropped is connected again when its own outages and the network's both hold it offline.
A network outage is a network drop, not a DISCONNECT: the broker keeps the session for the
Session Expiry Interval of the client's CONNECT (MQTT 5.0 §3.1.2.11.2, [MQTT-4.1.0-2]), and a
client back in time resumes it with Clean Start 0 (§3.1.2.4, Session Present 1, §3.2.2.1.2).

Randomness: the run's root ``SeedSequence`` gets a third child (after the consumers' and
publishers') only when the scenario has network outages, so scenarios without them draw
exactly what they drew before; that child's three children give the up-times, the
down-times and who drops. The plan is drawn before anything runs, so every session policy
run with the same seed sees the same network outages on the same clients (common random
numbers).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .outage_plan import DrawBuffer, Outage, attempts
from .outages import NetworkOutages


class SlotWindows:
    """The network outages that take one client slot down: ``(start, end, outage index)``,
    sorted and not overlapping; each holds over ``[start, end)``."""

    __slots__ = ("starts", "ends", "index")

    def __init__(self, windows: list[tuple[float, float, int]]):
        self.starts = [w[0] for w in windows]
        self.ends = [w[1] for w in windows]
        self.index = [w[2] for w in windows]

    def __bool__(self) -> bool:
        return bool(self.starts)

    def next(self, now: float) -> tuple[float, float, int] | None:
        """The first window not over at ``now`` (it may already hold), or None."""
        i = bisect.bisect_right(self.ends, now)
        return (self.starts[i], self.ends[i], self.index[i]) if i < len(self.ends) else None

    def covering(self, t: float) -> tuple[float, float, int] | None:
        """The window that holds at ``t`` (``start <= t < end``), or None."""
        i = bisect.bisect_right(self.starts, t) - 1
        return (self.starts[i], self.ends[i], self.index[i]) if i >= 0 and t < self.ends[i] else None


NO_WINDOWS = SlotWindows([])


class NetworkPlan:
    """Every network outage of one run, who it takes down, and what it did (filled in as the run goes).

    ``slots[p]`` is the number of client slots of block position ``p`` (consumer blocks first,
    then publisher blocks, as :attr:`NetworkOutages.targets` counts them). For each outage
    starting before ``horizon`` the slots of the affected blocks are pooled and ``k = floor(
    fraction * n + u)`` of the ``n`` are drawn without replacement (``u`` uniform in [0, 1)):
    the expected share is ``fraction`` exactly, and the number taken down is ``fraction * n``
    rounded down or up. A slot keeps its windows when a new client identifier takes it.
    """

    def __init__(self, settings: NetworkOutages, slots: list[int], horizon: float, seed: np.random.SeedSequence):
        up_rng, down_rng, pick_rng = (np.random.default_rng(s) for s in seed.spawn(3))
        if settings.trace is not None:
            windows = [(s, e) for s, e in settings.trace if s < horizon]
        else:
            ups, downs = DrawBuffer(settings.up, up_rng), DrawBuffer(settings.down, down_rng)
            windows, t = [], 0.0
            while True:
                start = t + ups.next()
                if start >= horizon:
                    break
                t = start + downs.next()
                windows.append((start, t))
        pool = [(p, s) for p in settings.targets for s in range(slots[p])]
        per_slot: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
        self.taken: list[int] = []
        for k, (start, end) in enumerate(windows):
            n = len(pool)
            size = min(n, math.floor(settings.fraction * n + pick_rng.random()))
            chosen = range(n) if size == n else np.sort(pick_rng.choice(n, size=size, replace=False))
            for i in chosen:
                per_slot.setdefault(pool[i], []).append((start, end, k))
            self.taken.append(size)
        self.windows = windows  #: (start, end) of each network outage that starts before the horizon
        self.per_slot = {key: SlotWindows(w) for key, w in per_slot.items()}
        self.dropped = [0] * len(windows)  #: connected clients each outage disconnected
        self.reconnects: list[list[float]] = [[] for _ in windows]  #: times of each outage's storm reconnects

    def slot(self, position: int, slot: int) -> SlotWindows:
        """The windows of one client slot (none when no outage takes it down)."""
        return self.per_slot.get((position, slot), NO_WINDOWS)


@dataclass
class Offline:
    """How a client's offline period ends (:func:`offline_period`)."""

    back: float | None  #: when it is connected again (may be at or past the horizon); None: it leaves first
    departs: float | None  #: when it leaves for good while offline (an outage of its own with no reconnect)
    own: Outage | None  #: its own next outage, still to come
    clean_start: bool | None  #: Clean Start of the reconnect, when an outage of its own sets it
    storm: int | None  #: the network outage whose end it waited for last (its reconnect is part of that storm)


def offline_period(drop: float, own_end: float | None, own: Outage | None, clean_start: bool | None,
                   windows: SlotWindows, backoff, rng: np.random.Generator | None, horizon: float) -> Offline:
    """When a client that dropped at ``drop`` is connected again.

    It is offline while an outage of its own holds (until ``own_end``) or one of its network
    ``windows`` holds, whichever is longer: the two overlap into one offline period. Its own
    next outage ``own`` (drawn while it was connected) still comes at its time: if it starts
    while the client is offline it extends the period, or, with no reconnect, the client
    leaves for good then. Without back-off the client is back the moment nothing holds it;
    with back-off (:func:`~sim.outage_plan.attempts`, from ``drop``) at the first attempt
    when nothing does. With no network window this is exactly
    :func:`~sim.outage_plan.reconnect_time` (the same attempts and jitter draws).
    The network outage that held it last, if any, is the storm its reconnect belongs to
    (when both hold at its last failed attempt, the one that ends later).
    """
    tries = attempts(drop, backoff, rng) if backoff is not None else None
    t = drop if tries is None else next(tries)
    storm = None
    while t < horizon:
        if own is not None and own.start <= t:  # its own outage begins while it is offline
            if own.end is None:
                return Offline(None, own.start, None, clean_start, None)
            own_end = own.end if own_end is None else max(own_end, own.end)
            clean_start = own.clean_start if own.clean_start is not None else clean_start
            own = None
        w = windows.covering(t)
        own_holds = own_end is not None and t < own_end
        if w is None and not own_holds:
            break
        if w is not None and (not own_holds or w[1] >= own_end):
            storm, until = w[2], w[1]
        else:
            storm, until = None, own_end
        t = until if tries is None else next(tries)
    return Offline(t, None, own, clean_start, storm)


# --------------------------------------------------------------------------- the storm

#: Columns of ``Result.network_outages`` (one row per network outage that starts before the horizon).
COLUMNS = ["start", "end", "clients", "disconnected", "reconnects", "last_reconnect", "storm_end",
           "reconnects_peak_per_s", "peak_queued", "peak_bytes"]

STORM_FIELDS = ("network_outages", "network_outage_disconnects", "storm_reconnects", "storm_reconnects_per_s",
                "storm_seconds", "storm_peak_queued", "storm_peak_memory_bytes")


def peak_per_second(times: list[float]) -> int:
    """The most of ``times`` that fall in any one-second window ``[t, t + 1)``."""
    ts = sorted(times)
    return max((bisect.bisect_left(ts, t + 1.0) - i for i, t in enumerate(ts)), default=0)


def storm_frame(plan: NetworkPlan | None, memory: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """One row per network outage: when it held, how many client slots it took down
    (``clients``), how many connected clients it disconnected, its storm (the reconnects it
    held back last, the last of them, the storm's end = the later of the outage's end and that
    reconnect, capped at the horizon; the most reconnects in one second), and the peaks of
    queued messages and retained bytes held over ``[start, storm end)``, from the whole
    memory step function ``memory`` (columns ``time``, ``bytes``, ``queued``)."""
    rows = []
    if plan is not None:
        t = memory["time"].to_numpy(dtype=float)
        nbytes, queued = memory["bytes"].to_numpy(), memory["queued"].to_numpy()
        for k, (start, end) in enumerate(plan.windows):
            times = plan.reconnects[k]
            last = max(times) if times else math.nan
            stop = min(horizon, max(end, last) if times else end)
            lo = max(int(np.searchsorted(t, start, "right")) - 1, 0)  # the value held at the start
            hi = int(np.searchsorted(t, stop, "left"))
            rows.append((start, end, plan.taken[k], plan.dropped[k], len(times), last, stop, peak_per_second(times),
                         int(queued[lo:hi].max()) if hi > lo else 0, int(nbytes[lo:hi].max()) if hi > lo else 0))
    return pd.DataFrame(rows, columns=COLUMNS).astype({"clients": "int64", "disconnected": "int64", "reconnects": "int64",
                                                      "reconnects_peak_per_s": "int64", "peak_queued": "int64",
                                                      "peak_bytes": "int64"})


def storm_summary(frame: pd.DataFrame) -> dict[str, float]:
    """The summary's network-outage fields from :func:`storm_frame` (docs/model.md, "Network
    outages"): counts are 0 and the storm's rates, lengths and peaks NaN when no network
    outage started before the horizon; ``storm_seconds`` is NaN when no client reconnected
    after one."""
    n = len(frame)
    waits = (frame["last_reconnect"] - frame["end"]).dropna()
    return {
        "network_outages": n,
        "network_outage_disconnects": int(frame["disconnected"].sum()),
        "storm_reconnects": int(frame["reconnects"].sum()),
        "storm_reconnects_per_s": float(frame["reconnects_peak_per_s"].max()) if n else math.nan,
        "storm_seconds": float(waits.max()) if len(waits) else math.nan,
        "storm_peak_queued": float(frame["peak_queued"].max()) if n else math.nan,
        "storm_peak_memory_bytes": float(frame["peak_bytes"].max()) if n else math.nan,
    }

"""The broker-memory monitor: a step function of retained bytes, split by session state.

The broker reports every change of the bytes it holds (:meth:`MemoryMonitor.change`) and
every session that changes state (:meth:`MemoryMonitor.move`). The time integral is
accumulated as it goes (Law's area-under-the-curve method), so means are time-weighted and
need no sampling process. :meth:`MemoryMonitor.reset` starts the time-persistent statistics
afresh at a moment (a warm-up period ends) without touching the step function itself.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .entities import CONNECTED, OFFLINE, STRANDED

#: Categories of retained bytes: the sessions' own, by session state, and shared message bodies.
CATEGORIES = ("connected", "offline", "stranded", "store")
STORE = 3
assert (CONNECTED, OFFLINE, STRANDED) == (0, 1, 2)

COLUMNS = ["time", "bytes", "session_bytes", "entry_bytes", "message_bytes", "connected_bytes",
           "offline_bytes", "stranded_bytes", "store_bytes", "queued", "sessions"]


class MemoryMonitor:
    """Retained bytes over time, their components, the queued-message count and sessions."""

    def __init__(self, record: bool = True):
        self.record = record
        self.cat = [0, 0, 0, 0]  # connected, offline, stranded, store
        self.comp = [0, 0, 0]  # session, entry, message bytes
        self.queued = 0
        self.sessions = 0
        self.t_last = 0.0
        self.t_start = 0.0  # where the time-persistent statistics start (see reset)
        self.area = [0.0] * 4
        self.queued_area = 0.0
        self.peak = 0
        self.queued_peak = 0
        self.steps: list[tuple] = []
        self.marked: tuple[float, float] | None = None  # (t, byte-seconds from t_start to t), see mark
        self._record(0.0)  # the step function starts at 0 bytes

    def total(self) -> int:
        return self.cat[0] + self.cat[1] + self.cat[2] + self.cat[3]

    def _advance(self, t: float) -> None:
        """Account for the values held since the last change, up to ``t``."""
        if t > self.t_last:
            dt = t - self.t_last
            total = self.total()
            if total > self.peak:
                self.peak = total
            if self.queued > self.queued_peak:
                self.queued_peak = self.queued
            for i in range(4):
                self.area[i] += self.cat[i] * dt
            self.queued_area += self.queued * dt
            self.t_last = t

    def _record(self, t: float) -> None:
        if self.record:
            row = (t, self.total(), *self.comp, *self.cat, self.queued, self.sessions)
            if self.steps and self.steps[-1][0] == t:
                self.steps[-1] = row
            else:
                self.steps.append(row)

    def change(self, t: float, category: int, session: int = 0, entry: int = 0, message: int = 0,
               store: int = 0, queued: int = 0, sessions: int = 0) -> None:
        """Retained bytes change at time ``t``.

        ``session``/``entry``/``message`` bytes belong to a session in ``category``;
        ``store`` bytes are shared message bodies (counted once, whoever refers to them).
        """
        self._advance(t)
        self.cat[category] += session + entry + message
        self.cat[STORE] += store
        self.comp[0] += session
        self.comp[1] += entry
        self.comp[2] += message + store
        self.queued += queued
        self.sessions += sessions
        self._record(t)

    def move(self, t: float, src: int, dst: int, nbytes: int) -> None:
        """A session's bytes change category (it connects, goes offline, or its client leaves)."""
        if src != dst and nbytes:
            self._advance(t)
            self.cat[src] -= nbytes
            self.cat[dst] += nbytes
            self._record(t)

    def reset(self, t: float) -> None:
        """Start the time-persistent statistics (means, byte-seconds, peaks) afresh at ``t``:
        what was held before ``t`` no longer counts. The step function keeps every row.
        Call it at ``t`` in simulated time (not after later changes were reported)."""
        if t < self.t_last:
            raise ValueError(f"reset at {t:g} s is before the last change at {self.t_last:g} s")
        self._advance(t)
        self.t_start = t
        self.area = [0.0] * 4
        self.queued_area = 0.0
        self.peak = self.total()
        self.queued_peak = self.queued

    def mark(self, t: float) -> None:
        """Note the byte-seconds accumulated up to ``t`` (now), for the growth rate; the
        accumulation itself is not split at ``t``."""
        dt = t - self.t_last
        self.marked = (t, sum(self.area[i] + self.cat[i] * dt for i in range(4)))

    def close(self, horizon: float) -> None:
        """The run ends at ``horizon``: account for the last values up to it."""
        self._advance(horizon)
        self._record(horizon)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.steps, columns=COLUMNS)
        for c in COLUMNS[1:]:
            df[c] = df[c].astype("int64")
        return df

    def stats(self, horizon: float) -> dict[str, float]:
        """Peak, time-weighted means over [t_start, horizon), final value and byte-seconds."""
        return summary_stats(self.area, self.queued_area, self.peak, self.queued_peak, self.total(), self.queued,
                             self.t_start, horizon, self.marked)


def summary_stats(area: list[float], queued_area: float, peak: int, queued_peak: int, final: int, final_queued: int,
                  start: float, horizon: float, marked: tuple[float, float] | None) -> dict[str, float]:
    """The summary's memory fields from a step function's accumulations: byte-seconds per
    category and queued-message seconds over [start, horizon), the peaks of the values held
    for a positive time, the final values, and the midpoint mark (see :func:`growth_per_day`)."""
    total_area = sum(area)
    span = horizon - start
    h = span if span > 0 else 1.0
    return {
        "memory_peak_bytes": float(max(peak, final)),  # values held for a positive time, and the final one
        "memory_growth_bytes_per_day": growth_per_day(start, marked, total_area, horizon),
        "memory_mean_bytes": total_area / h,
        "memory_final_bytes": float(final),
        "memory_byte_seconds": total_area,
        **{f"memory_mean_{name}_bytes": area[i] / h for i, name in enumerate(CATEGORIES)},
        "queued_messages_mean": queued_area / h,
        "queued_messages_peak": float(max(queued_peak, final_queued)),
    }


def thin(frame: pd.DataFrame, max_points: int, keep: list[tuple[float, float]] = ()) -> pd.DataFrame:
    """At most about ``max_points`` rows of a memory step function, for plotting.

    The time axis is cut into equal bins; in each bin the first row, the row with the most
    bytes and the last row are kept (so every peak stays visible, and the value entering the
    next bin is right), and the final row always. Every row within a ``keep`` span ``(start,
    end)`` (a network outage and its reconnect storm) is kept too, with the row holding at
    its start, on top of ``max_points``. Statistics (peak, means, byte-seconds) come from the
    full step function in the summary, never from a thinned frame.
    """
    n = len(frame)
    if max_points is None or n <= max_points:
        return frame
    if max_points < 4:
        raise ValueError(f"memory_points: {max_points!r} must be >= 4")
    bins = max(1, (max_points - 1) // 3)
    t = frame["time"].to_numpy(dtype=float)
    edges = np.linspace(t[0], t[-1], bins + 1)
    b = np.clip(np.searchsorted(edges, t, "right") - 1, 0, bins - 1)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], n] - 1
    total = frame["bytes"].to_numpy()
    peaks = np.array([s + int(np.argmax(total[s:e + 1])) for s, e in zip(starts, ends)], dtype=np.int64)
    spans = [np.arange(max(int(np.searchsorted(t, a, "right")) - 1, 0), int(np.searchsorted(t, z, "right")))
             for a, z in keep]
    rows = np.unique(np.concatenate([starts, peaks, ends, [n - 1], *spans]).astype(np.int64))
    return frame.iloc[rows].reset_index(drop=True)


def growth_per_day(start: float, marked: tuple[float, float] | None, total_area: float, horizon: float) -> float:
    """How fast memory grows: the time-weighted mean over the second half of the measured
    period [start, horizon) minus that over the first half, per day between the halves'
    midpoints (bytes/day). About 0 once memory has settled; for sessions that never expire
    in a fleet with departures, the rate at which stranded sessions pile up. NaN without a
    midpoint mark."""
    if marked is None:
        return float("nan")
    mid, first_area = marked
    if not start < mid < horizon:
        return float("nan")
    first = first_area / (mid - start)
    second = (total_area - first_area) / (horizon - mid)
    return (second - first) / ((horizon - start) / 2) * 86_400.0


def session_counts(memory: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Sessions on the broker over time, split into those of connected clients and the
    disconnected ones (offline and resumable, or stranded by a client that left), as a step
    function: columns time, sessions, connected (clients of every role), connected_consumers,
    disconnected (each row holds until the next).

    ``memory`` is ``res.memory`` (its ``sessions`` column; use ``memory_points=None`` for the
    exact step function of a long run) and ``events`` is ``res.events`` (connects minus
    disconnects, every role: a connected client has a session).
    """
    if "sessions" not in memory.columns or not {"time", "event"} <= set(events.columns):
        raise ValueError("session_counts needs res.memory (time, sessions) and res.events (time, event)")
    ev = events[events["event"].isin(["connect", "disconnect"])]
    change = np.where(ev["event"].to_numpy() == "connect", 1, -1)
    consumer = (ev["role"] == "consumer").to_numpy() if "role" in ev.columns else np.ones(len(ev), bool)
    step = pd.DataFrame({"time": ev["time"].to_numpy(dtype=float), "all": change, "consumers": change * consumer})
    connected = step.groupby("time", sort=True)[["all", "consumers"]].sum().cumsum()
    held = memory.groupby("time", sort=True)["sessions"].last()
    times = np.union1d(connected.index.to_numpy(dtype=float), held.index.to_numpy(dtype=float))
    out = pd.DataFrame({"time": times})
    out["sessions"] = held.reindex(times).ffill().fillna(0).to_numpy(dtype=np.int64)
    out["connected"] = connected["all"].reindex(times).ffill().fillna(0).to_numpy(dtype=np.int64)
    out["connected_consumers"] = connected["consumers"].reindex(times).ffill().fillna(0).to_numpy(dtype=np.int64)
    out["disconnected"] = out["sessions"] - out["connected"]
    return out


def time_average(frame: pd.DataFrame, column: str, start: float, end: float) -> float:
    """The time-weighted mean of a step function's ``column`` over [start, end) (each row of
    ``frame`` holds from its ``time`` until the next row's; before the first row counts as 0)."""
    if not end > start:
        raise ValueError(f"time_average: end {end!r} must be after start {start!r}")
    t = frame["time"].to_numpy(dtype=float)
    v = frame[column].to_numpy(dtype=float)
    lo = np.clip(t, start, end)
    hi = np.clip(np.append(t[1:], end), start, end)
    return float(np.sum(v * (hi - lo)) / (end - start))

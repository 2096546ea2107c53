"""Broker memory of queues held as message ranges, in closed form.

The interval engine (:mod:`sim.interval`) holds an offline session's queue as a range
``[lo, hi)`` of one message sequence (the messages its consumer block receives), filled
from the moment each message arrives until the range is released at once (the client
reconnects, Clean Start discards the session, or the session expires). Such a queue is a
*ramp*: it grows by one entry per arrival, up to ``hi - lo`` entries, then stays flat until
its release. With a shared message store ("one stored copy however many sessions queue
it"), a message's body stays stored from its arrival until the last session holding it
releases it: over the ranges of all sessions, the store is a set of ramps too (the upper
envelope of the releases, :func:`envelope`).

From ramps and the sessions' own memory changes this module gives what
:class:`sim.memory.MemoryMonitor` gives from a change-by-change record: peak, final value,
time-weighted means and byte-seconds per category, the queued-message peak and mean, and a
frame at a bounded number of points for plotting, without a record per queued message (the
simulator's memory grows with sessions and intervals, not with queued messages).

Exactness: peaks, final values and the frame's values are integers computed exactly (the
memory only grows between releases and session ends, so its peak is the value just before
one of them, or at the horizon). Time integrals are sums of ``bytes x seconds`` products in a
different order than the change-by-change monitor adds them, so they agree with it to
floating-point rounding (relative 1e-12 in tests/test_ramps.py), not to the last bit.
"""
from __future__ import annotations

import copy as _copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .memory import COLUMNS, summary_stats

STORE = 3


@dataclass
class Ramps:
    """Ranges ``[lo, hi)`` of a message sequence held from each message's arrival until
    ``release`` (inf: past the horizon), booked to memory ``category`` (offline/stranded)."""

    lo: np.ndarray
    hi: np.ndarray
    release: np.ndarray
    category: np.ndarray

    @classmethod
    def of(cls, lo, hi, release, category) -> "Ramps":
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        keep = hi > lo
        return cls(lo[keep], hi[keep], np.asarray(release, dtype=float)[keep],
                   np.asarray(category, dtype=np.int8)[keep])

    def where(self, mask: np.ndarray) -> "Ramps":
        return Ramps(self.lo[mask], self.hi[mask], self.release[mask], self.category[mask])


def envelope(r: Ramps) -> Ramps:
    """The message store as ramps: maximal runs of messages whose last release (the latest
    ``release`` of the ranges holding them) is the same. Range-maximum over the elementary
    segments between range ends, with a segment tree built level by level in numpy."""
    if len(r.lo) == 0:
        return r
    b = np.unique(np.concatenate([r.lo, r.hi]))
    segs = len(b) - 1
    size = 1 << max(0, math.ceil(math.log2(max(segs, 1))))
    tree = np.full(2 * size, -np.inf)
    left = np.searchsorted(b, r.lo) + size
    right = np.searchsorted(b, r.hi) + size
    val = r.release.copy()
    while len(left):
        odd = (left & 1) == 1
        np.maximum.at(tree, left[odd], val[odd])
        left = left + odd
        odd = (right & 1) == 1
        right = right - odd
        np.maximum.at(tree, right[odd], val[odd])
        left, right = left >> 1, right >> 1
        go = left < right
        left, right, val = left[go], right[go], val[go]
    level = 1
    while level < size:  # push each node's maximum down to its children
        nodes = np.arange(level, 2 * level)
        for child in (2 * nodes, 2 * nodes + 1):
            tree[child] = np.maximum(tree[child], tree[nodes])
        level *= 2
    last = tree[size:size + segs]
    covered = last > -np.inf
    lo, hi, last = b[:-1][covered], b[1:][covered], last[covered]
    # merge neighbours that touch and share their release
    new = np.r_[True, (lo[1:] != hi[:-1]) | (last[1:] != last[:-1])]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(lo)] - 1
    return Ramps(lo[starts], hi[ends], last[starts], np.full(len(starts), STORE, dtype=np.int8))


class _Level:
    """The summed value of weighted ramps at any time: ``sum of W[min(I(t), hi)] - W[lo]``
    over the ramps started and not yet released, where ``I(t)`` counts the arrivals and
    ``W`` is a prefix sum of per-message weights. Kept as three counters changed at each
    ramp's start, fill and release (unfilled ramps, the sum of their ``W[lo]``, the value
    of the filled ones)."""

    def __init__(self, t: np.ndarray, W: np.ndarray | None, r: Ramps, scale: int = 1):
        self.t, self.W, self.scale = t, W, scale  # W None: every message weighs ``scale``
        fin = np.isfinite(r.release)
        wlo, full = (r.lo, r.hi - r.lo) if W is None else (W[r.lo], W[r.hi] - W[r.lo])
        n = len(r.lo)
        events = np.concatenate([t[r.lo], t[r.hi - 1], r.release[fin]])
        dn = np.concatenate([np.ones(n, np.int64), -np.ones(n, np.int64), np.zeros(int(fin.sum()), np.int64)])
        ds = np.concatenate([wlo, -wlo, np.zeros(int(fin.sum()), np.int64)])
        df = np.concatenate([np.zeros(n, np.int64), full, -full[fin]])
        order = np.argsort(events, kind="stable")
        self.events = events[order]
        zero = np.zeros((1, 3), dtype=np.int64)
        self.state = np.concatenate([zero, np.cumsum(np.column_stack([dn, ds, df])[order], axis=0)])

    def at(self, tau: np.ndarray, side: str) -> np.ndarray:
        """Values at ``tau`` (side "right": after the changes at ``tau``; "left": just before)."""
        j = np.searchsorted(self.events, tau, side)
        n, s, f = self.state[j].T
        arrived = np.searchsorted(self.t, tau, side)
        return (n * (arrived if self.W is None else self.W[arrived]) - s + f) * self.scale

    def unfilled(self, tau: np.ndarray, side: str) -> np.ndarray:
        return self.state[np.searchsorted(self.events, tau, side), 0]


class AreaIndex:
    """``sum over k in [lo, hi) of w_k * max(0, end - t_k)`` for many ranges at once, without
    visiting their messages: prefix sums of the weights and of ``w_k * (t_k - base)``, where
    ``base`` is the time of the first message of each block of :attr:`K` messages (offsets
    within a block are small, so the sums keep their precision at t ~ 4e9 s; a range's whole
    blocks add one term each: the work is per range plus per 4096 messages held)."""

    K = 4096

    def __init__(self, t: np.ndarray, w: np.ndarray | None = None):
        K, N = self.K, len(t)
        self.t, self.factor = t, 1
        nb = max(1, -(-N // K))
        self.base = t[::K] if N else np.zeros(1)
        pad = nb * K - N
        d = np.zeros(nb * K)
        d[:N] = t
        d[:N] -= np.repeat(self.base, K)[:N]
        if w is not None:
            d[:N] *= w
        d = d.reshape(nb, K)
        np.cumsum(d, axis=1, out=d)
        # per block: exclusive prefix sums within it (K + 1 columns); weights None: counts
        self.wd = np.concatenate([np.zeros((nb, 1)), d], axis=1)
        del d
        if w is None:
            self.wl = None
            full = np.full(nb, float(K))
            full[-1] = K - pad
        else:
            wl = np.zeros(nb * K)
            wl[:N] = w
            self.wl = np.concatenate([np.zeros((nb, 1)), np.cumsum(wl.reshape(nb, K), axis=1)], axis=1)
            full = self.wl[:, -1]
        self.full = full  # each block's total weight

    def _w(self, b: np.ndarray, k: np.ndarray) -> np.ndarray:
        return k.astype(float) if self.wl is None else self.wl[b, k]

    def scaled(self, k: int) -> "AreaIndex":
        """The same index for messages that all weigh ``k``."""
        out = _copy.copy(self)
        out.factor = self.factor * k
        return out

    def area(self, lo: np.ndarray, hi: np.ndarray, end: np.ndarray) -> float:
        K = self.K
        hi = np.minimum(hi, np.searchsorted(self.t, end, "right"))  # messages after ``end`` add nothing
        ok = hi > lo
        lo, hi, end = lo[ok], hi[ok], end[ok]
        if not len(lo):
            return 0.0
        b0, b1 = lo // K, (hi - 1) // K
        same = b0 == b1
        # the first block's part: [lo, min(hi, its end))
        stop0 = np.where(same, hi - b0 * K, K)
        w0 = self._w(b0, stop0) - self._w(b0, lo - b0 * K)
        d0 = self.wd[b0, stop0] - self.wd[b0, lo - b0 * K]
        total = np.sum(w0 * (end - self.base[b0]) - d0)
        m = ~same
        if m.any():
            b0m, b1m, e = b0[m], b1[m], end[m]
            k1 = hi[m] - b1m * K  # the last block's part: [its start, hi)
            total += np.sum(self._w(b1m, k1) * (e - self.base[b1m]) - self.wd[b1m, k1])
            cnt = b1m - b0m - 1  # whole blocks in between, one term each (prefix sums over
            if cnt.sum():  # blocks of w * base would lose the precision at t ~ 4e9 s)
                j = np.repeat(b0m + 1 - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(int(cnt.sum()))
                total += np.sum(self.full[j] * (np.repeat(e, cnt) - self.base[j]) - self.wd[j, -1])
        return float(total) * self.factor


def _weights(w: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """Prefix sums of per-message weights, or (None, k) when every message weighs ``k``."""
    if w is None:
        return None, 0
    if len(w) == 0 or bool((w == w[0]).all()):
        return None, int(w[0]) if len(w) else 0
    return np.r_[0, np.cumsum(w)], 1


@dataclass
class SessionRows:
    """The sessions' own memory changes (their overhead, client id and subscriptions):
    time, memory category, byte delta and session-count delta per change."""

    time: np.ndarray
    category: np.ndarray
    nbytes: np.ndarray
    sessions: np.ndarray


def closed_form(t: np.ndarray, entry_bytes: int, copy: np.ndarray | None, store: np.ndarray | None,
                ramps: Ramps, rows: SessionRows, horizon: float, points: int | None, frame: bool):
    """(stats, frame) of the broker memory: sessions' rows plus queues held as ramps over the
    message sequence with times ``t``. ``copy``: each message's body as every queue entry
    holds its own copy (no shared store), else None; ``store``: each message's stored body
    with a shared store, else None. Same fields as :meth:`sim.memory.MemoryMonitor.stats`."""
    H = horizon
    cats = [ramps.where(ramps.category == c) for c in range(3)]
    copy_w, copy_k = _weights(copy)
    store_w, store_k = _weights(store)
    queued = [_Level(t, None, r) for r in cats]
    copies = [_Level(t, copy_w, r, copy_k) for r in cats] if copy is not None else []
    env = envelope(ramps) if store is not None else None
    stored = _Level(t, store_w, env, store_k) if store is not None else None

    # the sessions' rows as a step function per category (0..3), session bytes and sessions
    order = np.argsort(rows.time, kind="stable")
    rt = rows.time[order]
    per_cat = np.zeros((len(rt), 4), dtype=np.int64)
    per_cat[np.arange(len(rt)), rows.category[order]] = rows.nbytes[order]
    row_state = np.concatenate([np.zeros((1, 6), np.int64), np.cumsum(
        np.column_stack([per_cat, rows.nbytes[order], rows.sessions[order]]), axis=0)])

    def values(tau: np.ndarray, side: str) -> np.ndarray:
        """Columns of the memory frame (without time) at ``tau``."""
        rs = row_state[np.searchsorted(rt, tau, side)]
        q = [lv.at(tau, side) for lv in queued]
        cp = [lv.at(tau, side) for lv in copies] or [np.zeros(len(tau), np.int64)] * 3
        st = stored.at(tau, side) if stored is not None else np.zeros(len(tau), np.int64)
        cat = [rs[:, c] + entry_bytes * q[c] + cp[c] for c in range(3)] + [rs[:, 3] + st]
        total = cat[0] + cat[1] + cat[2] + cat[3]
        qn = q[0] + q[1] + q[2]
        return np.column_stack([total, rs[:, 4], entry_bytes * qn, cp[0] + cp[1] + cp[2] + st, *cat, qn, rs[:, 5]])

    # the peak: memory only grows between a release or a session's end and the next one, so
    # its largest value is the one just before one of them, or at the horizon
    cand = np.unique(np.concatenate([rt, ramps.release, env.release if env is not None else [], [H]]))
    cand = cand[(cand > 0) & (cand <= H)]
    before = values(cand, "left")
    peak_i = int(np.argmax(before[:, 0]))
    peak, qpeak = int(before[peak_i, 0]), int(before[:, 8].max())
    final = values(np.array([H]), "right")[0]

    # time integrals: the rows' steps, then each held message's bytes x its holding time
    ends = np.r_[rt, H]
    dt = np.diff(np.r_[0.0, ends])  # the state before each row holds from the previous row
    states = row_state  # the state before the first row, then after each row
    area = [float(np.sum(states[:, c] * dt)) for c in range(4)]
    mid = H / 2
    dmid = np.diff(np.r_[0.0, np.minimum(ends, mid)])
    marked = sum(float(np.sum(states[:, c] * dmid)) for c in range(4))
    queued_area = 0.0
    by_count = AreaIndex(t)
    by_copy = (by_count.scaled(copy_k) if copy_w is None else AreaIndex(t, copy)) if copy is not None else None
    for c, r in enumerate(cats):
        stop, half = np.minimum(r.release, H), np.minimum(r.release, mid)
        q_area = by_count.area(r.lo, r.hi, stop)
        queued_area += q_area
        area[c] += entry_bytes * q_area
        marked += entry_bytes * by_count.area(r.lo, r.hi, half)
        if by_copy is not None:
            area[c] += by_copy.area(r.lo, r.hi, stop)
            marked += by_copy.area(r.lo, r.hi, half)
    if env is not None:
        by_store = by_count.scaled(store_k) if store_w is None else AreaIndex(t, store)
        area[STORE] += by_store.area(env.lo, env.hi, np.minimum(env.release, H))
        marked += by_store.area(env.lo, env.hi, np.minimum(env.release, mid))
    stats = summary_stats(area, queued_area, peak, qpeak, int(final[0]), int(final[8]), 0.0, H, (mid, marked))

    if not frame:
        return stats, pd.DataFrame({col: [] for col in COLUMNS})
    bins = max(1, ((points or 100_000) - 1) // 3)
    grid = np.linspace(0.0, H, bins + 1)
    # in each bin the candidate with the most memory just before it, shown at the last change
    # before it (where that value starts)
    b = np.clip(np.searchsorted(grid, cand, "right") - 1, 0, bins - 1)
    top = np.lexsort((-before[:, 0], b))
    first = np.r_[True, b[top][1:] != b[top][:-1]]
    tops = cand[top[first]]
    last_change = _last_change_before(tops, t, rt, [*queued, *copies] + ([stored] if stored else []))
    times = np.unique(np.concatenate([grid, last_change]))
    times = times[(times >= 0) & (times <= H)]
    out = pd.DataFrame(values(times, "right"), columns=COLUMNS[1:])
    out.insert(0, "time", times)
    return stats, out.astype({c: "int64" for c in COLUMNS[1:]})


def _last_change_before(tau: np.ndarray, t: np.ndarray, rt: np.ndarray, levels: list[_Level]) -> np.ndarray:
    """The time of the last memory change strictly before each ``tau``: a session row, a
    ramp's start, fill or release, or an arrival into a ramp that is still filling."""
    out = np.zeros(len(tau))

    def latest(times: np.ndarray, mask=True) -> None:
        nonlocal out
        if len(times):
            i = np.searchsorted(times, tau, "left")
            out = np.where(mask & (i > 0), np.maximum(out, times[np.maximum(i - 1, 0)]), out)

    latest(rt)
    for lv in levels:
        latest(lv.events)
        latest(t, lv.unfilled(tau, "left") > 0)
    return out

"""Client identifiers whose connections form a renewal process, a whole life at a time.

With outages drawn from distributions (up-time, down-time, leave probability; no trace, no
back-off), a client slot's history is a sequence of sums: the n-th drop comes an up-time
after the (n-1)-th reconnect, the reconnect a down-time after the drop. This module draws
those times for a whole client identifier at once (``numpy.cumsum`` adds in sequence, so the
times are the ones :class:`sim.outage_plan.OutagePlan` and the SimPy clock give, to the bit:
same streams, same draws, same float additions) and settles all its connection intervals
with array operations: delivered while connected; queued (a range of the message sequence
up to the queue limit, drop-new), dropped for a full queue, QoS 0 not queued, or no session
while offline; the session's end (Session Expiry, §3.1.2.11.2, [MQTT-3.1.2-23]; Clean Start
1 at the reconnect, [MQTT-3.1.2-4]; a DISCONNECT's new interval, §3.14.2.2.2) and the
sessions' own memory changes. The per-interval rules are those of :class:`sim.interval._Life`
(which handles every other case, one connection change at a time); tests/test_engines.py
checks that both give the message-by-message engine's results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import protocol
from .entities import CONNECTED, OFFLINE, STRANDED
from .streams import spawned

INF = math.inf


def supported(block, cfg, group, record_events: bool) -> bool:
    """Whether a consumer block's lives can be computed here (else one change at a time)."""
    out = block.outages
    return (not record_events and out.up is not None and out.traces is None and out.reconnect is None
            and not out.first_connect and group.mei is None
            and (group.limit is None or cfg.queue_full_policy == "drop-new"))


@dataclass
class Life:
    """One client identifier: it joins at ``joined``, drops at each ``offs[i]`` and is back at
    ``ons[i]`` (``len(ons)`` is ``len(offs)`` or one less: the last drop lasts to the horizon);
    ``departed``: its last drop is for good."""

    joined: float
    offs: np.ndarray
    ons: np.ndarray
    departed: bool


def slot_lives(block, streams, H: float) -> list[Life]:
    """The lives of one client slot, drawn as :func:`sim.interval._slot_history` draws them:
    a life ends at its first drop for good (leave probability, or no auto reconnect), at a
    drop whose reconnect would come at or after the horizon, or at the first drop past it."""
    return list(iter_lives(block, streams, H))


def iter_lives(block, streams, H: float):
    """:func:`slot_lives` one life at a time (the next is drawn only when asked for)."""
    out = block.outages
    outage_rng, _backoff_rng = streams
    p = out.leave_probability or 0.0
    cycle = out.up.mean + out.down.mean
    now = 0.0
    spawns = spawned(outage_rng, 3)
    while True:
        up_rng, down_rng, leave_rng = next(spawns)  # outage_rng.spawn(3), as OutagePlan does per client identifier
        # draws per block: enough for the rest of the horizon, or for about the expected lifetime
        # when clients leave (another block follows when a life is longer; more draws than the
        # life uses are harmless: its streams are its own)
        expected = (H - now) / cycle if 0 < cycle < INF else 64
        if p > 0:
            expected = min(expected, 1 / p)
        size = int(min(1 << 20, max(64, expected * 1.1 + 16)))
        offs, ons = [], []
        last, departed = now, False
        while True:
            # the first drop for good in this block first: up- and down-times are drawn only up
            # to it (each draw comes from its own stream, in sequence: the same values however
            # many are drawn at a time)
            if not block.auto_reconnect:
                gone = 0
            else:
                gone = _first(leave_rng.random(size) < p, size) if p > 0 else size
            m = min(size, gone + 1)
            seq = np.empty(2 * m + 1)
            seq[0], seq[1::2], seq[2::2] = last, out.up.sample(up_rng, m), out.down.sample(down_rng, m)
            cs = np.cumsum(seq)  # drop i at s[i] = (reconnect i-1) + up; back at e[i] = s[i] + down
            s, e = cs[1::2], cs[2::2]
            if e[-1] < H:  # (all of the block before the horizon)
                past = late = m
            else:
                past = _first(s >= H, m)  # the first drop at or after the horizon (not simulated)
                late = _first(e >= H, m)  # the first drop not back before the horizon (its life ends)
            if past <= min(gone, late):
                if past < size:
                    offs.append(s[:past]), ons.append(e[:past])
                    break
            elif gone <= late:
                offs.append(s[:gone + 1]), ons.append(e[:gone])
                departed = True
                break
            else:
                offs.append(s[:late + 1]), ons.append(e[:late])
                break
            offs.append(s), ons.append(e)
            last = float(e[-1])
        offs_a, ons_a = np.concatenate(offs), np.concatenate(ons)
        yield Life(now, offs_a, ons_a, departed)
        if not (departed and out.replace_departed):
            return
        now = float(offs_a[-1])


def _first(mask: np.ndarray, default: int) -> int:
    i = int(np.argmax(mask))
    return i if mask[i] else default


def session_bytes(cfg, block, cid: str) -> int:
    """A consumer's session and its one subscription, in broker memory."""
    return cfg.session_overhead_bytes + len(cid.encode()) + cfg.subscription_overhead_bytes + \
        len(block.topic_filter.encode())


def session_terms(block, cfg) -> tuple[float | None, bool, bool]:
    """A consumer block's sessions after each disconnect: the delay to their expiry (None:
    never, 0: they end with the connection; §3.1.2.11.2, a DISCONNECT's new interval
    §3.14.2.2.2), whether that DISCONNECT is a protocol error, and Clean Start at reconnects."""
    out = block.outages
    interval = protocol.effective_expiry(block.session_expiry_interval, cfg.max_session_expiry_interval)
    errors = False
    if out.disconnect == "clean":
        o = protocol.disconnect_expiry(block.session_expiry_interval, interval, out.disconnect_session_expiry_interval,
                                       cfg.max_session_expiry_interval)
        interval, errors = o.interval, o.protocol_error
    again = block.clean_start if out.reconnect_clean_start is None else out.reconnect_clean_start
    return protocol.expiry_delay(interval, cfg.uint_max_never_expires), errors, again


def play(eng, block, g, idx: int, cid: str, life: Life) -> None:
    """Books the fates, event counts, session memory rows and queue ranges of one life."""
    cfg, H = eng.cfg, eng.H
    out = block.outages
    offs, ons = life.offs, life.ons
    n_off, n_on = len(offs), len(ons)
    book = eng.fates.bulk
    counts: dict[str, int] = {}

    def add(fate: str, n) -> None:
        n = int(n)
        if n:
            counts[fate] = counts.get(fate, 0) + n

    nb = session_bytes(cfg, block, cid)
    delay, errors, again = session_terms(block, cfg)

    # connected intervals: [joined, off 0), [on i, off i+1), and [last on, H) when it ends online
    stops = np.r_[offs, H] if n_on == n_off else offs
    starts = np.r_[life.joined, ons][:len(stops)]

    # offline intervals [off i, on i) (the last one, without an on, to the horizon)
    on = np.r_[ons, INF] if n_on < n_off else ons
    end = np.minimum(on, H)
    final = np.zeros(n_off, dtype=bool)
    if life.departed:
        final[-1] = True
    category = np.where(final, STRANDED, OFFLINE).astype(np.int8)
    rows_t, rows_c, rows_b, rows_s = [], [], [], []

    def rows(t, cat, nbytes, sessions=0) -> None:
        t = np.asarray(t, dtype=float)
        if len(t):
            rows_t.append(t)
            rows_c.append(np.full(len(t), cat, dtype=np.int8) if np.isscalar(cat) else np.asarray(cat, dtype=np.int8))
            rows_b.append(np.full(len(t), nbytes, dtype=np.int64))
            rows_s.append(np.full(len(t), sessions, dtype=np.int64))

    rows([life.joined], CONNECTED, nb, 1)  # CONNECT without a session: created, subscribed
    if delay == 0:  # the session ends with the connection
        rows(offs, CONNECTED, -nb, -1)
        x = np.full(n_off, INF)
        has = np.zeros(n_off, dtype=bool)
    else:
        rows(offs, CONNECTED, -nb)
        rows(offs, category, nb)
        x = offs + delay if delay is not None else np.full(n_off, INF)
        x = np.where(x < H, x, INF)
        has = np.ones(n_off, dtype=bool)
    expires = has & (x <= end)
    held_end = np.where(expires, x, end)
    no_from = np.minimum(np.where(has, x, offs), end)  # no session from here: the close (interval 0) or the expiry
    # every message count from one search: connected [start, stop), held [off, held end), none [from, end)
    k = len(stops)
    P = np.searchsorted(g.t, np.concatenate([stops, starts, offs, held_end, end, no_from]), "left")
    add("delivered", (P[:k] - P[k:2 * k]).sum())
    a, b, at_end, at_from = (P[2 * k + i * n_off:2 * k + (i + 1) * n_off] for i in range(4))
    n = b - a
    resumed = has & ~expires & (on < H)
    discard = resumed if again else np.zeros(n_off, dtype=bool)
    fate_expired, fate_clean, fate_resumed, fate_pending = expires, discard, resumed & ~discard, has & ~expires & (on >= H)
    if has.any():
        if not protocol.queued_while_offline(g.qos, cfg.queue_qos0_messages):
            kept = np.zeros(n_off, dtype=np.int64)
            qos0 = np.where(has, n, 0)
        else:
            kept = np.where(has, n if g.limit is None else np.minimum(n, g.limit), 0)
            qos0 = np.zeros(n_off, dtype=np.int64)
        full = np.where(has, n, 0) - kept - qos0
        release = np.where(expires, x, np.where(on < H, on, INF))
        keep = kept > 0
        if keep.any():
            eng.ramp_blocks.append((g.key, a[keep], a[keep] + kept[keep], release[keep], category[keep]))
        rows(x[expires], category[expires], -nb, -1)
        rows(on[discard], OFFLINE, -nb, -1)
    else:
        kept = qos0 = full = np.zeros(n_off, dtype=np.int64)
    # messages with no session to go to: after the close (interval 0) or after the expiry
    no_session = np.where(~has | expires, at_end - at_from, 0)
    # reconnects: a new session (none left, or Clean Start discarded it) or the old one resumed
    new = ~resumed | discard
    new_on = new[:n_on]
    rows(ons[new_on], CONNECTED, nb, 1)
    rows(ons[~new_on], OFFLINE, -nb)
    rows(ons[~new_on], CONNECTED, nb)

    def settle(sel) -> None:
        add("session_expired", kept[sel & fate_expired].sum())
        add("clean_start", kept[sel & fate_clean].sum())
        add("delivered", kept[sel & fate_resumed].sum())
        add("pending", kept[sel & fate_pending].sum())
        add("queue_full", full[sel].sum())
        add("qos0_offline", qos0[sel].sum())
        add("no_session", no_session[sel].sum())

    settle(~final)
    for fate, k in counts.items():
        book(idx, fate, k)
    counts.clear()
    if life.departed:
        eng.fates.depart(idx)
        # a departed client's messages after its session is gone are not routed to it
        no_session[-1] = 0
        settle(final)
        for fate, k in counts.items():
            book(idx, fate, k)
    log = eng.log
    log.tally("connect", 1 + n_on)
    log.tally("disconnect", n_off)
    log.tally("protocol_error", n_off if errors else 0)
    log.tally("session_ended", n_off if delay == 0 else 0)
    log.tally("session_expired", int(expires.sum()))
    log.tally("session_discarded", int(discard.sum()))
    log.tally("departed", int(life.departed))
    eng.mem.blocks.append((np.concatenate(rows_t), np.concatenate(rows_c), np.concatenate(rows_b),
                           np.concatenate(rows_s)))
    alive = (n_on == n_off) or (has[-1] and not expires[-1])
    eng.sessions_final += int(alive)

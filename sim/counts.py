"""The interval engine over a publish stream kept as counts: horizons up to UINT_MAX and past it.

:mod:`sim.interval` keeps every publish time (about 30 bytes a message while it runs), so a
run may publish at most :data:`sim.run.MAX_MESSAGES` messages; at one message per second the
UINT_MAX horizon publishes 4.3 billion. This module computes the same model without ever
holding the stream, in time order, one *epoch* (a stretch of simulated time holding about
:data:`EPOCH_CUTS` connection changes of the whole fleet) after another:

1. every client slot's connection history is drawn as :func:`sim.renewal.iter_lives` draws it
   (the same random streams, so the same timeline as the other engines for the same seed);
2. the epoch's *cuts* are every instant at which something in the fleet changes (a drop, a
   reconnect, a Session Expiry, the epoch's ends); the publish stream, a Poisson process
   with the publishers' summed rate, is drawn as the number of messages between
   consecutive cuts (independent Poisson counts, one draw per stretch from the run's
   publisher stream), so the message index ``N(t)`` at every cut is exact, and every
   offline interval's queue is a range of it (drop-new keeps the first ``q``);
3. fates are settled per offline interval as :func:`sim.renewal.play` settles them;
4. broker memory is summed over the stretches: the sessions' own bytes change only at cuts;
   queue entries and the shared message store only grow between cuts (arrivals), and
   shrink at releases (a reconnect, an expiry, Clean Start). So the memory *peak*, the
   *final* value and the queued-message peak are exact functions of the counts (memory is
   largest just before a cut), as are all fates and event counts.

What counts leave open is *where* inside a stretch its ``c`` messages arrive. The stream
places them at their expected order statistics, ``start + (i / (c + 1)) * length``
(``i = 1..c``); a time integral (byte-seconds, the time-weighted means, queued-message
seconds) is linear in the arrival times, so the values reported are the exact conditional
expectations, given every count, of those of a Poisson stream (unbiased, with a little less
spread between replications). ``Result.stream`` says ``"counts"`` for such a run; docs/model.md
("A stream kept as counts") explains it. Given that stream written out message by message,
:mod:`sim.interval` gives the same fates, peaks and finals, and the same integrals to
rounding (tests/test_counts.py).

The simulator's memory grows with the clients and the sessions alive in an epoch, never with
messages: an offline session is ``(start index, release)``, and the store's distinct
messages are the union of the sessions' ranges, kept as one number updated at each cut.
"""
from __future__ import annotations

import math

import numpy as np

from . import protocol
from .config import Scenario, client_id_prefixes
from .entities import CONNECTED, OFFLINE, STRANDED
from .eventlog import EventLog
from .ledger import DUPLICATES, FATE_INDEX, ROUTED, FateLedger
from .memory import COLUMNS, summary_stats
from .protocol import FATES, departed_fate
from . import renewal

INF = math.inf
STORE = 3
#: connection changes of the whole fleet per epoch (the arrays of one epoch: about 200 bytes each)
EPOCH_CUTS = 1_000_000
#: a queue limit of "unlimited", as a message count (far above any index a run reaches)
NO_LIMIT = 1 << 60


def unsupported(scenario: Scenario) -> list[str]:
    """What keeps ``scenario`` from running over a stream kept as counts (empty: it can)."""
    from .interval import _matches, unsupported as interval_unsupported

    out = list(interval_unsupported(scenario))
    cfg = scenario.broker
    if not scenario.publishers:
        out.append("no mqttPublisher block")
    for i, p in enumerate(scenario.publishers):
        where = f"mqttPublisher[{i}]" if len(scenario.publishers) > 1 else "mqttPublisher"
        if p.rate is None:
            out.append(f"{where}.schedule (a stream kept as counts needs a rate)")
        if p.message_expiry_interval is not None:
            out.append(f"{where}.message expiry interval")
    stores = {cfg.message_overhead_bytes + len(p.topic_of(k).encode()) + p.payload_bytes
              for p in scenario.publishers for k in range(p.clients)}
    if len(stores) > 1:
        out.append("messages of different sizes (topics or payloads differ between publisher clients)")
    limits = set()
    for i, c in enumerate(scenario.consumers):
        where = f"mqttConsumer[{i}]" if len(scenario.consumers) > 1 else "mqttConsumer"
        o = c.outages
        if o.up is None or o.traces is not None:
            out.append(f"{where}.outages: up/down distributions (traces and always-connected clients are "
                       "computed with every publish time)")
        if o.reconnect is not None:
            out.append(f"{where}.outages.reconnect (back-off)")
        if o.first_connect:
            out.append(f"{where}.outages.first connect")
        if not all(_matches(c.topic_filter, p) for p in scenario.publishers):
            out.append(f"{where}: topic filter does not match every publisher block")
        limits.add(_limit(scenario, c))
    if cfg.max_queued_messages or cfg.max_queued_bytes:
        if cfg.queue_full_policy != "drop-new":
            out.append("broker.queue full policy: drop-oldest")
    if len(limits) > 1:
        out.append("consumer blocks with different queue limits in messages")
    return sorted(set(out))


def _limit(scenario: Scenario, c) -> int | None:
    """A consumer block's queue capacity in messages (None: unlimited), as sim.interval computes it."""
    b = scenario.broker
    if not scenario.publishers:
        return None
    p = scenario.publishers[0]
    qos = protocol.delivered_qos(p.qos, c.qos)
    if not (qos > 0 or b.queue_limits_count_qos0):
        return None
    caps = []
    if b.max_queued_messages:
        caps.append(b.max_queued_messages)
    if b.max_queued_bytes and p.payload_bytes > 0:
        caps.append(b.max_queued_bytes // p.payload_bytes if b.queue_bytes_check == "fits"
                    else -(-b.max_queued_bytes // p.payload_bytes))
    return min(caps) if caps else None


# --------------------------------------------------------------------------- nearest active session


def _sparse_max(v: np.ndarray) -> list[np.ndarray]:
    """levels[j][i] = max(v[i : i + 2**j]) (shorter at the end)."""
    levels = [v]
    j = 1
    while (1 << j) <= len(v):
        prev = levels[-1]
        h = 1 << (j - 1)
        levels.append(np.maximum(prev[:len(prev) - h], prev[h:]))
        j += 1
    return levels


def _previous_above(levels: list[np.ndarray], end: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """For each query, the largest index ``i < end`` with ``v[i] > threshold`` (-1: none)."""
    pos = end.astype(np.int64).copy()
    for j in range(len(levels) - 1, -1, -1):
        w = 1 << j
        lv = levels[j]
        start = pos - w
        ok = start >= 0
        s = np.where(ok, start, 0)
        skip = ok & (lv[np.minimum(s, len(lv) - 1)] <= threshold) & (s < len(lv))
        pos = np.where(skip, start, pos)
    return pos - 1  # pos is 0 (none) or one past the answer


def _next_above(levels: list[np.ndarray], begin: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """For each query, the smallest index ``i >= begin`` with ``v[i] > threshold`` (len(v): none)."""
    n = len(levels[0])
    pos = begin.astype(np.int64).copy()
    for j in range(len(levels) - 1, -1, -1):
        w = 1 << j
        lv = levels[j]
        ok = pos + w <= n
        s = np.minimum(pos, len(lv) - 1)
        skip = ok & (lv[s] <= threshold)
        pos = np.where(skip, pos + w, pos)
    return pos


# --------------------------------------------------------------------------- the engine


class _Records:
    """Offline intervals (one per drop) not settled yet, as columns."""

    COLS = ("id", "blk", "off", "on", "final", "x", "end", "held", "release", "a", "h", "e", "order")

    def __init__(self):
        self.id = np.zeros(0, np.int64)
        self.blk = np.zeros(0, np.int64)
        self.off = np.zeros(0)
        self.on = np.zeros(0)
        self.final = np.zeros(0, bool)
        self.x = np.zeros(0)
        self.end = np.zeros(0)
        self.held = np.zeros(0)
        self.release = np.zeros(0)
        self.a = np.zeros(0, np.int64)
        self.h = np.zeros(0, np.int64)
        self.e = np.zeros(0, np.int64)
        self.order = np.zeros(0, np.int64)

    def __len__(self):
        return len(self.id)

    def take(self, sel) -> "_Records":
        r = _Records()
        for c in self.COLS:
            setattr(r, c, getattr(self, c)[sel])
        return r

    @staticmethod
    def join(a: "_Records", b: "_Records") -> "_Records":
        r = _Records()
        for c in _Records.COLS:
            setattr(r, c, np.concatenate([getattr(a, c), getattr(b, c)]))
        return r


class _Slot:
    __slots__ = ("block", "slot", "lives", "life", "id", "ptr", "done")

    def __init__(self, block, slot, lives):
        self.block, self.slot, self.lives = block, slot, lives
        self.life = next(lives)
        self.id = -1
        self.ptr = 0
        self.done = False


class CountsEngine:
    """Runs a scenario over a stream kept as counts (see the module docstring)."""

    def __init__(self, scenario: Scenario, seed: int, record_memory: bool = True,
                 memory_points: int | None = 100_000, epoch_cuts: int = EPOCH_CUTS, keep_stream: bool = False):
        reasons = unsupported(scenario)
        if reasons:
            raise ValueError("a stream kept as counts cannot compute this scenario: " + "; ".join(reasons))
        self.scn, self.seed = scenario, int(seed)
        self.cfg, self.H = scenario.broker, float(scenario.horizon)
        self.record_memory = record_memory
        self.memory_points = memory_points
        self.epoch_cuts = int(epoch_cuts)
        self.keep_stream = keep_stream  # tests: keep (cuts, message index at each cut)
        self.stream_cuts: list[tuple[np.ndarray, np.ndarray]] = []
        self.fates = FateLedger(record_messages=False)
        self.log = EventLog(False)
        cfg = self.cfg
        pubs = scenario.publishers
        self.rate = float(sum(p.clients * p.rate for p in pubs))
        p0 = pubs[0]
        self.body = cfg.message_overhead_bytes + len(p0.topic_of(0).encode()) + p0.payload_bytes
        self.ent = cfg.queue_entry_overhead_bytes
        self.shared = cfg.shared_message_store
        # per consumer block
        blocks = scenario.consumers
        self.delay = np.empty(len(blocks))
        self.queued = np.empty(len(blocks), bool)
        self.again = np.empty(len(blocks), bool)
        self.errors = np.empty(len(blocks), bool)
        self.fixed = np.array([cfg.session_overhead_bytes + cfg.subscription_overhead_bytes
                               + len(b.topic_filter.encode()) for b in blocks], dtype=np.int64)
        limit = _limit(scenario, blocks[0]) if blocks else None
        self.L = NO_LIMIT if limit is None else int(limit)
        for i, b in enumerate(blocks):
            out = b.outages
            interval = protocol.effective_expiry(b.session_expiry_interval, cfg.max_session_expiry_interval)
            errors = False
            if out.disconnect == "clean":
                o = protocol.disconnect_expiry(b.session_expiry_interval, interval,
                                               out.disconnect_session_expiry_interval, cfg.max_session_expiry_interval)
                interval, errors = o.interval, o.protocol_error
            d = protocol.expiry_delay(interval, cfg.uint_max_never_expires)
            self.delay[i] = INF if d is None else float(d)
            self.errors[i] = errors
            qos = protocol.delivered_qos(p0.qos, b.qos)
            self.queued[i] = protocol.queued_while_offline(qos, cfg.queue_qos0_messages)
            self.again[i] = b.clean_start if out.reconnect_clean_start is None else out.reconnect_clean_start

    # ----------------------------------------------------------------- identifiers
    def _new_id(self, block: int) -> int:
        cid = f"{self.prefixes[block]}-{self.count[block]}"
        self.count[block] += 1
        self.cids.append(cid)
        self.id_block.append(block)
        self.id_departed.append(False)
        self.nb.append(int(self.fixed[block]) + len(cid.encode()))
        return len(self.cids) - 1

    # ----------------------------------------------------------------- driver
    def run(self, progress: bool = False) -> "CountsEngine":
        scn, H = self.scn, self.H
        consumer_seed, publisher_seed = np.random.SeedSequence(self.seed).spawn(2)
        self.rng = np.random.default_rng(publisher_seed)  # the stream's counts, stretch after stretch
        self.prefixes = client_id_prefixes(scn.consumers)
        self.count = [0] * len(scn.consumers)
        self.cids, self.id_block, self.id_departed, self.nb = [], [], [], []
        slots: list[_Slot] = []
        for (bi, block), s in zip(enumerate(scn.consumers), consumer_seed.spawn(len(scn.consumers))):
            for slot, ss in enumerate(s.spawn(block.clients)):
                streams = [np.random.default_rng(x) for x in ss.spawn(2)]
                slots.append(_Slot(bi, slot, renewal.iter_lives(block, streams, H)))
        for st in slots:  # every slot's first client at the start, block by block
            st.id = self._new_id(st.block)
        self.F = np.zeros((max(16, 2 * len(slots)), len(FATES)), np.int64)
        self.dc = np.zeros(len(self.F), np.int64)  # per identifier: messages while connected
        self.order_next = 0
        self.N0 = 0  # messages published before the current epoch
        self.carry = _Records()
        # memory state carried from epoch to epoch
        self.rows_state = np.zeros(6, np.int64)  # bytes per category (4), session bytes, sessions
        self.D = 0  # distinct messages in the shared store
        self.area = [0.0] * 4
        self.queued_area = 0.0
        self.marked = 0.0
        self.peak = 0
        self.qpeak = 0
        self.frame_parts: list[np.ndarray] = []
        bins = max(1, ((self.memory_points or 100_000) - 1) // 3)
        self.grid = np.linspace(0.0, H, bins + 1)
        # initial rows: consumers connect at 0 (no session yet: created, subscribed), publishers too
        self.pending_rows = [(0.0, CONNECTED, self.nb[st.id], 1) for st in slots]
        self.log.tally("connect", len(slots))
        for (bi, block), prefix in zip(enumerate(scn.publishers), client_id_prefixes(scn.publishers)):
            for k in range(block.clients):
                cid = f"{prefix}-{k}"
                self.pending_rows.append((0.0, CONNECTED, self.cfg.session_overhead_bytes + len(cid.encode()), 1))
                self.log.event(0.0, cid, "publisher", "connect")
        cut_rate = sum(c.clients * 2.0 / max(c.outages.up.mean + c.outages.down.mean, 1e-9) for c in scn.consumers)
        span = max(self.epoch_cuts / max(cut_rate, 1e-300), 1.0)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=H, desc="simulated time", unit="s", unit_scale=True)
        T0 = 0.0
        self.mid = H / 2
        while True:
            T1 = min(T0 + span, H)
            self._epoch(slots, T0, T1, last=T1 >= H)
            if bar is not None:
                bar.update(T1 - T0)
            if T1 >= H:
                break
            T0 = T1
        if bar is not None:
            bar.close()
        self._finish()
        return self

    # ----------------------------------------------------------------- one epoch
    def _emit(self, slots, T1: float):
        """The drops in [T0, T1) of every slot (and the replacements that join)."""
        ids, blks, offs, ons, finals = [], [], [], [], []
        joins = []  # (join time, block, slot, provisional id, index into slots)
        prov = len(self.cids)
        n_prov = 0
        id_of_prov = {}
        for si, st in enumerate(slots):
            while not st.done:
                life = st.life
                o = life.offs
                j0 = st.ptr
                j1 = j0 + int(np.searchsorted(o[j0:], T1, "left"))
                if j1 > j0:
                    k = j1 - j0
                    offs.append(o[j0:j1])
                    n_on = len(life.ons)
                    on = np.full(k, INF)
                    m = max(0, min(j1, n_on) - j0)
                    on[:m] = life.ons[j0:j0 + m]
                    ons.append(on)
                    fin = np.zeros(k, bool)
                    if life.departed and j1 == len(o):
                        fin[-1] = True
                    finals.append(fin)
                    ids.append(np.full(k, st.id, np.int64))
                    blks.append(np.full(k, st.block, np.int64))
                st.ptr = j1
                if j1 < len(o):
                    break
                nxt = next(st.lives, None) if life.departed else None
                if nxt is None:
                    st.done = True
                    break
                pid = prov + n_prov  # provisional: numbered for real once every join is known
                n_prov += 1
                joins.append((nxt.joined, st.block, st.slot, pid, st.id))
                st.life, st.ptr, st.id = nxt, 0, pid
        # replacements get their identifiers in the order they join
        remap = None
        if joins:
            joins.sort(key=lambda j: (j[0], j[1], j[2]))
            remap = np.empty(n_prov, np.int64)
            for t, bi, _slot, pid, _pred in joins:
                remap[pid - prov] = self._new_id(bi)
            for st in slots:
                if st.id >= prov:
                    st.id = int(remap[st.id - prov])
            id_of_prov = remap
        if not ids:
            return None, joins, id_of_prov, prov
        r = _Records()
        r.id = np.concatenate(ids)
        if remap is not None:
            p = r.id >= prov
            r.id[p] = remap[r.id[p] - prov]
        r.blk = np.concatenate(blks)
        r.off = np.concatenate(offs)
        r.on = np.concatenate(ons)
        r.final = np.concatenate(finals)
        order = np.lexsort((np.arange(len(r.off)), r.off))  # by drop time; ties block by block, slot by slot
        for col in ("id", "blk", "off", "on", "final"):
            setattr(r, col, getattr(r, col)[order])
        n = len(r.off)
        r.order = self.order_next + np.arange(n, dtype=np.int64)
        self.order_next += n
        H = self.H
        d = self.delay[r.blk]
        has = d != 0
        x = r.off + d
        x = np.where(has & (x < H), x, INF)
        r.x = x
        r.end = np.minimum(r.on, H)
        r.held = np.where(has, np.minimum(x, r.end), r.off)
        expires = x <= r.end
        r.release = np.where(expires, x, np.where(r.on < H, r.on, INF))
        r.a = np.full(n, -1, np.int64)
        r.h = np.full(n, -1, np.int64)
        r.e = np.full(n, -1, np.int64)
        return r, joins, id_of_prov, prov

    def _epoch(self, slots, T0: float, T1: float, last: bool) -> None:
        H = self.H
        new, joins, id_of_prov, prov = self._emit(slots, T1)
        recs = self.carry if new is None else _Records.join(self.carry, new)
        n_old = len(self.carry)
        self._grow(len(self.cids))

        def inside(t):
            return (t >= T0) & ((t < T1) | (last & (t <= T1)))

        # session rows (t, category, bytes, sessions) at this epoch's instants
        rt, rc, rb, rs = [], [], [], []

        def rows(t, cat, nbytes, sessions):
            t = np.asarray(t, dtype=float)
            if len(t):
                rt.append(t)
                rc.append(np.broadcast_to(np.asarray(cat, np.int64), t.shape))
                rb.append(np.broadcast_to(np.asarray(nbytes, np.int64), t.shape))
                rs.append(np.broadcast_to(np.asarray(sessions, np.int64), t.shape))

        if self.pending_rows:
            t, c, b, s = zip(*self.pending_rows)
            rows(np.array(t), np.array(c), np.array(b), np.array(s))
            self.pending_rows = []
        nb_all = np.asarray(self.nb, np.int64)
        d = self.delay[recs.blk]
        has = d != 0
        again = self.again[recs.blk]
        expires = recs.x <= recs.end
        resumed = has & ~expires & (recs.on < H)
        discard = resumed & again
        nb = nb_all[recs.id]
        cat = np.where(recs.final, STRANDED, OFFLINE)
        if new is not None:
            sel = slice(n_old, None)
            nn = nb[sel]
            h_new = has[sel]
            rows(new.off[~h_new], CONNECTED, -nn[~h_new], -1)
            rows(new.off[h_new], CONNECTED, -nn[h_new], 0)
            rows(new.off[h_new], cat[sel][h_new], nn[h_new], 0)
            self.log.tally("disconnect", len(new.off))
            self.log.tally("protocol_error", int(self.errors[new.blk].sum()))
            self.log.tally("session_ended", int((~h_new).sum()))
            self.log.tally("departed", int(new.final.sum()))
        for t, bi, _slot, pid, _pred in joins:  # a replacement connects the moment its predecessor leaves
            i = int(id_of_prov[pid - prov])
            rows([t], CONNECTED, self.nb[i], 1)
        self.log.tally("connect", len(joins))
        ex = expires & inside(recs.x)
        rows(recs.x[ex], cat[ex], -nb[ex], -1)
        self.log.tally("session_expired", int(ex.sum()))
        back = inside(recs.on) & (recs.on < H)
        newsess = back & (~resumed | discard)
        rows(recs.on[newsess], CONNECTED, nb[newsess], 1)
        dis = back & discard
        rows(recs.on[dis], OFFLINE, -nb[dis], -1)
        res = back & resumed & ~discard
        rows(recs.on[res], OFFLINE, -nb[res], 0)
        rows(recs.on[res], CONNECTED, nb[res], 0)
        self.log.tally("connect", int(back.sum()))
        self.log.tally("session_discarded", int(dis.sum()))

        # the cuts: every instant of the epoch at which something changes
        q_off = new.off if new is not None else np.zeros(0)
        parts = [np.array([T0, T1]), q_off, recs.held[inside(recs.held)], recs.end[inside(recs.end)],
                 recs.x[inside(recs.x)], recs.on[inside(recs.on)]]
        if T0 <= self.mid < T1:
            parts.append(np.array([self.mid]))
        if rt:
            parts.append(np.concatenate(rt))
        C = np.unique(np.concatenate(parts))
        C = C[(C >= T0) & (C <= T1)]
        g = np.diff(C)
        c = self.rng.poisson(self.rate * g).astype(np.int64)
        N = self.N0 + np.concatenate([[0], np.cumsum(c)])
        if self.keep_stream:
            self.stream_cuts.append((C.copy(), N.copy()))

        def at(t):
            return N[np.searchsorted(C, t)]

        # message indices at the record's instants in this epoch
        if new is not None:
            recs.a[n_old:] = at(recs.off[n_old:])
        m = inside(recs.held) & (recs.h < 0)
        recs.h[m] = at(recs.held[m])
        m = inside(recs.end) & (recs.e < 0)
        recs.e[m] = at(recs.end[m])
        # messages while connected: from each join (a replacement's: its predecessor's departure)
        for t, bi, _slot, pid, _pred in joins:
            i = int(id_of_prov[pid - prov])
            self.dc[i] -= int(at(np.array([t]))[0])
        if new is not None:
            fin = new.final
            np.add.at(self.dc, recs.id[n_old:][fin], recs.a[n_old:][fin])  # up to the departure

        self._memory(recs, C, N, c, g, rt, rc, rb, rs, has, expires, cat, T0, T1, last)

        # settle the intervals that ended in this epoch (all of them at the horizon)
        done = recs.e >= 0
        if last:
            assert done.all()
        self._settle(recs.take(done), has[done], expires[done], resumed[done], discard[done])
        self.carry = recs.take(~done)
        self.N0 = int(N[-1])
        if last:
            self.published = int(N[-1])

    def _grow(self, n: int) -> None:
        if n > len(self.F):
            size = max(n, 2 * len(self.F))
            F = np.zeros((size, self.F.shape[1]), np.int64)
            F[:len(self.F)] = self.F
            dc = np.zeros(size, np.int64)
            dc[:len(self.dc)] = self.dc
            self.F, self.dc = F, dc

    # ----------------------------------------------------------------- fates
    def _settle(self, r: _Records, has, expires, resumed, discard) -> None:
        """Fates of finished offline intervals, as sim.renewal.play books them."""
        if not len(r):
            return
        H = self.H
        a, h, e = r.a, r.h, r.e
        queued = self.queued[r.blk]
        n_held = np.where(has, h - a, 0)
        kept = np.where(has & queued, np.minimum(n_held, self.L), 0)
        qos0 = np.where(has & ~queued, n_held, 0)
        full = n_held - kept - qos0
        no_session = np.where(~has | expires, e - h, 0)
        no_session = np.where(r.final, 0, no_session)  # not routed to a departed client
        pending = has & ~expires & (r.on >= H)
        f = r.final
        for fate, n, mask in (("session_expired", kept, expires), ("clean_start", kept, discard),
                              ("delivered", kept, resumed & ~discard), ("pending", kept, pending),
                              ("queue_full", full, None), ("qos0_offline", qos0, None),
                              ("no_session", no_session, None)):
            v = n if mask is None else np.where(mask, n, 0)
            for gone in (False, True):
                sel = f == gone
                if not sel.any():
                    continue
                name = departed_fate(fate) if gone else fate
                np.add.at(self.F[:, FATE_INDEX[name]], r.id[sel], v[sel])
        # messages while connected: the life's span minus its offline intervals
        nf = ~f
        np.add.at(self.dc, r.id[nf], -(e[nf] - a[nf]))
        for i in np.unique(r.id[f]):
            self.id_departed[int(i)] = True

    # ----------------------------------------------------------------- memory
    def _memory(self, recs, C, N, c, g, rt, rc, rb, rs, has, expires, cat, T0, T1, last) -> None:
        K = len(g)
        L = self.L
        # the sessions' own bytes: state on each stretch k (after every row at C[k])
        state = np.zeros((K + 1, 6), np.int64)
        if rt:
            t = np.concatenate(rt)
            k = np.searchsorted(C, t)
            cats = np.concatenate(rc)
            nbytes = np.concatenate(rb)
            sess = np.concatenate(rs)
            np.add.at(state, (k, cats), nbytes)
            np.add.at(state, (k, 4), nbytes)
            np.add.at(state, (k, 5), sess)
        state = self.rows_state + np.cumsum(state, axis=0)
        self.rows_state = state[-1].copy()
        sess_k = state[:K]  # on stretch k

        # queues: sessions holding a range of the stream at some time in the epoch
        q = has & self.queued[recs.blk] & (recs.release >= T0) & (recs.off < T1)
        idx = np.flatnonzero(q)
        order = np.argsort(recs.order[idx], kind="stable")
        idx = idx[order]
        a = recs.a[idx]
        jo = np.where(recs.off[idx] < T0, 0, np.searchsorted(C, recs.off[idx]))
        rel = recs.release[idx]
        jr = np.where(rel < T1, np.searchsorted(C, rel), K)  # released at cut jr (K: not in this epoch)
        qc = cat[idx]
        top = a + L  # one past the last index the queue can take
        Nk, Nk1 = N[:K], N[1:]

        def f(r):  # sum over arrivals i <= r of (stretch end - arrival time), arrivals evenly placed
            return r * g - g * r * (r + 1) / (2.0 * (c + 1))

        Q_start = np.zeros((K, 2))
        Q_end = np.zeros((K, 2))
        Q_int = np.zeros((K, 2))
        for ci, cc in enumerate((OFFLINE, STRANDED)):
            s = qc == cc
            if not s.any():
                continue
            A, TOP, JO, JR = a[s], top[s], jo[s], jr[s]
            # at the start of stretch k a queue holds min(N[k] - a, L): growing while N[k] < top
            ks = np.clip(np.searchsorted(Nk, TOP, "left"), JO, JR)
            cnt_g, sum_g = _ranges(K, JO, ks, A)
            cnt_f, _ = _ranges(K, ks, JR, None)
            Q_start[:, ci] = cnt_g * Nk - sum_g + L * cnt_f
            # ... and at its end min(N[k + 1] - a, L)
            ke = np.clip(np.searchsorted(Nk1, TOP, "left"), JO, JR)
            cnt_g, sum_g = _ranges(K, JO, ke, A)
            cnt_f, _ = _ranges(K, ke, JR, None)
            Q_end[:, ci] = cnt_g * Nk1 - sum_g + L * cnt_f
            # arrivals a queue takes on stretch k: all c while there is room for them (N[k+1] <= top),
            # then the room left on the stretch where it fills
            kt = np.clip(np.searchsorted(Nk1, TOP, "right"), JO, JR)
            through, _ = _ranges(K, JO, kt, None)
            integral = Q_start[:, ci] * g + through * f(c)
            kk = kt[kt < JR]
            room = (TOP[kt < JR] - Nk[kk]).astype(float)
            ok = room > 0
            kk, room = kk[ok], room[ok]
            np.add.at(integral, kk, room * g[kk] - g[kk] * room * (room + 1) / (2.0 * (c[kk] + 1)))
            Q_int[:, ci] = integral

        # the shared store: distinct messages held by any session
        if self.shared and len(idx):
            levels = _sparse_max(jr)
            # growth on stretch k: arrivals below the reach of the latest session still holding
            last_dropped = np.searchsorted(jo, np.arange(K), "right")  # sessions dropped at or before cut k
            p = _previous_above(levels, last_dropped, np.arange(K))
            reach = np.where(p >= 0, top[np.maximum(p, 0)], 0)
            grow = np.clip(reach - Nk, 0, c)
            # releases at cut j: the messages no other session holds any more
            rl = np.flatnonzero(jr < K)
            j = jr[rl]
            pred = _previous_above(levels, rl, j)  # released at the same cut before it: gone too
            limit_succ = np.searchsorted(jo, j, "right")  # sessions that dropped at or before the cut
            succ = _next_above(levels, rl + 1, j - 1)
            Nj = N[j]
            e_s = np.minimum(Nj, top[rl])
            b_pred = np.where(pred >= 0, np.minimum(Nj, top[np.maximum(pred, 0)]), a[rl])
            a_succ = np.where(succ < limit_succ, a[np.minimum(succ, len(a) - 1)], np.iinfo(np.int64).max)
            freed = np.clip(np.minimum(e_s, a_succ) - np.maximum(a[rl], b_pred), 0, None)
            freed_at = np.bincount(j, weights=freed, minlength=K + 1).astype(np.int64)
        else:
            grow = np.zeros(K, np.int64)
            freed_at = np.zeros(K + 1, np.int64)
        # D on stretch k: carried, minus releases at cuts 0..k, plus growth on stretches before k
        D_start = self.D - np.cumsum(freed_at[:K]) + np.concatenate([[0], np.cumsum(grow)[:-1]])
        D_end = D_start + grow
        self.D = int(D_end[-1] - freed_at[K]) if K else self.D
        D_int = D_start * g + f(grow.astype(float))

        ent, body = self.ent, self.body
        copy = 0 if self.shared else body
        per = ent + copy
        # left-limit values at the end of each stretch: the peak candidates
        total_end = sess_k[:, :4].sum(axis=1) + per * Q_end.sum(axis=1) + (body * D_end if self.shared else 0)
        if K:
            self.peak = max(self.peak, int(total_end.max()))
            self.qpeak = max(self.qpeak, int(Q_end.sum(axis=1).max()))
        areas = [sess_k[:, 0] * g, sess_k[:, 1] * g + per * Q_int[:, 0], sess_k[:, 2] * g + per * Q_int[:, 1],
                 sess_k[:, 3] * g + (body * D_int if self.shared else 0)]
        before_mid = C[1:] <= self.mid
        for i in range(4):
            self.area[i] += float(np.sum(areas[i]))
            self.marked += float(np.sum(areas[i][before_mid]))
        self.queued_area += float(np.sum(Q_int))
        if last:
            self.final = np.concatenate([self.rows_state[:4], [0]])
            fq = Q_end[-1].sum() if K else 0
            self.final_total = int(total_end[-1]) if K else int(self.rows_state[:4].sum())
            self.final_queued = int(fq)
        if self.record_memory and K:
            self._frame_rows(C, c, g, sess_k, Q_start, Q_end, D_start, D_end, per, body)

    def _frame_rows(self, C, c, g, sess, Q_start, Q_end, D_start, D_end, per, body) -> None:
        """Rows of the memory frame: each stretch's start, and the value just before its end
        (at its last arrival); per time bin the first, the largest and the last are kept."""
        shared = self.shared
        K = len(g)

        def cols(Q, D):
            qn = Q.sum(axis=1)
            st = body * D if shared else np.zeros(K)
            cat = [sess[:, 0], sess[:, 1] + per * Q[:, 0], sess[:, 2] + per * Q[:, 1], sess[:, 3] + st]
            total = cat[0] + cat[1] + cat[2] + cat[3]
            msg = (0 if shared else body) * qn + st
            return np.column_stack([total, sess[:, 4], self.ent * qn, msg, *cat, qn, sess[:, 5]])

        last_arrival = np.where(c > 0, C[:-1] + g * c / (c + 1.0), C[:-1])
        t = np.concatenate([C[:-1], last_arrival])
        v = np.concatenate([cols(Q_start, D_start), cols(Q_end, D_end)])
        o = np.argsort(t, kind="stable")
        t, v = t[o], v[o]
        bins = len(self.grid) - 1
        b = np.clip(np.searchsorted(self.grid, t, "right") - 1, 0, bins - 1)
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ends = np.r_[starts[1:], len(t)] - 1
        # the largest total per bin
        top = np.lexsort((-v[:, 0], b))
        first = np.r_[True, b[top][1:] != b[top][:-1]]
        keep = np.unique(np.concatenate([starts, ends, top[first]]))
        self.frame_parts.append(np.column_stack([t[keep], v[keep]]))

    def _finish(self) -> None:
        n = len(self.cids)
        F = self.F[:n]
        dc = self.dc[:n].copy()
        departed = np.array(self.id_departed, bool)
        dc[~departed] += self.published  # a life that did not leave lasts to the horizon
        F[:, FATE_INDEX["delivered"]] += dc
        for i in range(n):
            self.fates.add_consumer(self.cids[i], self.id_block[i])
        counts = np.zeros((n, len(FATES) + 2), np.int64)
        counts[:, :len(FATES)] = F
        counts[:, ROUTED] = F.sum(axis=1)
        counts[:, DUPLICATES] = 0
        self.fates.counts = counts.tolist()
        for i in np.flatnonzero(departed):
            self.fates.depart(int(i))
        self.fates.published = self.published
        self.sessions_final = int(self.rows_state[5])

    def memory_result(self):
        """(stats dict, frame) of the broker-memory step function (see the module docstring)."""
        import pandas as pd

        H = self.H
        stats = summary_stats(self.area, self.queued_area, self.peak, self.qpeak, self.final_total,
                              self.final_queued, 0.0, H, (self.mid, self.marked))
        if not self.record_memory or not self.frame_parts:
            return stats, pd.DataFrame({col: [] for col in COLUMNS})
        rows = np.concatenate(self.frame_parts)
        frame = pd.DataFrame(rows[:, 1:].astype(np.int64), columns=COLUMNS[1:])
        frame.insert(0, "time", rows[:, 0])
        return stats, frame


def _ranges(K: int, lo: np.ndarray, hi: np.ndarray, w: np.ndarray | None):
    """Over stretches 0..K-1: how many of the half-open index ranges [lo, hi) cover each
    stretch, and the sum of their weights ``w`` (None: no sum)."""
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    ok = hi > lo
    lo, hi = lo[ok], hi[ok]
    cnt = np.bincount(lo, minlength=K + 1)[:K + 1] - np.bincount(hi, minlength=K + 1)[:K + 1]
    cnt = np.cumsum(cnt)[:K]
    if w is None:
        return cnt, None
    w = np.asarray(w)[ok].astype(np.int64)
    s = np.zeros(K + 1, np.int64)
    np.add.at(s, lo, w)
    np.add.at(s, hi, -w)
    return cnt, np.cumsum(s)[:K]

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
   consecutive cuts that every policy shares (drops, reconnects: independent Poisson counts,
   one draw per stretch), and a Session Expiry instant splits its stretch's count
   binomially from a stream of its own (so policies run with the same seed see the same
   messages); the message index ``N(t)`` at every cut is exact, and every offline
   interval's queue is a range of it (drop-new keeps the first ``q``);
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

import bisect
import heapq
import math

import numpy as np

from . import protocol
from .config import Scenario, client_id_prefixes
from .entities import CONNECTED, OFFLINE, STRANDED
from .eventlog import EventLog
from .interval import _matches, queue_limit, unsupported as interval_unsupported
from .ledger import FATE_INDEX, ROUTED, FateLedger
from .memory import COLUMNS, summary_stats
from .protocol import FATES, departed_fate
from . import kernels, renewal

INF = math.inf
#: connection changes of the whole fleet per epoch (the arrays of one epoch: about 200 bytes each)
EPOCH_CUTS = 125_000
#: a queue limit of "unlimited", as a message count (far above any index a run reaches)
NO_LIMIT = 1 << 60
#: runs with about this many connection changes or more use the compiled loops of
#: :mod:`sim.kernels` when numba is installed (smaller ones would spend longer loading them)
KERNELS_FROM_CUTS = 3_000_000


def unsupported(scenario: Scenario) -> list[str]:
    """What keeps ``scenario`` from running over a stream kept as counts (empty: it can)."""
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
    if not scenario.publishers:
        return None
    p = scenario.publishers[0]
    return queue_limit(scenario.broker, protocol.delivered_qos(p.qos, c.qos), p.payload_bytes)


# --------------------------------------------------------------------------- the engine


def _settle_allocator() -> None:
    """Allocates and frees one 30 MiB block (never touched, so it costs no page). With glibc,
    freeing a block that was mapped on its own raises the size from which later blocks are
    mapped on their own (and unmapped when freed) to that block's size: an epoch's arrays
    (a few MiB each, allocated and freed hundreds of times a run) then reuse the heap
    instead of faulting in fresh pages every time (about 10 million page faults and a fifth
    of the wall time on the UINT_MAX target fleet). Elsewhere it does nothing."""
    block = np.empty(30 << 20, np.uint8)
    del block


class _Records:
    """Offline intervals (one per drop) not settled yet, as columns."""

    COLS = ("id", "blk", "off", "on", "final", "x", "end", "release", "a", "h", "e")

    def __init__(self):
        self.id = np.zeros(0, np.int64)
        self.blk = np.zeros(0, np.int64)
        self.off = np.zeros(0)
        self.on = np.zeros(0)
        self.final = np.zeros(0, bool)
        self.x = np.zeros(0)
        self.end = np.zeros(0)
        self.release = np.zeros(0)
        self.a = np.zeros(0, np.int64)
        self.h = np.zeros(0, np.int64)
        self.e = np.zeros(0, np.int64)

    def __len__(self):
        return len(self.id)

    def take(self, sel) -> "_Records":
        r = _Records()
        for c in self.COLS:
            setattr(r, c, getattr(self, c)[sel])
        return r

    @staticmethod
    def concat(parts: list) -> "_Records":
        r = _Records()
        for c in _Records.COLS:
            setattr(r, c, np.concatenate([getattr(p, c) for p in parts]))
        return r


class _Slot:
    """A client slot: its lives, drawn one at a time, and the identifier of the current one."""

    __slots__ = ("block", "slot", "lives", "id")

    def __init__(self, block, slot, lives):
        self.block, self.slot, self.lives = block, slot, lives
        self.id = -1


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
        blocks = scenario.consumers
        self.delay = np.empty(len(blocks))
        self.queued = np.empty(len(blocks), bool)
        self.again = np.empty(len(blocks), bool)
        self.errors = np.empty(len(blocks), bool)
        limit = _limit(scenario, blocks[0]) if blocks else None
        self.L = NO_LIMIT if limit is None else int(limit)
        for i, b in enumerate(blocks):
            d, self.errors[i], self.again[i] = renewal.session_terms(b, cfg)
            self.delay[i] = INF if d is None else float(d)
            self.queued[i] = protocol.queued_while_offline(protocol.delivered_qos(p0.qos, b.qos),
                                                           cfg.queue_qos0_messages)

    # ----------------------------------------------------------------- identifiers and lives
    def _new_id(self, block: int) -> int:
        cid = f"{self.prefixes[block]}-{self.count[block]}"
        self.count[block] += 1
        self.cids.append(cid)
        self.id_block.append(block)
        self.id_departed.append(False)
        i = len(self.cids) - 1
        self._grow(i + 1)
        self.nb[i] = renewal.session_bytes(self.cfg, self.scn.consumers[block], cid)
        return i

    def _start_lives(self, started: list) -> None:
        """Files the drops of lives that start (``started``: (slot index, life) in the order their
        identifiers were numbered) under the epochs they fall in; a departure that is replaced is
        queued, by time, for the epoch it falls in."""
        for si, life in started:
            if life.departed:
                st = self.slots[si]
                heapq.heappush(self.departures, (float(life.offs[-1]), st.block, st.slot, si))
            if len(life.offs):
                self._file_drops(si, life)

    def _file_drops(self, si: int, life) -> None:
        """Files a life's drops under the epochs they fall in: per epoch, columns of its
        identifier, block and slot, whether its last drop there is its drop for good, how many
        drops it has there, and those drops and reconnects (a view of the life's (drop,
        reconnect) rows, in time order)."""
        offs = life.offs
        n = len(offs)
        rows = np.empty((n, 2))
        rows[:, 0] = offs
        k = len(life.ons)
        rows[:k, 1] = life.ons
        rows[k:, 1] = INF  # a drop not back before the horizon (the last of a life)
        st = self.slots[si]
        bounds = self.bounds_list
        e0 = bisect.bisect_right(bounds, float(offs[0])) - 1
        e1 = bisect.bisect_right(bounds, float(offs[-1])) - 1
        cuts = [0, *np.searchsorted(offs, self.bounds[e0 + 1:e1 + 1], "left").tolist(), n] if e1 > e0 else [0, n]
        buckets = self.buckets
        ident, block, departed = st.id, st.block, life.departed
        for e, i, j in zip(range(e0, e1 + 1), cuts[:-1], cuts[1:]):
            if j > i:
                b = buckets.get(e)
                if b is None:
                    b = buckets[e] = ([], [], [], [], [], [])
                b[0].append(ident)
                b[1].append(block)
                b[2].append(si)
                b[3].append(departed and j == n)
                b[4].append(j - i)
                b[5].append(rows[i:j])

    # ----------------------------------------------------------------- driver
    def run(self, progress: bool = False) -> "CountsEngine":
        scn, H = self.scn, self.H
        _settle_allocator()
        consumer_seed, publisher_seed = np.random.SeedSequence(self.seed).spawn(2)
        # the stream's counts, stretch after stretch; expiry instants split them from their own stream
        self.rng, self.split_rng = (np.random.default_rng(x) for x in publisher_seed.spawn(2))
        self.prefixes = client_id_prefixes(scn.consumers)
        self.count = [0] * len(scn.consumers)
        self.cids, self.id_block, self.id_departed = [], [], []
        # per identifier, grown as identifiers join: fates, messages while connected, session bytes
        n_slots = sum(c.clients for c in scn.consumers)
        self.F = np.zeros((max(16, 2 * n_slots), len(FATES)), np.int64)
        self.dc = np.zeros(len(self.F), np.int64)
        self.nb = np.zeros(len(self.F), np.int64)
        cut_rate = sum(c.clients * 2.0 / max(c.outages.up.mean + c.outages.down.mean, 1e-9) for c in scn.consumers)
        span = max(self.epoch_cuts / max(cut_rate, 1e-300), 1.0)
        n_epochs = self.n_epochs = max(1, int(math.ceil(H / span)))
        # the compiled loops (same output), when numba is there and the run is long enough to
        # repay loading them (about a second), or when MQTT_SIM_KERNELS=numba asks for them
        use = kernels.choice() == "numba" or H * cut_rate >= KERNELS_FROM_CUTS
        self.k = kernels.compiled() if use and kernels.enabled() else None
        self.compiled_loops = self.k is not None
        self.bounds = np.minimum(np.arange(n_epochs + 1) * span, H)
        self.bounds[-1] = H
        self.bounds_list = self.bounds.tolist()
        self.buckets: dict[int, tuple] = {}  # epoch: the lives' drops filed under it (see _file_drops)
        self.departures: list = []
        self.slots: list[_Slot] = []
        for (bi, block), s in zip(enumerate(scn.consumers), consumer_seed.spawn(len(scn.consumers))):
            for slot, ss in enumerate(s.spawn(block.clients)):
                streams = [np.random.default_rng(x) for x in ss.spawn(2)]
                self.slots.append(_Slot(bi, slot, renewal.iter_lives(block, streams, H)))
        first = []
        for si, st in enumerate(self.slots):  # every slot's first client at the start, block by block
            st.id = self._new_id(st.block)
            first.append((si, next(st.lives)))
        self._start_lives(first)
        self.N0 = 0  # messages published before the current epoch
        self.carry = _Records()
        self.parked: list[_Records] = []
        # memory state carried from epoch to epoch
        self.rows_state = np.zeros(5, np.int64)  # bytes per category (4), sessions
        self.D = 0  # distinct messages in the shared store
        self.frozen = np.zeros(2, np.int64)  # full stranded queues that never change again (offline, stranded)
        self.area = [0.0] * 4
        self.queued_area = 0.0
        self.marked = 0.0
        self.peak = 0
        self.qpeak = 0
        self.Q_last = 0.0
        self.frame_parts: list[np.ndarray] = []
        bins = max(1, ((self.memory_points or 100_000) - 1) // 3)
        self.grid = np.linspace(0.0, H, bins + 1)
        # at 0: consumers connect (no session yet: created, subscribed), publishers too
        self.initial = [(CONNECTED, self.nb[st.id], 1) for st in self.slots]
        self.log.tally("connect", len(self.slots))
        for (bi, block), prefix in zip(enumerate(scn.publishers), client_id_prefixes(scn.publishers)):
            for k in range(block.clients):
                cid = f"{prefix}-{k}"
                self.initial.append((CONNECTED, self.cfg.session_overhead_bytes + len(cid.encode()), 1))
                self.log.event(0.0, cid, "publisher", "connect")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=H, desc="simulated time", unit="s", unit_scale=True)
        self.mid = H / 2
        for e in range(n_epochs):
            T0, T1 = float(self.bounds[e]), float(self.bounds[e + 1])
            self._epoch(e, T0, T1, last=e == n_epochs - 1)
            if bar is not None:
                bar.update(T1 - T0)
        if bar is not None:
            bar.close()
        self._finish()
        return self

    # ----------------------------------------------------------------- one epoch
    def _new_records(self, e: int, T1: float):
        """The drops of epoch ``e`` (replacements join, in time order, as their predecessors leave)."""
        joins, started = [], []
        while self.departures and self.departures[0][0] < T1:
            t, bi, _slot, si = heapq.heappop(self.departures)
            st = self.slots[si]
            life = next(st.lives, None)
            if life is None:
                continue
            st.id = self._new_id(bi)
            joins.append((t, st.id))
            started.append((si, life))
            if life.departed and len(life.offs) and life.offs[-1] < T1:  # leaves in this epoch too
                self._start_lives(started)
                started = []
        self._start_lives(started)
        items = self.buckets.pop(e, None)
        if items is None:
            return None, joins
        ident, blk, slot, ends, run_len, parts = items  # ends: the life's drop for good is its last here
        who = np.array(ident, np.int64)
        run_len = np.array(run_len, np.int64)
        rows = np.concatenate(parts)
        off, on = rows[:, 0], rows[:, 1]
        final = np.zeros(len(off), bool)
        final[np.cumsum(run_len)[np.array(ends, bool)] - 1] = True
        order = np.argsort(off)  # by drop time
        so = off[order]
        if len(so) > 1 and (so[1:] == so[:-1]).any():
            # drops at the same instant (possible with fixed up-times): block by block, slot by slot
            order = np.lexsort((np.repeat(np.array(slot, np.int64), run_len), off))
            so = off[order]
        r = _Records()
        r.off = so
        r.on = on[order]
        r.id = np.repeat(who, run_len)[order]
        r.blk = np.repeat(np.array(blk, np.int64), run_len)[order]
        r.final = final[order]
        n = len(r.off)
        H = self.H
        d = self.delay[r.blk]
        has = d != 0
        x = r.off + d
        r.x = np.where(has & (x < H), x, INF)
        r.end = np.minimum(r.on, H)
        expires = r.x <= r.end
        r.release = np.where(expires, r.x, np.where(r.on < H, r.on, INF))
        r.a = np.full(n, -1, np.int64)
        r.h = np.full(n, -1, np.int64)
        r.e = np.full(n, -1, np.int64)
        return r, joins

    def _epoch(self, e: int, T0: float, T1: float, last: bool) -> None:
        H = self.H
        new, joins = self._new_records(e, T1)
        recs = self.carry if new is None else _Records.concat([self.carry, new])
        n_old = len(self.carry)

        def inside(t):
            return (t >= T0) & ((t < T1) | (last & (t <= T1)))

        # the cuts: every instant of the epoch at which something changes
        off_new = recs.off[n_old:]
        mx = inside(recs.x)
        mo = inside(recs.on) & (recs.on < H)
        parts = [np.array([T0, T1]), off_new, recs.x[mx], recs.on[mo]]
        if T0 <= self.mid < T1:
            parts.append(np.array([self.mid]))
        C, inv = (self.k.unique_inverse if self.k else _unique_cuts)(np.concatenate(parts))
        n_off, n_x = len(off_new), int(mx.sum())
        p_off = inv[2:2 + n_off]
        p_x = inv[2 + n_off:2 + n_off + n_x]
        p_on = inv[2 + n_off + n_x:2 + n_off + n_x + int(mo.sum())]
        g = np.diff(C)
        K = len(g)
        N = self._stream(C, inv, 2 + n_off, n_x)
        c = np.diff(N)
        if self.keep_stream:
            self.stream_cuts.append((C.copy(), N.copy()))

        # message indices at the records' instants, the sessions' ends, what each record does in the epoch
        epoch_records = self.k.epoch_records if self.k else _epoch_records
        has, expires, resumed, discard, nb, cat, px, pon, expired, pos_off, pos_rel = epoch_records(
            N, n_old, p_off, mx, p_x, mo, p_on, last, H, K, recs.x, recs.end, recs.on, recs.blk, recs.id, recs.final,
            recs.a, recs.e, recs.h, self.delay, self.again, self.nb)
        lists = ([], [], [], [])  # rows other than the records' own: (cut, category, bytes, sessions)

        def rows(pos, category, nbytes, sessions):
            _add_rows(lists, pos, category, nbytes, sessions)

        if e == 0:
            cc, bb, ss = zip(*self.initial)
            rows(np.zeros(len(cc), np.int64), np.array(cc), np.array(bb), np.array(ss))
        if new is not None:
            hn = has[n_old:]
            self.log.tally("disconnect", n_off)
            self.log.tally("protocol_error", int(self.errors[new.blk].sum()))
            self.log.tally("session_ended", int((~hn).sum()))
            self.log.tally("departed", int(new.final.sum()))
        if joins:  # a replacement connects the moment its predecessor leaves
            jt = np.array([t for t, _ in joins])
            ji = np.array([i for _, i in joins], np.int64)
            jp = np.searchsorted(C, jt)
            rows(jp, CONNECTED, self.nb[ji], 1)
            np.subtract.at(self.dc, ji, N[jp])  # messages while connected count from the join
            self.log.tally("connect", len(joins))
        self.log.tally("session_expired", int(expired.sum()))
        self.log.tally("connect", int(mo.sum()))
        self.log.tally("session_discarded", int((mo & discard).sum()))
        if new is not None:
            fin = new.final
            np.add.at(self.dc, recs.id[n_old:][fin], recs.a[n_old:][fin])  # up to the departure
        extra = tuple(np.concatenate(x) if x else np.zeros(0, np.int64) for x in lists)
        session_state = self.k.session_state if self.k else _session_state
        state = session_state(K, self.rows_state, extra, n_old, p_off, has, nb, cat, px, expired, pon, mo,
                              resumed, discard)
        self.rows_state = state[:, -1].copy()

        self._memory(recs, C, N, c, g, state[:, :K], has, cat, T0, T1, last, pos_off, pos_rel)

        # settle the intervals that ended in this epoch (all of them at the horizon)
        done = recs.e >= 0
        if last:
            assert done.all()
        self._settle(recs, done, has, expires, resumed, discard)
        # offline to the horizon with nothing left to change (no expiry, no queue that moves):
        # parked until the horizon gives them their message count
        park = ~done & (recs.on >= H) & (recs.x == INF) & ~(has & self.queued[recs.blk] & (recs.release >= T1))
        if park.any():
            self.parked.append(recs.take(park))
            done |= park
        self.carry = recs.take(~done)
        if e == self.n_epochs - 2 and self.parked:  # the last epoch settles them
            self.carry = _Records.concat([*self.parked, self.carry])
            self.parked = []
        self.N0 = int(N[-1])
        if last:
            self.published = int(N[-1])

    def _stream(self, C: np.ndarray, inv: np.ndarray, x0: int, n_x: int) -> np.ndarray:
        """The message index N at each cut. Counts are drawn between the cuts every policy
        shares (drops, reconnects, the epoch's ends, the midpoint: the same for the same seed
        whatever the Session Expiry Interval), so runs of different policies see the same
        messages; a Session Expiry instant then splits its stretch's count binomially (given
        c Poisson arrivals on a stretch, each falls before the instant with probability
        (instant - start) / length), from a stream of its own."""
        if n_x == 0:  # no Session Expiry instant in the epoch: every cut is shared
            N = np.empty(len(C), np.int64)
            N[0] = self.N0
            np.cumsum(self.rng.poisson(self.rate * np.diff(C)), out=N[1:])
            N[1:] += self.N0
            return N
        base = np.ones(len(C), bool)
        base[inv[x0:x0 + n_x]] = False
        base[inv[:x0]] = True  # an expiry at the same instant as a drop or the epoch's ends
        base[inv[x0 + n_x:]] = True
        Cb = C[base]
        cb = self.rng.poisson(self.rate * np.diff(Cb)).astype(np.int64)
        Nb = np.empty(len(Cb), np.int64)
        Nb[0] = self.N0
        np.cumsum(cb, out=Nb[1:])
        Nb[1:] += self.N0
        N = np.empty(len(C), np.int64)
        N[base] = Nb
        xs = np.flatnonzero(~base)
        if len(xs):
            k = (np.cumsum(base) - 1)[xs]  # the shared stretch each expiry instant falls in
            end = Cb[k + 1]
            first = np.r_[True, k[1:] != k[:-1]]
            left = np.where(first, Cb[k], C[xs - 1])  # the previous cut (the stretch's start or an expiry)
            rank = np.arange(len(xs)) - np.maximum.accumulate(np.where(first, np.arange(len(xs)), 0))
            taken = np.zeros(len(xs), np.int64)
            for r in range(int(rank.max()) + 1):  # earlier instants of a stretch first
                at = np.flatnonzero(rank == r)
                before = taken[at - 1] if r else np.zeros(len(at), np.int64)
                rest = cb[k[at]] - before
                share = (C[xs[at]] - left[at]) / (end[at] - left[at])
                taken[at] = before + self.split_rng.binomial(rest, share)
            N[xs] = Nb[k] + taken
        return N

    def _grow(self, n: int) -> None:
        """Room for ``n`` identifiers in the per-identifier arrays (doubling)."""
        if n > len(self.F):
            size = max(n, 2 * len(self.F))
            grown = []
            for a in (self.F, self.dc, self.nb):
                b = np.zeros((size, *a.shape[1:]), np.int64)
                b[:len(a)] = a
                grown.append(b)
            self.F, self.dc, self.nb = grown

    # ----------------------------------------------------------------- fates
    def _settle(self, r: _Records, done, has, expires, resumed, discard) -> None:
        """Fates of the offline intervals that finished (``done``), as sim.renewal.play books them."""
        if not done.any():
            return
        queued = self.queued[r.blk]
        f = r.final
        if self.k:
            self.k.settle(self.F, self.dc, done, has, queued, expires, resumed, discard, f, r.on, self.H, r.a, r.h,
                          r.e, r.id, self.L, _SETTLE_COLUMNS)
        else:
            _settle(self.F, self.dc, done, has, queued, expires, resumed, discard, f, r.on, self.H, r.a, r.h, r.e,
                    r.id, self.L)
        for i in r.id[f & done].tolist():
            self.id_departed[i] = True

    # ----------------------------------------------------------------- memory
    def _memory(self, recs, C, N, c, g, sess, has, cat, T0, T1, last, pos_off, pos_rel) -> None:
        """Broker memory over the epoch's stretches: peak candidates, integrals, frame rows.
        ``sess``: the sessions' own bytes per category and the session count on each stretch."""
        K = len(g)
        L = self.L
        # queues: sessions holding a range of the stream at some time in the epoch, by drop order;
        # full stranded queues nobody else's range reaches any more are counted apart (frozen)
        q = has & self.queued[recs.blk] & (recs.release >= T0) & (recs.off < T1)
        if L < NO_LIMIT:
            finite = q & (recs.release < INF)
            lowest = min(int(recs.a[finite].min()) if finite.any() else self.N0, self.N0)
            frz = q & (recs.release == INF) & (recs.a + L <= lowest) & (recs.off < T0)
            if frz.any():
                self.frozen += np.bincount((cat[frz] == STRANDED).astype(np.int64), minlength=2)
                recs.release[frz] = -INF  # never in a queue selection again; fates still settled at the end
                q &= ~frz
        idx = np.flatnonzero(q)
        # (records are kept in drop order: the carried ones, then the epoch's, each in order)
        a = recs.a[idx]
        jo = pos_off[idx]  # dropped at cut jo (0: before the epoch)
        jr = pos_rel[idx]  # released at cut jr (K: not in this epoch)
        stranded = cat[idx] == STRANDED
        top = a + L  # one past the last index the queue can take
        frozen = float(L) * self.frozen if L < NO_LIMIT else np.zeros(2)

        # a queue holds min(N[k] - a, L) at the start of stretch k (growing while N[k] < top), and
        # min(N[k + 1] - a, L) at its end; it takes all c arrivals while N[k + 1] <= top, then the room left
        queue_cuts = self.k.queue_cuts if self.k else _queue_cuts
        left, ks, ke, kt, held, g_end, s_end = queue_cuts(N, a, top, jo, jr, K)
        fixed = float(frozen.sum())
        # the shared store: distinct messages held by any session
        if self.shared and len(idx):
            grow, freed_at = (self.k.store_changes if self.k else _store_changes)(a, top, jo, jr, N, c, K, left)
        else:
            grow = np.zeros(K, np.int64)
            freed_at = np.zeros(K + 1, np.int64)
        ent, body = self.ent, self.body
        per = ent + (0 if self.shared else body)
        Pg, PNg, Pf, Q_end, D_start, D_end, D_int, total_end, sess_secs = (self.k.stretch_terms if self.k else _stretch_terms)(
            g, c, N, held, g_end, s_end, float(L), fixed, grow, freed_at, self.D, sess, per, body if self.shared else 0)
        self.D = int(D_end[-1] - freed_at[K])
        # each queue's queued-message seconds over the epoch, from prefix sums over the stretches
        full_rate = float(L) if L < NO_LIMIT else 0.0  # a queue that never fills has no full part
        tail, secs = (self.k.queue_seconds if self.k else _queue_seconds)(
            Pg, PNg, Pf, g, c, N, a, top, jo, jr, ks, kt, full_rate)
        q_secs = [float(secs[~stranded].sum()) + frozen[0] * float(Pg[-1]),
                  float(secs[stranded].sum()) + frozen[1] * float(Pg[-1])]
        kmid = int(np.searchsorted(C, self.mid)) if T0 <= self.mid < T1 else (K if self.mid >= T1 else 0)
        if 0 < kmid < K:  # (one epoch of the run: the same seconds, up to the midpoint)
            m = lambda x: np.minimum(x, kmid)  # noqa: E731
            half = _seconds(Pg, PNg, Pf, (a - N[0]).astype(float), full_rate, m(jo), m(jr), m(ks), m(kt), tail,
                            kt < np.minimum(jr, kmid))
            q_half = float(half.sum()) + fixed * float(Pg[kmid])
        else:
            q_half = sum(q_secs) if kmid >= K else 0.0

        self.peak = max(self.peak, int(total_end.max()))
        self.qpeak = max(self.qpeak, int(Q_end.max()))
        areas = sess_secs.sum(axis=1).tolist()  # (row by row, pairwise: as each row's own sum)
        areas[1] += per * q_secs[0]
        areas[2] += per * q_secs[1]
        if self.shared:
            areas[3] += body * float(D_int.sum())
        for i in range(4):
            self.area[i] += areas[i]
        self.queued_area += sum(q_secs)
        if kmid >= K:
            self.marked += sum(areas)
        elif kmid > 0:
            sess_total = sess[:4, :kmid].sum(axis=0)  # (integers: the same in any order)
            self.marked += float((sess_total * g[:kmid]).sum()) + per * q_half + (
                body * float(D_int[:kmid].sum()) if self.shared else 0.0)
        if last:
            self.final_total = int(total_end[-1])
            self.final_queued = int(Q_end[-1])
        if self.record_memory:
            rel = jr < K  # what each queue holds when it is released
            released = (jr[rel], np.minimum(N[jr[rel]], top[rel]) - a[rel])
            self._frame_rows(C, N, c, g, sess, released, Q_end, D_start, D_end, total_end, per, body,
                             (a[stranded], top[stranded], jo[stranded], jr[stranded]), frozen[1])
        self.Q_last = float(Q_end[-1])  # queued messages at the epoch's end

    def _frame_rows(self, C, N, c, g, sess, released, Q_end, D_start, D_end, total_end, per, body, strand,
                    frozen_stranded) -> None:
        """Rows of the memory frame, per equal time bin: the value at the start of its first
        stretch, and the values just before the end of its largest stretch and of its last
        (shown at their last arrival). ``released``: the cut of each queue released in the
        epoch and what it held then (queued messages at the start of a stretch: at the end of
        the one before, less the queues released at the cut between them)."""
        K = len(g)
        grid = self.grid
        b0 = int(np.searchsorted(grid, C[0], "right")) - 1
        b1 = int(np.searchsorted(grid, C[K - 1], "right")) - 1
        starts = np.unique(np.r_[0, np.searchsorted(C[:K], grid[b0 + 1:b1 + 1], "left")])
        starts = starts[starts < K]
        ends = np.r_[starts[1:], K] - 1
        top = np.maximum.reduceat(total_end, starts)
        hits = np.flatnonzero(total_end == np.repeat(top, ends - starts + 1))
        peaks = hits[np.searchsorted(hits, starts)]
        k = np.concatenate([starts, peaks, ends])
        second = np.r_[np.zeros(len(starts), bool), np.ones(2 * len(starts), bool)]
        t = np.where(second, np.where(c[k] > 0, C[k] + g[k] * c[k] / (c[k] + 1.0), C[k]), C[k])
        n_start = len(starts)
        jr, held = released
        at = np.zeros(K + 1, bool)
        at[starts] = True
        on = at[jr]
        freed = np.bincount(jr[on], weights=held[on], minlength=K + 1)[starts]
        q_start = np.where(starts > 0, Q_end[np.maximum(starts - 1, 0)], self.Q_last) - freed
        qn = np.concatenate([q_start, Q_end[k[n_start:]]])
        # the stranded sessions' queues at these rows (few: counted one by one)
        sa, stop, sjo, sjr = strand
        qs = np.full(len(k), frozen_stranded)
        n_at = N[np.where(second, k + 1, k)][None, :]  # N at the row: start or end of the stretch
        for i in range(0, len(sa), 256):
            A, T, JO, JR = sa[i:i + 256, None], stop[i:i + 256, None], sjo[i:i + 256, None], sjr[i:i + 256, None]
            on = (k[None, :] >= JO) & (k[None, :] < JR)
            qs += np.where(on, np.minimum(n_at, T) - A, 0).sum(axis=0)
        D = np.where(second, D_end[k], D_start[k])
        S = sess[:, k].T
        st = body * D if self.shared else np.zeros(len(k))
        cats = [S[:, 0], S[:, 1] + per * (qn - qs), S[:, 2] + per * qs, S[:, 3] + st]
        msg = (0 if self.shared else body) * qn + st
        tot = cats[0] + cats[1] + cats[2] + cats[3]
        rows = np.column_stack([t, tot, S[:, :4].sum(axis=1), self.ent * qn, msg, *cats, qn, S[:, 4]])
        rows = rows[np.argsort(t, kind="stable")]
        keep = np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)]  # a row kept twice (largest and last)
        self.frame_parts.append(rows[keep])

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
        self.fates.counts = counts.tolist()
        for i in np.flatnonzero(departed):
            self.fates.depart(int(i))
        self.fates.published = self.published
        self.sessions_final = int(self.rows_state[4])

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


#: the fate columns _settle books, per fate: (column, column once the client has left for good)
_SETTLE_COLUMNS = np.array([[FATE_INDEX[f], FATE_INDEX[departed_fate(f)]] for f in (
    "session_expired", "clean_start", "delivered", "pending", "queue_full", "qos0_offline", "no_session")], np.int64)


def _epoch_records(N, n_old, p_off, mx, p_x, mo, p_on, last, H, K, x, end, on, blk, ids, final, a, e, h, delay,
                   again, nb_id):
    """What each record (an offline interval, carried or dropped in the epoch: records from
    ``n_old`` on) does in an epoch whose cuts have message indices ``N``: the message index at its
    drop (``a``, at cut ``p_off``), at its session's end (``h``: a Session Expiry at cut ``p_x``
    for those in ``mx``; otherwise its reconnect or its drop) and at its reconnect (``e``, at
    cut ``p_on`` for those in ``mo``; the horizon in the ``last`` epoch), filled in place once
    known. Returns whether it holds a session (``has``), whether that expires before the
    reconnect, is resumed or discarded (Clean Start) at it, the session's bytes, its category
    while offline (offline, or stranded: the client left for good), the cuts of its expiry and
    reconnect in this epoch (-1: not in it), whether it expires in it, and the cuts of its drop
    (0: before the epoch) and release (K: not in the epoch)."""
    n = len(x)
    a[n_old:] = N[p_off]
    Nx = np.full(n, -1, np.int64)
    Nx[mx] = N[p_x]
    Non = np.full(n, -1, np.int64)
    Non[mo] = N[p_on]
    if last:
        Non[(e < 0) & (on >= H)] = N[-1]  # the horizon
    has = delay[blk] != 0
    expires = x <= end
    known_e = (e < 0) & (Non >= 0)
    e[known_e] = Non[known_e]
    hx = (h < 0) & expires & (Nx >= 0)
    h[hx] = Nx[hx]
    he = (h < 0) & ~expires & (e >= 0)
    h[he] = np.where(has[he], e[he], a[he])
    resumed = has & ~expires & (on < H)
    discard = resumed & again[blk]
    nb = nb_id[ids]
    cat = np.where(final, STRANDED, OFFLINE)
    expired = mx & expires
    px = np.full(n, -1, np.int64)
    px[mx] = p_x
    pon = np.full(n, -1, np.int64)
    pon[mo] = p_on
    pos_off = np.zeros(n, np.int64)  # drops before the epoch: cut 0
    pos_off[n_old:] = p_off
    pos_rel = np.where(expires, px, np.where(on < H, pon, -1))
    pos_rel = np.where(pos_rel >= 0, pos_rel, K)  # released at this cut (K: not in this epoch)
    return has, expires, resumed, discard, nb, cat, px, pon, expired, pos_off, pos_rel


def _unique_cuts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct cut instants in order, and where each of ``x`` is among them."""
    return np.unique(x, return_inverse=True)


def _arrivals_seconds(r, g, c):
    """Sum over arrivals i <= r of (stretch end - arrival time): a stretch of length g with its
    c arrivals evenly placed (at i / (c + 1) of it)."""
    return r * g - g * r * (r + 1) / (2.0 * (c + 1))


def _stretch_terms(g, c, N, held, g_end, s_end, L, fixed, grow, freed_at, D0, sess, per, body):
    """Per stretch of an epoch: prefix sums of its length ``Pg``, of (N - N[0]) x length ``PNg``
    and of every arrival's time to the stretch's end ``Pf`` (each with a leading 0); the queued
    messages at its end ``Q_end`` (``held`` queues, ``g_end`` of them not full, with their
    starts summing to ``s_end``; ``fixed``: frozen full queues); the store's distinct messages
    at its start and end and their integral over it (``D0`` carried in, ``grow`` arrivals
    stored on it, ``freed_at`` freed at each cut); the memory total at its end (``sess``: the
    sessions' own bytes per category; ``per`` bytes per queue entry, ``body`` per stored
    message: 0 without a shared store); and the sessions' own byte-seconds per category and
    stretch (summed by numpy, row by row)."""
    K = len(g)
    Nk, Nk1 = N[:K], N[1:]
    Q_end = g_end * Nk1 - s_end + L * (held - g_end) + fixed
    Pg = np.concatenate([[0.0], np.cumsum(g)])
    PNg = np.concatenate([[0.0], np.cumsum((Nk - N[0]) * g)])
    Pf = np.concatenate([[0.0], np.cumsum(0.5 * g * c)])  # all c arrivals
    # D on stretch k: carried, minus releases at cuts 0..k, plus growth on stretches before k
    D_start = D0 - np.cumsum(freed_at[:K]) + np.concatenate([[0], np.cumsum(grow)[:-1]])
    D_end = D_start + grow
    D_int = D_start * g + _arrivals_seconds(grow.astype(float), g, c)
    sess_total = sess[0] + sess[1] + sess[2] + sess[3]
    total_end = sess_total + per * Q_end + body * D_end
    return Pg, PNg, Pf, Q_end, D_start, D_end, D_int, total_end, sess[:4] * g


def _queue_seconds(Pg, PNg, Pf, g, c, N, a, top, jo, jr, ks, kt, full_rate):
    """Each queue's queued-message seconds over the epoch (and ``tail``: those of the stretch
    on which it fills), from the prefix sums of :func:`_stretch_terms`. A queue holds
    min(N[k] - a, L) at the start of stretch k and takes all c arrivals while N[k + 1] <= top,
    then the room left."""
    K = len(g)
    room = (top - N[np.minimum(kt, K)]).astype(float)
    kc = np.minimum(kt, K - 1)
    tail = np.where((kt < jr) & (room > 0), _arrivals_seconds(room, g[kc], c[kc]), 0.0)
    secs = _seconds(Pg, PNg, Pf, (a - N[0]).astype(float), full_rate, jo, jr, ks, kt, tail, kt < jr)
    return tail, secs


def _seconds(Pg, PNg, Pf, al, full_rate, jo, jr, ks, kt, tail, switch):
    """Queued-message seconds of queues dropped at cut ``jo``, released at ``jr``, starting full
    at ``ks`` and past full at ``kt`` (``al``: their first index less N[0]; ``tail`` added where
    ``switch``), from the prefix sums of :func:`_stretch_terms`."""
    return (PNg[ks] - PNg[jo]) - al * (Pg[ks] - Pg[jo]) + full_rate * (Pg[jr] - Pg[ks]) \
        + (Pf[kt] - Pf[jo]) + np.where(switch, tail, 0.0)


def _settle(F, dc, done, has, queued, expires, resumed, discard, f, on, H, a, h, e, ids_, L):
    """Books the fates of the offline intervals that finished (``done``) into the per-identifier
    fate counts ``F`` and subtracts their messages from the messages while connected ``dc``:
    ``[a, h)`` the messages that reached the session (queued up to the limit ``L``, else lost
    for a full queue; QoS 0 not queued), ``[h, e)`` those after it ended, ``f``: the last drop
    of a client that left for good (its fates go to the departed columns)."""
    n_held = np.where(has, h - a, 0)
    kept = np.where(has & queued, np.minimum(n_held, L), 0)
    qos0 = np.where(has & ~queued, n_held, 0)
    full = n_held - kept - qos0
    no_session = np.where(~has | expires, e - h, 0)
    no_session = np.where(f, 0, no_session)  # not routed to a departed client
    pending = has & ~expires & (on >= H)
    # (computed for every record, booked for those done: most are, a few carry to the next epoch)
    # the identifiers present, numbered 0..m-1 (identifiers are dense: a presence table)
    present = np.zeros(len(dc), bool)
    present[ids_[done]] = True
    ids = np.flatnonzero(present)
    m = len(ids)
    rank = np.cumsum(present) - 1
    inv = np.maximum(rank[ids_], 0)  # (an identifier not done: any bin, its weights are 0)
    values = [np.where(expires, kept, 0), np.where(discard, kept, 0), np.where(resumed & ~discard, kept, 0),
              np.where(pending, kept, 0), full, qos0, no_session]
    # (only the fates that occur: most runs book two or three of the seven)
    used = [i for i, v in enumerate(values) if v.any()]
    values = np.stack([values[i] for i in used]) if used else np.zeros((0, len(done)), np.int64)
    values *= done
    cols = np.where(f[None, :], _SETTLE_COLUMNS[used, 1:2], _SETTLE_COLUMNS[used, 0:1])
    w = F.shape[1]
    add = np.bincount(((inv * w)[None, :] + cols).ravel(), weights=values.ravel().astype(float),
                      minlength=m * w).reshape(m, w)
    F[ids] += np.rint(add).astype(np.int64)  # sums of message counts: exact in float64 below 2**53
    # messages while connected: the life's span minus its offline intervals
    nf = ~f & done
    dc[ids] -= np.rint(np.bincount(inv[nf], weights=(e[nf] - a[nf]), minlength=m)).astype(np.int64)


def _add_rows(lists, pos, category, nbytes, sessions) -> None:
    """Appends session rows (cut, category, bytes, sessions; the last three scalars or one per
    cut) to the four column lists ``lists``."""
    pos = np.asarray(pos, np.int64)
    if len(pos):
        for col, value in zip(lists, (pos, category, nbytes, sessions)):
            col.append(np.broadcast_to(np.asarray(value, np.int64), pos.shape))


def _session_state(K, state0, extra, n_old, p_off, has, nb, cat, px, expired, pon, back, resumed, discard):
    """The sessions' own bytes per category (rows 0-3) and the session count (row 4) on each
    of an epoch's stretches (one column per cut, the last for the epoch's end), from their
    values before the epoch (``state0``) and the changes at the cuts: ``extra`` (cuts,
    categories, bytes, sessions) of connects that are not reconnects, and the records' own:
    a drop (``p_off`` for records ``n_old`` on; the session goes offline, ``has``, or ends),
    a Session Expiry (``expired``, at ``px``), a reconnect (``back``, at ``pon``: a new
    session, or the offline one resumed, or discarded by Clean Start)."""
    lists = tuple([x] for x in extra)
    rp, rc, rb, rs = lists

    def rows(pos, category, nbytes, sessions):
        _add_rows(lists, pos, category, nbytes, sessions)

    hn, nn, cn = has[n_old:], nb[n_old:], cat[n_old:]
    rows(p_off[~hn], CONNECTED, -nn[~hn], -1)
    rows(p_off[hn], CONNECTED, -nn[hn], 0)
    rows(p_off[hn], cn[hn], nn[hn], 0)
    ex = np.flatnonzero(expired)
    rows(px[ex], cat[ex], -nb[ex], -1)
    newsess = np.flatnonzero(back & (~resumed | discard))
    rows(pon[newsess], CONNECTED, nb[newsess], 1)
    dis = np.flatnonzero(back & discard)
    rows(pon[dis], OFFLINE, -nb[dis], -1)
    res = np.flatnonzero(back & resumed & ~discard)
    rows(pon[res], OFFLINE, -nb[res], 0)
    rows(pon[res], CONNECTED, nb[res], 0)
    # one row per column (bytes per category, sessions), one column per cut: contiguous rows
    state = np.zeros((5, K + 1), np.int64)
    pos, cats = np.concatenate(rp), np.concatenate(rc)
    nbytes, sess = np.concatenate(rb).astype(float), np.concatenate(rs).astype(float)
    state[:4] = np.bincount(cats * (K + 1) + pos, weights=nbytes, minlength=4 * (K + 1)).reshape(4, K + 1)
    state[4] = np.bincount(pos, weights=sess, minlength=K + 1)
    np.cumsum(state, axis=1, out=state)
    state += state0[:, None]
    return state


def _previous_greater(v: np.ndarray) -> np.ndarray:
    """For each ``i``, the largest ``j < i`` with ``v[j] > v[i]`` (-1: none)."""
    n = len(v)
    return n - 1 - _next_reaching(v[::-1], strict=True)[::-1]


def _next_at_least(v: np.ndarray) -> np.ndarray:
    """For each ``i``, the smallest ``j > i`` with ``v[j] >= v[i]`` (``len(v)``: none)."""
    return _next_reaching(v, strict=False)


_TOP = np.iinfo(np.int32).max


def _next_reaching(v: np.ndarray, strict: bool, tail: int = 64, block: int = 128) -> np.ndarray:
    """For each ``i``, the smallest ``j > i`` with ``v[j] >= v[i]`` (``v[j] > v[i]`` if
    ``strict``; ``len(v)``: none). ``v``: cut positions of one epoch (0 <= v < 2**31 - 1).

    Pointer jumping (a candidate's own candidate is the next one worth looking at: the values
    skipped are below ``v[i]``), then, for the few long chains left, a search by blocks: the
    first later block whose maximum reaches ``v[i]``, and the first element in it that does."""
    n = len(v)
    w = np.empty(n + 1, np.int32)  # 32 bits: faster gathers; w[n]: a sentinel above every value
    w[:n] = v
    w[n] = _TOP
    p = np.arange(1, n + 2, dtype=np.int32)
    p[n] = n
    live = np.flatnonzero((w[1:] <= w[:n]) if strict else (w[1:] < w[:n])).astype(np.int32)
    wl = w[live]
    while live.size > tail:
        pl = p[p[live]]  # the current candidate falls short: its own candidate is next
        p[live] = pl
        wp = w[pl]
        keep = (wp <= wl) if strict else (wp < wl)
        live, wl = live[keep], wl[keep]
    if live.size:
        nb = -(-(n + 1) // block)
        blocks = np.full(nb * block, _TOP, np.int32)
        blocks[:n + 1] = w
        blocks = blocks.reshape(nb, block)
        top = blocks.max(axis=1)
        b = live // block
        rows = blocks[b]  # first in its own block, after it
        ok = (rows > wl[:, None]) if strict else (rows >= wl[:, None])
        ok &= np.arange(block)[None, :] > (live % block)[:, None]
        found = ok.any(axis=1)
        p[live[found]] = b[found] * block + ok[found].argmax(axis=1)
        rest = np.flatnonzero(~found)
        if rest.size:  # then in the first later block that reaches it (the sentinel's, at worst)
            okb = (top[None, :] > wl[rest, None]) if strict else (top[None, :] >= wl[rest, None])
            okb &= np.arange(nb)[None, :] > b[rest, None]
            bb = okb.argmax(axis=1)
            rows = blocks[bb]
            ok = (rows > wl[rest, None]) if strict else (rows >= wl[rest, None])
            p[live[rest]] = bb * block + ok.argmax(axis=1)
    return p[:n].astype(np.int64)


def _store_changes(a, top, jo, jr, N, c, K: int, left):
    """The shared store's distinct messages over an epoch's stretches: how many arrivals on
    each stretch are stored (those below the reach of the latest session still holding),
    and how many messages each cut's releases free (those of the released queue's range that
    no other session holds: its nearest holders before and after it in drop order cover
    the rest, as every queue is the range [a, min(N, a + L)) and later queues start later
    and reach further). Sessions are in drop order; ``jo``/``jr``: the cut of each one's
    drop (0: before the epoch) and release (K: not in the epoch). At one cut, releases are
    taken in drop order (a queue released at the same cut before another no longer holds).
    With numba, :mod:`sim.kernels` gives the same two arrays in one compiled pass."""
    Nk = N[:K]
    n = len(a)
    pge = _previous_greater(jr)  # the nearest earlier session released later: still holding
    # growth on stretch k: the latest session dropped by cut k that still holds on stretch k,
    # among those whose reach is above N[k] (walked back along pge: those skipped were released by k)
    dropped = np.cumsum(np.bincount(jo, minlength=K + 1))  # sessions dropped at or before each cut
    lo = np.cumsum(np.bincount(left, minlength=K + 1)[:K])  # searchsorted(top, Nk, "right")
    r = dropped[:K] - 1
    live = np.flatnonzero(r >= lo)
    p = np.full(K, -1, np.int64)
    while live.size:
        rl_ = r[live]
        hold = jr[rl_] > live
        p[live[hold]] = rl_[hold]
        live = live[~hold]
        r[live] = pge[r[live]]
        live = live[r[live] >= lo[live]]
    reach = np.where(p >= 0, top[np.maximum(p, 0)], 0)
    grow = np.clip(reach - Nk, 0, c)
    # releases: at cut j, queue s frees [max(a_s, reach of its holder before), min(its end, start of its holder after))
    rl = np.flatnonzero(jr < K)
    j = jr[rl]
    Nj = N[j]
    a_s = a[rl]
    e_s = np.minimum(Nj, top[rl])
    pred = pge[rl]
    b_pred = np.where(pred >= 0, np.minimum(Nj, top[np.maximum(pred, 0)]), a_s)
    succ = _next_at_least(jr)[rl]
    ok = (succ < dropped[j]) & (succ < n)
    a_succ = np.where(ok, a[np.minimum(succ, n - 1)], e_s)
    freed = np.clip(np.minimum(e_s, a_succ) - np.maximum(a_s, b_pred), 0, None)
    freed_at = np.rint(np.bincount(j, weights=freed, minlength=K + 1)).astype(np.int64)
    return grow, freed_at


def _queue_cuts(N, a, top, jo, jr, K: int):
    """Where each queue of an epoch fills, and the queues held on each stretch. A queue is the
    range [a, min(N, top)) of the stream from its drop (cut ``jo``) to its release (cut ``jr``,
    K: not in the epoch). Returns ``left`` (the first cut with N >= top), ``ks`` (the first
    stretch starting full), ``ke`` (the first ending full), ``kt`` (the first ending past
    full), the last three within [jo, jr]; then, per stretch, the queues held, those held
    but not full at the stretch's end, and the sum of their ``a``."""
    left = np.searchsorted(N, top, "left")
    right = left.copy()  # searchsorted(N, top, "right"): past the cuts whose N equals top
    eq = np.flatnonzero(N[np.minimum(right, K)] == top)
    while eq.size:
        right[eq] += 1
        eq = eq[(right[eq] <= K) & (N[np.minimum(right[eq], K)] == top[eq])]
    ks = np.clip(np.minimum(left, K), jo, jr)
    ke = np.clip(left - (N[0] < top), jo, jr)  # searchsorted(N[1:], top, "left")
    kt = np.clip(right - (N[0] <= top), jo, jr)  # searchsorted(N[1:], top, "right")
    held, (g_end, s_end) = _ranges(K, jo, a, jr, ke)
    return left, ks, ke, kt, held, g_end, s_end


def _ranges(K: int, lo: np.ndarray, w: np.ndarray, hi: np.ndarray, *his: np.ndarray):
    """Over stretches 0..K-1: how many of the half-open index ranges [lo, hi) cover each
    stretch; then, for each further upper end in ``his``, how many of [lo, that end) cover it
    and the sum of their weights ``w``. Every upper end is at least ``lo``."""
    B = np.bincount(lo, minlength=K + 1)[:K + 1]
    held = np.cumsum(B - np.bincount(hi, minlength=K + 1)[:K + 1])[:K]
    w = np.asarray(w).astype(float)  # message indices: sums exact in float64 below 2**53
    W = np.bincount(lo, weights=w, minlength=K + 1)[:K + 1]
    out = []
    for h in his:
        cnt = np.cumsum(B - np.bincount(h, minlength=K + 1)[:K + 1])[:K]
        s = np.cumsum(W - np.bincount(h, weights=w, minlength=K + 1)[:K + 1])[:K]
        out.append((cnt, np.rint(s).astype(np.int64)))
    return held, *out

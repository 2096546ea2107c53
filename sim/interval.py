"""The interval engine: the same model as the message-by-message engine, computed per
connection interval instead of per message.

The message-by-message engine (:mod:`sim.broker`, :mod:`sim.clients` on SimPy) visits every
(message, consumer) pair a session holds. This engine visits every *connection change*:
for each client slot it replays the same connection history (the same
:class:`~sim.outage_plan.OutagePlan` draws and back-off, in the same order, from the same
random streams), and for each interval counts the messages that fall in it from the sorted
publish times (``numpy.searchsorted``): delivered while connected; queued, dropped by a
queue limit, expired, or left in the session while offline; ``no_session`` once the session
is gone. A session's queue is an index range of the publish stream, not a list of objects.

The rules are those of :mod:`sim.protocol` and docs/model.md, applied to whole intervals:

- the same-instant order (expiry, then connection changes, then messages) makes every
  interval half-open: a message at a disconnect instant is offline, one at a reconnect
  instant or at a session's expiry instant is not queued ([MQTT-4.1.0-2]);
- at latency 0 nothing is ever in flight, so a connected consumer gets every message at
  once and a resumed session is drained at the reconnect ([MQTT-4.4.0-1]);
- drop-new keeps the first ``q`` messages of an offline interval, drop-oldest the last
  ``q`` (§4.1.1 non-normative), where ``q`` is the queue limit in messages;
- Clean Start 1 discards the queue ([MQTT-3.1.2-4]); Session Expiry ends the session
  ``interval`` seconds after the close, never for UINT_MAX (§3.1.2.11.2); a DISCONNECT
  may change the interval (§3.14.2.2.2).

Given the same scenario and seed it gives the same fates per consumer, the same counters
and the same broker-memory step function as the message-by-message engine (the memory
breakpoints and their float arithmetic are reproduced, so peak, time-weighted means,
final value and byte-seconds agree to the bit); tests/test_engines.py checks it.

Not every scenario can be computed this way yet: :func:`unsupported` names what this
engine refuses (network latency, publisher outages, ...); ``sim.run(engine="auto")`` then
uses the message-by-message engine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import protocol
from .config import Scenario, client_id_prefixes
from .entities import CONNECTED, OFFLINE, STRANDED
from .eventlog import EventLog
from .ledger import FateLedger
from .memory import COLUMNS, summary_stats
from .outage_plan import OutagePlan, reconnect_time
from . import renewal
from .ramps import Ramps, SessionRows, closed_form

STORE = 3
INF = math.inf
#: queued-message records up to which the memory step function is rebuilt change by change
#: (every breakpoint, as the message-by-message engine gives it); past it, in closed form
#: from the queues' ranges (:mod:`sim.ramps`: exact peaks and finals, a bounded frame)
ENUMERATE_HELD = 200_000


# --------------------------------------------------------------------------- what is supported


def unsupported(scenario: Scenario) -> list[str]:
    """The features of ``scenario`` this engine cannot compute yet (empty: it can)."""
    out: list[str] = ["network outages (outages shared by many clients)"] if scenario.network_outages else []
    for i, c in enumerate(scenario.consumers):
        where = f"mqttConsumer[{i}]" if len(scenario.consumers) > 1 else "mqttConsumer"
        if c.network_latency:
            out.append(f"{where}.network latency > 0 (messages in flight)")
    for i, p in enumerate(scenario.publishers):
        where = f"mqttPublisher[{i}]" if len(scenario.publishers) > 1 else "mqttPublisher"
        if p.network_latency:
            out.append(f"{where}.network latency > 0 (messages in flight)")
        if p.outages.up is not None or p.outages.traces is not None:
            out.append(f"{where}.outages (publishers that disconnect)")
    b = scenario.broker
    if b.restarts is not None:
        out.append("broker.restarts (broker restarts)")
    limited = bool(b.max_queued_messages or b.max_queued_bytes)
    for i, c in enumerate(scenario.consumers):
        where = f"mqttConsumer[{i}]" if len(scenario.consumers) > 1 else "mqttConsumer"
        pubs = [p for p in scenario.publishers if _matches(c.topic_filter, p)]
        kinds = {(protocol.delivered_qos(p.qos, c.qos), p.payload_bytes if b.max_queued_bytes else None,
                  p.message_expiry_interval) for p in pubs}
        if len(kinds) > 1:
            out.append(f"{where}: publisher blocks with different QoS, payload bytes or message expiry reach it")
        if limited and any(p.message_expiry_interval is not None for p in pubs):
            out.append(f"{where}: message expiry together with queue limits")
        if any(not protocol.topic_matches(c.topic_filter, p.topic_of(k)) for p in pubs for k in range(p.clients)):
            out.append(f"{where}: only some clients of a publisher block match its topic filter")
    return sorted(set(out))


def queue_limit(b, qos: int, payload: int) -> int | None:
    """A queue's capacity in messages of ``payload`` bytes delivered at ``qos`` (None:
    unlimited): the broker's message and byte limits, where they count these messages."""
    if not (qos > 0 or b.queue_limits_count_qos0):
        return None
    caps = []
    if b.max_queued_messages:
        caps.append(b.max_queued_messages)
    if b.max_queued_bytes and payload > 0:
        caps.append(b.max_queued_bytes // payload if b.queue_bytes_check == "fits"
                    else -(-b.max_queued_bytes // payload))
    return min(caps) if caps else None


def _matches(topic_filter: str, p) -> bool:
    return any(protocol.topic_matches(topic_filter, p.topic_of(k)) for k in range(p.clients))


# --------------------------------------------------------------------------- the publish stream


@dataclass
class Stream:
    """Every message published in [0, horizon), sorted by time: its time, publisher block and
    the bytes the broker stores for it."""

    t: np.ndarray
    block: np.ndarray
    store: np.ndarray


def publish_stream(scenario: Scenario, publisher_seed: np.random.SeedSequence) -> Stream:
    """The publish times the message-by-message engine produces for the same seed.

    Each publisher client draws its exponential gaps from its own stream (the third of its
    slot's three), and its clock advances by float addition, gap after gap; a schedule is
    reached as ``now + (t - now)``. Both are reproduced here to the bit.
    """
    H = scenario.horizon
    times, blocks, stores = [], [], []
    for bi, (b, s) in enumerate(zip(scenario.publishers, publisher_seed.spawn(len(scenario.publishers)))):
        for slot, ss in enumerate(s.spawn(b.clients)):
            rng = np.random.default_rng(ss.spawn(3)[2])
            if b.schedule is not None:
                now, ts = 0.0, []
                for x in b.schedule:
                    if x >= H:
                        break
                    now = now + (x - now)
                    ts.append(now)
                t = np.array(ts, dtype=float)
            else:
                t = _poisson_times(rng, 1.0 / b.rate, H)
            topic = b.topic_of(slot)
            times.append(t)
            blocks.append(np.full(len(t), bi, dtype=np.int16))
            stores.append(np.full(len(t), scenario.broker.message_overhead_bytes + len(topic.encode()) + b.payload_bytes,
                                  dtype=np.int32))
    if not times:
        return Stream(np.zeros(0), np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.int32))
    if len(times) == 1:  # one publisher client: already in time order
        return Stream(times[0], blocks[0], stores[0])
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    return Stream(t[order], np.concatenate(blocks)[order], np.concatenate(stores)[order])


def _poisson_times(rng: np.random.Generator, mean_gap: float, horizon: float) -> np.ndarray:
    """Arrival times ``g1, g1 + g2, ...`` below ``horizon`` (sequential float sums, as the
    SimPy clock adds them), from ``rng.exponential(mean_gap)`` drawn in large blocks (the
    same sequence as the engine's blocks of 256)."""
    chunks, now = [], 0.0
    block = max(1024, min(1 << 22, int(horizon / mean_gap * 1.05) + 64))
    while True:
        gaps = rng.exponential(mean_gap, block)
        gaps[0] += now  # now + g1: the first sum continues the clock
        t = np.cumsum(gaps)
        below = int(np.searchsorted(t, horizon, "left"))
        chunks.append(t[:below])
        if below < len(t):
            return np.concatenate(chunks)
        now = float(t[-1])


# --------------------------------------------------------------------------- the engine


@dataclass
class _Group:
    """The messages one consumer block receives: their times and global indices."""

    t: np.ndarray
    idx: np.ndarray | range  # range: every message of the stream
    qos: int  # delivered QoS (min of published and subscribed)
    payload: int
    mei: float | None  # message expiry interval, None = never
    limit: int | None  # queue capacity in messages (None = unlimited)
    key: int = 0  # which consumer block's group

    def count(self, a: float, b: float) -> int:
        """Messages at times in [a, b)."""
        if b <= a:
            return 0
        return int(np.searchsorted(self.t, b, "left") - np.searchsorted(self.t, a, "left"))

    def ids(self, a: int, b: int) -> np.ndarray:
        """Global indices of the group's messages a..b-1."""
        return np.arange(a, b) if isinstance(self.idx, range) else self.idx[a:b]

    def pos(self, a: float) -> int:
        return int(np.searchsorted(self.t, a, "left"))


@dataclass
class _Memory:
    """Broker-memory changes as the message-by-message engine reports them: the sessions' own
    bytes (one change at a time, or in arrays from :mod:`sim.renewal`) and queue entries."""

    t: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # (category, session bytes, sessions)
    blocks: list = field(default_factory=list)  # the same as arrays: (t, category, session bytes, sessions)
    arrays: list = field(default_factory=list)  # queue entries: (t, cat, entry, message, store, queued)

    def change(self, t, cat, session=0, sessions=0):
        self.t.append(t)
        self.rows.append((cat, session, sessions))

    def move(self, t, src, dst, nbytes):
        if src != dst and nbytes:
            self.t.append(t)
            self.t.append(t)
            self.rows.append((src, -nbytes, 0))
            self.rows.append((dst, nbytes, 0))

    def sessions_changes(self, horizon: float) -> SessionRows:
        """Every change of the sessions' own bytes up to the horizon."""
        rows = np.array(self.rows, dtype=np.int64).reshape(-1, 3)
        parts = [(np.asarray(self.t, dtype=float), rows[:, 0].astype(np.int8), rows[:, 1], rows[:, 2]), *self.blocks]
        t, cat, nbytes, sessions = (np.concatenate(x) for x in zip(*parts))
        keep = t <= horizon
        return SessionRows(t[keep], cat[keep], nbytes[keep], sessions[keep])


class IntervalEngine:
    def __init__(self, scenario: Scenario, seed: int, record_events: bool, record_memory: bool,
                 memory_points: int | None = 100_000, memory_mode: str = "auto"):
        self.scn, self.seed = scenario, seed
        self.memory_points = memory_points
        self.memory_mode = memory_mode  # "auto" | "enumerate" | "closed" (tests force one)
        self.ramps: list[tuple[int, int, int, float, int]] = []  # (group, lo, hi, release, category)
        self.ramp_blocks: list[tuple] = []  # the same as arrays, from sim.renewal
        self.cfg = scenario.broker
        self.H = scenario.horizon
        self.fates = FateLedger(record_messages=False)
        self.log = EventLog(record_events)
        self.record_memory = record_memory
        self.mem = _Memory()
        self.sessions_final = 0
        # held entries, per interval: (global message indices, hold times, release times (inf:
        # still held at the horizon), the session's memory category)
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    # ----------------------------------------------------------------- driver
    def run(self, progress: bool = False):
        consumer_seed, publisher_seed = np.random.SeedSequence(int(self.seed)).spawn(2)
        self.stream = publish_stream(self.scn, publisher_seed)
        self.fates.published = len(self.stream.t)
        groups = [self._group(c, i) for i, c in enumerate(self.scn.consumers)]
        self.groups = groups
        # 1. every slot's connection history (the random draws), one client identifier after another
        lives = []
        for (bi, block), s in zip(enumerate(self.scn.consumers), consumer_seed.spawn(len(self.scn.consumers))):
            whole = renewal.supported(block, self.cfg, groups[bi], self.log.record)
            for slot, ss in enumerate(s.spawn(block.clients)):
                streams = [np.random.default_rng(x) for x in ss.spawn(2)]
                history = renewal.slot_lives(block, streams, self.H) if whole else \
                    _slot_history(block, slot, streams, self.H)
                for k, life in enumerate(history):
                    lives.append((bi, slot, k, life))
        # 2. client identifiers and ledger order as the fleet hands them out: every slot's first
        # client at the start, block by block; a replacement when its predecessor leaves
        prefixes = client_id_prefixes(self.scn.consumers)
        count = [0] * len(self.scn.consumers)
        cids, index = {}, {}
        for key in _spawn_order(lives, self.H):
            bi = key[0]
            cids[key] = f"{prefixes[bi]}-{count[bi]}"
            count[bi] += 1
            index[key] = self.fates.add_consumer(cids[key], bi)
        # 3. the session and the messages of each client identifier
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(lives), desc="client identifiers", unit="client")
        for bi, slot, k, hist in lives:
            if bar is not None:
                bar.update(1)
            key = (bi, slot, k)
            if isinstance(hist, renewal.Life):  # a whole life at a time (no event rows)
                renewal.play(self, self.scn.consumers[bi], groups[bi], index[key], cids[key], hist)
                continue
            if k > 0:
                self.log.event(hist.joined, cids[key], "consumer", "joined", detail=f"replaces {cids[(bi, slot, k - 1)]}")
            _Life(self, self.scn.consumers[bi], groups[bi], cids[key], index[key], hist).play()
        for (bi, block), prefix in zip(enumerate(self.scn.publishers), client_id_prefixes(self.scn.publishers)):
            for k in range(block.clients):
                cid = f"{prefix}-{k}"
                nb = self.cfg.session_overhead_bytes + len(cid.encode())
                self.mem.change(0.0, OFFLINE, session=nb, sessions=1)
                self.mem.move(0.0, OFFLINE, CONNECTED, nb)
                self.log.event(0.0, cid, "publisher", "connect", clean_start=block.clean_start, session_present=False,
                               interval=protocol.effective_expiry(block.session_expiry_interval,
                                                                  self.cfg.max_session_expiry_interval))
                self.sessions_final += 1
        if bar is not None:
            bar.close()
        if self.log.record:
            self.log.rows.sort(key=lambda r: r[0])
        return self

    def _group(self, c, key: int) -> _Group:
        s, b = self.stream, self.cfg
        pubs = [i for i, p in enumerate(self.scn.publishers) if _matches(c.topic_filter, p)]
        mask = np.isin(s.block, pubs) if pubs else np.zeros(len(s.t), dtype=bool)
        # every message (one publisher block, or all of them): the stream itself, no copy
        idx = range(len(s.t)) if mask.all() else np.flatnonzero(mask)
        first = self.scn.publishers[pubs[0]] if pubs else None
        qos = protocol.delivered_qos(first.qos, c.qos) if first else 0
        payload = first.payload_bytes if first else 0
        mei = float(first.message_expiry_interval) if first and first.message_expiry_interval is not None else None
        limit = queue_limit(b, qos, payload)
        return _Group(s.t if isinstance(idx, range) else s.t[idx], idx, qos, payload, mei, limit, key)

    # ----------------------------------------------------------------- memory
    def _store_memory(self) -> None:
        """Entries' memory: each held message's entry overhead (and its own copy without a
        shared store) from hold to release; with a shared store, a message's body from its
        arrival to the last release by any session."""
        cfg = self.cfg
        if not self.entries:
            return
        k = np.concatenate([e[0] for e in self.entries])
        hold = np.concatenate([np.broadcast_to(np.asarray(e[1], dtype=float), e[0].shape) for e in self.entries])
        rel = np.concatenate([e[2] for e in self.entries])
        cat_hold = np.concatenate([np.full(len(e[0]), e[3], dtype=np.int8) for e in self.entries])
        cat_rel = cat_hold
        sb = self.stream.store[k]
        ent = cfg.queue_entry_overhead_bytes
        copy = np.zeros(len(k), dtype=np.int64) if cfg.shared_message_store else sb
        self.mem.arrays.append((hold, cat_hold, np.full(len(k), ent, dtype=np.int64), copy, np.zeros(len(k), np.int64),
                                np.ones(len(k), np.int64)))
        released = np.isfinite(rel)
        self.mem.arrays.append((rel[released], cat_rel[released], np.full(int(released.sum()), -ent, dtype=np.int64),
                                -copy[released], np.zeros(int(released.sum()), np.int64),
                                -np.ones(int(released.sum()), np.int64)))
        if cfg.shared_message_store:
            order = np.lexsort((-rel, k))  # by message, latest release first
            ks, first = np.unique(k[order], return_index=True)
            last = rel[order][first]
            t0 = self.stream.t[ks]
            self.mem.arrays.append((t0, np.full(len(ks), STORE, np.int8), np.zeros(len(ks), np.int64),
                                    np.zeros(len(ks), np.int64), self.stream.store[ks], np.zeros(len(ks), np.int64)))
            fin = np.isfinite(last)
            self.mem.arrays.append((last[fin], np.full(int(fin.sum()), STORE, np.int8), np.zeros(int(fin.sum()), np.int64),
                                    np.zeros(int(fin.sum()), np.int64), -self.stream.store[ks][fin],
                                    np.zeros(int(fin.sum()), np.int64)))

    def _closed_form_group(self) -> _Group | None:
        """The one message sequence all queues are ranges of, when the memory can be computed
        in closed form (:mod:`sim.ramps`); None when a queue holds messages with release
        times of their own (message expiry, drop-oldest evictions) or blocks queue different
        sequences."""
        self._gather()
        if self.entries:
            return None
        keys = sorted({r[0] for r in self.ramp_blocks})
        if not keys:
            return self.groups[0] if self.groups else None
        g = self.groups[keys[0]]
        if any(not _same(self.groups[k].idx, g.idx) for k in keys[1:]):
            return None
        return g

    def memory_result(self):
        """(stats dict, frame) of the broker-memory step function, as :class:`sim.memory.MemoryMonitor`
        computes them from the same changes: change by change (every breakpoint) for runs
        with up to :data:`ENUMERATE_HELD` queued-message records, in closed form past it."""
        g = self._closed_form_group()  # (gathers the ranges booked one at a time)
        held = sum(int((hi - lo).sum()) for _, lo, hi, _, _ in self.ramp_blocks)
        closed = g is not None and (self.memory_mode == "closed" or (
            self.memory_mode == "auto" and held > ENUMERATE_HELD and self.memory_points is not None))
        if self.memory_mode == "closed" and g is None:
            raise ValueError("memory in closed form: queues hold messages with their own release times")
        if closed:
            return self._closed_form(g)
        for key, lo, hi, release, cat in self.ramp_blocks:  # every queued message as a record of its own
            gk = self.groups[key]
            for a, b, r, c in zip(lo.tolist(), hi.tolist(), release.tolist(), cat.tolist()):
                self.entries.append((gk.ids(a, b), gk.t[a:b], np.full(b - a, r), c))
        self.ramp_blocks = []
        self._store_memory()
        H = self.H
        m = self.mem
        # every change as a row of (category, session, entry, message, store, queued, sessions)
        # deltas, at its time; 0 and the horizon are breakpoints too (the monitor's first row, its close)
        sc = m.sessions_changes(H)
        zero = np.zeros(len(sc.time), dtype=np.int64)
        times = [sc.time, np.array([0.0, H])]
        deltas = [np.column_stack([sc.category.astype(np.int64), sc.nbytes, zero, zero, zero, zero, sc.sessions]),
                  np.zeros((2, 7), dtype=np.int64)]
        for (t, c, e, mm, st, q) in m.arrays:
            zero = np.zeros(len(t), dtype=np.int64)
            times.append(np.asarray(t, dtype=float))
            deltas.append(np.column_stack([np.asarray(c, dtype=np.int64), zero, e, mm, st, q, zero]))
        t, d = np.concatenate(times), np.concatenate(deltas)
        keep = t <= H  # releases after the horizon never happen
        order = np.argsort(t[keep], kind="stable")
        t, d = t[keep][order], d[keep][order]
        c, d_sess, d_ent, d_msg, d_sto, d_que, d_ses = d.T
        # per-category byte deltas: the session's own bytes go to its category; store to STORE
        own = d_sess + d_ent + d_msg
        per_cat = np.zeros((len(t), 4), dtype=np.int64)
        for i in range(3):
            per_cat[:, i] = np.where(c == i, own, 0)
        per_cat[:, STORE] = d_sto + np.where(c == STORE, own, 0)
        comp = np.stack([d_sess, d_ent, d_msg + d_sto], axis=1)
        ut = np.unique(t)
        # the state after the last change at each distinct time
        ends = np.searchsorted(t, ut, "right") - 1
        cat_state = np.cumsum(per_cat, axis=0)[ends]
        comp_state = np.cumsum(comp, axis=0)[ends]
        queued_state = np.cumsum(d_que)[ends]
        sessions_state = np.cumsum(d_ses)[ends]
        total = cat_state.sum(axis=1)
        dt = np.diff(ut)  # value at ut[i] is held for dt[i]; the last (the horizon) for no time
        held = slice(0, len(ut) - 1)
        # sequential sums, as the monitor adds value x duration step by step
        area = [float(np.cumsum(np.concatenate([[0.0], cat_state[held, i] * dt]))[-1]) for i in range(4)]
        queued_area = float(np.cumsum(np.concatenate([[0.0], queued_state[held] * dt]))[-1])
        peak = int(total[held][dt > 0].max()) if np.any(dt > 0) else 0
        qpeak = int(queued_state[held][dt > 0].max()) if np.any(dt > 0) else 0
        # byte-seconds up to the midpoint, as sim.memory.MemoryMonitor.mark notes them
        mid = H / 2
        j = int(np.searchsorted(ut, mid, "right")) - 1
        upto = [float(np.cumsum(np.concatenate([[0.0], cat_state[:j, i] * dt[:j]]))[-1]) for i in range(4)]
        marked = (mid, sum(upto[i] + cat_state[j, i] * (mid - ut[j]) for i in range(4)))
        stats = summary_stats(area, queued_area, peak, qpeak, int(total[-1]), int(queued_state[-1]), 0.0, H, marked)
        import pandas as pd

        if self.record_memory:
            frame = pd.DataFrame({"time": ut, "bytes": total, "session_bytes": comp_state[:, 0],
                                  "entry_bytes": comp_state[:, 1], "message_bytes": comp_state[:, 2],
                                  "connected_bytes": cat_state[:, 0], "offline_bytes": cat_state[:, 1],
                                  "stranded_bytes": cat_state[:, 2], "store_bytes": cat_state[:, 3],
                                  "queued": queued_state, "sessions": sessions_state}, columns=COLUMNS)
            for col in COLUMNS[1:]:
                frame[col] = frame[col].astype("int64")
        else:
            frame = pd.DataFrame({col: [] for col in COLUMNS})
        return stats, frame


    def _gather(self) -> None:
        """Queue ranges booked one at a time, joined to those booked in arrays."""
        if self.ramps:
            key, lo, hi, rel, cat = (np.array(c) for c in zip(*self.ramps))
            for k in np.unique(key):
                sel = key == k
                self.ramp_blocks.append((int(k), lo[sel], hi[sel], rel[sel].astype(float), cat[sel]))
            self.ramps = []

    def _closed_form(self, g: _Group):
        cfg = self.cfg
        srows = self.mem.sessions_changes(self.H)
        if self.ramp_blocks:
            lo, hi, rel, cat = (np.concatenate([np.asarray(x) for x in c]) for c in list(zip(*self.ramp_blocks))[1:])
        else:
            lo = hi = cat = np.zeros(0, np.int64)
            rel = np.zeros(0)
        body = self.stream.store if isinstance(g.idx, range) else self.stream.store[g.idx]
        shared = cfg.shared_message_store
        return closed_form(g.t, cfg.queue_entry_overhead_bytes, None if shared else body, body if shared else None,
                           Ramps.of(lo, hi, rel, cat), srows, self.H, self.memory_points, self.record_memory)


def _same(a, b) -> bool:
    if isinstance(a, range) and isinstance(b, range):
        return a == b
    return np.array_equal(np.asarray(a), np.asarray(b))


@dataclass
class _History:
    """One client identifier's connection history: when it joined, and what followed."""

    joined: float
    first: bool  # the slot's first client (connects with the block's Clean Start)
    first_at: float | None = None  # a first CONNECT after t = 0 (a trace's [null, t])
    actions: list = field(default_factory=list)  # ("off", t, kind, dsei, final) | ("on", t, clean_start)
    targets: list = field(default_factory=list)  # each action's time as the lifecycle computes its delay


def _spawn_order(lives, H: float) -> list[tuple[int, int, int]]:
    """The order in which the fleets hand out client identifiers: the first client of every
    slot at the start (block by block, slot by slot), then each replacement the moment its
    predecessor leaves. Departures at the same instant in different slots are ordered as the
    SimPy scheduler orders them, so the histories are replayed on SimPy's clock (connection
    changes only, no messages)."""
    import simpy

    from .timing import PRIORITY_CONNECTION, Alarm

    by_slot: dict[tuple[int, int], list] = {}
    for bi, slot, k, life in lives:
        by_slot.setdefault((bi, slot), []).append(life)
    firsts = [(bi, slot, 0) for bi, slot, k, _ in lives if k == 0]
    if all(len(v) == 1 for v in by_slot.values()):
        return firsts
    later = [(life.joined, (bi, slot, k)) for bi, slot, k, life in lives if k > 0]
    if len({t for t, _ in later}) == len(later):  # no two at the same instant: in time order
        return firsts + [key for _, key in sorted(later)]
    by_slot = {key: [_as_history(life) for life in v] for key, v in by_slot.items()}
    order = list(firsts)
    env = simpy.Environment()

    def process(bi, slot, k):
        life = by_slot[(bi, slot)][k]
        if life.first_at is not None:
            if life.first_at >= H:
                return
            yield Alarm(env, life.first_at, PRIORITY_CONNECTION)
        for action, target in zip(life.actions, life.targets):
            yield Alarm(env, target - env.now, PRIORITY_CONNECTION)
            if action[0] == "off" and action[4] and k + 1 < len(by_slot[(bi, slot)]):
                order.append((bi, slot, k + 1))
                env.process(process(bi, slot, k + 1))

    for bi, slot, _ in firsts:
        env.process(process(bi, slot, 0))
    env.run(until=H)
    return order


def _as_history(life) -> _History:
    """A life from :mod:`sim.renewal` as the actions :func:`_spawn_order` replays."""
    if isinstance(life, _History):
        return life
    h = _History(life.joined, life.joined == 0.0)
    for i, t in enumerate(life.offs):
        final = life.departed and i == len(life.offs) - 1
        h.actions.append(("off", float(t), None, None, final))
        h.targets.append(float(t))
        if i < len(life.ons):
            h.actions.append(("on", float(life.ons[i]), None))
            h.targets.append(float(life.ons[i]))
    return h


def _slot_history(block, slot: int, streams, H: float) -> list[_History]:
    """The connection histories of a slot's clients, drawn exactly as :meth:`sim.clients.Client.lifecycle`
    draws them (the same streams, the same calls, the same float arithmetic)."""
    out = block.outages
    outage_rng, backoff_rng = streams
    lives: list[_History] = []
    replacement, now = False, 0.0
    while True:
        first = out.first_connect[slot] if out.first_connect and not replacement else None
        if first is not None:
            if first >= H:  # it never joins the fleet, but it is one of its clients
                lives.append(_History(H, True, first))
                return lives
            now = 0.0 + first
        life = _History(now, not replacement, first)
        lives.append(life)
        again = block.clean_start if out.reconnect_clean_start is None else out.reconnect_clean_start
        plan = OutagePlan(out, slot, outage_rng, joined=now if replacement else None)
        departed = False
        while True:
            outage = plan.next(now)
            if outage is None or outage.start >= H:
                break
            now = now + (outage.start - now)
            final = outage.end is None or not block.auto_reconnect
            kind = outage.kind or out.disconnect
            life.actions.append(("off", now, kind, out.disconnect_session_expiry_interval if kind == "clean" else None, final))
            life.targets.append(outage.start)
            if final:
                departed = True
                break
            back = reconnect_time(outage.end, outage.start, out.reconnect, backoff_rng)
            if back >= H:
                break
            now = now + (back - now)
            life.actions.append(("on", now, again if outage.clean_start is None else outage.clean_start))
            life.targets.append(back)
        if not (departed and out.replace_departed):
            return lives
        replacement = True


class _Life:
    """One client identifier: its session on the broker and the pairs routed to it."""

    def __init__(self, eng: IntervalEngine, block, g: _Group, cid: str, idx: int, hist: _History):
        self.eng, self.block, self.g, self.cid, self.idx, self.hist = eng, block, g, cid, idx, hist
        self.cfg = eng.cfg
        self.H = eng.H
        self.session = False  # a session exists on the broker
        self.nbytes = 0  # the session's own bytes (overhead, client id, subscription)
        self.category = CONNECTED
        self.interval = 0  # effective Session Expiry Interval
        self.requested = 0  # the client's own CONNECT value (rule 4)
        self.online_since: float | None = None
        self.off = 0.0
        self.expiry_at = INF
        self.gone = False  # left for good

    def play(self) -> None:
        if self.hist.first_at is not None and self.hist.first_at >= self.H:
            return  # its first CONNECT would come at or after the horizon
        self.connect(self.hist.joined, self.block.clean_start)
        for action in self.hist.actions:
            if action[0] == "off":
                _, t, kind, dsei, final = action
                self._deliver_until(t)
                if final:
                    self.eng.fates.depart(self.idx)  # before the close: what it loses now is departed traffic
                    self.gone = True
                self.disconnect(t, kind, dsei)
                if final:
                    self.eng.log.event(t, self.cid, "consumer", "departed")
                    if self.session:
                        self.eng.mem.move(t, self.category, STRANDED, self.nbytes)
                        self.category = STRANDED
            else:
                _, t, clean_start = action
                self._offline_until(t, clean_start)
                self.connect(t, clean_start)
        if self.online_since is not None:
            self._deliver_until(self.H)
        else:  # offline at the horizon: left for good, or back only at or after it
            self._offline_until(INF, None)
        if self.session:
            self.eng.sessions_final += 1

    # -- sessions
    def book(self, fate: str, n: int) -> None:
        if n:
            self.eng.fates.bulk(self.idx, fate, n)

    def _end_session(self, t: float, event: str) -> None:
        self.eng.mem.change(t, self.category, session=-self.nbytes, sessions=-1)
        self.session = False
        self.nbytes = 0
        self.eng.log.event(t, self.cid, "consumer", event, interval=self.interval)

    def connect(self, t: float, clean_start: bool) -> None:
        """CONNECT (§3.1): Clean Start, the granted interval, Session Present; SUBSCRIBE when
        no session was present ([MQTT-3.2.2-5])."""
        cfg, eng = self.cfg, self.eng
        out = protocol.connect_outcome(self.session, clean_start)
        if out.discard_existing:
            self._end_session(t, "session_discarded")
        self.interval = protocol.effective_expiry(self.block.session_expiry_interval, cfg.max_session_expiry_interval)
        self.requested = self.block.session_expiry_interval
        if not out.resume:
            self.session = True
            self.nbytes = cfg.session_overhead_bytes + len(self.cid.encode())
            self.category = OFFLINE
            eng.mem.change(t, OFFLINE, session=self.nbytes, sessions=1)
        eng.mem.move(t, self.category, CONNECTED, self.nbytes)
        self.category = CONNECTED
        eng.log.event(t, self.cid, "consumer", "connect", clean_start=clean_start, session_present=out.session_present,
                      interval=self.interval)
        if not out.session_present:
            sub = cfg.subscription_overhead_bytes + len(self.block.topic_filter.encode())
            self.nbytes += sub
            eng.mem.change(t, CONNECTED, session=sub)
        self.online_since = t

    def disconnect(self, t: float, kind: str, dsei: int | None) -> None:
        """The connection closes (§3.14, §3.1.2.11.2): a DISCONNECT may change the interval."""
        eng, cfg = self.eng, self.cfg
        if kind == "clean":
            o = protocol.disconnect_expiry(self.requested, self.interval, dsei, cfg.max_session_expiry_interval)
            if o.protocol_error:
                eng.log.event(t, self.cid, "consumer", "protocol_error", interval=dsei, reason_code=o.reason_code,
                              detail="disconnect session expiry interval 0 -> non-zero")
            self.interval = o.interval
        eng.log.event(t, self.cid, "consumer", "disconnect", interval=self.interval, detail=kind,
                      reason_code=protocol.REASON_NORMAL_DISCONNECTION if kind == "clean" else None)
        delay = protocol.expiry_delay(self.interval, cfg.uint_max_never_expires)
        self.off = t
        self.online_since = None
        if delay == 0:
            self._end_session(t, "session_ended")
            self.expiry_at = INF
            return
        eng.mem.move(t, CONNECTED, OFFLINE, self.nbytes)
        self.category = OFFLINE
        x = t + delay if delay is not None else INF
        self.expiry_at = x if x < self.H else INF  # no timer at or after the horizon

    # -- messages
    def _deliver_until(self, t: float) -> None:
        """Connected since ``online_since``: every message up to ``t`` is delivered at once."""
        self.book("delivered", self.g.count(self.online_since, min(t, self.H)))

    def _offline_until(self, on: float, clean_start: bool | None) -> None:
        """The offline interval [off, on) ends (``on`` inf: it lasts to the horizon)."""
        g, H, off, eng, cfg = self.g, self.H, self.off, self.eng, self.cfg
        end = min(on, H)
        if not self.session:  # ended at the close (interval 0)
            if not self.gone:
                self.book("no_session", g.count(off, end))
            return
        x = self.expiry_at  # the session's end (inf: not before the horizon)
        expires_first = x <= end
        held_end = x if expires_first else end
        a, b = g.pos(off), g.pos(held_end)
        n = b - a
        if expires_first:
            release, fate = x, "session_expired"
        elif on < H:
            release, fate = on, ("clean_start" if clean_start else "delivered")
        else:
            release, fate = INF, "pending"
        if not protocol.queued_while_offline(g.qos, cfg.queue_qos0_messages):
            self.book("qos0_offline", n)
        else:
            lo, hi = a, b
            if g.limit is not None and n > g.limit:
                self.book("queue_full", n - g.limit)
                if cfg.queue_full_policy == "drop-new":
                    hi = a + g.limit
                else:  # drop-oldest: each older message leaves when the limit-th newer one comes
                    lo = b - g.limit
                    if g.limit > 0:
                        eng.entries.append((g.ids(a, lo), g.t[a:lo], g.t[a + g.limit:b], self.category))
            kept = hi - lo
            if kept:
                if g.mei is not None:
                    tk = g.t[lo:hi]
                    rel = np.full(kept, release)
                    expires = tk + g.mei
                    if cfg.message_expiry_check == "eager":
                        timer = tk + (expires - tk)  # the timer set at the hold
                        # before the release: an expiry timer runs before a reconnect at the same
                        # instant, but after the session's own expiry timer (set earlier)
                        early = (timer < H) & ((timer < release) | ((timer == release) & (fate != "session_expired")))
                        rel = np.where(early, timer, rel)
                    else:
                        early = np.zeros(kept, dtype=bool)
                    expired = early | (min(release, H) >= expires)
                    n_exp = int(expired.sum())
                    self.book("message_expired", n_exp)
                    self.book(fate, kept - n_exp)
                    eng.entries.append((g.ids(lo, hi), tk, rel, self.category))
                else:  # held from each arrival to one release: a range of the sequence
                    self.book(fate, kept)
                    eng.ramps.append((g.key, lo, hi, release, self.category))
        if expires_first:
            self._end_session(x, "session_expired")
            if not self.gone:
                self.book("no_session", g.count(x, end))
        elif on < H and clean_start:
            self._end_session(on, "session_discarded")

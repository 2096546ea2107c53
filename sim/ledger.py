"""Measurement: the fate of every (message, consumer) pair and the broker-memory step function.

The model modules report what happens; the ledger only counts. Each pair is *routed* once
(counted when the pair comes into being) and given exactly one *fate* once; at the end of a
run :meth:`Ledger.check_conservation` verifies ``routed == delivered + lost + pending +
departed`` for every consumer (``departed``: the pairs of a consumer that left for good and
never got them, see :func:`sim.protocol.departed_fate`). Memory is a step function updated at each change, with its
time integral accumulated as it goes (Law's area-under-the-curve method), so means are
time-weighted and need no sampling process.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .protocol import DEPARTED_FATES, FATES, LOSS_CAUSES, departed_fate

ROUTED, DUPLICATES = len(FATES), len(FATES) + 1
FATE_INDEX = {f: i for i, f in enumerate(FATES)}
CATEGORIES = ("connected", "offline", "stranded", "store")
CONNECTED, OFFLINE, STRANDED, STORE = range(4)


class ConservationError(AssertionError):
    """A (message, consumer) pair was lost track of: the run's accounting is wrong."""


class Message:
    """One application message, from production by a publisher to the last consumer fate."""

    __slots__ = ("id", "publisher", "topic", "qos", "payload_bytes", "produced_at", "expires_at",
                 "store_bytes", "refs", "routed", "expiry_interval", "routed_to")

    def __init__(self, id, publisher, topic, qos, payload_bytes, produced_at, expiry_interval, store_bytes):
        self.id = id
        self.publisher = publisher
        self.topic = topic
        self.qos = qos
        self.payload_bytes = payload_bytes
        self.produced_at = produced_at
        self.expiry_interval = expiry_interval
        self.expires_at = None  # set when the broker receives it (§3.3.2.3.3)
        self.store_bytes = store_bytes
        self.refs = 0  # queue entries (all sessions) referring to the stored message
        self.routed = False  # True after the broker routed it once (a later routing is a duplicate)
        self.routed_to = None  # consumers routed to, kept only when a duplicate routing is possible


class Entry:
    """A message in one session: queued, or sent and not yet acknowledged (in flight)."""

    __slots__ = ("msg", "consumer", "qos", "received", "done", "copy", "live")

    def __init__(self, msg: Message, consumer: int, qos: int, copy: bool = False):
        self.msg = msg
        self.consumer = consumer
        self.qos = qos
        self.received = False  # the client has the message (it may not have acknowledged it)
        self.done = False  # the pair's fate is decided
        self.copy = copy  # a duplicate routing of a message this consumer already has a pair for
        self.live = True  # still held by the session (False: removed, a tombstone in the queue)


@dataclass
class ConsumerInfo:
    client_id: str
    block: int
    departed: bool = False


class Ledger:
    """Fate counters per consumer, optional per-pair records, events and the memory step function."""

    def __init__(self, record_messages: bool = False, record_events: bool = True, record_memory: bool = True):
        self.consumers: list[ConsumerInfo] = []
        self.counts: list[list[int]] = []
        self.gone: list[bool] = []  # per consumer: has it left for good (see depart)
        self.record_messages = record_messages
        self.record_events = record_events
        self.record_memory = record_memory
        self.rows: list[list] = []
        self._row_of: dict[tuple[int, int], int] = {}
        self.events: list[tuple] = []
        self.published = 0
        self.counters = {"sessions_expired": 0, "sessions_discarded": 0, "sessions_ended": 0, "connects": 0,
                         "disconnects": 0, "departures": 0, "protocol_errors": 0}
        # memory
        self.cat = [0, 0, 0, 0]  # connected, offline, stranded, store
        self.comp = [0, 0, 0]  # session, entry, message bytes
        self.queued = 0
        self.sessions = 0
        self.t_last = 0.0
        self.area = [0.0] * 4
        self.queued_area = 0.0
        self.peak = 0
        self.queued_peak = 0
        self.steps: list[tuple] = []

    # ------------------------------------------------------------------ fates
    def add_consumer(self, client_id: str, block: int) -> int:
        self.consumers.append(ConsumerInfo(client_id, block))
        self.counts.append([0] * (len(FATES) + 2))
        self.gone.append(False)
        return len(self.consumers) - 1

    def depart(self, consumer: int) -> None:
        """``consumer`` leaves for good (before its last disconnect is processed): every pair of
        it decided from now on that it did not receive gets a departed fate."""
        self.consumers[consumer].departed = True
        self.gone[consumer] = True

    def route(self, consumer: int, msg: Message, t: float) -> None:
        """A (message, consumer) pair comes into being."""
        self.counts[consumer][ROUTED] += 1
        if self.record_messages:
            self._row_of[(msg.id, consumer)] = len(self.rows)
            self.rows.append([msg.id, msg.publisher, msg.produced_at, msg.topic, msg.qos,
                              self.consumers[consumer].client_id, None, None, 0])

    def bulk(self, consumer: int, fate: str, n: int) -> None:
        """``n`` pairs routed to ``consumer`` that all had ``fate`` (no per-pair records)."""
        if self.gone[consumer]:
            fate = departed_fate(fate)
        c = self.counts[consumer]
        c[ROUTED] += n
        c[FATE_INDEX[fate]] += n

    def fate(self, consumer: int, msg: Message, fate: str, t: float) -> None:
        """Give a pair that has no queue entry its fate (a departed fate once its consumer has left)."""
        if self.gone[consumer]:
            fate = departed_fate(fate)
        self.counts[consumer][FATE_INDEX[fate]] += 1
        if self.record_messages:
            row = self.rows[self._row_of[(msg.id, consumer)]]
            if row[6] is not None:
                raise ConservationError(f"message {msg.id} for {row[5]} already has fate {row[6]}, now {fate}")
            row[6], row[7] = fate, t

    def settle(self, entry: Entry, fate: str, t: float) -> None:
        """Give a queued/in-flight entry's pair its fate (copies only ever add duplicates)."""
        if entry.copy:
            if fate == "delivered":
                self.duplicate(entry.consumer, entry.msg)
            return
        if entry.done:
            if fate == "delivered":
                self.duplicate(entry.consumer, entry.msg)
                return
            if entry.received:
                return  # delivered earlier; the broker only now drops its in-flight copy
            raise ConservationError(f"message {entry.msg.id}: second fate {fate} for consumer {entry.consumer}")
        entry.done = True
        self.fate(entry.consumer, entry.msg, fate, t)

    def duplicate(self, consumer: int, msg: Message) -> None:
        self.counts[consumer][DUPLICATES] += 1
        if self.record_messages:
            self.rows[self._row_of[(msg.id, consumer)]][8] += 1

    def check_conservation(self) -> None:
        """Each (message, consumer) pair has exactly one fate (docs/model.md, "Fates")."""
        for info, c in zip(self.consumers, self.counts):
            fated = sum(c[: len(FATES)])
            if fated != c[ROUTED]:
                raise ConservationError(f"consumer {info.client_id}: routed {c[ROUTED]} but fates add up to {fated} "
                                        f"({dict(zip(FATES, c))})")
        if self.record_messages and any(r[6] is None for r in self.rows):
            missing = next(r for r in self.rows if r[6] is None)
            raise ConservationError(f"message {missing[0]} for {missing[5]} has no fate")

    # ------------------------------------------------------------------ events
    def event(self, t, client_id, role, event, clean_start=None, session_present=None, interval=None,
              reason_code=None, detail=None) -> None:
        if event in ("session_expired", "session_discarded", "session_ended"):
            self.counters[event.replace("session_", "sessions_")] += 1
        elif event == "connect":
            self.counters["connects"] += 1
        elif event == "disconnect":
            self.counters["disconnects"] += 1
        elif event == "departed":
            self.counters["departures"] += 1
        elif event == "protocol_error":
            self.counters["protocol_errors"] += 1
        if self.record_events:
            self.events.append((t, client_id, role, event, clean_start, session_present, interval, reason_code, detail))

    # ------------------------------------------------------------------ memory
    def _advance(self, t: float) -> None:
        if t > self.t_last:
            dt = t - self.t_last
            total = self.cat[0] + self.cat[1] + self.cat[2] + self.cat[3]
            if total > self.peak:
                self.peak = total
            if self.queued > self.queued_peak:
                self.queued_peak = self.queued
            for i in range(4):
                self.area[i] += self.cat[i] * dt
            self.queued_area += self.queued * dt
            self.t_last = t

    def _record(self, t: float) -> None:
        if self.record_memory:
            total = self.cat[0] + self.cat[1] + self.cat[2] + self.cat[3]
            row = (t, total, *self.comp, *self.cat, self.queued, self.sessions)
            if self.steps and self.steps[-1][0] == t:
                self.steps[-1] = row
            else:
                self.steps.append(row)

    def memory(self, t: float, category: int, session: int = 0, entry: int = 0, message: int = 0,
               store: int = 0, queued: int = 0, sessions: int = 0) -> None:
        """Record a change of the broker's retained bytes at time ``t``.

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

    def close_memory(self, horizon: float) -> None:
        self.memory(horizon, CONNECTED)

    # ------------------------------------------------------------------ frames
    def memory_frame(self) -> pd.DataFrame:
        cols = ["time", "bytes", "session_bytes", "entry_bytes", "message_bytes", "connected_bytes",
                "offline_bytes", "stranded_bytes", "store_bytes", "queued", "sessions"]
        df = pd.DataFrame(self.steps, columns=cols)
        for c in cols[1:]:
            df[c] = df[c].astype("int64")
        return df

    def memory_stats(self, horizon: float) -> dict[str, float]:
        peak = max(self.peak, sum(self.cat))  # values held for a positive time, and the final one
        qpeak = max(self.queued_peak, self.queued)
        total_area = sum(self.area)
        h = horizon if horizon > 0 else 1.0
        return {
            "memory_peak_bytes": float(peak),
            "memory_mean_bytes": total_area / h,
            "memory_final_bytes": float(sum(self.cat)),
            "memory_byte_seconds": total_area,
            **{f"memory_mean_{name}_bytes": self.area[i] / h for i, name in enumerate(CATEGORIES)},
            "queued_messages_mean": self.queued_area / h,
            "queued_messages_peak": float(qpeak),
        }

    def fates_frame(self) -> pd.DataFrame:
        data = np.array(self.counts, dtype=np.int64).reshape(len(self.counts), len(FATES) + 2)
        routed = data[:, ROUTED]
        lost = data[:, [FATE_INDEX[c] for c in LOSS_CAUSES]].sum(axis=1)
        departed = data[:, [FATE_INDEX[f] for f in DEPARTED_FATES]].sum(axis=1)
        df = pd.DataFrame({
            "client_id": [c.client_id for c in self.consumers],
            "block": [c.block for c in self.consumers],
            "departed": [c.departed for c in self.consumers],
            "routed": routed,
            "delivered": data[:, FATE_INDEX["delivered"]],
            "duplicates": data[:, DUPLICATES],
            "lost": lost,
        })
        for cause in LOSS_CAUSES:
            df[f"lost_{cause}"] = data[:, FATE_INDEX[cause]]
        df["pending"] = data[:, FATE_INDEX["pending"]]
        df["departed_pairs"] = departed
        for fate in DEPARTED_FATES:
            df[fate] = data[:, FATE_INDEX[fate]]
        returning = routed - departed
        with np.errstate(invalid="ignore", divide="ignore"):
            df["loss_ratio"] = np.where(returning > 0, lost / np.maximum(returning, 1), np.nan)
        return df

    def messages_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["message_id", "publisher", "published_at", "topic", "qos",
                                                "consumer", "fate", "fate_at", "duplicates"])

    def events_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.events, columns=["time", "client_id", "role", "event", "clean_start",
                                                  "session_present", "session_expiry_interval", "reason_code", "detail"])

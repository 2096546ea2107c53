"""The fate ledger: the fate of every (message, consumer) pair, and the conservation check.

The model modules report what happens; the ledger only counts. Each pair is *routed* once
(counted when the pair comes into being) and given exactly one *fate* once; at the end of a
run :meth:`FateLedger.check_conservation` verifies ``routed == delivered + lost + pending +
departed`` for every consumer (``departed``: the pairs of a consumer that left for good and
never got them, see :func:`sim.protocol.departed_fate`). Memory is measured apart, by
:mod:`sim.memory`; the lifecycle events by :mod:`sim.eventlog`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .entities import Entry, Message
from .protocol import DEPARTED_FATES, FATES, LOSS_CAUSES, departed_fate

ROUTED, DUPLICATES = len(FATES), len(FATES) + 1
FATE_INDEX = {f: i for i, f in enumerate(FATES)}


class ConservationError(AssertionError):
    """A (message, consumer) pair was lost track of: the run's accounting is wrong."""


@dataclass
class ConsumerInfo:
    client_id: str
    block: int
    departed: bool = False


class FateLedger:
    """Fate counters per consumer, and optional per-pair records (``res.messages``)."""

    def __init__(self, record_messages: bool = False, warmup: float = 0.0):
        self.warmup = warmup  # pairs of messages produced before it are not counted (see sim.run)
        self.suspended = warmup > 0  # bulk bookings are dropped until the warm-up ends (see sim.run)
        self.consumers: list[ConsumerInfo] = []
        self.counts: list[list[int]] = []
        self.gone: list[bool] = []  # per consumer: has it left for good (see depart)
        self.record_messages = record_messages
        self.rows: list[list] = []
        self._row_of: dict[tuple[int, int], int] = {}
        self.published = 0  # messages produced by publishers (whether or not the broker got them)

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

    def publish(self, msg: Message) -> None:
        """A publisher produced ``msg``."""
        if msg.produced_at >= self.warmup:
            self.published += 1

    def route(self, consumer: int, msg: Message, t: float) -> None:
        """A (message, consumer) pair comes into being."""
        if msg.produced_at < self.warmup:
            return
        self.counts[consumer][ROUTED] += 1
        if self.record_messages:
            self._row_of[(msg.id, consumer)] = len(self.rows)
            self.rows.append([msg.id, msg.publisher, msg.produced_at, msg.topic, msg.qos,
                              self.consumers[consumer].client_id, None, None, 0])

    def bulk(self, consumer: int, fate: str, n: int) -> None:
        """``n`` pairs routed to ``consumer`` that all had ``fate`` (no per-pair records)."""
        if self.suspended:
            return
        if self.gone[consumer]:
            fate = departed_fate(fate)
        c = self.counts[consumer]
        c[ROUTED] += n
        c[FATE_INDEX[fate]] += n

    def fate(self, consumer: int, msg: Message, fate: str, t: float) -> str | None:
        """Give a pair that has no queue entry its fate (a departed fate once its consumer has
        left); returns the fate booked (None for a message of the warm-up, not counted)."""
        if msg.produced_at < self.warmup:
            return None
        if self.gone[consumer]:
            fate = departed_fate(fate)
        self.counts[consumer][FATE_INDEX[fate]] += 1
        if self.record_messages:
            row = self.rows[self._row_of[(msg.id, consumer)]]
            if row[6] is not None:
                raise ConservationError(f"message {msg.id} for {row[5]} already has fate {row[6]}, now {fate}")
            row[6], row[7] = fate, t
        return fate

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
        entry.fate = self.fate(entry.consumer, entry.msg, fate, t)

    def reopen(self, entry: Entry) -> None:
        """Undo the fate of an entry's pair: a broker restored from an older saved state holds
        the message again, so the loss booked since is void (see
        :func:`sim.protocol.restored_entry`); the pair gets a fate again later."""
        if not entry.done or entry.received or entry.copy:
            raise ConservationError(f"message {entry.msg.id}: only a lost pair can be reopened")
        if entry.fate is not None:
            self.counts[entry.consumer][FATE_INDEX[entry.fate]] -= 1
            if self.record_messages:
                row = self.rows[self._row_of[(entry.msg.id, entry.consumer)]]
                row[6], row[7] = None, None
        entry.done, entry.fate = False, None

    def duplicate(self, consumer: int, msg: Message) -> None:
        if msg.produced_at < self.warmup:
            return
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

    def totals(self) -> dict[str, int]:
        """Pairs by fate over all consumers, with ``routed`` and ``duplicates``."""
        counts = np.array(self.counts, dtype=np.int64).reshape(len(self.counts), -1).sum(axis=0) \
            if self.counts else np.zeros(len(FATES) + 2, dtype=np.int64)
        out = {f: int(counts[i]) for f, i in FATE_INDEX.items()}
        out["routed"], out["duplicates"] = int(counts[ROUTED]), int(counts[DUPLICATES])
        return out

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

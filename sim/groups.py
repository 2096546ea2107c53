"""Which consumers a message is routed to, and the bulk booking of predictable ones.

A :class:`ConsumerGroup` holds the consumers of one ``mqttConsumer`` block (they share one
topic filter). Its ``members`` are the consumers a message matching the filter is routed to:
every client of the block that has joined and not left, and departed ones while their
session exists (docs/model.md, "Fates").

Bulk booking: a member whose outcome for the next message is known without looking at it —
connected with no network latency (``delivered``: nothing can be queued or in flight), or
without a session (``no_session``) — is in a *bulk mode*: it is not visited per message;
instead the group's ``count`` (messages routed to the group) is read when its mode changes,
and the difference is booked as that many pairs with that fate. The others (``slow``) are
handled message by message. The result is identical to visiting every pair
(property-tested); only the cost differs: per message O(groups + slow members) instead of
O(members).
"""
from __future__ import annotations

from . import protocol
from .ledger import FateLedger


class ConsumerGroup:
    """The consumers of one ``mqttConsumer`` block."""

    __slots__ = ("topic_filter", "members", "slow", "count")

    def __init__(self, topic_filter: str):
        self.topic_filter = topic_filter
        self.members: dict = {}
        self.slow: dict = {}
        self.count = 0


class Membership:
    """The consumer groups of a broker, topic matching, and the bulk modes of their members."""

    def __init__(self, sessions: dict, fates: FateLedger, bulk: bool):
        self.sessions = sessions  # the broker's session store (client id -> Session)
        self.fates = fates
        self.bulk = bulk  # False when every pair must be visited (per-pair records)
        self.groups: list[ConsumerGroup] = []
        self._match_cache: dict[str, list[ConsumerGroup]] = {}

    def add_group(self, topic_filter: str) -> ConsumerGroup:
        g = ConsumerGroup(topic_filter)
        self.groups.append(g)
        self._match_cache.clear()
        return g

    def groups_for(self, topic: str) -> list[ConsumerGroup]:
        """The consumer groups whose topic filter matches ``topic`` (§4.7)."""
        got = self._match_cache.get(topic)
        if got is None:
            got = [g for g in self.groups if protocol.topic_matches(g.topic_filter, topic)]
            self._match_cache[topic] = got
        return got

    def join(self, c) -> None:
        """Consumer ``c`` becomes a member: messages matching its block's filter reach it."""
        c.group.members[c.client_id] = c
        c.mode, c.snap = None, c.group.count
        c.group.slow[c.client_id] = c
        self.refresh(c)

    def forget(self, c) -> None:
        """Consumer ``c`` (departed, no session left) stops being a member."""
        self._flush(c)
        c.group.members.pop(c.client_id, None)
        c.group.slow.pop(c.client_id, None)

    def _mode(self, c) -> str | None:
        if not self.bulk:
            return None
        s = self.sessions.get(c.client_id)
        if s is None or not s.subscribed:
            return "no_session"
        if s.connected and c.latency == 0:
            return "delivered"  # nothing can be queued or in flight at latency 0 (see Broker.pump)
        return None

    def _flush(self, c) -> None:
        if c.mode is not None:
            n = c.group.count - c.snap
            if n:
                self.fates.bulk(c.index, c.mode, n)
        c.snap = c.group.count

    def refresh(self, c) -> None:
        """Re-derive a member's bulk mode after its connection or session changed."""
        if c.client_id not in c.group.members:
            return
        mode = self._mode(c)
        if mode != c.mode:
            self._flush(c)
            c.mode = mode
            if mode is None:
                c.group.slow[c.client_id] = c
            else:
                c.group.slow.pop(c.client_id, None)

    def flush_all(self) -> None:
        """Book every bulk-mode member's pairs so far (at the horizon)."""
        for g in self.groups:
            for c in g.members.values():
                self._flush(c)

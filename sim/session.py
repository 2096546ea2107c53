"""Server-side Session State (MQTT 5.0 §4.1) and the timing helpers the processes share.

A :class:`Session` holds what §4.1 lists for the server: the session's existence, its
subscription, the QoS 1/2 messages sent and not yet acknowledged (``inflight``), the messages
pending transmission (``queue``), and, while offline, when it will end (``expiry_token``
identifies the live expiry timer). It knows nothing of time; :mod:`sim.broker` drives it.
"""
from __future__ import annotations

from collections import deque

import simpy
from simpy.events import Event

from .ledger import CONNECTED, Entry

#: Same-instant order (SimPy runs equal-time events by priority, then by scheduling order):
#: session/message expiry first, then connection changes, then message events.
PRIORITY_EXPIRY, PRIORITY_CONNECTION, PRIORITY_MESSAGE = 0, 1, 2


class Alarm(Event):
    """An event that fires ``delay`` seconds from now with a chosen same-instant priority."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int, callback=None):
        if delay < 0:
            raise ValueError(f"an event cannot be scheduled in the past (delay {delay})")
        super().__init__(env)
        self._ok = True
        self._value = None
        if callback is not None:
            self.callbacks.append(callback)
        env.schedule(self, priority, delay)


class Session:
    """One client identifier's session on the broker."""

    __slots__ = ("client_id", "role", "client", "interval", "requested", "sub_filter", "sub_qos", "queue", "queued_count",
                 "queued_bytes", "limit_count", "limit_bytes", "inflight", "connected", "connection", "category", "nbytes", "expiry_token",
                 "alive")

    def __init__(self, client_id: str, role: str, client, interval: int):
        self.client_id = client_id
        self.role = role
        self.client = client  # the client object (consumer or publisher) using this identifier
        self.interval = interval  # effective Session Expiry Interval (§3.1.2.11.2, §3.2.2.3.2)
        self.requested = interval  # the client's own CONNECT value (what rule 4 checks)
        self.sub_filter: str | None = None
        self.sub_qos = 0
        self.queue: deque[Entry] = deque()  # pending transmission, oldest first; may hold tombstones
        self.queued_count = 0  # live entries in ``queue``
        self.queued_bytes = 0  # their payload bytes
        self.limit_count = 0  # the queued entries the queue limits count (see BrokerConfig)
        self.limit_bytes = 0  # and their payload bytes
        self.inflight: dict[Entry, None] = {}  # sent, not yet acknowledged, in send order
        self.connected = False
        self.connection = 0  # number of the current/last network connection
        self.category = CONNECTED
        self.nbytes = 0  # bytes attributed to this session (not counting shared message bodies)
        self.expiry_token = 0  # bumped to cancel a pending expiry timer
        self.alive = True

    @property
    def subscribed(self) -> bool:
        return self.sub_filter is not None

    def pop_next(self) -> Entry | None:
        """The oldest live queued entry, removed from the queue (tombstones are skipped)."""
        q = self.queue
        while q:
            e = q.popleft()
            if e.live:
                return e
        return None

    def live_queued(self) -> list[Entry]:
        return [e for e in self.queue if e.live]

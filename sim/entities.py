"""What the broker holds: application messages, their entries in sessions, and sessions.

Plain state objects with no behaviour beyond their own bookkeeping: :mod:`sim.broker`
changes them by the rules of :mod:`sim.protocol`, and the measurement modules
(:mod:`sim.ledger`, :mod:`sim.memory`) count what happens to them. No SimPy, no time.
"""
from __future__ import annotations

from collections import deque

#: Session states the broker's memory is split by (see :mod:`sim.memory`): the client is
#: connected; offline and may come back; left for good (its session is *stranded*).
CONNECTED, OFFLINE, STRANDED = range(3)


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

    __slots__ = ("msg", "consumer", "qos", "received", "done", "copy", "live", "fate")

    def __init__(self, msg: Message, consumer: int, qos: int, copy: bool = False):
        self.msg = msg
        self.consumer = consumer
        self.qos = qos
        self.received = False  # the client has the message (it may not have acknowledged it)
        self.done = False  # the pair's fate is decided
        self.copy = copy  # a duplicate routing of a message this consumer already has a pair for
        self.live = True  # still held by the session (False: removed, a tombstone in the queue)
        self.fate: str | None = None  # the fate the ledger booked for the pair (None: not booked)


class Session:
    """One client identifier's Server-side Session State (MQTT 5.0 §4.1).

    What §4.1 lists for the server: the session's existence, its subscription, the QoS 1/2
    messages sent and not yet acknowledged (``inflight``), the messages pending transmission
    (``queue``), and, while offline, when it will end (``expiry_token`` identifies the live
    expiry timer). It knows nothing of time; :mod:`sim.broker` drives it.
    """

    __slots__ = ("client_id", "role", "client", "interval", "requested", "sub_filter", "sub_qos", "queue", "queued_count",
                 "queued_bytes", "limit_count", "limit_bytes", "inflight", "connected", "connection", "category", "nbytes",
                 "expiry_token", "alive", "clean_start", "closed_at")

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
        self.clean_start = True  # Clean Start of the last CONNECT (what persistence looks at)
        self.closed_at = 0.0  # when the last network connection closed (restored sessions' wall-time expiry)

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

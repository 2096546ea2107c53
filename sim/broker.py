"""The broker: session store, routing, offline queues, expiry timers, limits, memory accounting.

Each public method is one packet or timer arriving at the broker; the rules it applies come
from :mod:`sim.protocol`. Every pair's fate is reported to the :class:`~sim.ledger.FateLedger`,
every change of retained bytes to the :class:`~sim.memory.MemoryMonitor`, and lifecycle events
to the :class:`~sim.eventlog.EventLog`. Who a message is routed to, and the bulk booking of
predictable consumers, is :mod:`sim.groups`. Section numbers are those of the MQTT 5.0 OASIS
Standard.
"""
from __future__ import annotations

from dataclasses import dataclass

import simpy

from . import protocol
from .config import BrokerConfig
from .entities import CONNECTED, OFFLINE, STRANDED, Entry, Message, Session
from .eventlog import EventLog
from .groups import Membership
from .ledger import FateLedger
from .memory import MemoryMonitor
from .timing import PRIORITY_EXPIRY, PRIORITY_MESSAGE, Alarm

#: Same-instant priority of an autosave: after every model event at that instant.
PRIORITY_SAVE = PRIORITY_MESSAGE + 1


@dataclass(frozen=True)
class SavedSession:
    """One session as a save wrote it (the persistence file): what a restart restores."""

    client_id: str
    role: str
    client: object
    interval: int
    requested: int
    sub_filter: str | None
    sub_qos: int
    closed_at: float | None  #: when its connection closed; None: connected at the save (closes at the stop)
    inflight: tuple[Entry, ...]
    queue: tuple[Entry, ...]


class Broker:
    """One MQTT v5 broker with the limits and memory constants of a :class:`BrokerConfig`."""

    def __init__(self, env: simpy.Environment, cfg: BrokerConfig, horizon: float, fates: FateLedger,
                 memory: MemoryMonitor, log: EventLog):
        self.env, self.cfg, self.horizon = env, cfg, horizon
        self.fates, self.memory, self.log = fates, memory, log
        self.sessions: dict[str, Session] = {}
        # per-pair records need every pair visited: no bulk booking then
        self.members = Membership(self.sessions, fates, bulk=not fates.record_messages)
        self.transit: dict[int, tuple[Entry, Session]] = {}  # QoS 0 copies on the wire to consumers
        # broker restarts (sim.downtime drives them; docs/model.md "Broker restarts")
        self.up = True  # the broker process runs
        self.saved: dict[str, SavedSession] | None = None  # the last saved state (None: nothing saved yet)
        self.image: dict[str, SavedSession] = {}  # while down: the state the broker will start from
        self.stopped_at = 0.0
        self.save_token = 0  # bumped at each stop: cancels the pending autosave

    # ------------------------------------------------------------------ helpers
    def schedule(self, delay: float, priority: int, callback) -> None:
        """Run ``callback()`` after ``delay`` unless that is at or past the horizon (nothing at or
        after the horizon is simulated)."""
        if self.env.now + delay < self.horizon:
            Alarm(self.env, delay, priority, lambda _ev: callback())

    def _expired(self, msg: Message, t: float) -> bool:
        """Message Expiry Interval has passed (§3.3.2.3.3; at the instant itself it has)."""
        return msg.expires_at is not None and t >= msg.expires_at

    def _session_bytes(self, s: Session) -> int:
        return self.cfg.session_overhead_bytes + len(s.client_id.encode())

    def _account(self, s: Session, e: Entry, sign: int) -> None:
        """Memory of an entry the session starts (+1) or stops (-1) holding.

        The entry's overhead, plus the stored message: with a shared store its bytes come with
        the first reference and go with the last; otherwise each entry holds its own copy.
        """
        cfg, msg = self.cfg, e.msg
        entry = cfg.queue_entry_overhead_bytes
        copy = 0 if cfg.shared_message_store else msg.store_bytes
        if sign < 0:
            msg.refs -= 1
        store = msg.store_bytes if cfg.shared_message_store and msg.refs == 0 else 0
        if sign > 0:
            msg.refs += 1
        s.nbytes += sign * (entry + copy)
        self.memory.change(self.env.now, s.category, entry=sign * entry, message=sign * copy, store=sign * store)

    def _hold(self, s: Session, e: Entry) -> None:
        self._account(s, e, +1)

    def _release(self, s: Session, e: Entry) -> None:
        self._account(s, e, -1)

    # ------------------------------------------------------------------ CONNECT / DISCONNECT
    def connect(self, client, clean_start: bool, requested_interval: int) -> bool:
        """CONNECT (§3.1): apply Clean Start, grant the expiry interval; return Session Present."""
        t, cid = self.env.now, client.client_id
        if not self.up:
            raise RuntimeError(f"{cid} connects at {t:g} s while the broker is down")
        s = self.sessions.get(cid)
        out = protocol.connect_outcome(s is not None, clean_start)
        if out.discard_existing:
            self.end_session(s, "clean_start", "session_discarded")
            s = None
        interval = protocol.effective_expiry(requested_interval, self.cfg.max_session_expiry_interval)
        if out.resume:
            s.expiry_token += 1  # cancels the pending expiry ([MQTT-3.1.2-5]: the session resumes)
            s.interval = interval
            s.requested = requested_interval
            s.client = client
        else:
            s = Session(cid, client.role, client, interval)
            s.requested = requested_interval
            s.category = OFFLINE
            self.sessions[cid] = s
            nbytes = self._session_bytes(s)
            s.nbytes = nbytes
            self.memory.change(t, OFFLINE, session=nbytes, sessions=1)
        s.connected = True
        s.clean_start = clean_start
        s.connection += 1
        self.memory.move(t, s.category, CONNECTED, s.nbytes)
        s.category = CONNECTED
        self.log.event(t, cid, client.role, "connect", clean_start=clean_start, session_present=out.session_present,
                          interval=interval)
        return out.session_present

    def subscribe(self, client, topic_filter: str, qos: int) -> None:
        """SUBSCRIBE (§3.8): the session's subscription, with its memory."""
        s = self.sessions[client.client_id]
        if s.sub_filter is None:
            nbytes = self.cfg.subscription_overhead_bytes + len(topic_filter.encode())
            s.nbytes += nbytes
            self.memory.change(self.env.now, s.category, session=nbytes)
        s.sub_filter, s.sub_qos = topic_filter, qos

    def resume_delivery(self, client) -> None:
        """After a resumed CONNECT: drop expired messages, re-send in-flight ones, drain the queue.

        [MQTT-4.4.0-1]: unacknowledged PUBLISH packets are re-sent first, in their original
        order ([MQTT-4.6.0-1]); then the queued messages in order.
        """
        s = self.sessions[client.client_id]
        t = self.env.now
        if self.cfg.message_expiry_check == "lazy":  # Mosquitto expires queued messages at CONNECT
            for e in s.live_queued():
                if self._expired(e.msg, t):
                    self._drop(s, e, "message_expired")
        for e in list(s.inflight):
            self._transmit(s, e)
        self.pump(s)

    def disconnect(self, client, kind: str, disconnect_interval: int | None = None) -> None:
        """The network connection closes: a clean DISCONNECT (may change the interval) or a drop."""
        t, cid = self.env.now, client.client_id
        s = self.sessions.get(cid)
        if s is None or not s.connected:
            return
        s.connected = False
        s.closed_at = t
        if kind == "clean":
            out = protocol.disconnect_expiry(s.requested, s.interval, disconnect_interval,
                                             self.cfg.max_session_expiry_interval)
            if out.protocol_error:  # §3.14.2.2.2: 0 -> non-zero; the server answers 0x82
                self.log.event(t, cid, client.role, "protocol_error", interval=disconnect_interval,
                                  reason_code=out.reason_code, detail="disconnect session expiry interval 0 -> non-zero")
            s.interval = out.interval
        self.log.event(t, cid, client.role, "disconnect", interval=s.interval, detail=kind,
                          reason_code=protocol.REASON_NORMAL_DISCONNECTION if kind == "clean" else None)
        delay = protocol.expiry_delay(s.interval, self.cfg.uint_max_never_expires)
        if delay == 0:
            self.end_session(s, "session_expired", "session_ended")
            return
        self.memory.move(t, CONNECTED, OFFLINE, s.nbytes)
        s.category = OFFLINE
        if delay is not None:
            s.expiry_token += 1
            token = s.expiry_token
            self.schedule(delay, PRIORITY_EXPIRY, lambda: self._expire(s, token))

    def depart(self, client) -> None:
        """The client has left for good: its session (if any) is stranded until it expires; its
        memory is reported as ``stranded_bytes`` (the pairs' fates were switched to departed ones
        by :meth:`FateLedger.depart` before the last disconnect)."""
        s = self.sessions.get(client.client_id)
        self.log.event(self.env.now, client.client_id, client.role, "departed")
        if s is not None:
            self.memory.move(self.env.now, s.category, STRANDED, s.nbytes)
            s.category = STRANDED

    def _expire(self, s: Session, token: int) -> None:
        if s.alive and not s.connected and s.expiry_token == token:
            self.end_session(s, "session_expired", "session_expired")

    def end_session(self, s: Session, cause: str, event: str) -> None:
        """The session ends ([MQTT-4.1.0-2] or Clean Start): everything it held is lost with ``cause``."""
        t = self.env.now
        self._forget_session(s, t, cause)
        self.log.event(t, s.client_id, s.role, event, interval=s.interval)
        s.client.session_ended(s)

    def _forget_session(self, s: Session, t: float, cause: str, kept: frozenset | set = frozenset()) -> None:
        """Everything ``s`` holds leaves the broker: in-flight and queued messages get ``cause``
        (``message_expired`` if their Message Expiry Interval has passed), except the entries in
        ``kept`` (saved by persistence: they come back with the restored session); the session's
        memory is released and it is forgotten."""
        for e in list(s.inflight):
            self._release(s, e)
            if id(e) not in kept:
                self.fates.settle(e, cause, t)
        for e in s.live_queued():
            self._release(s, e)
            if id(e) not in kept:
                e.live = False
                self.fates.settle(e, "message_expired" if self._expired(e.msg, t) else cause, t)
        self.memory.change(t, s.category, session=-(s.nbytes), queued=-s.queued_count, sessions=-1)
        s.inflight.clear()
        s.queue.clear()
        s.queued_count = s.queued_bytes = s.limit_count = s.limit_bytes = s.nbytes = 0
        s.alive = False
        del self.sessions[s.client_id]

    # ------------------------------------------------------------------ PUBLISH routing
    def receive_publish(self, msg: Message) -> None:
        """A PUBLISH reaches the broker: route a copy to every matching consumer (§3.3.4)."""
        t = self.env.now
        again = msg.routed
        if not again:
            msg.routed = True
            if msg.expiry_interval is not None:
                msg.expires_at = t + msg.expiry_interval
        fates = self.fates
        per_pair = msg.routed_to is not None or not self.members.bulk  # a re-routable message: track its pairs
        for g in self.members.groups_for(msg.topic):
            if not per_pair:
                g.count += 1  # booked for bulk-mode members when their mode changes
            for c in list((g.members if per_pair else g.slow).values()):
                idx = c.index
                copy = again and idx in msg.routed_to
                if not copy:
                    fates.route(idx, msg, t)
                    if msg.routed_to is not None:
                        msg.routed_to.add(idx)
                s = self.sessions.get(c.client_id)
                if s is None or not s.subscribed:
                    if not copy:
                        fates.fate(idx, msg, "no_session", t)  # rule 9: never routed to it
                    continue
                qos = protocol.delivered_qos(msg.qos, s.sub_qos)
                if s.connected:
                    self._deliver_online(s, c, msg, qos, copy)
                elif protocol.queued_while_offline(qos, self.cfg.queue_qos0_messages):
                    self._enqueue(s, Entry(msg, idx, qos, copy))
                elif not copy:
                    fates.fate(idx, msg, "qos0_offline", t)

    def settle_unrouted(self, msg: Message, cause: str | None) -> None:
        """A message the broker never received ends with ``cause`` for every consumer it would
        have reached (a loss on the publisher's side); ``cause`` None, at the horizon: ``pending``
        (the ledger books either as a departed fate for a consumer that has left)."""
        t = self.env.now if cause is not None else self.horizon
        for g in self.members.groups_for(msg.topic):
            for c in g.members.values():
                self.fates.route(c.index, msg, t)
                self.fates.fate(c.index, msg, cause or "pending", t)

    def _deliver_online(self, s: Session, c, msg: Message, qos: int, copy: bool) -> None:
        if c.latency == 0 and (qos == 0 or (not s.inflight and s.queued_count == 0)):
            if copy:
                self.fates.duplicate(c.index, msg)
            else:
                self.fates.fate(c.index, msg, "delivered", self.env.now)
            return
        e = Entry(msg, c.index, qos, copy)
        if qos == 0:
            self._send_qos0(s, e, held=False)
        elif len(s.inflight) < c.receive_maximum and s.queued_count == 0:
            self._hold(s, e)
            s.inflight[e] = None
            self._transmit(s, e)
        else:
            self._enqueue(s, e)

    def _enqueue(self, s: Session, e: Entry) -> None:
        """Queue for later transmission, applying the queue limits (rule 7)."""
        cfg, t = self.cfg, self.env.now
        size = e.msg.payload_bytes
        counted = self._counted(e)

        def full() -> bool:
            if not counted:  # Mosquitto: queued QoS 0 is not limited (conformance D2)
                return False
            n, b = s.limit_count, s.limit_bytes
            if cfg.queue_limits_count_inflight and not s.connected:  # Mosquitto 2.0.11 (conformance D3)
                n += len(s.inflight)
                b += sum(x.msg.payload_bytes for x in s.inflight)
            if cfg.max_queued_messages and n + 1 > cfg.max_queued_messages:
                return True
            if cfg.max_queued_bytes:
                # "fits": the new message must fit; "below": admitted while the queue is under the limit (D1)
                return b >= cfg.max_queued_bytes if cfg.queue_bytes_check == "below" else b + size > cfg.max_queued_bytes
            return False

        if full() and cfg.queue_full_policy == "drop-oldest":
            while full() and s.queued_count:
                old = s.pop_next()
                self._drop(s, old, "message_expired" if self._expired(old.msg, t) else "queue_full", popped=True)
        if full():
            self.fates.settle(e, "queue_full", t)  # drop-new (tail drop), or a message larger than the limit
            return
        self._hold(s, e)
        s.queue.append(e)
        s.queued_count += 1
        s.queued_bytes += size
        if counted:
            s.limit_count += 1
            s.limit_bytes += size
        self.memory.change(t, s.category, queued=1)
        if cfg.message_expiry_check == "eager" and e.msg.expires_at is not None:
            # [MQTT-3.3.2-5]: an expired message not yet sent is deleted
            self.schedule(max(0.0, e.msg.expires_at - t), PRIORITY_EXPIRY, lambda: self._expire_entry(s, e))

    def _counted(self, e: Entry) -> bool:
        """Whether the queue limits count this entry (all do, unless QoS 0 is exempt)."""
        return e.qos > 0 or self.cfg.queue_limits_count_qos0

    def _drop(self, s: Session, e: Entry, fate: str, popped: bool = False) -> None:
        """Take a queued entry out of the session, release its memory, and settle its pair."""
        self._unqueue(s, e, popped)
        self._release(s, e)
        self.fates.settle(e, fate, self.env.now)

    def _unqueue(self, s: Session, e: Entry, popped: bool = False) -> None:
        """Take an entry out of the queue's counts (``popped``: already off the deque).

        An entry removed from the middle stays in the deque as a tombstone (``live`` False)
        until :meth:`Session.pop_next` skips it: removal stays O(1).
        """
        e.live = False
        s.queued_count -= 1
        s.queued_bytes -= e.msg.payload_bytes
        if self._counted(e):
            s.limit_count -= 1
            s.limit_bytes -= e.msg.payload_bytes
        self.memory.change(self.env.now, s.category, queued=-1)

    def _expire_entry(self, s: Session, e: Entry) -> None:
        if s.alive and e.live:
            self._drop(s, e, "message_expired")

    def pump(self, s: Session) -> None:
        """Send queued messages while the client's Receive Maximum allows (§4.9)."""
        c = s.client
        t = self.env.now
        while s.connected and s.queued_count and len(s.inflight) < c.receive_maximum:
            e = s.pop_next()
            if self._expired(e.msg, t):  # lazy check at the moment of sending
                self._drop(s, e, "message_expired", popped=True)
                continue
            self._unqueue(s, e, popped=True)
            if e.qos == 0:
                self._send_qos0(s, e, held=True)
            else:
                s.inflight[e] = None
                self._transmit(s, e)

    def _send_qos0(self, s: Session, e: Entry, held: bool) -> None:
        """QoS 0 is fire-and-forget: the broker keeps nothing once it is written out."""
        if held:
            self._release(s, e)
        lat = s.client.latency
        if lat == 0:
            self.fates.settle(e, "delivered", self.env.now)
            return
        conn = s.connection
        self.transit[id(e)] = (e, s)

        def arrive():
            if self.transit.pop(id(e), None) is None:
                return  # settled when the broker stopped
            ok = s.alive and s.connected and s.connection == conn
            self.fates.settle(e, "delivered" if ok else "qos0_offline", self.env.now)

        self.schedule(lat, PRIORITY_MESSAGE, arrive)

    def _transmit(self, s: Session, e: Entry) -> None:
        """Send (or re-send) an in-flight QoS 1/2 entry on the current connection."""
        lat, conn = s.client.latency, s.connection
        if lat == 0:  # received and acknowledged at once; callers loop (no recursion via pump)
            self._receipt(s, e, conn)
            del s.inflight[e]
            self._release(s, e)
            return
        self.schedule(lat, PRIORITY_MESSAGE, lambda: self._receipt(s, e, conn))
        self.schedule(2 * lat, PRIORITY_MESSAGE, lambda: self._ack(s, e, conn))

    def _receipt(self, s: Session, e: Entry, conn: int) -> None:
        if not (s.alive and s.connected and s.connection == conn and e in s.inflight):
            return
        if e.received:
            if e.qos == 1:  # a QoS 1 re-send of a message the client already has
                self.fates.duplicate(e.consumer, e.msg)
        else:
            e.received = True
            self.fates.settle(e, "delivered", self.env.now)

    def _ack(self, s: Session, e: Entry, conn: int) -> None:
        if not (s.alive and s.connected and s.connection == conn and e in s.inflight):
            return
        del s.inflight[e]
        self._release(s, e)
        self.pump(s)

    # ------------------------------------------------------------------ horizon
    def finish(self) -> None:
        """At the horizon: everything still held is ``pending`` (the ledger books it as
        ``departed_held`` for a client that has left for good)."""
        t = self.horizon
        for saved in self.image.values():  # the broker is down at the horizon: what it will restore is pending
            for e in saved.inflight + saved.queue:
                if not e.done and not e.copy:
                    expired = e not in saved.inflight and self._expired(e.msg, t)
                    self.fates.settle(e, "message_expired" if expired else "pending", t)
        for s in list(self.sessions.values()):
            for e in list(s.inflight) + s.live_queued():
                if not e.done and not e.copy:
                    expired = e.live and self._expired(e.msg, t)  # in-flight messages do not expire
                    self.fates.settle(e, "message_expired" if expired else "pending", t)
        for e, s in self.transit.values():
            self.fates.settle(e, "pending", t)
        self.transit.clear()

    # ------------------------------------------------------------------ restarts and persistence
    def save(self) -> dict[str, SavedSession]:
        """The state a save writes: the sessions :func:`protocol.session_saved` keeps, with
        their subscription, in-flight and queued messages (the entries themselves: what
        becomes of them after the save is decided when the state is restored)."""
        out = {}
        for s in self.sessions.values():
            if protocol.session_saved(s.clean_start, s.interval):
                out[s.client_id] = SavedSession(s.client_id, s.role, s.client, s.interval, s.requested, s.sub_filter,
                                                s.sub_qos, None if s.connected else s.closed_at, tuple(s.inflight),
                                                tuple(s.live_queued()))
        return out

    def autosaves(self) -> None:
        """Save every ``autosave interval`` seconds while the broker runs (from now: a start)."""
        if not (self.cfg.persistence and self.cfg.autosave_interval > 0):
            return
        token = self.save_token

        def autosave():
            if token == self.save_token and self.up:
                self.saved = self.save()
                self.log.event(self.env.now, "", "broker", "autosave", detail=f"{len(self.saved)} sessions")
                self.schedule(self.cfg.autosave_interval, PRIORITY_SAVE, autosave)

        self.schedule(self.cfg.autosave_interval, PRIORITY_SAVE, autosave)

    def stop(self, kind: str) -> None:
        """The broker process stops (``graceful``: SIGTERM, ``crash``: SIGKILL): every network
        connection closes and every session leaves memory. What it will start from
        (:func:`protocol.restart_restores`) is kept aside; whatever the sessions held that is
        not part of it is lost (``broker_restart``)."""
        t = self.env.now
        restores = protocol.restart_restores(self.cfg.persistence, kind)
        if restores == protocol.RESTORE_AT_STOP:
            self.saved = self.save()
        self.image = dict(self.saved or {}) if restores != protocol.RESTORE_NOTHING else {}
        self.up = False
        self.stopped_at = t
        self.save_token += 1
        self.log.event(t, "", "broker", "broker_stop", detail=kind)
        for e, _s in list(self.transit.values()):  # QoS 0 on the wire: the connection is gone (rule 6)
            self.fates.settle(e, "qos0_offline", t)
        self.transit.clear()
        kept = {id(e) for saved in self.image.values() for e in saved.inflight + saved.queue}
        for s in list(self.sessions.values()):
            if s.connected:
                self.log.event(t, s.client_id, s.role, "disconnect", interval=s.interval, detail="broker stop")
            s.connected = False
            self._forget_session(s, t, "broker_restart", kept)
            if s.client_id not in self.image:
                self.log.event(t, s.client_id, s.role, "session_lost", interval=s.interval, detail=kind)
            s.client.session_ended(s)

    def start(self) -> None:
        """The broker process starts again from the state kept at :meth:`stop` (restored
        sessions are offline until their clients reconnect), and autosaves resume."""
        t = self.env.now
        self.up = True
        self.log.event(t, "", "broker", "broker_start", detail=f"{len(self.image)} sessions restored")
        image, self.image = self.image, {}
        for saved in image.values():
            self._restore(saved, t)
        self.autosaves()

    def _restore(self, saved: SavedSession, t: float) -> None:
        client, cfg = saved.client, self.cfg
        s = Session(saved.client_id, saved.role, client, saved.interval)
        s.requested, s.clean_start = saved.requested, False
        s.closed_at = self.stopped_at if saved.closed_at is None else saved.closed_at
        s.connected = False
        s.category = STRANDED if client.departed else OFFLINE
        self.sessions[s.client_id] = s
        nbytes = self._session_bytes(s)
        s.nbytes = nbytes
        self.memory.change(t, s.category, session=nbytes, sessions=1)
        if saved.sub_filter is not None:
            s.sub_filter, s.sub_qos = saved.sub_filter, saved.sub_qos
            sub = cfg.subscription_overhead_bytes + len(saved.sub_filter.encode())
            s.nbytes += sub
            self.memory.change(t, s.category, session=sub)
        for e in saved.inflight:
            e = self._restored_entry(e)
            self._hold(s, e)
            s.inflight[e] = None
        for e in saved.queue:
            e = self._restored_entry(e)
            self._hold(s, e)
            s.queue.append(e)
            size = e.msg.payload_bytes
            s.queued_count += 1
            s.queued_bytes += size
            if self._counted(e):
                s.limit_count += 1
                s.limit_bytes += size
            self.memory.change(t, s.category, queued=1)
        self.log.event(t, s.client_id, s.role, "session_restored", interval=s.interval,
                       detail=f"{len(saved.inflight)} in flight, {len(saved.queue)} queued")
        client.session_restored(s)
        if cfg.message_expiry_check == "eager":
            for e in s.live_queued():
                if e.msg.expires_at is not None:
                    if self._expired(e.msg, t):
                        self._drop(s, e, "message_expired")
                    else:
                        self.schedule(e.msg.expires_at - t, PRIORITY_EXPIRY, lambda e=e: self._expire_entry(s, e))
        deadline = protocol.restored_expiry_deadline(cfg.restored_session_expiry, s.closed_at, s.interval,
                                                     cfg.uint_max_never_expires)
        if deadline is not None:
            if deadline <= t:  # it expired while the broker was down
                self.end_session(s, "session_expired", "session_expired")
            else:
                s.expiry_token += 1
                token = s.expiry_token
                self.schedule(deadline - t, PRIORITY_EXPIRY, lambda: self._expire(s, token))

    def _restored_entry(self, e: Entry) -> Entry:
        """The entry a restored session holds for a saved one (:func:`protocol.restored_entry`)."""
        if e.copy:
            return Entry(e.msg, e.consumer, e.qos, copy=True)
        what = protocol.restored_entry(e.done, e.received)
        if what == protocol.ENTRY_REDELIVERED:  # its acknowledgement is lost: sent again, a duplicate
            return Entry(e.msg, e.consumer, e.qos, copy=True)
        if what == protocol.ENTRY_REOPENED:  # the loss booked since the save is undone
            self.fates.reopen(e)
        e.live, e.received = True, False
        return e

"""Conformance runs: a scripted scenario on a real Mosquitto broker, compared with the model.

A *scripted* scenario (consumer outages given as a ``trace``, publishers on a ``schedule``) is
played twice:

* in the model, ``sim.run(scenario)``;
* on a real Mosquitto (:class:`sim.realbroker.Mosquitto`) by paho-mqtt v5 clients driven in
  wall-clock time from ``t0``: :func:`run_on_mosquitto`.

Both results are reduced to the same :class:`Outcome` (per consumer: CONNACK Session Present at
each connect, the messages received identified by publish time and publisher, how many were
not received, duplicates; plus the number of protocol errors) by :func:`model_outcome` and
:func:`observed_outcome`, and :func:`compare` lists the differences. See docs/conformance.md.

How the real run maps the scenario (one thread, paho's external-loop API over ``select``):

* consumers connect at 0 (CONNECT with the block's Clean Start and, when non-zero, the
  Session Expiry Interval property), wait for CONNACK, and subscribe (waiting for SUBACK)
  whenever Session Present is 0 ([MQTT-3.2.2-5]); then publishers connect;
* ``disconnect: network`` closes the client's TCP socket without a DISCONNECT packet and
  abandons that paho client; the reconnect uses a fresh client object with the same client id
  (so no client-side session state survives, as in the model, where latency 0 means nothing is
  in flight);
* ``disconnect: clean`` sends DISCONNECT (reason 0x00) carrying the Session Expiry Interval
  property when ``disconnect session expiry interval`` is given;
* a consumer ``network latency`` L is emulated by acknowledging each QoS 1/2 PUBLISH 2L after
  it arrives (the model's PUBACK/PUBCOMP reaches the broker 2L after the PUBLISH was sent), so
  QoS 1 duplicates after a resumed session can be compared;
* publishers publish at their schedule times; each payload starts with a sequence number
  (zero-padded) and is padded to ``payload bytes``.
* broker restarts (``broker.restarts`` as a trace): at each stop the driver kills the broker
  (SIGTERM for ``graceful``, SIGKILL for ``crash``) and abandons every client; at each return it
  starts the broker again (same port and persistence directory) and reconnects every client
  whose own network is up, consumers first, as the model does; a publish while its publisher is
  disconnected is recorded and not sent (lost on both sides).

Mosquitto saves its database every ``autosave_interval`` seconds counted in whole seconds
from its start, measured at the interval plus up to about 1 s (and the first period starts when
the broker process starts, up to ~1.5 s before scenario time 0): a scenario keeps every action
out of ``[x - 1.7 s, x + 1.3 s + (k - 1) s)`` around the model's k-th save x of each up-period.

Mosquitto checks session expiry at most once per wall-clock second and compares whole seconds
(``src/session_expiry.c``), and checks message expiry in whole seconds when a message is sent
(``src/database.c``): an expiry at scenario time x really happens in (x, x + 1.1 s]. Scenarios
must therefore keep reconnects out of ``[x - 0.2 s, x + 1.2 s)`` around every session- and
message-expiry deadline, and keep connection changes and publishes of different clients at
least 0.5 s apart: :func:`timeline_problems` checks this, :func:`measure_session_expiry_lateness`
measures the granularity.
"""
from __future__ import annotations

import heapq
import itertools
import math
import re
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import protocol
from ..config import ConsumerBlock, PublisherBlock, Scenario, client_id_prefixes
from .mosquitto import mosquitto_version

try:  # paho-mqtt is an optional dependency (extra "broker")
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode
except ImportError:  # pragma: no cover - exercised only without paho
    mqtt = None

#: Minimum wall-clock gap between actions of different clients (s).
MIN_GAP = 0.5
#: Forbidden window for reconnects around an expiry deadline x: [x - BEFORE, x + AFTER).
EXPIRY_MARGIN_BEFORE = 0.2
EXPIRY_MARGIN_AFTER = 1.2
#: Wall-clock phase (fraction of a second) at which scenario second 0 starts.
DEFAULT_PHASE = 0.3
#: Digits of the sequence number at the start of each payload.
SEQ_DIGITS = 8
#: Forbidden window around the model's k-th autosave x of an up-period: [x - BEFORE, x + AFTER + (k-1) s).
AUTOSAVE_MARGIN_BEFORE = 1.7
AUTOSAVE_MARGIN_AFTER = 1.3


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ConnectRecord:
    """One CONNECT/CONNACK exchange."""

    client_id: str
    role: str
    at: float  #: scenario time (s)
    clean_start: bool
    session_present: bool
    reason_code: int


@dataclass(frozen=True)
class Receipt:
    """One PUBLISH received by a consumer."""

    consumer: str
    seq: int
    published_at: float  #: scenario time the message was scheduled
    publisher: str
    topic: str
    qos: int
    dup: bool
    at: float  #: scenario time of arrival


@dataclass(frozen=True)
class PublishRecord:
    seq: int
    publisher: str
    topic: str
    qos: int
    published_at: float  #: scheduled scenario time
    at: float  #: actual scenario time of the publish() call


@dataclass
class ObservedRun:
    """What the real broker did in :func:`run_on_mosquitto`."""

    scenario: str
    connects: list[ConnectRecord] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    published: list[PublishRecord] = field(default_factory=list)
    disconnects: list[tuple[str, float, str]] = field(default_factory=list)  #: (client id, at, kind)
    server_disconnects: list[tuple[str, float, int]] = field(default_factory=list)  #: (client id, at, reason)
    lateness: list[float] = field(default_factory=list)  #: wall seconds each action ran after its due time
    broker_log: str = ""
    time_scale: float = 1.0
    wall_seconds: float = 0.0

    @property
    def max_lateness(self) -> float:
        return max(self.lateness, default=0.0)

    def protocol_errors(self) -> int:
        """DISCONNECTs the broker rejected as a protocol error (from its log)."""
        return len(re.findall(r"disconnected due to protocol error", self.broker_log))


@dataclass(frozen=True)
class ConsumerOutcome:
    session_present: tuple[bool, ...]  #: CONNACK Session Present at each connect, in order
    received: tuple[tuple[float, str], ...]  #: (published_at, publisher) of each message received, sorted
    lost: int  #: routed to this consumer and not received
    duplicates: int


@dataclass(frozen=True)
class Outcome:
    """The comparable shape of a run (model or real)."""

    consumers: dict[str, ConsumerOutcome]
    protocol_errors: int

    def as_dict(self) -> dict[str, Any]:
        return {"protocol_errors": self.protocol_errors,
                "consumers": {cid: {"session_present": list(c.session_present),
                                    "received": [f"{t:g}@{p}" for t, p in c.received],
                                    "lost": c.lost, "duplicates": c.duplicates}
                              for cid, c in sorted(self.consumers.items())}}


# --------------------------------------------------------------------------- the scenario's timeline


@dataclass(frozen=True)
class ClientSpec:
    client_id: str
    role: str
    block: ConsumerBlock | PublisherBlock
    index: int  #: index in its block


def client_specs(scenario: Scenario) -> tuple[list[ClientSpec], list[ClientSpec]]:
    """The consumer and publisher clients of a scenario, with the model's client ids."""
    cons = [ClientSpec(f"{p}-{i}", "consumer", b, i) for b, p in zip(scenario.consumers, client_id_prefixes(scenario.consumers))
            for i in range(b.clients)]
    pubs = [ClientSpec(f"{p}-{i}", "publisher", b, i) for b, p in zip(scenario.publishers, client_id_prefixes(scenario.publishers))
            for i in range(b.clients)]
    return cons, pubs


@dataclass(frozen=True, order=True)
class Action:
    at: float  #: scenario time
    priority: int  #: model's same-instant order: 1 connection changes, 2 message events
    order: int
    kind: str = field(compare=False)  #: connect | disconnect | publish | broker_stop | broker_start
    client: ClientSpec | None = field(compare=False)  #: None for the broker's own actions
    args: tuple = field(compare=False, default=())


def _unsupported(scenario: Scenario) -> list[str]:
    out = []
    b = scenario.broker
    if b.queue_full_policy != "drop-new":
        out.append("broker.queue full policy: Mosquitto only drops the new message (drop-new)")
    if not b.uint_max_never_expires:
        out.append("broker.uint max never expires: Mosquitto never expires UINT_MAX sessions")
    if b.max_session_expiry_interval != protocol.UINT_MAX and b.max_session_expiry_interval % 3600:
        out.append("broker.max session expiry interval: persistent_client_expiration takes whole hours at least")
    r = b.restarts
    if r is not None and r.trace is None:
        out.append("broker.restarts: only a trace (scripted restarts) can be driven")
    for i, c in enumerate(scenario.consumers):
        o = c.outages
        if not c.auto_reconnect:
            out.append(f"mqttConsumer[{i}].auto reconnect: false (a client that never comes back) is not driven")
        if o.up is not None:
            out.append(f"mqttConsumer[{i}].outages: only a trace (scripted outages) can be driven")
        if o.reconnect is not None:
            out.append(f"mqttConsumer[{i}].outages.reconnect: back-off is not supported; give reconnect times")
        if o.traces and any(on is None for tr in o.traces for _, on in tr):
            out.append(f"mqttConsumer[{i}].outages.trace: departures (null reconnect) are not supported")
        if o.first_connect is not None or (o.trace_options and any(x != (None, None) for t in o.trace_options for x in t)):
            out.append(f"mqttConsumer[{i}].outages.trace: late first connects and per-outage kind/clean start "
                       "are not driven; use the block's settings")
    for i, p in enumerate(scenario.publishers):
        if p.schedule is None:
            out.append(f"mqttPublisher[{i}]: needs a schedule (scripted publishing)")
        if not p.outages.never:
            out.append(f"mqttPublisher[{i}].outages: publisher outages are not supported")
        if p.network_latency:
            out.append(f"mqttPublisher[{i}].network latency: must be 0")
        if p.payload_bytes < 1:
            out.append(f"mqttPublisher[{i}].payload bytes: needs >= 1 byte for the sequence number")
        if r is not None and p.offline_buffer:
            out.append(f"mqttPublisher[{i}].offline buffer: must be 0 with broker restarts (the driver does not buffer)")
    return out


def _connections(spec: ClientSpec, pairs, restarts, horizon: float):
    """(at, kind, args) of one client's connects and disconnects: its own outages (``pairs``)
    and the broker's restarts ((stop, back) pairs). It connects when both its network and the
    broker are up: at its own reconnect, or at the broker's return (after the broker starts);
    a stop closes its connection with no action of its own."""
    b, o = spec.block, spec.block.outages
    again = b.clean_start if o.reconnect_clean_start is None else o.reconnect_clean_start
    evs = []
    for off, on in pairs:
        evs.append((off, 1, 0, "off"))
        if on is not None:
            evs.append((on, 1, 0, "on"))
    for stop, back in restarts:
        evs += [(stop, 1, 1, "stop"), (back, 0, 1, "back")]
    out = [(0.0, "connect", (b.clean_start,))]
    net = up = connected = True
    for t, _, _, what in sorted(evs):
        if t >= horizon:
            break
        if what == "off":
            net = False
            if connected:
                out.append((t, "disconnect", (o.disconnect, o.disconnect_session_expiry_interval)))
                connected = False
        elif what == "on":
            net = True
            if up:
                out.append((t, "connect", (again,)))
                connected = True
        elif what == "stop":
            up, connected = False, False
        else:
            up = True
            if net:
                out.append((t, "connect", (again,)))
                connected = True
    return out


def timeline(scenario: Scenario) -> list[Action]:
    """Every connect, disconnect and publish of a scripted scenario, in execution order."""
    problems = _unsupported(scenario)
    if problems:
        raise ValueError("scenario cannot be run on Mosquitto: " + "; ".join(problems))
    cons, pubs = client_specs(scenario)
    order = itertools.count()
    acts: list[Action] = []
    horizon = scenario.horizon
    restarts = scenario.broker.restarts.trace if scenario.broker.restarts is not None else ()
    plans = [(c, _connections(c, c.block.outages.traces[c.index] if c.block.outages.traces else (), restarts, horizon))
             for c in cons + pubs]
    for c, plan in plans:  # every client connects at 0, consumers first
        at, kind, args = plan[0]
        acts.append(Action(at, 1, next(order), kind, c, args))
    for stop, back in restarts:
        if stop < horizon:
            acts.append(Action(stop, 1, next(order), "broker_stop", None, (scenario.broker.restarts.kind,)))
        if back < horizon:
            acts.append(Action(back, 0, next(order), "broker_start", None))
    for c, plan in plans:
        for at, kind, args in plan[1:]:
            acts.append(Action(at, 1, next(order), kind, c, args))
    for p in pubs:
        for t in p.block.schedule:
            if t < horizon:
                acts.append(Action(t, 2, next(order), "publish", p))
    return sorted(acts)


def timeline_problems(scenario: Scenario, time_scale: float = 1.0) -> list[str]:
    """Timing hazards that would make the real broker's outcome depend on scheduling jitter.

    * a publish and a connection change (or two actions of one client, or two publishes when a
      queue limit can bind) closer than :data:`MIN_GAP` wall seconds, unless the first is a
      connect, which the driver completes synchronously (CONNACK and SUBACK included);
    * a consumer reconnect within ``[x - 0.2 s, x + 1.2 s)`` of a session-expiry deadline x
      (Mosquitto expires sessions up to ~1.1 s late) or of a queued message's expiry deadline.
    """
    acts = timeline(scenario)
    out: list[str] = []
    bk = scenario.broker
    n_pub = sum(1 for a in acts if a.kind == "publish")
    limits_bind = bool(bk.max_queued_bytes) or 0 < bk.max_queued_messages < n_pub
    broker_acts = [a for a in acts if a.client is None]
    for i, a in enumerate(acts):
        if a.kind == "connect" or a.client is None:  # connects complete synchronously (CONNACK, SUBACK)
            continue
        for b in acts[i + 1:]:
            gap = (b.at - a.at) * time_scale
            if gap >= MIN_GAP - 1e-9:
                break
            if b.client is None:
                continue  # checked below
            same = a.client.client_id == b.client.client_id
            pub_vs_conn = (a.kind == "publish") != (b.kind == "publish")
            pub_vs_pub = a.kind == b.kind == "publish" and limits_bind  # queue-full: which one is dropped
            if same or pub_vs_conn or pub_vs_pub:
                out.append(f"{a.kind} of {a.client.client_id} at {a.at:g} s and {b.kind} of {b.client.client_id} "
                           f"at {b.at:g} s are {gap:.3g} wall s apart (< {MIN_GAP} s)")
    for br in broker_acts:  # a stop or start must not race a client's action (the reconnects at a start follow it)
        for a in acts:
            if a is br or abs(a.at - br.at) * time_scale >= MIN_GAP - 1e-9:
                continue
            if br.kind == "broker_start" and a.kind == "connect" and a.at == br.at:
                continue
            out.append(f"{a.kind}{' of ' + a.client.client_id if a.client else ''} at {a.at:g} s is within "
                       f"{MIN_GAP} wall s of the {br.kind} at {br.at:g} s")
    for x, k in autosave_times(scenario):
        lo, hi = x - AUTOSAVE_MARGIN_BEFORE / time_scale, x + (AUTOSAVE_MARGIN_AFTER + (k - 1)) / time_scale
        for a in acts:
            if lo <= a.at < hi and not (a.kind == "broker_start" or (a.kind == "connect" and a.at == 0)):
                out.append(f"{a.kind}{' of ' + a.client.client_id if a.client else ''} at {a.at:g} s is within "
                           f"[{lo:g}, {hi:g}) of the autosave {x:g} s (Mosquitto saves every interval + ~1 s, "
                           "counted in whole seconds from its start)")
    before, after = EXPIRY_MARGIN_BEFORE / time_scale, EXPIRY_MARGIN_AFTER / time_scale
    pub_times = [(t, p.block.message_expiry_interval) for p in client_specs(scenario)[1] for t in p.block.schedule
                 if p.block.message_expiry_interval]
    for c in client_specs(scenario)[0]:
        o = c.block.outages
        for off, on in (o.traces[c.index] if o.traces else ()):
            if on is None or on >= scenario.horizon:
                continue
            interval = c.block.session_expiry_interval
            if o.disconnect == "clean" and o.disconnect_session_expiry_interval is not None and interval:
                interval = o.disconnect_session_expiry_interval
            deadlines = []
            if 0 < interval < protocol.UINT_MAX:
                deadlines.append(("session expiry", off + interval))
            deadlines += [("message expiry", t + m) for t, m in pub_times if t < on]
            for what, x in deadlines:
                if x - before <= on < x + after:
                    out.append(f"{c.client_id} reconnects at {on:g} s, within [{x - before:g}, {x + after:g}) of the "
                               f"{what} deadline {x:g} s (Mosquitto expires in whole seconds, up to ~1.1 s late)")
    return out


def autosave_times(scenario: Scenario) -> list[tuple[float, int]]:
    """The model's autosaves (time, k: the k-th of its up-period) while the broker runs with
    persistence and a non-zero ``autosave interval``: every interval from 0 and from each return."""
    b = scenario.broker
    if not (b.persistence and b.autosave_interval > 0):
        return []
    trace = b.restarts.trace if b.restarts is not None else ()
    starts = [0.0] + [back for _, back in trace]
    ends = [stop for stop, _ in trace] + [scenario.horizon]
    out = []
    for start, end in zip(starts, ends):
        k = 1
        while start + k * b.autosave_interval < min(end, scenario.horizon):
            out.append((start + k * b.autosave_interval, k))
            k += 1
    return out


def profile_for(executable: str | None) -> str:
    """The broker profile that models this mosquitto: ``mosquitto-2.0.11`` before 2.0.13 (D3)."""
    v = mosquitto_version(executable)
    return "mosquitto-2.0.11" if v is not None and v < (2, 0, 13) else "mosquitto"


def broker_settings(scenario: Scenario, time_scale: float = 1.0) -> dict[str, Any]:
    """mosquitto.conf lines that give the real broker the scenario's limits (its expiry cap in
    broker seconds at ``time_scale``, written in whole hours as Mosquitto takes it)."""
    b = scenario.broker
    s: dict[str, Any] = {"max_queued_messages": b.max_queued_messages, "max_queued_bytes": b.max_queued_bytes,
                         "queue_qos0_messages": "true" if b.queue_qos0_messages else "false"}
    if b.max_session_expiry_interval != protocol.UINT_MAX:
        s["persistent_client_expiration"] = f"{int(b.max_session_expiry_interval * time_scale) // 3600}h"
    if b.persistence:
        s["persistence"] = "true"
        s["autosave_interval"] = int(_scaled(b.autosave_interval, time_scale, "autosave interval") or 0)
    return s


# --------------------------------------------------------------------------- the real run


def _scaled(value: int | None, scale: float, what: str) -> int | None:
    """An interval (s) in broker seconds: UINT_MAX and 0 are kept; others must stay whole."""
    if value is None or value in (0, protocol.UINT_MAX):
        return value
    x = value * scale
    if abs(x - round(x)) > 1e-9 or round(x) < 1:
        raise ValueError(f"{what} {value} s x time scale {scale:g} = {x:g} is not a whole number of broker seconds")
    return int(round(x))


def _payload(seq: int, size: int) -> bytes:
    digits = str(seq).zfill(min(SEQ_DIGITS, size)).encode()
    if len(digits) > size:
        raise ValueError(f"payload of {size} bytes cannot hold sequence number {seq}")
    return digits.ljust(size, b".")


def _seq_of(payload: bytes) -> int:
    return int(re.match(rb"\d+", payload).group(0))


class _Driver:
    """Plays a scenario's timeline on a broker with paho clients, on one thread."""

    def __init__(self, scenario: Scenario, host: str, port: int, time_scale: float, phase: float,
                 connect_timeout: float, broker=None):
        if mqtt is None:
            raise ImportError("paho-mqtt is needed for conformance runs (pip install 'mqtt-session-sim[broker]')")
        self.scn, self.host, self.port = scenario, host, port
        self.scale, self.phase, self.connect_timeout = time_scale, phase, connect_timeout
        self.obs = ObservedRun(scenario.name, time_scale=time_scale)
        self.active: dict[str, Any] = {}  # client id -> current paho client
        self.heap: list[tuple[float, int, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.pub_of: dict[int, PublishRecord] = {}
        self.t0 = 0.0
        self.broker = broker  # stopped and started again for broker restarts
        self.down = False

    # --- time
    def now(self) -> float:
        return (time.monotonic() - self.t0) / self.scale

    def wall(self, at: float) -> float:
        return self.t0 + at * self.scale

    # --- network
    def pump(self, timeout: float) -> None:
        clients = [c for c in self.active.values() if c.socket() is not None]
        socks = [c.socket() for c in clients]
        wants = [c.socket() for c in clients if c.want_write()]
        if socks:
            select.select(socks, wants, [], max(0.0, timeout))
        else:
            time.sleep(max(0.0, timeout))
        for c in clients:
            if c.socket() is not None:
                c.loop(timeout=0.0)

    def pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.scn.name}: {what} not done within {timeout} s")
            self.pump(0.005)

    # --- actions
    def connect(self, spec: ClientSpec, clean_start: bool, at: float) -> None:
        b = spec.block
        latency = b.network_latency if spec.role == "consumer" else 0.0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=spec.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=latency > 0)
        state: dict[str, Any] = {}

        def on_connect(client, userdata, flags, reason_code, properties):
            state["connack"] = (bool(flags.session_present), int(reason_code.value))

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            state["suback"] = [int(r.value) for r in reason_codes]

        def on_disconnect(client, userdata, flags, reason_code, properties):
            rc = int(reason_code.value) if reason_code is not None else -1
            if state.get("closing") is None and rc != 0:
                self.obs.server_disconnects.append((spec.client_id, self.now(), rc))

        def on_message(client, userdata, msg):
            seq = _seq_of(msg.payload)
            pub = self.pub_of.get(seq)
            self.obs.receipts.append(Receipt(spec.client_id, seq, pub.published_at if pub else math.nan,
                                             pub.publisher if pub else "?", msg.topic, msg.qos, bool(msg.dup),
                                             self.now()))
            if latency > 0 and msg.qos > 0:
                mid, qos = msg.mid, msg.qos
                self.schedule_call(self.now() + 2 * latency, lambda: client.ack(mid, qos)
                                   if self.active.get(spec.client_id) is client else None)

        c.on_connect, c.on_subscribe, c.on_disconnect = on_connect, on_subscribe, on_disconnect
        if spec.role == "consumer":
            c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        sei = _scaled(b.session_expiry_interval, self.scale, "session expiry interval")
        if sei:
            props.SessionExpiryInterval = sei
        if spec.role == "consumer" and b.receive_maximum != protocol.RECEIVE_MAXIMUM_MAX:
            props.ReceiveMaximum = b.receive_maximum
        c.connect(self.host, self.port, keepalive=60, clean_start=bool(clean_start),
                  properties=props if sei or getattr(props, "ReceiveMaximum", None) else None)
        self.active[spec.client_id] = c
        self.pump_until(lambda: "connack" in state, self.connect_timeout, f"CONNACK for {spec.client_id}")
        present, rc = state["connack"]
        self.obs.connects.append(ConnectRecord(spec.client_id, spec.role, at, bool(clean_start), present, rc))
        if spec.role == "consumer" and not present:
            c.subscribe(b.topic_filter, qos=b.qos)
            self.pump_until(lambda: "suback" in state, self.connect_timeout, f"SUBACK for {spec.client_id}")
        c._conformance_state = state  # noqa: SLF001 - for disconnect()

    def disconnect(self, spec: ClientSpec, kind: str, interval: int | None, at: float) -> None:
        c = self.active.get(spec.client_id)
        if c is None:
            return
        self.obs.disconnects.append((spec.client_id, at, kind))
        if kind == "network":
            # the connection is lost: close the socket, no DISCONNECT packet; abandon this client object
            sock = c.socket()
            del self.active[spec.client_id]
            if sock is not None:
                sock.close()
            return
        c._conformance_state["closing"] = True  # noqa: SLF001
        props = None
        if interval is not None:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = _scaled(interval, self.scale, "disconnect session expiry interval")
        c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0), properties=props)
        self.pump_until(lambda: c.socket() is None, self.connect_timeout, f"DISCONNECT of {spec.client_id}")
        del self.active[spec.client_id]

    def publish(self, spec: ClientSpec, at: float) -> None:
        b = spec.block
        seq = next(self.seq)
        topic = b.topic_of(spec.index)
        rec = PublishRecord(seq, spec.client_id, topic, b.qos, at, self.now())
        self.pub_of[seq] = rec
        self.obs.published.append(rec)
        c = self.active.get(spec.client_id)
        if c is None:
            if self.down:
                return  # the broker is down: produced, never sent (the model's publisher_offline)
            raise RuntimeError(f"publisher {spec.client_id} is not connected")
        props = None
        mei = _scaled(b.message_expiry_interval, self.scale, "message expiry interval")
        if mei is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = mei
        c.publish(topic, _payload(seq, b.payload_bytes), qos=b.qos, properties=props)

    def broker_stop(self, kind: str, at: float) -> None:
        """Kill the broker (SIGTERM graceful, SIGKILL crash); every connection is gone."""
        if self.broker is None or not hasattr(self.broker, "kill"):
            raise RuntimeError(f"{self.scn.name}: broker restarts need a broker with kill() and relaunch()")
        self.broker.kill(graceful=kind == "graceful")
        self.down = True
        for cid, c in list(self.active.items()):
            self.obs.disconnects.append((cid, at, "broker stop"))
            sock = c.socket()
            if sock is not None:
                sock.close()
        self.active.clear()

    def broker_start(self) -> None:
        self.broker.relaunch()
        self.down = False

    def schedule_call(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (at, 3, next(self.seq_calls), fn))

    # --- main loop
    def run(self, settle: float) -> ObservedRun:
        self.seq_calls = itertools.count()
        for a in timeline(self.scn):
            heapq.heappush(self.heap, (a.at, a.priority, next(self.seq_calls), a))
        # start at a fixed phase of the wall-clock second (Mosquitto's expiry clock is time(NULL))
        now_wall = time.time()
        start_wall = math.floor(now_wall) + 1 + self.phase
        if start_wall - now_wall < 0.2:
            start_wall += 1
        self.t0 = time.monotonic() + (start_wall - now_wall)
        started = time.monotonic()
        end = self.scn.horizon
        try:
            while self.heap:
                at, _, _, item = self.heap[0]
                if at >= end and not isinstance(item, Action):
                    heapq.heappop(self.heap)
                    continue
                wait = self.wall(at) - time.monotonic()
                if wait > 0:
                    self.pump(min(wait, 0.02))
                    continue
                heapq.heappop(self.heap)
                if isinstance(item, Action):
                    self.obs.lateness.append(-wait)
                    if item.kind == "connect":
                        self.connect(item.client, item.args[0], item.at)
                    elif item.kind == "broker_stop":
                        self.broker_stop(item.args[0], item.at)
                    elif item.kind == "broker_start":
                        self.broker_start()
                    elif item.kind == "disconnect":
                        self.disconnect(item.client, item.args[0], item.args[1], item.at)
                    else:
                        self.publish(item.client, item.at)
                else:
                    item()
            stop = max(self.wall(end), time.monotonic()) + settle
            while time.monotonic() < stop:
                self.pump(min(0.02, stop - time.monotonic()))
        finally:
            for c in list(self.active.values()):
                sock = c.socket()
                if sock is not None:
                    sock.close()
            self.active.clear()
        self.obs.wall_seconds = time.monotonic() - started
        return self.obs


def run_on_mosquitto(scenario: Scenario, broker, *, time_scale: float = 1.0, phase: float = DEFAULT_PHASE,
                     settle: float = 0.3, check_timing: bool = True, connect_timeout: float = 3.0) -> ObservedRun:
    """Play a scripted scenario on a running broker (``broker.host``, ``broker.port``).

    ``time_scale``: wall seconds per scenario second (intervals sent to the broker are scaled
    too and must stay whole seconds). ``phase``: fraction of the wall-clock second at which
    scenario time 0 falls. ``settle``: wall seconds to keep reading after the horizon.
    Raises ValueError for scenarios that cannot be driven or (``check_timing``) that have
    timing hazards (:func:`timeline_problems`).
    """
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    if check_timing:
        problems = timeline_problems(scenario, time_scale)
        if problems:
            raise ValueError(f"{scenario.name}: timing hazards: " + "; ".join(problems))
    obs = _Driver(scenario, broker.host, broker.port, time_scale, phase, connect_timeout, broker).run(settle)
    if hasattr(broker, "log"):
        time.sleep(0.05)
        obs.broker_log = broker.log()
    return obs


# --------------------------------------------------------------------------- comparable outcomes


def _consumer_ids(scenario: Scenario) -> list[str]:
    return [c.client_id for c in client_specs(scenario)[0]]


def model_outcome(res) -> Outcome:
    """The :class:`Outcome` of a model run (``sim.run`` result with messages and events recorded)."""
    if res.messages is None:
        raise ValueError("the model run has no res.messages (use record_messages=True)")
    ev, msgs = res.events, res.messages
    out: dict[str, ConsumerOutcome] = {}
    for cid in _consumer_ids(res.scenario):
        conn = ev[(ev.client_id == cid) & (ev.event == "connect")].sort_values("time", kind="stable")
        m = msgs[msgs.consumer == cid]
        got = m[m.fate == "delivered"]
        received = tuple(sorted((round(float(t), 6), str(p)) for t, p in zip(got.published_at, got.publisher)))
        out[cid] = ConsumerOutcome(tuple(bool(x) for x in conn.session_present), received,
                                   int(len(m) - len(got)), int(m.duplicates.sum()))
    perr = int((ev.event == "protocol_error").sum()) if len(ev) else 0
    return Outcome(out, perr)


def observed_outcome(obs: ObservedRun, scenario: Scenario) -> Outcome:
    """The :class:`Outcome` of a real run: matching publishes not received count as lost."""
    out: dict[str, ConsumerOutcome] = {}
    for spec in client_specs(scenario)[0]:
        cid = spec.client_id
        present = tuple(c.session_present for c in obs.connects if c.client_id == cid)
        mine = [r for r in obs.receipts if r.consumer == cid]
        seqs = {r.seq for r in mine}
        matching = [p for p in obs.published if protocol.topic_matches(spec.block.topic_filter, p.topic)]
        received = tuple(sorted((round(p.published_at, 6), p.publisher) for p in matching if p.seq in seqs))
        out[cid] = ConsumerOutcome(present, received, len(matching) - len(received), len(mine) - len(seqs))
    return Outcome(out, obs.protocol_errors())


def compare(model: Outcome, observed: Outcome) -> list[str]:
    """Human-readable differences (empty when the outcomes agree)."""
    diffs = []
    if model.protocol_errors != observed.protocol_errors:
        diffs.append(f"protocol errors: model {model.protocol_errors}, mosquitto {observed.protocol_errors}")
    for cid in sorted(set(model.consumers) | set(observed.consumers)):
        m, o = model.consumers.get(cid), observed.consumers.get(cid)
        if m is None or o is None:
            diffs.append(f"{cid}: only in {'mosquitto' if m is None else 'model'}")
            continue
        for name in ("session_present", "lost", "duplicates"):
            if getattr(m, name) != getattr(o, name):
                diffs.append(f"{cid} {name}: model {getattr(m, name)}, mosquitto {getattr(o, name)}")
        if m.received != o.received:
            only_m = sorted(set(m.received) - set(o.received))
            only_o = sorted(set(o.received) - set(m.received))
            diffs.append(f"{cid} received: only in model {only_m}, only on mosquitto {only_o}")
    return diffs


@dataclass
class ConformanceResult:
    scenario: Scenario
    model: Outcome
    observed: Outcome
    run: ObservedRun
    differences: list[str]
    attempts: list[tuple[float, float]] = field(default_factory=list)  #: (time scale, lateness s) of each real run

    @property
    def lateness(self) -> float:
        """Lateness of the run that counts, in scenario seconds."""
        scale = self.attempts[-1][0] if self.attempts else 1.0
        return self.run.max_lateness / scale

    @property
    def agree(self) -> bool:
        return not self.differences


#: Wall seconds (per scenario second) an action may run late before a real run is not trusted.
LATENESS_LIMIT = 0.25


def run_conformance(scenario: Scenario, start_broker: Callable[[dict], Any], *, attempts: int = 3,
                    lateness_limit: float = LATENESS_LIMIT, **kwargs) -> ConformanceResult:
    """Run ``scenario`` in the model and on a broker started by ``start_broker(settings)``.

    ``start_broker`` returns a started broker (e.g. the ``mosquitto_broker`` fixture or
    ``lambda s: Mosquitto(s).start()``); the caller stops it.

    A busy machine can make the driver run its actions late, and then the real run says
    nothing about the broker. Such a run (an action later than ``lateness_limit`` scenario
    seconds) is repeated on a fresh broker, so with fresh state and client ids, up to
    ``attempts`` runs in all; the last repeat runs at twice the time scale (every interval
    sent to the broker doubled), where the same wall-clock delay is half as late. The result
    is that of the last run; ``ConformanceResult.attempts`` lists each run's (time scale,
    lateness). A disagreement is never retried: only lateness is.
    """
    from ..run import run as model_run

    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    res = model_run(scenario, seed=0, record_messages=True, record_events=True, record_memory=False)
    model = model_outcome(res)
    base = kwargs.pop("time_scale", 1.0)
    tried: list[tuple[float, float]] = []
    for i in range(attempts):
        scale = base * 2 if i == attempts - 1 and i > 0 else base
        broker = start_broker(broker_settings(scenario, scale))
        obs = run_on_mosquitto(scenario, broker, time_scale=scale, **kwargs)
        tried.append((scale, obs.max_lateness))
        if obs.max_lateness / scale < lateness_limit:
            break
    observed = observed_outcome(obs, scenario)
    result = ConformanceResult(scenario, model, observed, obs, compare(model, observed))
    result.attempts = tried
    return result


# --------------------------------------------------------------------------- expiry granularity


def measure_session_expiry_lateness(broker, interval: int = 1,
                                    phases: tuple[float, ...] = tuple(i / 10 for i in range(10)),
                                    timeout: float = 5.0) -> list[tuple[float, float]]:
    """How late after D + interval Mosquitto expires a session dropped at wall time D.

    For each phase φ a client connects with Session Expiry Interval ``interval`` and a Will
    whose Will Delay Interval (3600 s) exceeds it, so the broker publishes the Will exactly when
    it expires the session ([MQTT-3.1.2-8]); the client's socket is closed (no DISCONNECT) at
    fractional second φ of the wall clock; a watcher subscribed to the Will topics records the
    arrival. Returns ``[(φ, lateness_s)]`` where lateness = arrival - (drop + interval).
    """
    if mqtt is None:
        raise ImportError("paho-mqtt is needed")
    arrivals: dict[str, float] = {}
    lock = threading.Lock()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="expiry-watcher", protocol=mqtt.MQTTv5)

    def on_message(client, userdata, msg):
        with lock:
            arrivals.setdefault(msg.topic, time.time())

    ready = threading.Event()
    watcher.on_message = on_message
    watcher.on_subscribe = lambda *a: ready.set()
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    try:
        watcher.subscribe("expiry-probe/#", qos=1)
        if not ready.wait(timeout):
            raise TimeoutError("watcher SUBACK")
        clients = []
        for i, _ in enumerate(phases):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{i}", protocol=mqtt.MQTTv5)
            wprops = Properties(PacketTypes.WILLMESSAGE)
            wprops.WillDelayInterval = 3600
            c.will_set(f"expiry-probe/{i}", b"expired", qos=1, properties=wprops)
            cprops = Properties(PacketTypes.CONNECT)
            cprops.SessionExpiryInterval = interval
            got = threading.Event()
            c.on_connect = lambda *a, _g=got: _g.set()
            c.connect(broker.host, broker.port, clean_start=True, properties=cprops)
            end = time.monotonic() + timeout
            while not got.is_set():  # no loop thread: nothing touches the socket after CONNACK
                if time.monotonic() > end:
                    raise TimeoutError("probe CONNACK")
                c.loop(timeout=0.01)
            clients.append(c)
        base = math.floor(time.time()) + 1
        drops: dict[str, float] = {}
        for i, (phi, c) in enumerate(sorted(zip(phases, clients), key=lambda x: x[0])):
            target = base + phi
            while time.time() < target:
                time.sleep(min(0.002, max(0.0, target - time.time())))
            sock = c.socket()
            drops[f"expiry-probe/{clients.index(c)}"] = time.time()
            sock.close()  # the connection is lost: no DISCONNECT packet
        deadline = time.time() + interval + 3
        while time.time() < deadline and len(arrivals) < len(phases):
            time.sleep(0.01)
        out = []
        phase_of = {f"expiry-probe/{i}": phi for i, phi in enumerate(phases)}
        for topic, dropped in sorted(drops.items(), key=lambda kv: phase_of[kv[0]]):
            arrived = arrivals.get(topic, math.inf)
            out.append((phase_of[topic], arrived - (dropped + interval)))
        return out
    finally:
        watcher.loop_stop()
        watcher.disconnect()


# --------------------------------------------------------------------------- autosave period


def measure_autosave_times(broker, launched: float, duration: float) -> list[float]:
    """When a persistent Mosquitto writes its database, in seconds after ``launched`` (the
    ``time.time()`` just before it was started): the persistence file (written to
    ``mosquitto.db.new`` and renamed) is polled every 10 ms for ``duration`` seconds."""
    import os

    db = os.path.join(broker._dir.name, "mosquitto.db")  # noqa: SLF001 - the broker's own temporary directory
    seen: list[float] = []
    last = None
    end = time.time() + duration
    while time.time() < end:
        try:
            st = os.stat(db)
            key = (st.st_ino, st.st_mtime_ns)
            if key != last:
                last = key
                seen.append(time.time() - launched)
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return seen

"""Consumer and publisher clients as SimPy processes: connect, disconnect, reconnect, publish.

A client *slot* is one place in a block's fleet. Its client (a client identifier) connects at
the start, follows the slot's outages, and may leave for good; with ``replace departed`` a
new client identifier takes the slot the moment one leaves. Every slot draws from its own
random streams, so the outage and publishing history does not depend on the session policy.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import simpy

from .broker import Broker
from .config import ConsumerBlock, PublisherBlock
from .entities import Message
from .network import NO_WINDOWS, NetworkPlan, SlotWindows, offline_period
from .outage_plan import DrawBuffer, OutagePlan
from .outages import Distribution
from .timing import PRIORITY_CONNECTION, PRIORITY_MESSAGE, Alarm


class Client:
    """What consumers and publishers share: the connection life cycle of one client identifier."""

    role = "client"

    def __init__(self, env: simpy.Environment, broker: Broker, block, block_index: int, client_id: str,
                 slot: int, streams: tuple[np.random.Generator, np.random.Generator], fleet):
        self.env, self.broker, self.block, self.block_index = env, broker, block, block_index
        self.client_id, self.slot, self.fleet = client_id, slot, fleet
        self.outage_rng, self.backoff_rng = streams
        self.latency = block.network_latency
        self.connected = False
        self.departed = False
        self.connection = 0
        self.replacement = False  # joined in place of a departed client
        # broker restarts (sim.downtime): the Clean Start of the connect it is waiting to make
        # while the broker is down (None: not waiting), and a token cancelling that reconnect
        self.want: bool | None = None
        self.restart_token = 0
        out = block.outages
        self.clean_start_again = block.clean_start if out.reconnect_clean_start is None else out.reconnect_clean_start

    # --- the life cycle ----------------------------------------------------------
    def lifecycle(self):
        """SimPy process: connect now, then follow the slot's outages until the horizon.

        The client is offline while an outage of its own or a network outage of its slot
        holds (:func:`~sim.network.offline_period`). A network outage drops a connected
        client without a DISCONNECT packet, so the Session Expiry Interval of its CONNECT
        applies (MQTT 5.0 §3.1.2.11.2, §4.1); it cannot connect until the network is back,
        then reconnects with its own back-off. A client that left for good is unaffected.
        """
        env, out, horizon = self.env, self.block.outages, self.broker.horizon
        first = out.first_connect[self.slot] if out.first_connect and not self.replacement else None
        if first is not None:  # the client joins the fleet at its first CONNECT
            if first >= horizon:
                return
            yield Alarm(env, first, PRIORITY_CONNECTION)
            self.fleet.join(self)
        net, network = self.fleet.windows(self.slot), self.fleet.network
        plan = OutagePlan(out, self.slot, self.outage_rng, joined=env.now if self.replacement else None)
        clean_start = self.block.clean_start
        if net.covering(env.now) is not None:  # the network is down: no CONNECT gets through yet
            off = offline_period(env.now, None, None, None, net, out.reconnect, self.backoff_rng, horizon)
            if off.back >= horizon:
                return
            yield Alarm(env, off.back - env.now, PRIORITY_CONNECTION)
            if off.storm is not None:
                network.reconnects[off.storm].append(env.now)
        self.try_connect(clean_start)
        clean_start_again = self.clean_start_again
        own, own_left = None, True  # the client's own next outage (drawn while it is connected)
        while True:
            if own is None and own_left:
                own = plan.next(env.now)
                own_left = own is not None
            w = net.next(env.now)
            own_at = own.start if own is not None else float("inf")
            net_at = max(w[0], env.now) if w is not None else float("inf")
            if min(own_at, net_at) >= horizon:
                return
            yield Alarm(env, min(own_at, net_at) - env.now, PRIORITY_CONNECTION)
            if self.departed:  # it left when a broker restart dropped it (auto reconnect false)
                return
            if own_at <= net_at:  # its own outage (first, at the same instant)
                outage, own = own, None
                kind, own_end, override = outage.kind or out.disconnect, outage.end, outage.clean_start
            else:  # a network outage: the connection is lost, no DISCONNECT packet
                outage, kind, own_end, override = None, "network", None, None
                if self.connected:
                    network.dropped[w[2]] += 1
            # the client leaves for good with this disconnect (or never reconnects by itself)
            final = (outage is not None and outage.end is None) or not self.block.auto_reconnect
            if final:
                self.leaving()
            self.want = None  # its own network is down: no reconnect to a restarted broker meanwhile
            if self.connected:
                self.disconnect(kind, out.disconnect_session_expiry_interval)
            if final:
                self.depart()
                return
            off = offline_period(env.now, own_end, own, override, net, out.reconnect, self.backoff_rng, horizon)
            own = off.own
            if off.departs is not None:  # an outage of its own with no reconnect begins while it is offline
                yield Alarm(env, off.departs - env.now, PRIORITY_CONNECTION)
                self.leaving()
                self.depart()
                return
            if off.back >= horizon:
                return
            yield Alarm(env, off.back - env.now, PRIORITY_CONNECTION)
            self.try_connect(clean_start_again if off.clean_start is None else off.clean_start)
            if off.storm is not None:
                network.reconnects[off.storm].append(env.now)

    def try_connect(self, clean_start: bool) -> None:
        """Connect now, or, while the broker is down, once it is back (see :meth:`broker_back`)."""
        if self.broker.up:
            self.connect(clean_start)
        else:
            self.want = clean_start

    def broker_stopped(self) -> None:
        """The broker stopped: the connection is gone; reconnect once it is back."""
        self.connected = False
        self.want = self.clean_start_again

    def broker_back(self, token: int) -> None:
        """The reconnect after a broker restart is due (with the block's back-off)."""
        if token == self.restart_token and self.want is not None and self.broker.up and not self.connected:
            clean_start, self.want = self.want, None
            self.connect(clean_start)

    def connect(self, clean_start: bool) -> bool:
        self.connection += 1
        present = self.broker.connect(self, clean_start, self.block.session_expiry_interval)
        self.connected = True
        return present

    def disconnect(self, kind: str, interval: int | None) -> None:
        self.connected = False
        self.broker.disconnect(self, kind, interval if kind == "clean" else None)

    def leaving(self) -> None:
        """The coming disconnect is this client's last: it will never connect again."""

    def depart(self) -> None:
        self.departed = True
        self.broker.depart(self)
        self.fleet.departed(self)

    def session_ended(self, session) -> None:
        """The broker ended this client's session."""

    def session_restored(self, session) -> None:
        """The broker started again with this client's session restored from its saved state."""


class Consumer(Client):
    """A subscriber: resubscribes whenever CONNACK says Session Present = 0 ([MQTT-3.2.2-5])."""

    role = "consumer"

    def __init__(self, *args, index: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.index = index  # the ledger's consumer number
        self.receive_maximum = self.block.receive_maximum
        self.group = self.fleet.group
        self.mode: str | None = None  # bulk mode (see sim.groups)
        self.snap = 0

    def connect(self, clean_start: bool) -> bool:
        present = super().connect(clean_start)
        if present:
            self.broker.resume_delivery(self)
        else:
            self.broker.subscribe(self, self.block.topic_filter, self.block.qos)
        self.broker.members.refresh(self)
        return present

    def leaving(self) -> None:
        # before the disconnect: what its session loses at the close is traffic to a departed device
        self.broker.fates.depart(self.index)

    def disconnect(self, kind: str, interval: int | None) -> None:
        super().disconnect(kind, interval)
        self.broker.members.refresh(self)

    def depart(self) -> None:
        super().depart()
        if self.client_id not in self.broker.sessions:
            self.broker.members.forget(self)

    def session_ended(self, session) -> None:
        if self.departed:
            self.broker.members.forget(self)
        else:
            self.broker.members.refresh(self)

    def session_restored(self, session) -> None:
        if self.client_id not in self.group.members:  # a departed client's session is back: routed to again
            self.broker.members.join(self)
        else:
            self.broker.members.refresh(self)


class Publisher(Client):
    """A publishing application with its MQTT client's in-flight window and offline buffer."""

    role = "publisher"

    def __init__(self, *args, index: int, publish_rng: np.random.Generator, next_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.index = index
        self.topic = self.block.topic_of(index)
        self.publish_rng = publish_rng
        self.next_id = next_id
        self.inflight: dict[Message, bool] = {}  # message -> has the broker received it
        self.buffer: deque[Message] = deque()
        self.transit: dict[Message, None] = {}  # QoS 0 messages on the wire, in send order (a set would
        # order them by memory address, and settle them at the horizon in a different order per process)
        b = self.block
        self.store_bytes = broker_store_bytes(self.broker, self.topic, b.payload_bytes)
        self.can_reroute = b.qos == 1 and b.network_latency > 0

    def publishing(self):
        """SimPy process: produce messages on the schedule or as a Poisson process."""
        env, b, horizon = self.env, self.block, self.broker.horizon
        if b.schedule is not None:
            for t in b.schedule:
                if t < env.now:  # a replacement publishes what is left of the schedule
                    continue
                if t >= horizon:
                    return
                yield Alarm(env, t - env.now, PRIORITY_MESSAGE)
                if self.departed:
                    return
                self.produce()
        else:
            gaps = DrawBuffer(Distribution("exponential", (("mean", 1.0 / b.rate),)), self.publish_rng, block=256)
            while True:
                gap = gaps.next()
                if env.now + gap >= horizon:
                    return
                yield Alarm(env, gap, PRIORITY_MESSAGE)
                if self.departed:
                    return
                self.produce()

    def produce(self) -> None:
        b, fates = self.block, self.broker.fates
        msg = Message(self.next_id(), self.client_id, self.topic, b.qos, b.payload_bytes, self.env.now,
                      b.message_expiry_interval, self.store_bytes)
        if self.can_reroute:
            msg.routed_to = set()
        fates.publish(msg)
        if self.connected:
            self.send(msg)
        elif len(self.buffer) < b.offline_buffer:
            self.buffer.append(msg)
        else:
            self.broker.settle_unrouted(msg, "publisher_offline")

    def send(self, msg: Message) -> None:
        """PUBLISH on the current connection; QoS 1/2 stays in flight until acknowledged."""
        lat, conn = self.latency, self.connection
        if lat == 0:
            self.broker.receive_publish(msg)
            return
        if msg.qos > 0:
            self.inflight[msg] = self.inflight.get(msg, False)
        else:
            self.transit[msg] = None
        def arrive():
            if self.connected and self.connection == conn:
                if msg.qos == 0:
                    self.transit.pop(msg, None)
                elif self.inflight.get(msg) is True:
                    if msg.qos == 2:
                        return  # [MQTT-4.3.3]: the broker already has this packet identifier
                else:
                    self.inflight[msg] = True
                self.broker.receive_publish(msg)
            elif msg.qos == 0:
                self.transit.pop(msg, None)
                self.broker.settle_unrouted(msg, "publisher_inflight")

        def acked():
            if self.connected and self.connection == conn and msg in self.inflight:
                del self.inflight[msg]

        self.broker.schedule(lat, PRIORITY_MESSAGE, arrive)
        if msg.qos > 0:
            self.broker.schedule(2 * lat, PRIORITY_MESSAGE, acked)

    def connect(self, clean_start: bool) -> bool:
        present = super().connect(clean_start)
        pending = list(self.inflight.items())
        self.inflight.clear()
        for msg, received in pending:
            if present:  # [MQTT-4.4.0-1]: re-send unacknowledged PUBLISH packets
                if not (received and msg.qos == 2):
                    self.inflight[msg] = received
                    self.send(msg)
            elif not received:  # [MQTT-3.2.2-5]: no session, the client discards its state
                self.broker.settle_unrouted(msg, "publisher_inflight")
        while self.buffer and self.connected:
            self.send(self.buffer.popleft())
        return present

    def depart(self) -> None:
        for msg, received in self.inflight.items():
            if not received:
                self.broker.settle_unrouted(msg, "publisher_inflight")
        self.inflight.clear()
        for msg in self.buffer:
            self.broker.settle_unrouted(msg, "publisher_offline")
        self.buffer.clear()
        super().depart()

    def unrouted(self) -> list[Message]:
        """Messages produced but not yet received by the broker (pending at the horizon)."""
        return [m for m, got in self.inflight.items() if not got] + list(self.transit) + list(self.buffer)


def broker_store_bytes(broker: Broker, topic: str, payload: int) -> int:
    """Bytes of one stored message: overhead + topic + payload (docs/model.md, "Broker memory")."""
    return broker.cfg.message_overhead_bytes + len(topic.encode()) + payload


class Fleet:
    """The clients of one ``mqttConsumer``/``mqttPublisher`` block, slot by slot.

    For a consumer block, ``group`` (a :class:`~sim.groups.ConsumerGroup`) holds the consumers
    a message can be routed to: every client that has joined and not left, and departed ones
    while their session exists.
    """

    def __init__(self, env: simpy.Environment, broker: Broker, block: ConsumerBlock | PublisherBlock,
                 block_index: int, prefix: str, seed: np.random.SeedSequence, next_id=None,
                 network: NetworkPlan | None = None, position: int = 0):
        self.env, self.broker, self.block, self.block_index = env, broker, block, block_index
        self.prefix, self.next_id = prefix, next_id
        self.network, self.position = network, position  # the run's network outages; this block's place in them
        self.clients: list[Client] = []
        self.count = 0
        is_pub = isinstance(block, PublisherBlock)
        self.streams = [[np.random.default_rng(s) for s in slot.spawn(3 if is_pub else 2)]
                        for slot in seed.spawn(block.clients)]
        self.group = None if is_pub else broker.members.add_group(block.topic_filter)

    def start(self) -> None:
        for slot in range(self.block.clients):
            self.spawn(slot)

    def spawn(self, slot: int, replacement: bool = False) -> Client:
        """A new client identifier joins in ``slot``, connects now and starts its processes."""
        cid = f"{self.prefix}-{self.count}"
        self.count += 1
        streams = self.streams[slot]
        common = dict(block=self.block, block_index=self.block_index, client_id=cid, slot=slot,
                      streams=(streams[0], streams[1]), fleet=self)
        if isinstance(self.block, PublisherBlock):
            client: Client = Publisher(self.env, self.broker, index=slot, publish_rng=streams[2],
                                       next_id=self.next_id, **common)
        else:
            index = self.broker.fates.add_consumer(cid, self.block_index)
            client = Consumer(self.env, self.broker, index=index, **common)
            out = self.block.outages
            if replacement or not (out.first_connect and out.first_connect[slot] is not None):
                self.broker.members.join(client)  # else it joins at its first CONNECT (see Client.lifecycle)
        client.replacement = replacement
        self.clients.append(client)
        self.env.process(client.lifecycle())
        if isinstance(client, Publisher):
            self.env.process(client.publishing())
        return client

    def departed(self, client: Client) -> None:
        if self.block.outages.replace_departed:
            new = self.spawn(client.slot, replacement=True)
            self.broker.log.event(self.env.now, new.client_id, new.role, "joined", detail=f"replaces {client.client_id}")

    def windows(self, slot: int) -> SlotWindows:
        """The network outages that take ``slot`` down (none without network outages)."""
        return NO_WINDOWS if self.network is None else self.network.slot(self.position, slot)

    def join(self, client: Client) -> None:
        """A client whose trace starts with ``[null, t]`` joins the fleet at ``t``."""
        if isinstance(client, Consumer):
            self.broker.members.join(client)

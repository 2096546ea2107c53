"""Record data/traces/mosquitto_sample.log from a real mosquitto on 127.0.0.1 (see README.md).

Run from the repository root:  .venv/bin/python data/traces/record_sample.py
Writes, next to this file: mosquitto_sample.log (the broker's log, as written), and
mosquitto_sample_observed.csv (one row per (message, consumer) pair: what each client received).

Timeline (seconds from T0, the whole second in which the broker started; every connection event
happens at k + 0.2 s so that Mosquitto's 1-second timestamps read exactly k):
  0  consumers keep-0, fresh-0, bye-0 connect (Clean Start 0, SEI 300, subscribe sensors/# QoS 1),
     then publishers pub-0 (QoS 1, sensors/q1/0) and pubz-0 (QoS 0, sensors/q0/0)
  4  keep-0 network drop (socket closed, no DISCONNECT)
  6  fresh-0 network drop
  8  bye-0 clean DISCONNECT (reason 0x00, SEI unchanged)
 10  keep-0 reconnects, Clean Start 0 (session present: queued QoS 1 delivered)
 12  fresh-0 reconnects, Clean Start 1 (queued messages discarded; subscribes again)
 14  bye-0 reconnects, Clean Start 0
 18  keep-0 network drop; never comes back
 22  end (the broker is stopped)
pub-0 publishes at 1.5, 2.5, ..., 20.5 s and pubz-0 at 1.6, ..., 20.6 s (payload "<publisher>:<n>").
"""
from __future__ import annotations

import csv
import math
import shutil
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from sim.realbroker import Mosquitto  # noqa: E402

SEI = 300
FILTER = "sensors/#"
PUBLISHERS = {"pub-0": (1, "sensors/q1/0", 0.5), "pubz-0": (0, "sensors/q0/0", 0.6)}  # qos, topic, offset
SCHEDULE_SECONDS = range(1, 21)
HORIZON = 22
EVENTS = [  # (second, client, action)
    (4, "keep-0", "drop"), (6, "fresh-0", "drop"), (8, "bye-0", "disconnect"),
    (10, "keep-0", "connect0"), (12, "fresh-0", "connect1"), (14, "bye-0", "connect0"),
    (18, "keep-0", "drop"),
]
CONSUMERS = ["keep-0", "fresh-0", "bye-0"]


class Conn:
    """One paho v5 network connection, driven by our own loop thread (so a drop is immediate)."""

    def __init__(self, broker: Mosquitto, cid: str, clean_start: bool, sei: int, on_message=None):
        self.cid = cid
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        self.connected, self.subscribed = threading.Event(), threading.Event()
        self.session_present = None
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        if on_message:
            self.c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        if sei:
            props.SessionExpiryInterval = sei
        self.c.connect(broker.host, broker.port, keepalive=60, clean_start=clean_start, properties=props)
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        if not self.connected.wait(2):
            raise RuntimeError(f"{cid}: no CONNACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.session_present = flags.session_present
        self.connected.set()

    def _loop(self):
        while self.running:
            self.c.loop(timeout=0.02)

    def stop_loop(self):
        self.running = False
        self.thread.join()

    def subscribe(self):
        self.c.subscribe(FILTER, qos=1)
        if not self.subscribed.wait(2):
            raise RuntimeError(f"{self.cid}: no SUBACK")

    def drop(self):
        """Network drop: close the TCP socket without a DISCONNECT packet."""
        self.stop_loop()
        self.c.socket().close()

    def disconnect(self):
        """Clean DISCONNECT, reason 0x00, no Session Expiry Interval property (SEI unchanged)."""
        self.c.disconnect()
        for _ in range(10):
            self.c.loop(timeout=0.02)
        self.stop_loop()


def main() -> None:
    received: dict[tuple[str, str], list[float]] = {}
    t0 = [0.0]

    def receiver(cid):
        def on_message(client, userdata, msg):
            received.setdefault((cid, msg.payload.decode()), []).append(time.time() - t0[0])
        return on_message

    # start the broker just after a whole second, so T0 = that second and connects share it
    time.sleep(1.05 - (time.time() % 1.0))
    with Mosquitto(sys_interval=10) as broker:
        t0[0] = math.floor(time.time())

        def at(t):
            delay = t0[0] + t - time.time()
            if delay < 0:
                raise RuntimeError(f"behind schedule at {t} s by {-delay:.3f} s")
            time.sleep(delay)

        conns = {}
        for cid in CONSUMERS:
            conns[cid] = Conn(broker, cid, clean_start=False, sei=SEI, on_message=receiver(cid))
            conns[cid].subscribe()
        pubs = {cid: Conn(broker, cid, clean_start=True, sei=0) for cid in PUBLISHERS}
        if time.time() - t0[0] > 0.9:
            raise RuntimeError("connecting took too long: the log would not show t = 0")

        actions = [(s + 0.2, "event", cid, act) for s, cid, act in EVENTS]
        actions += [(s + off, "publish", cid, n) for cid, (_, _, off) in PUBLISHERS.items()
                    for n, s in enumerate(SCHEDULE_SECONDS)]
        actions.sort()
        published = []
        for t, kind, cid, arg in actions:
            at(t)
            if kind == "publish":
                qos, topic, _ = PUBLISHERS[cid]
                pubs[cid].c.publish(topic, f"{cid}:{arg}", qos=qos)
                published.append((f"{cid}:{arg}", cid, t, topic, qos, time.time() - t0[0]))
            elif arg == "drop":
                conns[cid].drop()
            elif arg == "disconnect":
                conns[cid].disconnect()
            else:
                conns[cid] = Conn(broker, cid, clean_start=arg == "connect1", sei=SEI, on_message=receiver(cid))
                if not conns[cid].session_present:
                    conns[cid].subscribe()
        at(HORIZON + 0.2)
        for conn in list(conns.values()) + list(pubs.values()):
            if conn.running:
                conn.stop_loop()
        shutil.copyfile(broker.log_path, HERE / "mosquitto_sample.log")

    with (HERE / "mosquitto_sample_observed.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["message_id", "publisher", "published_at", "topic", "qos", "sent_at", "consumer",
                    "received", "received_at", "copies"])
        for mid, pub, t, topic, qos, sent in published:
            for cid in CONSUMERS:
                got = received.get((cid, mid), [])
                w.writerow([mid, pub, f"{t:.1f}", topic, qos, f"{sent:.3f}", cid, int(bool(got)),
                            f"{got[0]:.3f}" if got else "", len(got)])
    print(f"T0 = {t0[0]:.0f}; {len(published)} messages; received {sum(len(v) for v in received.values())}")


if __name__ == "__main__":
    main()

"""Broker settings that model where real brokers depart from the plain queue-limit reading.

Each test runs the same scripted scenario with the setting on and off and checks exactly
which messages survive (docs/model.md; the real-broker evidence is in docs/conformance.md).
"""
import sim

OFF, ON = 1.5, 4.5  # the consumer is offline from 1.5 s to 4.5 s


def survivors(broker, qos=1, latency=0, schedule=(1, 2, 2.5, 3, 3.5, 5)):
    scn = sim.load_scenario({
        "horizon": 8,
        "broker": {"max queued messages": 0, "max queued bytes": 0, **broker},
        "mqttConsumer": {"session expiry interval": 60, "clean start": False, "qos": 1,
                         "network latency": latency, "outages": {"trace": [[OFF, ON]]}},
        "mqttPublisher": {"qos": qos, "schedule": list(schedule), "payload bytes": 100},
    })
    m = sim.run(scn, seed=1).messages
    return [t for t, f in zip(m["published_at"], m["fate"]) if f == "delivered"], m


def test_queue_bytes_check_fits_versus_below():
    fits, m = survivors({"max queued bytes": 250, "queue bytes check": "fits"})
    assert fits == [1, 2, 2.5, 5]                 # 200 + 100 > 250: 3 s and 3.5 s are queue_full
    assert sorted(m.loc[m.fate == "queue_full", "published_at"]) == [3, 3.5]
    below, _ = survivors({"max queued bytes": 250, "queue bytes check": "below"})
    assert below == [1, 2, 2.5, 3, 5]             # admitted while 0, 100, 200 < 250 (Mosquitto)


def test_queue_limits_count_qos0():
    qos0 = {"queue qos0 messages": True, "max queued messages": 2}
    counted, m = survivors({**qos0, "queue limits count qos0": True}, qos=0)
    assert counted == [1, 2, 2.5, 5]
    assert (m.fate == "queue_full").sum() == 2
    exempt, _ = survivors({**qos0, "queue limits count qos0": False}, qos=0)
    assert exempt == [1, 2, 2.5, 3, 3.5, 5]       # Mosquitto: queued QoS 0 is never limited


def test_queue_limits_count_inflight_while_offline():
    def run(count_inflight):
        scn = sim.load_scenario({
            "horizon": 9,
            "broker": {"max queued messages": 2, "queue limits count inflight": count_inflight},
            "mqttConsumer": {"session expiry interval": 60, "clean start": False, "qos": 1, "network latency": 1,
                             "outages": {"trace": [[3, 6]]}},
            "mqttPublisher": {"qos": 1, "schedule": [1.5, 4, 4.5, 5]},
        })
        m = sim.run(scn, seed=1).messages
        return dict(zip(m["published_at"], m["fate"])), int(m["duplicates"].sum())
    # 1.5 s: sent at 1.5, received at 2.5, its PUBACK would arrive at 3.5 — in flight at the drop (3 s)
    plain, dup = run(False)
    assert plain == {1.5: "delivered", 4: "delivered", 4.5: "delivered", 5: "queue_full"} and dup == 1
    old, dup = run(True)                           # Mosquitto 2.0.11: the in-flight message takes a slot
    assert old == {1.5: "delivered", 4: "delivered", 4.5: "queue_full", 5: "queue_full"} and dup == 1

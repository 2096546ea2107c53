"""Unit tests for behaviour that cannot be seen through ``sim.run()``'s output frames.

The reconnect back-off with a stub generator, the memory monitor's area and peak
arithmetic and its reset, the conservation guard, and the order in which a resumed session
re-sends its in-flight messages ([MQTT-4.4.0-1], [MQTT-4.6.0-1]).
"""
from __future__ import annotations

import pytest

import sim
from sim.broker import Broker
from sim.entities import CONNECTED, OFFLINE, STRANDED, Entry, Message
from sim.ledger import ConservationError, FateLedger
from sim.memory import MemoryMonitor
from sim.outage_plan import reconnect_time
from sim.outages import Backoff


class StubRng:
    """Returns the given uniforms in order (numpy.random.Generator.random's role)."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


# ------------------------------------------------------------------ back-off

def test_backoff_attempts_by_hand():
    """Drop at 10, network back at 16; delays 1, 2, 4, 4 (max), each times (1 - 0.5 u):
    u = 0, 1, 0.5, 0 -> attempts at 11, 12, 15 (still down), 19 (up): reconnect at 19."""
    b = Backoff(initial_delay=1, max_delay=4, multiplier=2, jitter=0.5)
    rng = StubRng(0.0, 1.0, 0.5, 0.0)
    assert reconnect_time(16.0, 10.0, b, rng) == pytest.approx(19.0)
    assert rng.values == []  # exactly four draws


def test_backoff_no_jitter_draws_nothing_and_first_attempt_can_succeed():
    b = Backoff(initial_delay=2, max_delay=2, multiplier=3, jitter=0)
    assert reconnect_time(11.0, 10.0, b, StubRng()) == 12.0  # first attempt, after the network is back
    assert reconnect_time(15.0, 10.0, b, StubRng()) == 16.0  # 12, 14, 16: capped at 2 s
    assert reconnect_time(15.0, 10.0, None, None) == 15.0  # no back-off: at once


# ------------------------------------------------------------------ memory monitor

def test_memory_area_peak_mean_by_hand():
    m = MemoryMonitor()
    m.change(0.0, CONNECTED, session=100, sessions=1)          # 100 B over [0, 2)
    m.change(2.0, CONNECTED, entry=50, queued=1)              # 150 B over [2, 4)
    m.move(4.0, CONNECTED, OFFLINE, 150)                      # 150 B offline over [4, 6)
    m.change(6.0, OFFLINE, entry=-50, store=300, queued=-1)   # 100 offline + 300 store over [6, 6)
    m.change(6.0, OFFLINE, store=-300)                        # same instant: the 400 B were never held
    m.move(8.0, OFFLINE, STRANDED, 100)                       # 100 B stranded over [8, 10)
    m.close(10.0)
    s = m.stats(10.0)
    assert s["memory_byte_seconds"] == 100 * 2 + 150 * 2 + 150 * 2 + 100 * 2 + 100 * 2
    assert s["memory_mean_bytes"] == pytest.approx(1200 / 10)
    assert s["memory_peak_bytes"] == 150  # 400 lasted no time: not a peak
    assert s["memory_final_bytes"] == 100
    assert s["memory_mean_connected_bytes"] == pytest.approx((100 * 2 + 150 * 2) / 10)
    assert s["memory_mean_offline_bytes"] == pytest.approx((150 * 2 + 100 * 2) / 10)
    assert s["memory_mean_stranded_bytes"] == pytest.approx(100 * 2 / 10)
    assert s["queued_messages_mean"] == pytest.approx(1 * 4 / 10) and s["queued_messages_peak"] == 1
    f = m.frame()
    assert list(f["time"]) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]  # one row per instant, the last change wins
    assert list(f["bytes"]) == [100, 150, 150, 100, 100, 100]
    assert (f["bytes"] == f["connected_bytes"] + f["offline_bytes"] + f["stranded_bytes"] + f["store_bytes"]).all()


def test_memory_reset_starts_the_statistics_afresh():
    m = MemoryMonitor()
    m.change(0.0, CONNECTED, session=1000, sessions=1)  # 1000 B over [0, 5)
    m.reset(4.0)                                        # warm-up ends at 4: [4, 10) counts
    m.change(5.0, CONNECTED, session=-900)              # 100 B over [5, 10)
    m.close(10.0)
    s = m.stats(10.0)
    assert s["memory_byte_seconds"] == 1000 * 1 + 100 * 5
    assert s["memory_mean_bytes"] == pytest.approx(1500 / 6)
    assert s["memory_peak_bytes"] == 1000  # held at the reset
    m2 = MemoryMonitor()
    m2.change(0.0, CONNECTED, session=1000, sessions=1)
    m2.change(5.0, CONNECTED, session=-900)
    m2.reset(6.0)
    m2.close(10.0)
    assert m2.stats(10.0)["memory_peak_bytes"] == 100  # the 1000 B before the reset no longer count
    assert m2.stats(10.0)["memory_mean_bytes"] == 100
    assert len(m2.frame()) == 3  # the step function itself keeps every row
    with pytest.raises(ValueError, match="before the last change"):
        m2.reset(9.0)  # the run is already at 10


# ------------------------------------------------------------------ conservation guard

def _msg(i):
    return Message(i, "p-0", "a/b", 1, 10, 0.0, None, 100)


def test_conservation_guard_pair_without_fate():
    led = FateLedger(record_messages=False)
    c = led.add_consumer("c-0", 0)
    led.route(c, _msg(0), 0.0)
    led.route(c, _msg(1), 0.0)
    led.fate(c, _msg(0), "delivered", 0.0)
    with pytest.raises(ConservationError, match="routed 2 but fates add up to 1"):
        led.check_conservation()


def test_conservation_guard_second_fate():
    led = FateLedger(record_messages=True)
    c = led.add_consumer("c-0", 0)
    m = _msg(0)
    led.route(c, m, 0.0)
    led.fate(c, m, "queue_full", 1.0)
    with pytest.raises(ConservationError, match="already has fate queue_full"):
        led.fate(c, m, "delivered", 2.0)
    e = Entry(_msg(1), c, 1)
    led.route(c, e.msg, 0.0)
    led.settle(e, "session_expired", 3.0)
    with pytest.raises(ConservationError, match="second fate"):
        led.settle(e, "queue_full", 4.0)


def test_departed_consumer_books_departed_fates():
    led = FateLedger(record_messages=True)
    c = led.add_consumer("c-0", 0)
    m0, m1 = _msg(0), _msg(1)
    led.route(c, m0, 0.0)
    led.fate(c, m0, "queue_full", 1.0)  # before it left: a loss
    led.depart(c)
    led.route(c, m1, 2.0)
    led.fate(c, m1, "queue_full", 2.0)  # after: traffic to a departed device
    led.bulk(c, "no_session", 3)
    led.check_conservation()
    f = led.fates_frame().iloc[0]
    assert (f["lost_queue_full"], f["departed_queue_full"], f["departed_not_queued"], f["routed"]) == (1, 1, 3, 5)


# ------------------------------------------------------------------ re-send order

def test_resumed_session_resends_in_flight_in_order_then_the_queue(monkeypatch):
    """Receive Maximum 3, latency 1: at the drop (t = 10.5) messages 10.0, 10.1, 10.2 are in
    flight and 10.3, 10.4 queued; more arrive while offline (12, 13). At the reconnect
    (t = 20) the broker re-sends the in-flight ones first, in their original order
    ([MQTT-4.4.0-1], [MQTT-4.6.0-1]), then sends the queue in order as the window frees."""
    sent = []
    original = Broker._transmit

    def spy(self, s, e):
        if s.client_id == "c-0":
            sent.append((self.env.now, e.msg.produced_at))
        return original(self, s, e)

    monkeypatch.setattr(Broker, "_transmit", spy)
    scn = sim.load_scenario({
        "name": "resend", "horizon": 40,
        "broker": {"max queued messages": 0},
        "mqttConsumer": {"client id": "c", "session expiry interval": 100, "clean start": False, "qos": 1,
                         "receive maximum": 3, "network latency": 1, "outages": {"trace": [[10.5, 20]]}},
        "mqttPublisher": {"qos": 1, "schedule": [10.0, 10.1, 10.2, 10.3, 10.4, 12, 13]},
    })
    res = sim.run(scn, seed=0)
    after = [p for t, p in sent if t >= 20]
    assert after == [10.0, 10.1, 10.2, 10.3, 10.4, 12, 13]
    assert [t for t, p in sent if t >= 20][:3] == [20, 20, 20]  # the window's three at once
    assert (res.messages["fate"] == "delivered").all()

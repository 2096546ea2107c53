"""The pure MQTT 5.0 rule functions of sim.protocol, case by case."""
import pytest

from sim import protocol as p


@pytest.mark.parametrize("exists,clean,discard,resume,present", [
    (False, True, False, False, False),   # [MQTT-3.1.2-4], [MQTT-3.2.2-2]
    (True, True, True, False, False),     # Clean Start 1 discards the existing session
    (True, False, False, True, True),     # [MQTT-3.1.2-5], [MQTT-3.2.2-3]
    (False, False, False, False, False),  # [MQTT-3.1.2-6]: a new session, Session Present 0
])
def test_connect_outcome(exists, clean, discard, resume, present):
    out = p.connect_outcome(exists, clean)
    assert (out.discard_existing, out.resume, out.session_present) == (discard, resume, present)


def test_expiry_delay_zero_finite_and_never():
    assert p.expiry_delay(0) == 0.0
    assert p.expiry_delay(15) == 15.0
    assert p.expiry_delay(p.UINT_MAX) is None                       # §3.1.2.11.2: never expires
    assert p.expiry_delay(p.UINT_MAX, uint_max_never_expires=False) == 4_294_967_295.0


def test_effective_expiry_is_capped_by_the_broker():
    assert p.effective_expiry(3600, p.UINT_MAX) == 3600
    assert p.effective_expiry(p.UINT_MAX, 86400) == 86400
    assert p.effective_expiry(10, 0) == 0


@pytest.mark.parametrize("connect,granted,disc,cap,interval,error", [
    (10, 10, None, p.UINT_MAX, 10, False),    # absent: the CONNECT value still applies
    (10, 10, 60, p.UINT_MAX, 60, False),      # replaced
    (10, 10, 0, p.UINT_MAX, 0, False),        # non-zero -> 0 is legal
    (0, 0, 60, p.UINT_MAX, 0, True),          # 0 -> non-zero: Protocol Error 0x82, ends as with 0
    (0, 0, 0, p.UINT_MAX, 0, False),
    (100, 0, 60, 0, 0, False),                # the CONNECT packet said 100: legal, capped to 0
    (10, 10, 600, 60, 60, False),             # the cap applies to the DISCONNECT value too
])
def test_disconnect_expiry(connect, granted, disc, cap, interval, error):
    out = p.disconnect_expiry(connect, granted, disc, cap)
    assert out.interval == interval and out.protocol_error is error
    assert out.reason_code == (p.REASON_PROTOCOL_ERROR if error else None)


@pytest.mark.parametrize("flt,topic,match", [
    ("sensors/+/temp", "sensors/1/temp", True),
    ("sensors/+/temp", "sensors/1/hum", False),
    ("sensors/+/temp", "sensors/1/2/temp", False),
    ("sensors/#", "sensors", True),             # '#' includes the parent level (§4.7.1.2)
    ("sensors/#", "sensors/a/b/c", True),
    ("#", "a/b", True),
    ("#", "$SYS/broker", False),                # [MQTT-4.7.2-1]
    ("+/broker", "$SYS/broker", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a/+", "a/", True),                        # an empty level is a level
    ("a/b", "a/b/c", False),
])
def test_topic_matches(flt, topic, match):
    assert p.topic_matches(flt, topic) is match


@pytest.mark.parametrize("flt,ok", [("a/#", True), ("a/#/b", False), ("a/b#", False), ("+", True), ("a+/b", False), ("", False)])
def test_validate_topic_filter(flt, ok):
    assert (p.validate_topic_filter(flt) is None) is ok


def test_delivered_qos_and_offline_queueing():
    assert [p.delivered_qos(2, s) for s in (0, 1, 2)] == [0, 1, 2]
    assert p.delivered_qos(0, 2) == 0
    assert p.queued_while_offline(1, False) and not p.queued_while_offline(0, False) and p.queued_while_offline(0, True)


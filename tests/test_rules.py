"""Scripted rule tests: one small scenario per MQTT rule / variant, hand-computed outcome.

Every scenario is written as a dict in the transport YAML spelling and loaded with
``sim.load_scenario``. Outages are scripted (``trace``) and publishers use ``schedule``, so
every (message, consumer) fate, every Session Present value and every memory step is exact.
The expected values below are computed by hand from docs/model.md (rules 1-10, fates,
memory) and docs/api-contract.md, not read from the engine.

Conventions used throughout (unless a test overrides them):
  * one consumer block, client id prefix "c" -> client "c-0"; topic filter "a/+"
  * one publisher block, client id prefix "p" -> client "p-0"; topic "a/b"; payload 100 B
  * every documented broker key is set explicitly, over an empty profile file (no
    dependence on a shipped profile's defaults)
  * network latency 0: delivery is instantaneous, nothing is ever in flight
  * clients connect at t = 0; same-instant order is expiry -> connection changes -> messages
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from pathlib import Path

import pytest

import sim

UINT = 4294967295

# memory constants set explicitly in every broker block
S_OVH, SUB_OVH, ENTRY_OVH, MSG_OVH = 1000, 100, 56, 200
CID = len("c-0")            # client-id bytes of the consumer
FILTER = len("a/+")         # filter bytes of the default subscription
TOPIC, PAYLOAD = len("a/b"), 100
SESSION = S_OVH + CID + SUB_OVH + FILTER        # 1106: one consumer session, one subscription
MSG = MSG_OVH + TOPIC + PAYLOAD                 # 303: one stored message body
PUB = S_OVH + len("p-0")                        # 1003: a publisher session (no subscriptions)

# A profile with no settings: every broker key not set below takes the engine's neutral
# default, so these tests do not move when a shipped profile (sim/profiles/) is retuned.
_PROFILE_DIR = Path(tempfile.mkdtemp(prefix="test-rules-profile-"))
atexit.register(shutil.rmtree, _PROFILE_DIR, ignore_errors=True)
NEUTRAL_PROFILE = _PROFILE_DIR / "neutral.yaml"
NEUTRAL_PROFILE.write_text("name: neutral\ndescription: no settings (tests)\nsettings: {}\n")

BROKER = {
    "profile": str(NEUTRAL_PROFILE),
    "max queued messages": 0,
    "max queued bytes": 0,
    "queue full policy": "drop-new",
    "queue qos0 messages": False,
    "max session expiry interval": "uint_max",
    "uint max never expires": True,
    "message expiry check": "eager",
    "shared message store": True,
    "session overhead bytes": S_OVH,
    "subscription overhead bytes": SUB_OVH,
    "queue entry overhead bytes": ENTRY_OVH,
    "message overhead bytes": MSG_OVH,
}


# --------------------------------------------------------------------------- helpers

def _spell(kw):
    return {k.replace("_", " "): v for k, v in kw.items()}


def consumer(**kw):
    d = {"clients": 1, "client id": "c", "session expiry interval": 0, "clean start": True,
         "qos": 1, "topic filter": "a/+"}
    d.update(_spell(kw))
    return d


def publisher(schedule, **kw):
    d = {"clients": 1, "client id": "p", "session expiry interval": 0, "clean start": True,
         "qos": 1, "topic": "a/b", "payload bytes": PAYLOAD, "schedule": list(schedule)}
    d.update(_spell(kw))
    return d


def trace(*pairs, **kw):
    d = {"trace": [list(p) for p in pairs]}
    d.update(_spell(kw))
    return d


def scenario(consumers, publishers, horizon=100, **broker):
    b = dict(BROKER)
    b.update(_spell(broker))
    return {"name": "rules", "horizon": horizon, "broker": b,
            "mqttConsumer": consumers, "mqttPublisher": publishers}


def run(d):
    scn = sim.load_scenario(d)
    return sim.run(scn, seed=1, record_messages=True, record_events=True)


def rows(res, consumer="c-0"):
    """[(published_at, fate, duplicates)] for one consumer, in publish order."""
    m = res.messages
    m = m[m["consumer"] == consumer].sort_values(["published_at", "publisher"], kind="stable")
    return [(float(r.published_at), r.fate, int(r.duplicates)) for r in m.itertuples()]


def fate_at(res, published_at, consumer="c-0"):
    m = res.messages
    m = m[(m["consumer"] == consumer) & (m["published_at"] == published_at)]
    assert len(m) == 1, m
    return float(m["fate_at"].iloc[0])


def events(res, event, client="c-0"):
    e = res.events
    return e[(e["event"] == event) & (e["client_id"] == client)]


def times(res, event, client="c-0"):
    return [float(t) for t in events(res, event, client)["time"]]


def connects(res, client="c-0"):
    """[(time, clean_start, session_present)] of the client's CONNECT/CONNACK events."""
    return [(float(r.time), bool(r.clean_start), bool(r.session_present))
            for r in events(res, "connect", client).itertuples()]


def mem_at(res, t, col="bytes"):
    """Value of the memory step function holding at time t (last row with time <= t)."""
    m = res.memory.sort_values("time", kind="stable")
    m = m[m["time"] <= t]
    assert len(m), f"no memory row at or before {t}"
    return float(m[col].iloc[-1])


def fates_row(res, client="c-0"):
    f = res.fates
    r = f[f["client_id"] == client]
    assert len(r) == 1, f
    return r.iloc[0]


REGISTRY: dict[str, tuple] = {}


def register(name, **kwargs):
    """Record a scenario builder (with arguments) for the conservation test at the end."""
    def deco(fn):
        REGISTRY[name] = (fn, kwargs)
        return fn
    return deco


# ================================================================ Rules 1-2: Clean Start / resume

@register("resume")
@register("resume_reconnect_clean", reconnect_clean=True)
def scn_resume(reconnect_clean=None, clean_start=False):
    out = trace((10, 20))
    if reconnect_clean is not None:
        out["reconnect clean start"] = reconnect_clean
    return scenario(consumer(session_expiry_interval=100, clean_start=clean_start, outages=out),
                    publisher([5, 12, 15, 25]), horizon=30)


def test_rule2_resume_session_present_and_queue_delivered():
    res = run(scn_resume())
    assert rows(res) == [(5, "delivered", 0), (12, "delivered", 0),
                         (15, "delivered", 0), (25, "delivered", 0)]
    # queued messages are delivered at the resume, live ones at once
    assert [fate_at(res, t) for t in (5, 12, 15, 25)] == [5, 20, 20, 25]
    # first CONNECT (Clean Start 0, no session yet) -> SP 0; resume -> SP 1
    assert connects(res) == [(0, False, False), (20, False, True)]
    assert list(events(res, "disconnect")["detail"]) == ["network"]
    assert times(res, "disconnect") == [10]
    assert times(res, "session_expired") == [] and times(res, "session_discarded") == []
    s = res.summary
    assert (s["published"], s["routed"], s["delivered"], s["lost"]) == (4, 4, 4, 0)
    assert (s["connects"], s["disconnects"], s["sessions_final"]) == (3, 1, 2)


def test_rule1_reconnect_clean_start_discards_session():
    res = run(scn_resume(reconnect_clean=True))
    assert rows(res) == [(5, "delivered", 0), (12, "clean_start", 0),
                         (15, "clean_start", 0), (25, "delivered", 0)]
    assert connects(res) == [(0, False, False), (20, True, False)]
    assert times(res, "session_discarded") == [20]
    s = res.summary
    assert s["lost_clean_start"] == 2 and s["lost"] == 2 and s["delivered"] == 2
    assert s["sessions_discarded"] == 1
    assert s["loss_ratio"] == pytest.approx(0.5)


@register("clean_start_true_with_expiry", clean_start=True)
def scn_clean_true(clean_start=True):
    return scn_resume(clean_start=clean_start)


def test_rule1_clean_start_true_default_reconnect_is_clean():
    """Clean Start 1 + SEI 100: the session outlives the drop, but the reconnect (which
    defaults to the block's clean start) discards it: the queued messages are lost."""
    res = run(scn_clean_true())
    assert rows(res) == [(5, "delivered", 0), (12, "clean_start", 0),
                         (15, "clean_start", 0), (25, "delivered", 0)]
    assert connects(res) == [(0, True, False), (20, True, False)]
    assert times(res, "session_discarded") == [20]


# ================================================================ Rule 3: Session Expiry Interval

@register("sei0")
def scn_sei0():
    return scenario(consumer(session_expiry_interval=0, clean_start=False, outages=trace((10, 20))),
                    publisher([5, 15, 25]), horizon=30)


def test_rule3_sei0_session_ends_at_close():
    res = run(scn_sei0())
    assert rows(res) == [(5, "delivered", 0), (15, "no_session", 0), (25, "delivered", 0)]
    assert times(res, "session_ended") == [10]
    # Clean Start 0 but the session ended at the close -> SP 0 on the reconnect
    assert connects(res) == [(0, False, False), (20, False, False)]
    assert times(res, "session_discarded") == []
    assert res.summary["lost_no_session"] == 1


@register("sei_longer")
def scn_sei_longer():
    return scenario(consumer(session_expiry_interval=10, clean_start=False, outages=trace((10, 15))),
                    publisher([12]), horizon=30)


def test_rule3_expiry_longer_than_outage_resumes():
    res = run(scn_sei_longer())
    assert rows(res) == [(12, "delivered", 0)]
    assert fate_at(res, 12) == 15
    assert connects(res) == [(0, False, False), (15, False, True)]
    assert times(res, "session_expired") == []
    assert connects(res) and float(events(res, "connect")["session_expiry_interval"].iloc[0]) == 10


@register("sei_shorter")
def scn_sei_shorter():
    return scenario(consumer(session_expiry_interval=3, clean_start=False, outages=trace((10, 15))),
                    publisher([12, 14, 16]), horizon=30)


def test_rule3_expiry_shorter_than_outage():
    """SEI 3, offline 10..15: session deleted at 13. The message queued at 12 dies with it
    (session_expired at 13); the one at 14 finds no session; after the reconnect the client
    has a new session (SP 0) with its subscription, so 16 is delivered."""
    res = run(scn_sei_shorter())
    assert rows(res) == [(12, "session_expired", 0), (14, "no_session", 0), (16, "delivered", 0)]
    assert fate_at(res, 12) == 13
    assert times(res, "session_expired") == [13]
    assert connects(res) == [(0, False, False), (15, False, False)]
    s = res.summary
    assert (s["lost_session_expired"], s["lost_no_session"], s["sessions_expired"]) == (1, 1, 1)


@register("boundary_13", reconnect=13)
@register("boundary_14", reconnect=14)
def scn_boundary(reconnect):
    return scenario(consumer(session_expiry_interval=4, clean_start=False,
                             outages=trace((10, reconnect))),
                    publisher([12, 14]), horizon=30)


def test_rule3_reconnect_just_before_expiry_resumes():
    res = run(scn_boundary(13))
    assert rows(res) == [(12, "delivered", 0), (14, "delivered", 0)]
    assert connects(res)[-1] == (13, False, True)


def test_rule3_reconnect_at_exact_expiry_instant_finds_session_gone():
    """SEI 4, drop at 10 -> expiry at 14; reconnect at 14: expiry is processed first."""
    res = run(scn_boundary(14))
    assert times(res, "session_expired") == [14]
    assert connects(res)[-1] == (14, False, False)
    # 12 was queued in the expired session; 14 is published after the reconnect (message
    # events come after connection changes) into the fresh, re-subscribed session
    assert rows(res) == [(12, "session_expired", 0), (14, "delivered", 0)]
    assert fate_at(res, 12) == 14


@register("uint_max", never=True)
@register("uint_max_136y", never=False)
def scn_uint_max(never=True):
    return scenario(consumer(session_expiry_interval="uint_max", clean_start=False,
                             outages=trace((10, 5_000_000_000))),
                    publisher([12]), horizon=6_000_000_000, uint_max_never_expires=never)


def test_rule3_uint_max_never_expires():
    res = run(scn_uint_max(True))
    assert rows(res) == [(12, "delivered", 0)]
    assert fate_at(res, 12) == 5_000_000_000
    assert connects(res) == [(0, False, False), (5_000_000_000, False, True)]
    assert times(res, "session_expired") == []
    assert int(events(res, "connect")["session_expiry_interval"].iloc[0]) == UINT == sim.UINT_MAX


def test_rule3_uint_max_read_as_136_years_option():
    res = run(scn_uint_max(False))
    assert rows(res) == [(12, "session_expired", 0)]
    assert fate_at(res, 12) == 10 + UINT
    assert times(res, "session_expired") == [10 + UINT]
    assert connects(res)[-1] == (5_000_000_000, False, False)


@register("sei0_inflight")
def scn_sei0_inflight():
    return scenario(consumer(session_expiry_interval=0, network_latency=1,
                             outages=trace((10.5, 20))),
                    publisher([10]), horizon=30)


def test_rule3_sei0_message_in_flight_at_close_is_session_expired():
    """Latency 1: sent at 10, would arrive at 11; the connection drops at 10.5 and the
    interval-0 session ends with the QoS 1 message it held -> session_expired."""
    res = run(scn_sei0_inflight())
    assert rows(res) == [(10, "session_expired", 0)]
    assert fate_at(res, 10) == 10.5
    assert times(res, "session_ended") == [10.5]


# ================================================================ Rule 4: DISCONNECT expiry

@register("disc_shorter", sei=100, dsei=5)
@register("disc_longer", sei=5, dsei=100)
@register("disc_to_zero", sei=100, dsei=0)
@register("disc_protocol_error", sei=0, dsei=60)
@register("disc_clean_keep_5", sei=5, dsei=None)
@register("disc_clean_keep_100", sei=100, dsei=None)
def scn_disc(sei, dsei, cap="uint_max", schedule=(12, 17)):
    out = trace((10, 20), disconnect="clean")
    if dsei is not None:
        out["disconnect session expiry interval"] = dsei
    return scenario(consumer(session_expiry_interval=sei, clean_start=False, outages=out),
                    publisher(schedule), horizon=30, max_session_expiry_interval=cap)


def test_rule4_disconnect_shortens_expiry():
    res = run(scn_disc(100, 5))
    d = events(res, "disconnect")
    assert list(d["detail"]) == ["clean"] and [int(x) for x in d["reason_code"]] == [0]
    assert times(res, "session_expired") == [15]
    assert rows(res) == [(12, "session_expired", 0), (17, "no_session", 0)]
    assert fate_at(res, 12) == 15
    assert connects(res)[-1] == (20, False, False)


def test_rule4_disconnect_lengthens_expiry():
    res = run(scn_disc(5, 100))
    assert rows(res) == [(12, "delivered", 0), (17, "delivered", 0)]
    assert connects(res)[-1] == (20, False, True)
    assert times(res, "session_expired") == [] and times(res, "protocol_error") == []


def test_rule4_disconnect_to_zero_ends_session_at_close():
    res = run(scn_disc(100, 0))
    assert times(res, "session_ended") == [10]
    assert rows(res) == [(12, "no_session", 0), (17, "no_session", 0)]
    assert connects(res)[-1] == (20, False, False)
    assert times(res, "protocol_error") == []


def test_rule4_zero_to_nonzero_is_protocol_error():
    res = run(scn_disc(0, 60))
    pe = events(res, "protocol_error")
    assert [float(t) for t in pe["time"]] == [10]
    assert [int(x) for x in pe["reason_code"]] == [130]
    assert times(res, "session_ended") == [10]
    assert rows(res) == [(12, "no_session", 0), (17, "no_session", 0)]
    assert connects(res)[-1] == (20, False, False)
    assert res.summary["protocol_errors"] == 1


@pytest.mark.parametrize("sei,expected", [
    (5, [(12, "session_expired", 0), (17, "no_session", 0)]),
    (100, [(12, "delivered", 0), (17, "delivered", 0)]),
])
def test_rule4_clean_disconnect_without_value_keeps_connect_interval(sei, expected):
    res = run(scn_disc(sei, None))
    assert rows(res) == expected
    assert list(events(res, "disconnect")["detail"]) == ["clean"]


# ================================================================ Rule 5: broker maximum

@register("cap")
def scn_cap(sei=100, cap=5):
    return scenario(consumer(session_expiry_interval=sei, clean_start=False,
                             outages=trace((10, 20))),
                    publisher([12, 17]), horizon=30, max_session_expiry_interval=cap)


@pytest.mark.parametrize("sei,cap,effective", [
    (100, 5, 5), (10, 50, 10), ("uint_max", 5, 5), (5, 5, 5),
])
def test_rule5_effective_interval_in_connect_event(sei, cap, effective):
    res = run(scn_cap(sei, cap))
    seis = [int(x) for x in events(res, "connect")["session_expiry_interval"]]
    assert seis == [effective, effective]


def test_rule5_broker_cap_shortens_session():
    res = run(scn_cap(100, 5))
    assert times(res, "session_expired") == [15]
    assert rows(res) == [(12, "session_expired", 0), (17, "no_session", 0)]
    assert connects(res)[-1] == (20, False, False)


@register("cap_disconnect")
def scn_cap_disconnect():
    return scn_disc(3, 100, cap=5, schedule=(12, 14, 16))


def test_rule5_cap_applies_to_disconnect_value():
    """SEI 3, DISCONNECT asks for 100, cap 5: effective 5 -> the session lives until 15,
    so 14 is still queued (not no_session, as with 3) and dies at 15 (not kept, as with 100)."""
    res = run(scn_cap_disconnect())
    assert times(res, "session_expired") == [15]
    assert rows(res) == [(12, "session_expired", 0), (14, "session_expired", 0),
                         (16, "no_session", 0)]


# ================================================================ Rule 6: QoS 0 offline, min QoS

@register("qos0_offline", q0=False)
@register("qos0_queued", q0=True)
def scn_qos(pub_qos=0, sub_qos=1, q0=False):
    return scenario(consumer(session_expiry_interval=100, clean_start=False, qos=sub_qos,
                             outages=trace((10, 20))),
                    publisher([5, 12, 25], qos=pub_qos), horizon=30, queue_qos0_messages=q0)


def test_rule6_qos0_offline_is_lost_without_queue_qos0():
    res = run(scn_qos(0, 1, q0=False))
    assert rows(res) == [(5, "delivered", 0), (12, "qos0_offline", 0), (25, "delivered", 0)]
    assert fate_at(res, 12) == 12
    assert res.summary["lost_qos0_offline"] == 1


def test_rule6_qos0_queued_when_queue_qos0_messages():
    res = run(scn_qos(0, 1, q0=True))
    assert rows(res) == [(5, "delivered", 0), (12, "delivered", 0), (25, "delivered", 0)]
    assert fate_at(res, 12) == 20


@pytest.mark.parametrize("pub_qos,sub_qos,offline_fate", [
    (0, 0, "qos0_offline"),
    (0, 2, "qos0_offline"),   # min(0, 2) = 0
    (1, 0, "qos0_offline"),   # min(1, 0) = 0
    (2, 0, "qos0_offline"),
    (1, 1, "delivered"),
    (2, 1, "delivered"),
    (1, 2, "delivered"),
    (2, 2, "delivered"),
])
def test_rule6_delivered_qos_is_min_of_pub_and_sub(pub_qos, sub_qos, offline_fate):
    res = run(scn_qos(pub_qos, sub_qos, q0=False))
    assert rows(res) == [(5, "delivered", 0), (12, offline_fate, 0), (25, "delivered", 0)]


@register("qos0_inflight")
def scn_qos0_inflight():
    return scenario(consumer(session_expiry_interval=100, clean_start=False, network_latency=1,
                             outages=trace((10.5, 20))),
                    publisher([10], qos=0), horizon=30, queue_qos0_messages=True)


def test_rule6_qos0_in_flight_at_drop_is_qos0_offline():
    """Even with queue qos0 messages and a resumed session: QoS 0 on the wire is gone."""
    res = run(scn_qos0_inflight())
    assert rows(res) == [(10, "qos0_offline", 0)]
    assert connects(res)[-1] == (20, False, True)


# ================================================================ Rule 7: queue limits

@register("queue_count_new", limit="count", policy="drop-new")
@register("queue_count_old", limit="count", policy="drop-oldest")
@register("queue_bytes_new", limit="bytes", policy="drop-new")
@register("queue_bytes_old", limit="bytes", policy="drop-oldest")
def scn_queue(limit, policy):
    broker = {"queue_full_policy": policy}
    if limit == "count":
        broker["max_queued_messages"] = 2
    else:
        broker["max_queued_bytes"] = 2 * PAYLOAD      # room for exactly two 100-byte payloads
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 20))),
                    publisher([5, 11, 12, 13, 14, 25]), horizon=30, **broker)


@pytest.mark.parametrize("limit", ["count", "bytes"])
def test_rule7_queue_full_drop_new(limit):
    res = run(scn_queue(limit, "drop-new"))
    assert rows(res) == [(5, "delivered", 0), (11, "delivered", 0), (12, "delivered", 0),
                         (13, "queue_full", 0), (14, "queue_full", 0), (25, "delivered", 0)]
    assert fate_at(res, 13) == 13 and fate_at(res, 14) == 14
    assert fate_at(res, 11) == 20 and fate_at(res, 12) == 20
    assert mem_at(res, 15, "queued") == 2
    assert res.summary["lost_queue_full"] == 2
    assert res.summary["queued_messages_peak"] == 2
    # dropped messages are never stored
    assert mem_at(res, 15, "message_bytes") == 2 * MSG
    assert mem_at(res, 15, "entry_bytes") == 2 * ENTRY_OVH


@pytest.mark.parametrize("limit", ["count", "bytes"])
def test_rule7_queue_full_drop_oldest(limit):
    """13 evicts 11, 14 evicts 12: the two newest survive."""
    res = run(scn_queue(limit, "drop-oldest"))
    assert rows(res) == [(5, "delivered", 0), (11, "queue_full", 0), (12, "queue_full", 0),
                         (13, "delivered", 0), (14, "delivered", 0), (25, "delivered", 0)]
    assert fate_at(res, 11) == 13 and fate_at(res, 12) == 14
    assert fate_at(res, 13) == 20 and fate_at(res, 14) == 20
    assert mem_at(res, 15, "queued") == 2
    # evicted messages release their entry and body
    assert mem_at(res, 15, "message_bytes") == 2 * MSG
    assert mem_at(res, 15, "entry_bytes") == 2 * ENTRY_OVH


# ================================================================ Rule 8: message expiry

@register("msg_expiry_eager", check="eager")
@register("msg_expiry_lazy", check="lazy")
def scn_msg_expiry(check, mei=5):
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 30))),
                    publisher([12, 28], message_expiry_interval=mei), horizon=40,
                    message_expiry_check=check)


@pytest.mark.parametrize("check", ["eager", "lazy"])
def test_rule8_message_expires_while_queued(check):
    res = run(scn_msg_expiry(check))
    assert rows(res) == [(12, "message_expired", 0), (28, "delivered", 0)]
    assert fate_at(res, 28) == 30
    if check == "eager":
        assert fate_at(res, 12) == 17            # removed when it expires
        assert mem_at(res, 20, "queued") == 0
        assert mem_at(res, 20, "entry_bytes") == 0 and mem_at(res, 20, "message_bytes") == 0
    else:
        assert 17 <= fate_at(res, 12) <= 30      # found expired at the resume at the latest
        assert mem_at(res, 20, "queued") == 1    # still held while the client is away
        assert mem_at(res, 20, "entry_bytes") == ENTRY_OVH
        assert mem_at(res, 20, "message_bytes") == MSG
    assert res.summary["lost_message_expired"] == 1


def test_rule8_message_expiry_longer_than_wait_is_delivered():
    res = run(scn_msg_expiry("eager", mei=20))      # 12 + 20 = 32 > 30
    assert rows(res) == [(12, "delivered", 0), (28, "delivered", 0)]
    assert fate_at(res, 12) == 30


@register("lazy_slots_eager", check="eager")
@register("lazy_slots_lazy", check="lazy")
def scn_lazy_slots(check):
    stale = publisher([11, 12], client_id="pa", message_expiry_interval=2)   # expire at 13, 14
    fresh = publisher([20], client_id="pb")                                   # no expiry
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 30))),
                    [stale, fresh], horizon=40, message_expiry_check=check,
                    max_queued_messages=2, queue_full_policy="drop-new")


@pytest.mark.parametrize("check,fresh_fate", [("eager", "delivered"), ("lazy", "queue_full")])
def test_rule8_lazy_expired_messages_still_fill_the_queue(check, fresh_fate):
    res = run(scn_lazy_slots(check))
    # the stale messages' fates are the same either way; the fresh one is tail-dropped
    # under lazy because the two expired messages still hold both queue slots at t=20
    assert rows(res) == [(11, "message_expired", 0), (12, "message_expired", 0),
                         (20, fresh_fate, 0)]
    assert mem_at(res, 15, "queued") == (0 if check == "eager" else 2)
    if check == "eager":
        assert fate_at(res, 20) == 30
    else:
        assert fate_at(res, 20) == 20


# ================================================================ Rule 9: no session

@register("no_session_qos2")
def scn_no_session():
    return scenario(consumer(qos=2, outages=trace((10, 20))),
                    publisher([9, 10, 19, 20], qos=2), horizon=30)


def test_rule9_no_session_while_away_with_sei0():
    """Drop at 10 and reconnect at 20: a message at the same instant as a connection change
    is handled after it (10 finds no session, 20 finds the new session)."""
    res = run(scn_no_session())
    assert rows(res) == [(9, "delivered", 0), (10, "no_session", 0), (19, "no_session", 0),
                         (20, "delivered", 0)]
    assert fate_at(res, 10) == 10 and fate_at(res, 19) == 19


# ================================================================ Rule 10: publisher side

@register("pub_offline_0", buffer=0)
@register("pub_offline_1", buffer=1)
def scn_pub_offline(buffer, consumers=1):
    return scenario(consumer(clients=consumers),
                    publisher([5, 12, 15, 25], offline_buffer=buffer, outages=trace((10, 20))),
                    horizon=30)


def test_rule10_publisher_offline_without_buffer():
    res = run(scn_pub_offline(0, consumers=2))
    for c in ("c-0", "c-1"):
        assert rows(res, c) == [(5, "delivered", 0), (12, "publisher_offline", 0),
                                (15, "publisher_offline", 0), (25, "delivered", 0)]
        assert fate_at(res, 12, c) == 12
    s = res.summary
    # published counts what the application produced; each is lost for every consumer
    assert (s["published"], s["routed"], s["lost_publisher_offline"]) == (4, 8, 4)
    d = events(res, "disconnect", "p-0")
    assert [float(t) for t in d["time"]] == [10] and list(d["role"]) == ["publisher"]


def test_rule10_publisher_offline_buffer_holds_first_messages():
    res = run(scn_pub_offline(1))
    assert rows(res) == [(5, "delivered", 0), (12, "delivered", 0),
                         (15, "publisher_offline", 0), (25, "delivered", 0)]
    assert fate_at(res, 12) == 20      # sent when the publisher is back


@register("pub_inflight_resume", drop=10.5)
@register("pub_inflight_clean", drop=10.5, reconnect_clean=True)
@register("pub_inflight_expired", drop=10.5, pub_sei=5)
@register("pub_acked_late_q1", drop=11.5, qos=1)
@register("pub_acked_late_q2", drop=11.5, qos=2)
@register("pub_inflight_qos0", drop=10.5, qos=0)
def scn_pub_inflight(drop, qos=1, pub_sei=100, reconnect_clean=False):
    """Publisher latency 1: PUBLISH sent at 10 reaches the broker at 11, PUBACK back at 12."""
    out = trace((drop, 20), reconnect_clean_start=reconnect_clean)
    return scenario(consumer(qos=max(qos, 1)),
                    publisher([10], qos=qos, session_expiry_interval=pub_sei, clean_start=False,
                              network_latency=1, outages=out),
                    horizon=40)


def test_rule10_publisher_inflight_resent_after_resume():
    res = run(scn_pub_inflight(10.5))
    assert connects(res, "p-0") == [(0, False, False), (20, False, True)]
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 21      # re-sent at 20, reaches the broker (and consumer) at 21


def test_rule10_publisher_inflight_lost_on_clean_start():
    res = run(scn_pub_inflight(10.5, reconnect_clean=True))
    assert connects(res, "p-0")[-1] == (20, True, False)
    assert rows(res) == [(10, "publisher_inflight", 0)]
    assert res.summary["lost_publisher_inflight"] == 1


def test_rule10_publisher_inflight_lost_when_session_expired():
    res = run(scn_pub_inflight(10.5, pub_sei=5))     # publisher session gone at 15.5
    assert times(res, "session_expired", "p-0") == [15.5]
    assert connects(res, "p-0")[-1] == (20, False, False)
    assert rows(res) == [(10, "publisher_inflight", 0)]


@pytest.mark.parametrize("qos,dups", [(1, 1), (2, 0)])
def test_rule10_publisher_resend_of_received_message(qos, dups):
    """Drop at 11.5: the broker got the PUBLISH at 11 (consumer delivered at 11) but the
    PUBACK/PUBREC never reached the publisher. After the resume the publisher re-sends:
    QoS 1 is routed again (a duplicate at the consumer); QoS 2 is not."""
    res = run(scn_pub_inflight(11.5, qos=qos))
    assert rows(res) == [(10, "delivered", dups)]
    assert fate_at(res, 10) == 11
    assert res.summary["duplicates"] == dups


def test_rule10_publisher_qos0_in_flight_is_lost():
    res = run(scn_pub_inflight(10.5, qos=0))
    assert rows(res) == [(10, "publisher_inflight", 0)]


# ================================================================ latency: duplicates, in flight

@register("lat_dup_11", pub_qos=1, sub_qos=1)
@register("lat_dup_22", pub_qos=2, sub_qos=2)
@register("lat_before_receipt", drop=10.5)
@register("lat_before_receipt_clean", drop=10.5, reconnect_clean=True)
@register("lat_received_clean", drop=11.5, reconnect_clean=True)
def scn_latency(pub_qos=1, sub_qos=1, drop=11.5, reconnect_clean=False):
    """Consumer latency 1: sent at 10, received at 10 + 1 = 11, PUBACK at the broker at 12."""
    out = trace((drop, 20), reconnect_clean_start=reconnect_clean)
    return scenario(consumer(session_expiry_interval=100, clean_start=False, qos=sub_qos,
                             network_latency=1, outages=out),
                    publisher([10], qos=pub_qos), horizon=40)


@pytest.mark.parametrize("pub_qos,sub_qos,dups", [
    (1, 1, 1),
    (2, 2, 0),   # QoS 2 is never duplicated
    (2, 1, 1),   # delivered QoS min(2, 1) = 1
    (1, 2, 1),   # delivered QoS min(1, 2) = 1
])
def test_latency_received_but_unacked_is_resent(pub_qos, sub_qos, dups):
    res = run(scn_latency(pub_qos, sub_qos, drop=11.5))
    assert connects(res)[-1] == (20, False, True)
    assert rows(res) == [(10, "delivered", dups)]
    assert fate_at(res, 10) == 11        # the first receipt delivers it
    assert res.summary["duplicates"] == dups


def test_latency_drop_before_receipt_resent_once():
    res = run(scn_latency(drop=10.5))
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 21        # re-sent at the resume (20), received at 21


def test_latency_drop_before_receipt_then_clean_start():
    res = run(scn_latency(drop=10.5, reconnect_clean=True))
    assert rows(res) == [(10, "clean_start", 0)]


def test_latency_received_then_clean_start_is_still_delivered():
    """The application already has it (received at 11); only the broker's unacked copy is
    discarded by the clean start at 20."""
    res = run(scn_latency(drop=11.5, reconnect_clean=True))
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 11


@register("receive_max_1")
def scn_receive_max():
    return scenario(consumer(network_latency=1, receive_maximum=1),
                    publisher([10, 10.5]), horizon=30)


def test_receive_maximum_one_serialises_inflight():
    """Window 1: the second PUBLISH waits for the first PUBACK (at 12), arrives at 13."""
    res = run(scn_receive_max())
    assert rows(res) == [(10, "delivered", 0), (10.5, "delivered", 0)]
    assert fate_at(res, 10) == 11 and fate_at(res, 10.5) == 13


# ================================================================ pending, departure (departed fates)

@register("pending_queued")
def scn_pending():
    return scenario(consumer(session_expiry_interval="uint_max", clean_start=False,
                             outages=trace((10, 1000))),
                    publisher([5, 20]), horizon=100)


def test_pending_queued_at_horizon():
    res = run(scn_pending())
    assert rows(res) == [(5, "delivered", 0), (20, "pending", 0)]
    assert fate_at(res, 20) == 100
    assert res.summary["pending"] == 1 and res.summary["lost"] == 0
    assert res.summary["loss_ratio"] == 0


@register("pending_inflight")
def scn_pending_inflight():
    return scenario(consumer(network_latency=5), publisher([90, 98]), horizon=100)


def test_pending_in_flight_at_horizon():
    res = run(scn_pending_inflight())
    assert rows(res) == [(90, "delivered", 0), (98, "pending", 0)]
    assert fate_at(res, 90) == 95


@register("pending_pub_buffer")
def scn_pending_pub():
    return scenario(consumer(),
                    publisher([20], offline_buffer=5, outages=trace((10, 1000))), horizon=100)


def test_pending_unsent_in_publisher_buffer_at_horizon():
    res = run(scn_pending_pub())
    assert rows(res) == [(20, "pending", 0)]


@register("leave_uint_max", sei="uint_max")
@register("leave_finite", sei=30)
@register("leave_sei0", sei=0)
def scn_leave(sei):
    return scenario(consumer(session_expiry_interval=sei, clean_start=False,
                             outages=trace((10, None))),
                    publisher([5, 20, 50]), horizon=100)


def test_leave_for_good_uint_max_strands_messages():
    res = run(scn_leave("uint_max"))
    assert rows(res) == [(5, "delivered", 0), (20, "departed_held", 0), (50, "departed_held", 0)]
    assert fate_at(res, 20) == 100
    assert times(res, "departed") == [10]
    f = fates_row(res)
    assert bool(f["departed"]) and f["departed_held"] == 2 and f["departed_pairs"] == 2 and f["routed"] == 3
    s = res.summary
    assert (s["departed_held"], s["departed_pairs"], s["departures"], s["lost"]) == (2, 2, 1, 0)
    # traffic to the departed device is not loss: 1 pair counts, and it was delivered
    assert s["loss_ratio"] == 0 and f["loss_ratio"] == 0
    # the stranded session keeps its queue: session + 2 entries; shared bodies in the store
    assert mem_at(res, 60, "stranded_bytes") == SESSION + 2 * ENTRY_OVH
    assert mem_at(res, 60, "store_bytes") == 2 * MSG
    assert mem_at(res, 60, "entry_bytes") == 2 * ENTRY_OVH


def test_leave_for_good_finite_expiry():
    """SEI 30, left at 10: the session dies at 40 with 20 in it (traffic to a departed
    device, not loss); at 50 the departed client has no session and is no longer a matching
    consumer: no pair at all."""
    res = run(scn_leave(30))
    assert rows(res) == [(5, "delivered", 0), (20, "departed_expired", 0)]
    assert res.summary["lost"] == 0 and res.summary["departed_expired"] == 1
    assert fate_at(res, 20) == 40
    assert times(res, "session_expired") == [40]
    assert fates_row(res)["routed"] == 2
    for col in ("entry_bytes", "message_bytes", "offline_bytes", "stranded_bytes"):
        assert mem_at(res, 60, col) == 0, col


def test_leave_for_good_sei0_no_pairs_after_leaving():
    res = run(scn_leave(0))
    assert rows(res) == [(5, "delivered", 0)]
    assert res.summary["routed"] == 1


@register("replace")
def scn_replace():
    return scenario(consumer(outages=trace((10, None), replace_departed=True)),
                    publisher([5, 20]), horizon=30)


def test_replacement_joins_when_one_leaves():
    res = run(scn_replace())
    joined = res.events[res.events["event"] == "joined"]
    assert [float(t) for t in joined["time"]] == [10]
    new = joined["client_id"].iloc[0]
    assert new == "c-1"        # <prefix>-<n>, numbered on from the block's clients
    assert rows(res, "c-0") == [(5, "delivered", 0)]
    assert rows(res, new) == [(20, "delivered", 0)]
    f = res.fates.set_index("client_id")
    assert bool(f.loc["c-0", "departed"]) and not bool(f.loc[new, "departed"])
    assert len(f) == 2


# ================================================================ topic filters

FILTERS = {           # client id prefix -> (topic filter, topics it must receive)
    "alpha": ("sensors/+/temp", {"sensors/0/temp", "sensors/1/temp"}),
    "bravo": ("sensors/#", {"sensors/0/temp", "sensors/1/temp", "sensors"}),
    "charlie": ("other/#", set()),
    "delta": ("sensors/0/+", {"sensors/0/temp"}),
    "echo": ("sensors/+", set()),   # one level only: neither sensors/x/temp nor "sensors"
}


@register("topics")
def scn_topics():
    cons = [consumer(client_id=k, topic_filter=v[0]) for k, v in FILTERS.items()]
    pubs = [publisher([5], clients=2, client_id="ps", topic="sensors/{id}/temp"),
            publisher([6], client_id="pt", topic="sensors")]
    return scenario(cons, pubs, horizon=10)


def test_topic_filter_matching():
    res = run(scn_topics())
    m = res.messages
    f = res.fates
    assert len(f) == len(FILTERS)
    for prefix, (_, topics) in FILTERS.items():
        ids = [c for c in f["client_id"] if str(c).startswith(prefix)]
        assert len(ids) == 1, (prefix, list(f["client_id"]))
        got = m[m["consumer"] == ids[0]]
        assert set(got["topic"]) == topics, prefix
        assert (got["fate"] == "delivered").all()
        assert int(f[f["client_id"] == ids[0]]["routed"].iloc[0]) == len(topics)
    assert res.summary["published"] == 3
    assert res.summary["routed"] == 2 + 3 + 0 + 1 + 0


# ================================================================ memory
#
# Every session counts while it exists, publishers' too (PUB bytes, no subscriptions). The
# memory scenarios give their publisher SEI 100 so it holds PUB bytes for the whole run.

def persistent_publisher(schedule, **kw):
    return publisher(schedule, session_expiry_interval=100, clean_start=False, **kw)


@register("memory_queue")
def scn_memory_queue():
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 50))),
                    persistent_publisher([20, 30]), horizon=60)


def test_memory_step_function_of_queued_messages():
    res = run(scn_memory_queue())
    assert rows(res) == [(20, "delivered", 0), (30, "delivered", 0)]
    one = SESSION + ENTRY_OVH + MSG          # 1465
    two = SESSION + 2 * ENTRY_OVH + 2 * MSG  # 1824
    assert (SESSION, one, two, PUB) == (1106, 1465, 1824, 1003)
    assert mem_at(res, 5) == SESSION + PUB
    assert mem_at(res, 5, "connected_bytes") == SESSION + PUB
    assert mem_at(res, 15) == SESSION + PUB
    assert mem_at(res, 15, "offline_bytes") == SESSION
    assert mem_at(res, 15, "connected_bytes") == PUB
    assert mem_at(res, 25) == one + PUB
    assert mem_at(res, 35) == two + PUB
    assert mem_at(res, 35, "session_bytes") == SESSION + PUB
    assert mem_at(res, 35, "entry_bytes") == 2 * ENTRY_OVH
    assert mem_at(res, 35, "message_bytes") == 2 * MSG
    assert mem_at(res, 35, "offline_bytes") == SESSION + 2 * ENTRY_OVH
    assert mem_at(res, 35, "store_bytes") == 2 * MSG
    assert mem_at(res, 35, "stranded_bytes") == 0
    assert mem_at(res, 35, "queued") == 2 and mem_at(res, 35, "sessions") == 2
    assert mem_at(res, 55) == SESSION + PUB and mem_at(res, 55, "queued") == 0
    s = res.summary
    byte_seconds = (SESSION + PUB) * 60 + (one - SESSION) * 10 + (two - SESSION) * 20   # 144490
    assert s["memory_peak_bytes"] == two + PUB
    assert s["memory_final_bytes"] == SESSION + PUB
    assert s["memory_byte_seconds"] == pytest.approx(byte_seconds)
    assert s["memory_mean_bytes"] == pytest.approx(byte_seconds / 60)
    assert s["memory_mean_connected_bytes"] == pytest.approx((SESSION * 20 + PUB * 60) / 60)
    assert s["memory_mean_offline_bytes"] == pytest.approx(
        (SESSION * 40 + ENTRY_OVH * 10 + 2 * ENTRY_OVH * 20) / 60)
    assert s["memory_mean_store_bytes"] == pytest.approx((MSG * 10 + 2 * MSG * 20) / 60)
    assert s["memory_mean_stranded_bytes"] == 0
    assert s["queued_messages_peak"] == 2


@register("memory_sei0")
def scn_memory_sei0():
    return scenario(consumer(outages=trace((10, 20))),
                    publisher([25], outages=trace((10, 20))), horizon=30)


def test_memory_zero_without_session():
    """SEI 0 + clean start for everyone: while both clients are disconnected there is no
    session at all, so the broker holds nothing."""
    res = run(scn_memory_sei0())
    assert mem_at(res, 5) >= SESSION
    assert mem_at(res, 15) == 0 and mem_at(res, 15, "sessions") == 0
    assert mem_at(res, 25) >= SESSION
    assert rows(res) == [(25, "delivered", 0)]


@register("memory_expiry")
def scn_memory_expiry():
    return scenario(consumer(session_expiry_interval=5, clean_start=False,
                             outages=trace((10, 50))),
                    persistent_publisher([12]), horizon=60)


def test_memory_released_when_session_expires():
    res = run(scn_memory_expiry())
    assert mem_at(res, 13) == SESSION + ENTRY_OVH + MSG + PUB
    assert mem_at(res, 16) == PUB                  # session, entry and message body gone
    assert mem_at(res, 16, "store_bytes") == 0
    assert mem_at(res, 55) == SESSION + PUB
    assert rows(res) == [(12, "session_expired", 0)]


@register("memory_shared", shared=True)
@register("memory_copied", shared=False)
def scn_memory_store(shared):
    return scenario(consumer(clients=2, session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 50))),
                    persistent_publisher([20]), horizon=60, shared_message_store=shared)


@pytest.mark.parametrize("shared,bodies", [(True, 1), (False, 2)])
def test_memory_shared_store_counts_message_once(shared, bodies):
    res = run(scn_memory_store(shared))
    assert mem_at(res, 25) == 2 * SESSION + 2 * ENTRY_OVH + bodies * MSG + PUB
    assert mem_at(res, 25, "message_bytes") == bodies * MSG
    assert mem_at(res, 25, "entry_bytes") == 2 * ENTRY_OVH
    assert mem_at(res, 55) == 2 * SESSION + PUB
    assert rows(res, "c-0") == rows(res, "c-1") == [(20, "delivered", 0)]


@register("memory_pub_sei", pub_sei=100)
@register("memory_pub_sei0", pub_sei=0)
def scn_memory_pub(pub_sei):
    return scenario(consumer(),
                    publisher([25], topic="x/y", session_expiry_interval=pub_sei,
                              clean_start=False, outages=trace((10, 20))),
                    horizon=30)


def test_memory_offline_publisher_session_counts_with_nonzero_expiry():
    res = run(scn_memory_pub(100))
    assert mem_at(res, 5) == SESSION + PUB
    assert mem_at(res, 15) == SESSION + PUB          # offline publisher session kept
    assert mem_at(res, 15, "offline_bytes") == PUB   # no subscriptions, no queue
    assert mem_at(res, 25) == SESSION + PUB
    assert connects(res, "p-0") == [(0, False, False), (20, False, True)]
    assert res.summary["routed"] == 0                # x/y matches no consumer


def test_memory_offline_publisher_with_sei0_holds_nothing():
    res = run(scn_memory_pub(0))
    assert mem_at(res, 15) == SESSION
    assert mem_at(res, 15, "offline_bytes") == 0


def test_memory_connected_sei0_publisher_counts_while_connected():
    """docs/model.md: every session counts from CONNECT until it ends; a connected client
    always has a session whatever its expiry interval. The SEI-0 publisher's ends at 10."""
    res = run(scn_memory_pub(0))
    assert mem_at(res, 5) == SESSION + PUB
    assert mem_at(res, 5, "connected_bytes") == SESSION + PUB
    assert mem_at(res, 15) == SESSION
    assert mem_at(res, 25) == SESSION + PUB


# ================================================================ further edge cases

@register("inflight_window_new", policy="drop-new")
@register("inflight_window_old", policy="drop-oldest")
def scn_window_queue(policy):
    """Connected, latency 1, Receive Maximum 1, max queued 1: A (10) is in flight until its
    PUBACK reaches the broker at 12; B (10.2) is the one queued entry; C (10.4) finds the
    queue full. The in-flight message does not count toward 'max queued messages'."""
    return scenario(consumer(network_latency=1, receive_maximum=1),
                    publisher([10, 10.2, 10.4]), horizon=30,
                    max_queued_messages=1, queue_full_policy=policy)


@pytest.mark.parametrize("policy,expected,at", [
    ("drop-new", [(10, "delivered", 0), (10.2, "delivered", 0), (10.4, "queue_full", 0)],
     {10: 11, 10.2: 13, 10.4: 10.4}),
    ("drop-oldest", [(10, "delivered", 0), (10.2, "queue_full", 0), (10.4, "delivered", 0)],
     {10: 11, 10.2: 10.4, 10.4: 13}),
])
def test_rule7_queue_limit_counts_queued_not_in_flight(policy, expected, at):
    res = run(scn_window_queue(policy))
    assert rows(res) == expected
    assert {t: fate_at(res, t) for t in at} == at


@register("qos0_counts_toward_limit")
def scn_qos0_limit():
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 20))),
                    [publisher([12], client_id="pz", qos=0), publisher([13], client_id="po", qos=1)],
                    horizon=30, queue_qos0_messages=True, max_queued_messages=1)


def test_rule6_7_queued_qos0_counts_toward_the_limit():
    res = run(scn_qos0_limit())
    assert rows(res) == [(12, "delivered", 0), (13, "queue_full", 0)]
    assert fate_at(res, 12) == 20


@register("inflight_not_expired_q1", qos=1)
@register("inflight_not_expired_q2", qos=2)
def scn_inflight_mei(qos):
    return scenario(consumer(session_expiry_interval=100, clean_start=False, qos=qos,
                             network_latency=1, outages=trace((10.5, 20))),
                    publisher([10], qos=qos, message_expiry_interval=5), horizon=30)


@pytest.mark.parametrize("qos", [1, 2])
def test_rule8_message_in_flight_is_not_expired(qos):
    """Sent at 10 (onward delivery started), lost on the wire at 10.5; its expiry (15)
    passes while it is in flight, not queued: re-sent at the resume, received at 21
    ([MQTT-3.3.2-5] only deletes copies whose onward delivery has not started)."""
    res = run(scn_inflight_mei(qos))
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 21


@register("resend_first")
def scn_resend_first():
    return scenario(consumer(session_expiry_interval=100, clean_start=False, network_latency=1,
                             receive_maximum=1, outages=trace((10.5, 20))),
                    publisher([10, 12]), horizon=30)


def test_rule2_unacked_resent_before_queue():
    """A (sent 10) is unacked at the drop, B (12) is queued. At the resume A is re-sent
    first (received 21, PUBACK at 22), then B is sent with the freed window (received 23)."""
    res = run(scn_resend_first())
    assert rows(res) == [(10, "delivered", 0), (12, "delivered", 0)]
    assert fate_at(res, 10) == 21 and fate_at(res, 12) == 23


@register("publish_at_expiry")
def scn_publish_at_expiry():
    return scenario(consumer(session_expiry_interval=3, clean_start=False,
                             outages=trace((10, 20))),
                    publisher([12, 13]), horizon=30)


def test_rule3_publish_at_expiry_instant_finds_no_session():
    """Expiry at 13 is processed before a message published at 13."""
    res = run(scn_publish_at_expiry())
    assert rows(res) == [(12, "session_expired", 0), (13, "no_session", 0)]


@register("two_outages_resume", second=30)
@register("two_outages_expire", second=40)
def scn_two_outages(second):
    return scenario(consumer(session_expiry_interval=15, clean_start=False,
                             outages=trace((10, 20), (22, second))),
                    publisher([24]), horizon=50)


def test_rule3_resume_cancels_the_earlier_expiry():
    """SEI 15: the first outage's expiry (25) is cancelled by the resume at 20; the second
    outage (22..30) would expire at 37, so the message queued at 24 survives."""
    res = run(scn_two_outages(30))
    assert connects(res) == [(0, False, False), (20, False, True), (30, False, True)]
    assert times(res, "session_expired") == []
    assert rows(res) == [(24, "delivered", 0)]
    assert fate_at(res, 24) == 30


def test_rule3_second_outage_expires():
    res = run(scn_two_outages(40))
    assert times(res, "session_expired") == [37]
    assert connects(res) == [(0, False, False), (20, False, True), (40, False, False)]
    assert rows(res) == [(24, "session_expired", 0)]
    assert fate_at(res, 24) == 37


@register("replace_finite")
def scn_replace_finite():
    return scenario(consumer(session_expiry_interval=30, clean_start=False,
                             outages=trace((10, None), replace_departed=True)),
                    publisher([5, 20, 50]), horizon=100)


def test_replacement_while_departed_session_still_exists():
    """The departed c-0 keeps a matching session until 40: 20 is routed to it too (and dies
    with it: traffic to a departed device, not loss); 50 reaches only the replacement."""
    res = run(scn_replace_finite())
    joined = res.events[res.events["event"] == "joined"]
    new = joined["client_id"].iloc[0]
    assert new == "c-1"
    assert rows(res, "c-0") == [(5, "delivered", 0), (20, "departed_expired", 0)]
    assert res.summary["lost"] == 0 and res.summary["loss_ratio"] == 0
    assert rows(res, new) == [(20, "delivered", 0), (50, "delivered", 0)]
    assert fate_at(res, 20, "c-0") == 40
    assert res.summary["routed"] == 4


@register("memory_inflight")
def scn_memory_inflight():
    return scenario(consumer(network_latency=10), persistent_publisher([10]), horizon=40)


def test_memory_counts_in_flight_entries():
    """Latency 10: sent at 10, received at 20, PUBACK back at the broker at 30. The entry
    and the message body are held (in flight, not queued) until the PUBACK."""
    res = run(scn_memory_inflight())
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 20
    for t in (15, 25):
        assert mem_at(res, t) == SESSION + ENTRY_OVH + MSG + PUB
        assert mem_at(res, t, "entry_bytes") == ENTRY_OVH
        assert mem_at(res, t, "queued") == 0
    assert mem_at(res, 31) == SESSION + PUB


@register("pub_received_then_clean")
def scn_pub_received_clean():
    return scn_pub_inflight(11.5, reconnect_clean=True)


def test_rule10_publisher_clean_start_after_broker_received_keeps_delivery():
    """The broker received the PUBLISH at 11 and delivered it at once; only the PUBACK was
    lost. Starting clean loses the publisher's copy, not the consumer's delivery."""
    res = run(scn_pub_received_clean())
    assert rows(res) == [(10, "delivered", 0)]
    assert fate_at(res, 10) == 11


@register("departed_before_expiry")
def scn_departed_before_expiry():
    return scenario(consumer(session_expiry_interval=1000, clean_start=False,
                             outages=trace((10, None))),
                    publisher([20]), horizon=100)


def test_departed_session_alive_at_horizon_is_departed_held_not_pending():
    res = run(scn_departed_before_expiry())
    assert rows(res) == [(20, "departed_held", 0)]
    assert res.summary["pending"] == 0 and res.summary["departed_held"] == 1
    assert math.isnan(res.summary["loss_ratio"])  # no pair of a returning consumer


@register("departed_in_flight")
def scn_departed_in_flight():
    return scenario(consumer(session_expiry_interval="uint_max", clean_start=False,
                             network_latency=1, outages=trace((10.5, None))),
                    publisher([10]), horizon=30)


def test_departed_with_message_in_flight_is_departed_not_lost():
    res = run(scn_departed_in_flight())
    assert rows(res) == [(10, "departed_held", 0)]


@register("window_expiry_eager", check="eager")
@register("window_expiry_lazy", check="lazy")
def scn_window_expiry(check):
    return scenario(consumer(network_latency=10, receive_maximum=1),
                    publisher([10, 11], message_expiry_interval=5), horizon=60,
                    message_expiry_check=check)


@pytest.mark.parametrize("check", ["eager", "lazy"])
def test_rule8_expiry_while_queued_behind_the_window(check):
    """Connected, Receive Maximum 1, latency 10: A (10) occupies the window until its
    PUBACK at 30. B (11) waits in the queue and expires at 16 - found at once (eager) or
    when it is about to be sent at 30 (lazy); either way message_expired."""
    res = run(scn_window_expiry(check))
    assert rows(res) == [(10, "delivered", 0), (11, "message_expired", 0)]
    assert fate_at(res, 10) == 20
    if check == "eager":
        assert fate_at(res, 11) == 16
    else:
        assert 16 <= fate_at(res, 11) <= 30


def scn_csv_trace(path):
    return scenario(consumer(clients=2, session_expiry_interval="uint_max", clean_start=False,
                             outages={"trace": str(path)}),
                    publisher([15, 25]), horizon=30)


def test_trace_from_csv_per_client(tmp_path):
    p = tmp_path / "trace.csv"
    p.write_text("client,disconnect,reconnect\n0,10,20\n1,10,\n")
    res = run(scn_csv_trace(p))
    assert rows(res, "c-0") == [(15, "delivered", 0), (25, "delivered", 0)]
    assert rows(res, "c-1") == [(15, "departed_held", 0), (25, "departed_held", 0)]
    assert connects(res, "c-0")[-1] == (20, False, True)
    assert times(res, "departed", "c-1") == [10]
    check_conservation(res)


@pytest.mark.parametrize("sei,dsei,protocol_error", [
    # CONNECT packet value was non-zero: legal; the new value is capped to 0 -> ends at close
    (100, 60, False),
    (0, 60, True),      # CONNECT value was 0: the client's non-zero DISCONNECT is an error
])
def test_rule4_5_cap_zero_and_disconnect_value(sei, dsei, protocol_error):
    """Broker maximum 0: every session ends at the close. Whether the DISCONNECT is a
    Protocol Error depends on the CONNECT packet's value (§3.14.2.2.2), not on the cap."""
    res = run(scn_disc(sei, dsei, cap=0))
    assert [int(x) for x in events(res, "connect")["session_expiry_interval"]] == [0, 0]
    assert times(res, "protocol_error") == ([10] if protocol_error else [])
    assert times(res, "session_ended") == [10]
    assert rows(res) == [(12, "no_session", 0), (17, "no_session", 0)]
    assert connects(res)[-1] == (20, False, False)


@register("double_duplicate")
def scn_double_dup():
    return scenario(consumer(session_expiry_interval=100, clean_start=False, network_latency=1,
                             outages=trace((11.5, 20), (21.5, 30))),
                    publisher([10]), horizon=40)


def test_latency_qos1_resent_twice_counts_two_duplicates():
    """Received at 11, dropped before the PUBACK (11.5); re-sent at 20, received again at 21
    (duplicate 1), dropped before the PUBACK (21.5); re-sent at 30, received at 31
    (duplicate 2), acknowledged at 32."""
    res = run(scn_double_dup())
    assert rows(res) == [(10, "delivered", 2)]
    assert fate_at(res, 10) == 11
    assert res.summary["duplicates"] == 2


@register("clean_start_after_expiry")
def scn_clean_after_expiry():
    return scenario(consumer(session_expiry_interval=3, clean_start=False,
                             outages=trace((10, 20), reconnect_clean_start=True)),
                    publisher([12]), horizon=30)


def test_rule1_clean_start_when_session_already_expired():
    """Nothing left to discard: the queued message died with the session at 13."""
    res = run(scn_clean_after_expiry())
    assert rows(res) == [(12, "session_expired", 0)]
    assert times(res, "session_discarded") == []
    assert connects(res)[-1] == (20, True, False)


@register("offline_inflight_not_queued")
def scn_offline_inflight_limit():
    return scenario(consumer(session_expiry_interval=100, clean_start=False, network_latency=1,
                             outages=trace((10.5, 20))),
                    publisher([10, 12, 13]), horizon=30, max_queued_messages=1)


def test_rule7_unacked_message_of_offline_session_is_not_queued():
    """A (sent at 10) is unacknowledged when the connection drops at 10.5: it stays in
    flight for the re-send, outside the queue. B (12) takes the one queue slot, C (13)
    finds the queue full. At 20 A is re-sent and B sent: both received at 21."""
    res = run(scn_offline_inflight_limit())
    assert rows(res) == [(10, "delivered", 0), (12, "delivered", 0), (13, "queue_full", 0)]
    assert fate_at(res, 10) == 21 and fate_at(res, 12) == 21


@register("shared_refcount")
def scn_shared_refcount(path=None):
    out = {"trace": str(path)} if path else trace((10, 20))
    return scenario(consumer(clients=2, session_expiry_interval=100, clean_start=False,
                             outages=out),
                    persistent_publisher([15]), horizon=50)


def test_memory_shared_body_kept_while_any_session_refers_to_it(tmp_path):
    p = tmp_path / "trace.csv"
    p.write_text("client,disconnect,reconnect\n0,10,20\n1,10,40\n")
    res = run(scn_shared_refcount(p))
    assert rows(res, "c-0") == [(15, "delivered", 0)]
    assert rows(res, "c-1") == [(15, "delivered", 0)]
    assert fate_at(res, 15, "c-0") == 20 and fate_at(res, 15, "c-1") == 40
    assert mem_at(res, 16) == 2 * SESSION + PUB + 2 * ENTRY_OVH + MSG
    assert mem_at(res, 30) == 2 * SESSION + PUB + ENTRY_OVH + MSG    # c-1 still refers to it
    assert mem_at(res, 30, "message_bytes") == MSG
    assert mem_at(res, 45) == 2 * SESSION + PUB
    check_conservation(res)


LAZY_END_CASES = {
    # name: (consumer keys, outage pairs, outage extras)
    "session_expiry": ({"session_expiry_interval": 40}, [(10, 60)], {}),
    "clean_start": ({"session_expiry_interval": 100}, [(10, 30)], {"reconnect_clean_start": True}),
    "stranded": ({"session_expiry_interval": "uint_max"}, [(10, None)], {}),
    "pending": ({"session_expiry_interval": "uint_max"}, [(10, 1000)], {}),
}


def scn_lazy_end(case, check):
    ckw, pairs, extra = LAZY_END_CASES[case]
    return scenario(consumer(clean_start=False, outages=trace(*pairs, **extra), **ckw),
                    publisher([11], message_expiry_interval=2), horizon=100,
                    message_expiry_check=check)


for _case in LAZY_END_CASES:
    for _check in ("eager", "lazy"):
        register(f"lazy_end_{_case}_{_check}", case=_case, check=_check)(scn_lazy_end)


@pytest.mark.parametrize("check", ["eager", "lazy"])
@pytest.mark.parametrize("case", sorted(LAZY_END_CASES))
def test_rule8_expired_message_fate_same_eager_or_lazy(case, check):
    """A message expires at 13 while queued. Whatever later ends the queue (session expiry,
    clean start, the horizon for a departed or returning client), its fate is
    message_expired under both checks; lazy only delays when the broker notices."""
    res = run(scn_lazy_end(case, check))
    # for the client that left for good it is traffic to a departed device, not loss
    assert rows(res) == [(11, "departed_message_expired" if case == "stranded" else "message_expired", 0)]
    if check == "eager":
        assert fate_at(res, 11) == 13
    else:
        assert 13 <= fate_at(res, 11) <= 100


@register("topics_edge")
def scn_topics_edge():
    cons = [consumer(client_id="kilo", topic_filter="a/+"),
            consumer(client_id="lima", topic_filter="+/b"),
            consumer(client_id="mike", topic_filter="#")]
    pubs = [publisher([5], client_id="pe", topic="a/"),
            publisher([6], client_id="pf", topic="/b"),
            publisher([7], client_id="pg", topic="a/b/c")]
    return scenario(cons, pubs, horizon=10)


def test_topic_filter_plus_matches_an_empty_level():
    """'+' matches exactly one level, which may be empty (§4.7.1.2); '#' matches all."""
    res = run(scn_topics_edge())
    f, m = res.fates, res.messages
    want = {"kilo": {"a/"}, "lima": {"/b"}, "mike": {"a/", "/b", "a/b/c"}}
    for prefix, topics in want.items():
        (cid,) = [c for c in f["client_id"] if str(c).startswith(prefix)]
        assert set(m[m["consumer"] == cid]["topic"]) == topics, prefix


def test_messages_recorded_by_default_for_scripted_scenarios():
    res = sim.run(sim.load_scenario(scn_resume()), seed=1)
    assert res.messages is not None and len(res.messages) == 4


@register("msg_expiry_at_reconnect_eager", check="eager")
@register("msg_expiry_at_reconnect_lazy", check="lazy")
def scn_msg_expiry_at_reconnect(check):
    return scenario(consumer(session_expiry_interval=100, clean_start=False,
                             outages=trace((10, 17))),
                    publisher([12], message_expiry_interval=5), horizon=30,
                    message_expiry_check=check)


@pytest.mark.parametrize("check", ["eager", "lazy"])
def test_rule8_message_expiring_at_the_reconnect_instant_is_expired(check):
    """Published 12 with expiry 5 -> expires at 17, the reconnect instant: message expiry
    comes before connection changes, so it is not delivered."""
    res = run(scn_msg_expiry_at_reconnect(check))
    assert rows(res) == [(12, "message_expired", 0)]
    assert fate_at(res, 12) == 17


@register("expiry_at_horizon")
def scn_expiry_at_horizon():
    return scenario(consumer(session_expiry_interval=90, clean_start=False,
                             outages=trace((10, 200))),
                    publisher([20]), horizon=100)


def test_session_expiring_at_the_horizon_is_not_simulated():
    """A run covers [0, horizon): the expiry due at exactly 100 never happens, so the
    queued message is pending (the client will return at 200)."""
    res = run(scn_expiry_at_horizon())
    assert rows(res) == [(20, "pending", 0)]
    assert times(res, "session_expired") == []


# ================================================================ conservation (every scenario)

def check_conservation(res):
    f = res.fates
    lost_cols = [f"lost_{c}" for c in sim.LOSS_CAUSES]
    departed_cols = list(sim.DEPARTED_FATES)
    assert (f["routed"] == f["delivered"] + f["lost"] + f["pending"] + f["departed_pairs"]).all()
    assert (f["lost"] == f[lost_cols].sum(axis=1)).all()
    assert (f["departed_pairs"] == f[departed_cols].sum(axis=1)).all()
    s = res.summary
    assert s["routed"] == s["delivered"] + s["lost"] + s["pending"] + s["departed_pairs"]
    for col in ["routed", "delivered", "lost", "pending", "departed_pairs", "duplicates", *lost_cols, *departed_cols]:
        assert s[col] == f[col].sum(), col
    m = res.messages
    assert len(m) == s["routed"]
    assert int(m["duplicates"].sum()) == s["duplicates"]
    counts = m.groupby(["consumer", "fate"]).size()
    for r in f.itertuples():
        for fate in sim.FATES:
            col = f"lost_{fate}" if fate in sim.LOSS_CAUSES else fate
            assert counts.get((r.client_id, fate), 0) == getattr(r, col), (r.client_id, fate)
    if s["routed"] > s["departed_pairs"]:
        assert s["loss_ratio"] == pytest.approx(s["lost"] / (s["routed"] - s["departed_pairs"]))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_conservation_in_every_scenario(name):
    fn, kwargs = REGISTRY[name]
    check_conservation(run(fn(**kwargs)))

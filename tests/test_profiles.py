"""Broker profiles in sim/profiles/ (docs/brokers.md).

(a) every profile loads, says whether it is calibrated (emqx, hivemq, vernemq: no), and every setting carries a source comment;
(b) the values are the documented defaults (shared reference notes mqtt-semantics.md 2.1–2.5);
(c) scripted scenarios show the behavioural differences the profiles encode: drop-new vs
    drop-oldest, QoS 0 queued offline or lost, UINT_MAX "never" vs ~136 years, one shared copy
    of a message vs a copy per session.
"""
from __future__ import annotations

import re

import pytest
import yaml

import sim
from sim.config import PROFILES_DIR, available_profiles

UINT_MAX = 4_294_967_295
PROFILES = available_profiles()

EXPECTED = {  # documented defaults (reference notes section 2.5)
    "mosquitto": dict(max_queued_messages=1000, max_queued_bytes=0, queue_full_policy="drop-new",
                      queue_qos0_messages=False, max_session_expiry_interval=UINT_MAX, uint_max_never_expires=True,
                      message_expiry_check="lazy", shared_message_store=True, queue_limits_count_qos0=False),
    "emqx": dict(max_queued_messages=1000, max_queued_bytes=0, queue_full_policy="drop-oldest",
                 queue_qos0_messages=True, max_session_expiry_interval=UINT_MAX, uint_max_never_expires=True,
                 message_expiry_check="lazy", shared_message_store=True, queue_limits_count_qos0=True,
                 queue_limits_count_inflight=False),
    "hivemq": dict(max_queued_messages=1000, max_queued_bytes=0, queue_full_policy="drop-new",
                   queue_qos0_messages=False, max_session_expiry_interval=UINT_MAX, uint_max_never_expires=False,
                   message_expiry_check="lazy", shared_message_store=False, queue_limits_count_qos0=False),
    "vernemq": dict(max_queued_messages=1000, max_queued_bytes=0, queue_full_policy="drop-new",
                    queue_qos0_messages=False, max_session_expiry_interval=UINT_MAX, uint_max_never_expires=False,
                    message_expiry_check="lazy", shared_message_store=True),
}
NEW = ("emqx", "hivemq", "vernemq")  # the profiles written from documentation only
MEMORY = ("session_overhead_bytes", "subscription_overhead_bytes", "queue_entry_overhead_bytes", "message_overhead_bytes")


def broker(profile: str) -> sim.BrokerConfig:
    return sim.load_scenario({"horizon": 1, "broker": {"profile": profile}}).broker


def offline_consumer(profile: str, *, pub_qos: int = 1, schedule=(7, 8, 9, 10, 20), limit: int | None = 2,
                     trace=((5, 15),), sei=60, horizon=30, clients=1, payload=100) -> sim.Result:
    """One consumer (QoS 1, Clean Start 0) offline during ``trace``; one publisher on ``schedule``."""
    b = {"profile": profile}
    if limit is not None:
        b["max queued messages"] = limit
    return sim.run(sim.load_scenario({
        "horizon": horizon, "broker": b,
        "mqttConsumer": {"clients": clients, "session expiry interval": sei, "clean start": False, "qos": 1,
                         "outages": {"trace": [list(p) for p in trace]}},
        "mqttPublisher": {"qos": pub_qos, "schedule": list(schedule), "payload bytes": payload}}), seed=0)


def fates(res: sim.Result) -> dict[float, str]:
    return dict(zip(res.messages["published_at"], res.messages["fate"]))


# --------------------------------------------------------------------------- (a) loading


def test_the_four_profiles_exist():
    assert {"mosquitto", "emqx", "hivemq", "vernemq"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_loads_and_is_documented(profile):
    cfg = broker(profile)
    assert cfg.profile == profile
    path = PROFILES_DIR / f"{profile}.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["name"] == profile and doc.get("description")
    assert isinstance(doc["calibrated"], bool)
    if profile in NEW:  # no measurement against these brokers exists
        assert doc["calibrated"] is False
    # every setting line carries a comment (its source, or the basis of an estimate)
    in_settings = False
    for line in path.read_text().splitlines():
        if line.startswith("settings:"):
            in_settings = True
            continue
        if in_settings and re.match(r"^  [a-z0-9 ]+:", line):
            assert "#" in line, f"{profile}: setting without a source comment: {line.strip()}"
    assert all(getattr(cfg, m) > 0 for m in MEMORY), "memory constants must be set (estimates)"


@pytest.mark.parametrize("profile", NEW)
def test_new_profiles_say_what_is_not_modelled_and_mark_estimates(profile):
    text = (PROFILES_DIR / f"{profile}.yaml").read_text()
    assert "NOT MODELLED" in text and "ROUGH ESTIMATES" in text


def test_an_unknown_profile_key_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nsettings:\n  max queue size: 10\n")
    with pytest.raises(sim.ScenarioError, match="unknown key"):
        sim.load_scenario({"horizon": 1, "broker": {"profile": str(p)}})


# --------------------------------------------------------------------------- (b) documented values


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_profile_values_are_the_documented_defaults(profile):
    cfg = broker(profile)
    assert {k: getattr(cfg, k) for k in EXPECTED[profile]} == EXPECTED[profile]


def test_scenario_keys_override_a_profile():
    cfg = sim.load_scenario({"horizon": 1, "broker": {"profile": "emqx", "queue full policy": "drop-new",
                                                      "max queued messages": 5}}).broker
    assert (cfg.queue_full_policy, cfg.max_queued_messages, cfg.queue_qos0_messages) == ("drop-new", 5, True)


# --------------------------------------------------------------------------- (c) behaviour


@pytest.mark.parametrize("profile,kept", [("mosquitto", (7, 8)), ("hivemq", (7, 8)), ("vernemq", (7, 8)),
                                          ("emqx", (9, 10))])
def test_full_queue_keeps_first_two_or_last_two(profile, kept):
    # the consumer is offline 5..15 s; four QoS 1 messages at 7..10 s meet a queue of limit 2
    got = fates(offline_consumer(profile))
    assert {t for t in (7, 8, 9, 10) if got[t] == "delivered"} == set(kept)
    assert {t for t in (7, 8, 9, 10) if got[t] == "queue_full"} == {7, 8, 9, 10} - set(kept)
    assert got[20] == "delivered"


@pytest.mark.parametrize("profile,offline_fate", [("mosquitto", "qos0_offline"), ("hivemq", "qos0_offline"),
                                                  ("vernemq", "qos0_offline"), ("emqx", "delivered")])
def test_qos0_while_offline(profile, offline_fate):
    got = fates(offline_consumer(profile, pub_qos=0, schedule=(2, 7, 8, 20), limit=None))
    assert got == {2.0: "delivered", 7.0: offline_fate, 8.0: offline_fate, 20.0: "delivered"}


def test_emqx_qos0_counts_toward_the_queue_limit():
    got = fates(offline_consumer("emqx", pub_qos=0))
    assert [got[t] for t in (7, 8, 9, 10)] == ["queue_full", "queue_full", "delivered", "delivered"]


@pytest.mark.parametrize("profile,fate", [("mosquitto", "delivered"), ("emqx", "delivered"),
                                          ("hivemq", "session_expired"), ("vernemq", "session_expired")])
def test_uint_max_session_never_expires_or_lasts_136_years(profile, fate):
    # offline from 10 s to 137 years with SEI 0xFFFFFFFF (UINT_MAX s ~ 136.2 years)
    res = offline_consumer(profile, schedule=(20,), limit=None, trace=((10, "137y"),), sei="uint_max",
                           horizon="140y")
    assert fates(res) == {20.0: fate}
    if fate == "session_expired":
        assert res.messages["fate_at"].iloc[0] == pytest.approx(10 + UINT_MAX)


@pytest.mark.parametrize("profile,copies", [("mosquitto", 1), ("emqx", 1), ("hivemq", 3), ("vernemq", 1)])
def test_message_store_shared_or_per_session(profile, copies):
    # three offline consumers hold one 1000-byte QoS 1 message
    res = offline_consumer(profile, schedule=(7,), limit=None, clients=3, payload=1000)
    cfg = res.scenario.broker
    mem = res.memory[(res.memory["time"] >= 7) & (res.memory["time"] < 15)].iloc[0]
    one_copy = cfg.message_overhead_bytes + len("sensors/0") + 1000
    assert mem["message_bytes"] == copies * one_copy
    assert mem["entry_bytes"] == 3 * cfg.queue_entry_overhead_bytes

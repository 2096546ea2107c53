"""The platform's MQTT transport blocks as users write them (mqttConsumer / mqttPublisher with
their documented attributes), inline or from the platform's own file with `transport:`."""
from __future__ import annotations

import pytest
import yaml

import sim
from sim.cli import main

JOULE_CONSUMER = {  # the transport docs' example, as it is
    "broker": "tcp://127.0.0.1:1883", "topic": "mydevice/leaf", "clientId": "myClientId", "username": "lyndon",
    "tenant": "uk", "qos": 1, "clean restart": False, "sessionExpiry interval": 300,
    "deserializer": {"parser": "com.fractalworks.streams.transport.mqtt.CustomerToStreamEventTranslator",
                     "compressed": False, "batch": False}}


def test_the_documented_block_is_accepted_and_mapped():
    scn = sim.load_scenario({"horizon": 60, "mqttConsumer": JOULE_CONSUMER,
                             "mqttPublisher": {"topic": "mydevice/leaf", "rate": 1, "qos": 1}})
    c = scn.consumers[0]
    assert (c.topic_filter, c.client_id, c.qos, c.clean_start, c.session_expiry_interval) == \
        ("mydevice/leaf", "myClientId", 1, False, 300)
    assert scn.not_simulated == ["mqttConsumer.broker", "mqttConsumer.username", "mqttConsumer.tenant",
                                 "mqttConsumer.deserializer"]
    assert sim.run(scn, seed=1).summary["delivered"] > 0


@pytest.mark.parametrize("key, words", [("brokr", "did you mean 'broker'"), ("sesionExpiry interval", "did you mean")])
def test_a_typo_is_still_refused(key, words):
    with pytest.raises(sim.ScenarioError) as err:
        sim.load_scenario({"horizon": 60, "mqttConsumer": {**JOULE_CONSUMER, key: 1}})
    assert words in str(err.value)


def test_one_setting_given_twice_by_two_names_is_refused():
    with pytest.raises(sim.ScenarioError, match="are the same setting"):
        sim.load_scenario({"horizon": 60, "mqttConsumer": {"clean restart": False, "clean start": True}})


def test_auto_reconnect_false_means_the_client_does_not_come_back():
    base = {"horizon": 60, "mqttConsumer": {"client id": "c", "qos": 1, "session expiry interval": 100,
                                            "clean start": False, "outages": {"trace": [[10, 20]]}},
            "mqttPublisher": {"qos": 1, "schedule": [5, 15, 25]}}
    back = sim.run(sim.load_scenario(base), seed=0).summary
    assert (back["delivered"], back["departures"]) == (3, 0)
    base["mqttConsumer"]["auto reconnect"] = False
    scn = sim.load_scenario(base)
    for engine in ("exact", "interval"):
        gone = sim.run(scn, seed=0, engine=engine).summary
        assert (gone["delivered"], gone["departures"], gone["departed_held"], gone["lost"]) == (1, 1, 2, 0), engine


def test_the_platform_file_with_only_what_it_lacks(tmp_path):
    platform = {"consumer": {"sources": [{"mqttConsumer": {k: v for k, v in JOULE_CONSUMER.items()
                                                              if k != "sessionExpiry interval"}}]},
                "publisher": {"sinks": [{"mqttPublisher": {"topic": "mydevice/leaf", "qos": 1, "clientId": "pub"}}]}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({
        "name": "mine", "transport": "pipeline.yaml", "horizon": "1h",
        "mqttConsumer": {"clients": 3, "outages": {"trace": [[600, 900]]}}, "mqttPublisher": {"rate": "1/s"}}))
    scn = sim.load_scenario(tmp_path / "scenario.yaml")
    c = scn.consumers[0]
    assert c.clients == 3 and c.client_id == "myClientId" and c.clean_start is False
    assert c.session_expiry_interval == 300  # the platform's default when its file leaves it out
    assert scn.publishers[0].rate == 1.0 and scn.publishers[0].client_id == "pub"
    short = scn.updated({"mqttConsumer.session expiry interval": 15})
    assert short.consumers[0].session_expiry_interval == 15 and short.consumers[0].clients == 3
    res = sim.run(short, seed=0)
    assert res.summary["lost_session_expired"] + res.summary["lost_no_session"] > 0
    with pytest.raises(sim.ScenarioError, match="transport: 'nope.yaml' is not an existing YAML file"):
        sim.load_scenario({"horizon": 60, "transport": "nope.yaml"})


def test_shipped_example_loads_runs_and_lists_what_is_not_simulated(capsys):
    assert main(["run", "data/scenarios/joule_scenario.yaml"]) == 0
    out = capsys.readouterr().out
    assert "not simulated (connection settings, accepted as given): mqttConsumer.broker" in out
    scn = sim.load_scenario("data/scenarios/joule_scenario.yaml")
    assert scn.consumers[0].clients == 20 and scn.consumers[0].session_expiry_interval == 300

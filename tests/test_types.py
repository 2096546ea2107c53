"""The public scenario types validate themselves, as the loader does (sim.config, sim.outages).

(a) each public type built in Python with a bad value raises ``sim.ScenarioError`` naming the
    field (transport spelling, under the type's own key: ``mqttConsumer.qos``,
    ``broker.queue full policy``, ``outages.up``, ``reconnect.jitter``; a distribution's bare
    key), the value and what is allowed; nothing is clamped;
(b) good values are stored normalized; a type equals the one the loader builds;
(c) a ``Scenario`` built in Python runs like a loaded one, ``to_dict()`` reloads to an equal
    scenario, and ``updated()`` works;
(d) every bad-input case of tests/test_config.py is refused when the scenario is built as
    Python objects (the same problem, the field named under the type that refused it), and
    with the same error, word for word, when ``Scenario`` is given the blocks as mappings.
"""
from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml

import sim
from sim.config import BrokerConfig, ConsumerBlock, PublisherBlock, Scenario
from sim.outages import Backoff, Distribution, Outages
from sim.units import normalize_key

from test_config import BAD, DELETE, TRANSPORT, _field_ok, scenario

UINT_MAX = 4_294_967_295
EXP = {"distribution": "exponential", "mean": "6h"}
DOWN = {"distribution": "exponential", "mean": "2m"}


def refused(make):
    with pytest.raises(sim.ScenarioError) as info:
        make()
    return info.value


# =============================================================================== (a) bad values

TYPE_BAD = [
    # --- ConsumerBlock
    (lambda: ConsumerBlock(qos=7), "mqttConsumer.qos", "7", ["0 to 2"]),
    (lambda: ConsumerBlock(session_expiry_interval=-5), "mqttConsumer.session expiry interval", "-5",
     ["0 to UINT_MAX (4294967295)"]),
    (lambda: ConsumerBlock(session_expiry_interval=UINT_MAX + 1), "mqttConsumer.session expiry interval",
     "4294967296", ["UINT_MAX (4294967295)"]),
    (lambda: ConsumerBlock(clients=0), "mqttConsumer.clients", "0", [">= 1"]),
    (lambda: ConsumerBlock(clients=2.5), "mqttConsumer.clients", "2.5", ["integer"]),
    (lambda: ConsumerBlock(clean_start="false"), "mqttConsumer.clean start", "'false'", ["true or false"]),
    (lambda: ConsumerBlock(client_id=""), "mqttConsumer.client id", "''", ["non-empty string"]),
    (lambda: ConsumerBlock(topic_filter="a/#/b"), "mqttConsumer.topic filter", "'a/#/b'", ["#", "last"]),
    (lambda: ConsumerBlock(receive_maximum=65536), "mqttConsumer.receive maximum", "65536", ["1 to 65535"]),
    (lambda: ConsumerBlock(network_latency=-0.5), "mqttConsumer.network latency", "-0.5", [">= 0 seconds"]),
    (lambda: ConsumerBlock(outages={"up": EXP}), "mqttConsumer.outages.down", "None", ["both up and down"]),
    (lambda: ConsumerBlock(outages={"up": EXP, "down": {"distribution": "gaussian"}}),
     "mqttConsumer.outages.down.distribution", "'gaussian'", ["exponential, lognormal, weibull, pareto, fixed"]),
    (lambda: ConsumerBlock(outages={"trace": [[10, 14]], "uptime": 5}), "mqttConsumer.outages.uptime", "5",
     ["unknown key"]),
    (lambda: ConsumerBlock(clients=2, outages={"trace": "/nonexistent-dir/t.csv"}), "mqttConsumer.outages.trace",
     "t.csv", ["not an existing CSV file"]),
    # --- PublisherBlock
    (lambda: PublisherBlock(), "mqttPublisher.rate", "None", ["exactly one of 'rate'", "'schedule'"]),
    (lambda: PublisherBlock(rate=1, schedule=[1, 2]), "mqttPublisher.rate", "1", ["exactly one of 'rate'"]),
    (lambda: PublisherBlock(rate="fast"), "mqttPublisher.rate", "'fast'", ["per second"]),
    (lambda: PublisherBlock(rate=0), "mqttPublisher.rate", "0", ["> 0"]),
    (lambda: PublisherBlock(schedule=[2, 1]), "mqttPublisher.schedule[1]", "1", ["in order"]),
    (lambda: PublisherBlock(schedule=[]), "mqttPublisher.schedule", "[]", ["non-empty list"]),
    (lambda: PublisherBlock(rate=1, qos=-1), "mqttPublisher.qos", "-1", ["0 to 2"]),
    (lambda: PublisherBlock(rate=1, topic="a/+"), "mqttPublisher.topic", "'a/+'", ["wildcard"]),
    (lambda: PublisherBlock(rate=1, payload_bytes=-1), "mqttPublisher.payload bytes", "-1", ["0 to 268435455"]),
    (lambda: PublisherBlock(rate=1, message_expiry_interval=-1), "mqttPublisher.message expiry interval", "-1",
     ["UINT_MAX"]),
    (lambda: PublisherBlock(rate=1, offline_buffer=-1), "mqttPublisher.offline buffer", "-1", [">= 0"]),
    # --- BrokerConfig
    (lambda: BrokerConfig(queue_full_policy="bogus"), "broker.queue full policy", "'bogus'",
     ["drop-new, drop-oldest"]),
    (lambda: BrokerConfig(max_queued_messages=-1), "broker.max queued messages", "-1", [">= 0"]),
    (lambda: BrokerConfig(max_queued_bytes=1.5), "broker.max queued bytes", "1.5", ["integer"]),
    (lambda: BrokerConfig(message_expiry_check="sometimes"), "broker.message expiry check", "'sometimes'",
     ["eager, lazy"]),
    (lambda: BrokerConfig(shared_message_store="yes"), "broker.shared message store", "'yes'", ["true or false"]),
    (lambda: BrokerConfig(max_session_expiry_interval=UINT_MAX + 1), "broker.max session expiry interval",
     "4294967296", ["UINT_MAX"]),
    (lambda: BrokerConfig(profile="nosuchbroker"), "broker.profile", "'nosuchbroker'", ["mosquitto", "emqx"]),
    (lambda: BrokerConfig(profile=5), "broker.profile", "5", ["profile name", ".yaml path"]),
    # --- Outages
    (lambda: Outages(up=EXP), "outages.down", "None", ["both up and down"]),
    (lambda: Outages(leave_probability=0.1), "outages.leave probability", "0.1", ["needs up and down"]),
    (lambda: Outages(up=EXP, down=DOWN, leave_probability=1.5), "outages.leave probability", "1.5", ["[0, 1]"]),
    (lambda: Outages(trace=[[10, 14]], up=EXP), "outages.up", None, ["cannot be combined with a trace"]),
    (lambda: Outages(trace=[[10, 14]], leave_probability=0.5), "outages.leave probability", "0.5",
     ["cannot be combined with a trace"]),
    (lambda: Outages(trace=[[10, 5]]), "outages.trace[0]", "[10, 5]", ["reconnect must be > disconnect"]),
    (lambda: Outages(trace=[[10, None], [20, 30]]), "outages.trace[1]", "[20, 30]", ["left for good"]),
    (lambda: Outages(trace=5), "outages.trace", "5", ["pairs", "CSV path"]),
    (lambda: Outages(disconnect="abrupt"), "outages.disconnect", "'abrupt'", ["network, clean"]),
    (lambda: Outages(disconnect_session_expiry_interval=-1), "outages.disconnect session expiry interval", "-1",
     ["UINT_MAX"]),
    (lambda: Outages(reconnect_clean_start=1), "outages.reconnect clean start", "1", ["true or false"]),
    (lambda: Outages(replace_departed="yes"), "outages.replace departed", "'yes'", ["true or false"]),
    (lambda: Outages(reconnect={"jitter": 1.5}), "outages.reconnect.jitter", "1.5", ["[0, 1)"]),
    (lambda: Outages(up="6h", down=DOWN), "outages.up", "'6h'", ["mapping like {distribution: exponential"]),
    # --- Backoff (``reconnect``)
    (lambda: Backoff(jitter=1.5), "reconnect.jitter", "1.5", ["[0, 1)"]),
    (lambda: Backoff(initial_delay=10, max_delay=5), "reconnect.max delay", "5", [">= initial delay (10 s)"]),
    (lambda: Backoff(multiplier=0.5), "reconnect.multiplier", "0.5", [">= 1"]),
    (lambda: Backoff(initial_delay=0), "reconnect.initial delay", "0", ["> 0 seconds"]),
    # --- Distribution (``up`` or ``down``: its bare keys)
    (lambda: Distribution("gaussian", {"mean": 1}), "distribution", "'gaussian'", ["exponential, lognormal"]),
    (lambda: Distribution("exponential", {"mean": -1}), "mean", "-1", ["> 0 seconds"]),
    (lambda: Distribution("exponential", {}), "mean", "None", ["is missing", "exponential needs mean"]),
    (lambda: Distribution("lognormal", {"median": 1}), "sigma", "None", ["is missing", "sigma"]),
    (lambda: Distribution("lognormal", {"median": 1, "mean": 2, "sigma": 1}), "median", "1",
     ["exactly one of median or mean"]),
    (lambda: Distribution("weibull", {"scale": 1, "shape": 1, "mean": 2}), "mean", "2", ["not a parameter of weibull"]),
    (lambda: Distribution("pareto", {"scale": 1, "shape": 0}), "shape", "0", ["> 0"]),
    (lambda: Distribution("fixed", 5), "params", "5", ["mapping of parameter names"]),
    # --- Scenario: its own keys bare, what it builds from mappings by the loader's path
    (lambda: Scenario(name="", horizon=60), "name", "''", ["non-empty string"]),
    (lambda: Scenario(name="s", horizon=-5), "horizon", "-5", ["> 0 seconds"]),
    (lambda: Scenario(name="s", horizon="10 parsecs"), "horizon", "'10 parsecs'", ["15s, 10m, 2h"]),
    (lambda: Scenario(name="s", horizon=60, description=5), "description", "5", ["string"]),
    (lambda: Scenario(name="s", horizon=60, consumers={"qos": 7}), "mqttConsumer.qos", "7", ["0 to 2"]),
    (lambda: Scenario(name="s", horizon=60, consumers=[{}, {"qos": 7}]), "mqttConsumer[1].qos", "7", ["0 to 2"]),
    (lambda: Scenario(name="s", horizon=60, publishers=[{"rate": 1}, {"schedule": [3, 1]}]),
     "mqttPublisher[1].schedule[1]", "1", ["in order"]),
    (lambda: Scenario(name="s", horizon=60, consumers=[{"colour": "blue"}]), "mqttConsumer[0].colour", "'blue'",
     ["unknown key", "allowed keys"]),
    (lambda: Scenario(name="s", horizon=60, consumers=[]), "mqttConsumer", "[]", ["non-empty list of blocks"]),
    (lambda: Scenario(name="s", horizon=60, broker={"queue full policy": "bogus"}), "broker.queue full policy",
     "'bogus'", ["drop-new, drop-oldest"]),
    (lambda: Scenario(name="s", horizon=60, broker="emqx"), "broker", "'emqx'", ["mapping"]),
    (lambda: Scenario(name="s", horizon=60, consumers=[{"outages": {"up": EXP, "down": {**DOWN, "mean": 0}}}]),
     "mqttConsumer[0].outages.down.mean", "0", ["> 0 seconds"]),
]


@pytest.mark.parametrize("make, field, value, allowed", TYPE_BAD, ids=[f"{t[1]}-{i}" for i, t in enumerate(TYPE_BAD)])
def test_a_type_built_in_python_refuses_a_bad_value(make, field, value, allowed):
    err = refused(make)
    msg = str(err)
    assert err.field == field, msg
    assert msg.startswith(f"{field}: "), msg
    if value is not None:
        assert value in msg, msg
    for a in allowed:
        assert a in msg, f"{a!r} not in: {msg}"


def test_the_issue_examples():
    err = refused(lambda: sim.ConsumerBlock(qos=7, session_expiry_interval=-5))
    assert err.field in ("mqttConsumer.qos", "mqttConsumer.session expiry interval")
    err = refused(lambda: sim.BrokerConfig(queue_full_policy="bogus"))
    assert str(err) == "broker.queue full policy: 'bogus' is not one of: drop-new, drop-oldest"


def test_the_same_problem_text_as_the_loader():
    """Built directly or loaded, one parser: the message differs only in the field's path."""
    direct = refused(lambda: ConsumerBlock(session_expiry_interval=UINT_MAX + 1))
    loaded = refused(lambda: sim.load_scenario(scenario({"mqttConsumer.session expiry interval": UINT_MAX + 1})))
    assert (direct.field, direct.value, direct.problem) == (loaded.field, loaded.value, loaded.problem)
    direct = refused(lambda: Outages(up=EXP, down={"distribution": "weibull", "scale": "2m"}))
    loaded = refused(lambda: sim.load_scenario(scenario({"mqttConsumer.outages": {
        "up": EXP, "down": {"distribution": "weibull", "scale": "2m"}}})))
    assert direct.field == "outages.down.shape" and loaded.field == "mqttConsumer.outages.down.shape"
    assert direct.problem == loaded.problem


def test_nothing_is_clamped_and_replace_revalidates():
    assert ConsumerBlock(session_expiry_interval=UINT_MAX).session_expiry_interval == UINT_MAX
    assert ConsumerBlock(receive_maximum=65535).receive_maximum == 65535
    block = ConsumerBlock(qos=2)
    err = refused(lambda: dataclasses.replace(block, qos=3))
    assert err.field == "mqttConsumer.qos"
    assert block.qos == 2
    refused(lambda: dataclasses.replace(BrokerConfig(), max_queued_messages=-1))
    refused(lambda: dataclasses.replace(Backoff(), max_delay=0.5))


# =============================================================================== (b) normalized values


def test_values_are_stored_normalized():
    c = ConsumerBlock(session_expiry_interval="1h", network_latency="1s", clean_start=False, qos=1.0)
    assert (c.session_expiry_interval, c.network_latency, c.qos) == (3600, 1.0, 1)
    assert isinstance(c.session_expiry_interval, int) and isinstance(c.qos, int)
    assert ConsumerBlock(session_expiry_interval="uint_max").session_expiry_interval == UINT_MAX
    p = PublisherBlock(rate="10/m", message_expiry_interval="1m")
    assert p.rate == pytest.approx(1 / 6, rel=1e-12) and p.message_expiry_interval == 60 and p.schedule is None
    assert PublisherBlock(schedule=[1, "2s", "1m"]).schedule == (1.0, 2.0, 60.0)
    assert BrokerConfig(queue_full_policy="DROP_OLDEST").queue_full_policy == "drop-oldest"
    assert BrokerConfig(max_session_expiry_interval="1d").max_session_expiry_interval == 86400
    b = Backoff(initial_delay="2s", max_delay="1m")
    assert (b.initial_delay, b.max_delay, b.multiplier, b.jitter) == (2.0, 60.0, 2.0, 0.0)
    d = Distribution("lognormal", {"sigma": 1.5, "Median": "2m"})
    assert d.params == (("median", 120.0), ("sigma", 1.5))
    assert d == Distribution("lognormal", (("median", 120), ("sigma", 1.5)))
    o = Outages(up=EXP, down=DOWN)
    assert o.up == Distribution("exponential", {"mean": 21600}) and o.down.p("mean") == 120
    assert o.leave_probability == 0.0  # given up/down; None without
    assert Outages().leave_probability is None and Outages().never
    assert Outages(reconnect={}).reconnect == Backoff()
    assert Outages(trace=[[None, 5], [10, "20s"]]).trace == ((None, 5.0), (10.0, 20.0))


def test_normalized_values_are_a_fixed_point():
    """Re-validating a normalized value (``dataclasses.replace``) changes nothing."""
    for obj in (ConsumerBlock(session_expiry_interval="1h", outages={"up": EXP, "down": DOWN, "reconnect": {}}),
                PublisherBlock(schedule=[1, "2s"], message_expiry_interval="1m"),
                BrokerConfig(profile="emqx", max_queued_messages=5), Backoff(initial_delay="2s"),
                Distribution("lognormal", {"mean": "2m", "sigma": 0.5}),
                Outages(trace=[[None, 5], [10, 20]], disconnect="clean", disconnect_session_expiry_interval="1m"),
                sim.load_scenario(TRANSPORT)):
        assert dataclasses.replace(obj) == obj


def test_broker_settings_come_from_the_profile_unless_given():
    assert BrokerConfig() == sim.load_scenario({"horizon": 1}).broker
    assert BrokerConfig().session_overhead_bytes > 0  # the mosquitto profile's calibrated constant
    emqx = BrokerConfig(profile="emqx", max_queued_messages=5)
    assert emqx == sim.load_scenario({"horizon": 1, "broker": {"profile": "emqx", "max queued messages": 5}}).broker
    assert (emqx.queue_full_policy, emqx.max_queued_messages) == ("drop-oldest", 5)


def test_a_profile_path_is_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text("settings:\n  max queued messages: 7\n")
    monkeypatch.chdir(tmp_path)
    cfg = BrokerConfig(profile="tiny.yaml")
    assert cfg.profile == str((tmp_path / "tiny.yaml").resolve())
    assert cfg.max_queued_messages == 7 and cfg.queue_full_policy == "drop-new"  # the neutral default
    monkeypatch.chdir("/")
    assert dataclasses.replace(cfg, max_queued_bytes=10).max_queued_messages == 7
    (tmp_path / "bad.yaml").write_text("settings:\n  max queued messages: many\n")
    err = refused(lambda: BrokerConfig(profile=str(tmp_path / "bad.yaml")))
    assert err.field == f"profile {tmp_path / 'bad.yaml'}.settings.max queued messages"


def test_the_trace_is_resolved_for_the_block_clients(tmp_path):
    block = ConsumerBlock(clients=2, outages=Outages(trace=[[None, 5], [10, 20]]))
    assert block.outages.traces == (((10.0, 20.0),), ((10.0, 20.0),))
    assert block.outages.first_connect == (5.0, 5.0)
    assert not block.outages.never
    three = dataclasses.replace(block, clients=3)
    assert len(three.outages.traces) == 3 and three.outages.first_connect == (5.0, 5.0, 5.0)
    csv = tmp_path / "t.csv"
    csv.write_text("client,disconnect,reconnect\n0,10,14\n1,20,\n")
    block = ConsumerBlock(clients=2, outages={"trace": str(csv)})
    assert block.outages.traces == (((10.0, 14.0),), ((20.0, None),))
    err = refused(lambda: dataclasses.replace(block, clients=1))  # client 1 of the CSV is outside the block
    assert err.field.startswith("mqttConsumer.outages.trace") and "client" in err.field


def test_a_relative_trace_path_in_python_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("client,disconnect,reconnect\n0,10,14\n")
    monkeypatch.chdir(tmp_path)
    out = Outages(trace="t.csv")
    assert out.trace == str((tmp_path / "t.csv").resolve())
    monkeypatch.chdir("/")
    assert ConsumerBlock(outages=out).outages.traces == (((10.0, 14.0),),)


# =============================================================================== (c) Scenario built in Python


def python_transport() -> Scenario:
    """tests/test_config.py's TRANSPORT scenario, built from the types."""
    return Scenario(
        name="scenario", horizon="1h",
        broker=BrokerConfig(max_queued_messages=10, queue_full_policy="drop-oldest", queue_qos0_messages=True,
                            max_session_expiry_interval=3600),
        consumers=(ConsumerBlock(session_expiry_interval=15, clean_start=False, qos=1, topic_filter="sensors/+",
                                 receive_maximum=10, network_latency=0.01,
                                 outages=Outages(up=Distribution("exponential", {"mean": "6h"}),
                                                 down=Distribution("lognormal", {"median": "2m", "sigma": 1.5}),
                                                 leave_probability=0.001, replace_departed=True)),),
        publishers=(PublisherBlock(session_expiry_interval=0, clean_start=True, qos=1, topic="sensors/{id}", rate="1/s",
                                   payload_bytes=200, message_expiry_interval=5, offline_buffer=3),))


def test_a_python_built_scenario_equals_the_loaded_one_and_runs_the_same():
    py, loaded = python_transport(), sim.load_scenario(TRANSPORT)
    assert py == loaded
    assert py.raw is None and loaded.raw is not None  # bookkeeping, not part of ==
    a, b = sim.run(py, seed=3), sim.run(loaded, seed=3)
    assert a.summary.drop("seed").equals(b.summary.drop("seed")) and a.summary["routed"] > 0
    assert a.fates.equals(b.fates)


def test_blocks_given_as_mappings():
    py = Scenario(name="scenario", horizon="1h", broker=TRANSPORT["broker"], consumers=TRANSPORT["mqttConsumer"],
                  publishers=[TRANSPORT["mqttPublisher"]])
    assert py == sim.load_scenario(TRANSPORT)
    assert Scenario(name="x", horizon=1).consumers == () and Scenario(name="x", horizon=1).broker == BrokerConfig()


def rich_scenario(tmp_path) -> Scenario:
    """Every kind of value: traces inline (with a first connect) and CSV, back-off, clean
    disconnects, schedules, two publisher blocks, a profile file with overrides."""
    (tmp_path / "t.csv").write_text("client,disconnect,reconnect,disconnect_kind,clean_start\n0,10,14,clean,true\n1,20,,,\n")
    (tmp_path / "prof.yaml").write_text("settings:\n  max queued messages: 7\n  queue full policy: drop-oldest\n")
    return Scenario(
        name="rich", horizon=60, description="every kind of value",
        broker=BrokerConfig(profile=str(tmp_path / "prof.yaml"), max_queued_messages=3, message_overhead_bytes=10),
        consumers=(ConsumerBlock(clients=2, client_id="c", session_expiry_interval=30, clean_start=False, qos=1,
                                 outages=Outages(trace=str(tmp_path / "t.csv"), disconnect="clean",
                                                 disconnect_session_expiry_interval=5, reconnect_clean_start=False,
                                                 reconnect=Backoff(initial_delay=0.5, jitter=0.25))),
                   ConsumerBlock(qos=2, outages=Outages(trace=[[None, 3], [10, 12], [40, None]], replace_departed=True)),
                   ConsumerBlock(outages=Outages(up={"distribution": "weibull", "shape": 0.7, "scale": "1m"},
                                                 down={"distribution": "pareto", "shape": 1.5, "scale": 2},
                                                 leave_probability=0.1, reconnect={}))),
        publishers=(PublisherBlock(qos=1, schedule=[1, 11, 12, 41], message_expiry_interval=20),
                    PublisherBlock(client_id="p2", rate="30/m", payload_bytes=10, offline_buffer=2)))


def test_to_dict_of_a_python_built_scenario_reloads_to_an_equal_scenario(tmp_path):
    for py in (python_transport(), rich_scenario(tmp_path), Scenario(name="bare", horizon=5)):
        d = py.to_dict()
        assert Scenario.from_dict(d) == py
        assert sim.load_scenario(yaml.safe_load(yaml.safe_dump(d))) == py  # plain data a YAML file can hold
    res = sim.run(rich_scenario(tmp_path), seed=1)
    assert res.summary["routed"] > 0


def test_to_dict_leaves_out_defaults_and_the_profile_values():
    d = python_transport().to_dict()
    assert d["broker"] == {"profile": "mosquitto", "max_queued_messages": 10, "queue_full_policy": "drop-oldest",
                           "queue_qos0_messages": True, "max_session_expiry_interval": 3600}
    assert d["mqtt_consumer"]["session_expiry_interval"] == 15 and "client_id" not in d["mqtt_consumer"]
    assert d["mqtt_consumer"]["outages"]["up"] == {"distribution": "exponential", "mean": 21600.0}


def test_updated_on_a_python_built_scenario():
    py = python_transport()
    new = py.updated({"mqttConsumer.session expiry interval": "uint_max", "horizon": "1d", "broker.profile": "emqx"})
    assert new.consumers[0].session_expiry_interval == UINT_MAX and new.horizon == 86400
    assert py.consumers[0].session_expiry_interval == 15 and py.horizon == 3600
    # the settings given differ from mosquitto's and are kept; the rest now come from emqx
    assert new.broker == BrokerConfig(profile="emqx", max_queued_messages=10, queue_full_policy="drop-oldest",
                                      queue_qos0_messages=True, max_session_expiry_interval=3600)
    assert new == sim.load_scenario(TRANSPORT).updated(
        {"mqttConsumer.session expiry interval": "uint_max", "horizon": "1d", "broker.profile": "emqx"})
    err = refused(lambda: py.updated({"mqttConsumer.qos": 7}))
    assert str(err) == str(refused(lambda: sim.load_scenario(scenario({"mqttConsumer.qos": 7}))))


def test_updated_after_dataclasses_replace_keeps_the_replaced_values():
    loaded = sim.load_scenario(TRANSPORT)
    changed = dataclasses.replace(loaded, horizon=5.0)
    assert changed.raw is None  # the input as given no longer describes it
    assert changed.updated({"mqttConsumer.qos": 2}).horizon == 5.0
    assert loaded.updated({"mqttConsumer.qos": 2}).horizon == 3600


def test_equality_ignores_how_the_scenario_was_written(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(scenario()))
    from_file, from_dict = sim.load_scenario(f), sim.load_scenario(scenario({"horizon": "1m"}))
    assert from_file.base_dir == str(tmp_path) and from_dict.base_dir is None
    assert from_file == from_dict and hash(from_file) == hash(from_dict)


# =============================================================================== (d) the loader's bad inputs


def _norm(d: dict) -> dict:
    return {normalize_key(k): v for k, v in d.items()}


def _distribution(m):
    m = dict(m)
    return Distribution(m.pop("distribution", None), m)


def _outages(m):
    kw = _norm(m)
    for k in ("up", "down"):
        if isinstance(kw.get(k), dict):
            kw[k] = _distribution(kw[k])
    if isinstance(kw.get("reconnect"), dict):
        kw["reconnect"] = Backoff(**_norm(kw["reconnect"]))
    return Outages(**kw)


def _block(cls, m):
    kw = _norm(m)
    if isinstance(kw.get("outages"), dict):
        kw["outages"] = _outages(kw["outages"])
    return cls(**kw)


def as_objects(d: dict) -> Scenario:
    """A scenario dict built bottom-up from the types, each type given keyword arguments."""
    kw = _norm(d)
    args = {"name": kw.pop("name", "scenario")}
    if "broker" in kw:
        args["broker"] = BrokerConfig(**_norm(kw.pop("broker")))
    for key, cls, field in (("mqtt_consumer", ConsumerBlock, "consumers"), ("mqtt_publisher", PublisherBlock, "publishers")):
        if key in kw:
            v = kw.pop(key)
            args[field] = tuple(_block(cls, b) for b in (v if isinstance(v, list) else [v]))
    return Scenario(**args, **kw)


def as_mappings(d: dict) -> Scenario:
    """A scenario dict given to ``Scenario`` as keyword arguments, the blocks as mappings."""
    kw = _norm(d)
    args = {"name": kw.pop("name", "scenario")}
    for key, field in (("mqtt_consumer", "consumers"), ("mqtt_publisher", "publishers")):
        if key in kw:
            args[field] = kw.pop(key)
    return Scenario(**args, **kw)


# Keys a Python call cannot get wrong the way a file can: an unknown or missing keyword is
# Python's TypeError, and a keyword is named once.
NOT_A_KEYWORD = {"unknown-top-level-key", "unknown-consumer-key", "unknown-outages-key", "unknown-broker-key",
                 "horizon-missing"}
SPELLING_ONLY = {"same-key-in-two-spellings"}
CASES = [pytest.param(*p.values, id=p.id, marks=p.marks) for p in BAD]


def _strip_index(field: str) -> str:
    return re.sub(r"^(mqttConsumer|mqttPublisher)\[\d+\]", r"\1", field)


def _loader_error(d: dict) -> sim.ScenarioError:
    return refused(lambda: sim.load_scenario(d))


@pytest.mark.parametrize("changes, field, value, allowed, base", CASES)
def test_every_bad_input_is_refused_when_built_as_objects(request, changes, field, value, allowed, base):
    case = request.node.callspec.id
    if case in SPELLING_ONLY:
        pytest.skip("a Python call names each keyword once")
    d = scenario(changes, base)
    if case in NOT_A_KEYWORD:
        with pytest.raises(TypeError, match="unexpected keyword|missing .* argument"):
            as_objects(d)
        return
    loaded = _loader_error(d)
    err = refused(lambda: as_objects(d))
    # the same problem, raised by the type that holds the field, which names it from its own key
    assert err.problem == loaded.problem, (str(err), str(loaded))
    if not isinstance(err.value, (Distribution, Backoff, Outages)):
        assert err.value == loaded.value or (err.value != err.value and loaded.value != loaded.value), (err, loaded)
    full = _strip_index(loaded.field)
    assert full == err.field or full.endswith("." + err.field), (err.field, loaded.field)
    assert _field_ok(loaded.field, field)
    msg = str(err)
    assert msg.startswith(f"{err.field}: ") and "\n" not in msg
    if value is not None and not isinstance(err.value, (Distribution, Backoff, Outages)):
        alts = value if isinstance(value, tuple) else (value,)
        assert any(v in msg for v in alts), f"offending value {value!r} not in: {msg}"
    for group in allowed:
        assert any(a.lower() in msg.lower() for a in group.split("|")), f"{group!r} not in: {msg}"


@pytest.mark.parametrize("changes, field, value, allowed, base", CASES)
def test_every_bad_input_gives_the_loader_error_when_scenario_gets_mappings(request, changes, field, value, allowed, base):
    d = scenario(changes, base)
    if request.node.callspec.id in {"unknown-top-level-key", "horizon-missing"}:
        with pytest.raises(TypeError):
            as_mappings(d)
        return
    assert str(refused(lambda: as_mappings(d))) == str(_loader_error(d))


def test_the_good_base_scenario_builds_both_ways():
    d = scenario({"mqttConsumer.outages": {"up": EXP, "down": DOWN, "reconnect": {"jitter": 0.5}}})
    assert as_objects(d) == as_mappings(d) == sim.load_scenario(copy.deepcopy(d))
    assert as_objects(scenario({"mqttPublisher.rate": DELETE, "mqttPublisher.schedule": [1, 2]})).publishers[0].schedule == (1.0, 2.0)

"""Scenario loading and validation (docs/model.md "Scenario keys", docs/api-contract.md; the
YAML examples of the docs are loaded by tests/test_docs.py).

(a) parsing: the three key spellings, defaults, durations, intervals, rates, YAML files and
    CSV traces, ``Scenario.updated``;
(b) bad input: every invalid value is refused with ``sim.ScenarioError`` whose ``.field`` is the
    dotted field in transport spelling and whose message is
    ``"<field>: <value repr> <what is wrong / allowed>"``;
(c) the CLI: ``mqtt-sim run bad.yaml`` prints one ``error: `` line and exits 2.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim

ROOT = Path(__file__).resolve().parent.parent
UINT_MAX = 4_294_967_295
DELETE = object()  # marker: remove the key from the base scenario

# A small valid scenario in the transport spelling; each bad-input case changes one thing.
BASE = {
    "name": "cfg",
    "horizon": 60,
    "mqttConsumer": {"clients": 1, "topic filter": "sensors/#"},
    "mqttPublisher": {"clients": 1, "topic": "sensors/{id}", "rate": 1},
}
OUT_OK = {"up": {"distribution": "exponential", "mean": "6h"},
          "down": {"distribution": "exponential", "mean": "2m"}}


def scenario(changes: dict | None = None, base: dict = BASE) -> dict:
    """A deep copy of ``base`` with ``{"a.b.c": value}`` changes (value DELETE removes the key)."""
    d = copy.deepcopy(base)
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return d


def consumer(scn, i: int = 0):
    return scn.consumers[i]


def publisher(scn, i: int = 0):
    return scn.publishers[i]


def semantic(scn):
    """The scenario without bookkeeping fields that record how it was written (raw input, folder)."""
    drop = {f.name: None for f in dataclasses.fields(scn) if f.name in ("raw", "base_dir")}
    return dataclasses.replace(scn, **drop)


# =============================================================================== (a) parsing


def test_load_scenario_returns_scenario_and_error_is_value_error():
    scn = sim.load_scenario(scenario())
    assert scn.name == "cfg"
    assert issubclass(sim.ScenarioError, ValueError)
    assert sim.UINT_MAX == UINT_MAX


TRANSPORT = {
    "horizon": "1h",
    "mqttConsumer": {"session expiry interval": 15, "clean start": False, "qos": 1,
                     "topic filter": "sensors/+", "receive maximum": 10, "network latency": 0.01,
                     "outages": {"up": {"distribution": "exponential", "mean": "6h"},
                                 "down": {"distribution": "lognormal", "median": "2m", "sigma": 1.5},
                                 "leave probability": 0.001, "replace departed": True}},
    "mqttPublisher": {"session expiry interval": 0, "clean start": True, "qos": 1, "topic": "sensors/{id}",
                      "rate": "1/s", "payload bytes": 200, "message expiry interval": 5, "offline buffer": 3},
    "broker": {"max queued messages": 10, "queue full policy": "drop-oldest", "queue qos0 messages": True,
               "max session expiry interval": 3600},
}
SNAKE = {
    "horizon": "1h",
    "mqtt_consumer": {"session_expiry_interval": 15, "clean_start": False, "qos": 1,
                      "topic_filter": "sensors/+", "receive_maximum": 10, "network_latency": 0.01,
                      "outages": {"up": {"distribution": "exponential", "mean": "6h"},
                                  "down": {"distribution": "lognormal", "median": "2m", "sigma": 1.5},
                                  "leave_probability": 0.001, "replace_departed": True}},
    "mqtt_publisher": {"session_expiry_interval": 0, "clean_start": True, "qos": 1, "topic": "sensors/{id}",
                       "rate": "1/s", "payload_bytes": 200, "message_expiry_interval": 5, "offline_buffer": 3},
    "broker": {"max_queued_messages": 10, "queue_full_policy": "drop-oldest", "queue_qos0_messages": True,
               "max_session_expiry_interval": 3600},
}
CAMEL = {
    "horizon": "1h",
    "mqttConsumer": {"sessionExpiryInterval": 15, "cleanStart": False, "qos": 1,
                     "topicFilter": "sensors/+", "receiveMaximum": 10, "networkLatency": 0.01,
                     "outages": {"up": {"distribution": "exponential", "mean": "6h"},
                                 "down": {"distribution": "lognormal", "median": "2m", "sigma": 1.5},
                                 "leaveProbability": 0.001, "replaceDeparted": True}},
    "mqttPublisher": {"sessionExpiryInterval": 0, "cleanStart": True, "qos": 1, "topic": "sensors/{id}",
                      "rate": "1/s", "payloadBytes": 200, "messageExpiryInterval": 5, "offlineBuffer": 3},
    "broker": {"maxQueuedMessages": 10, "queueFullPolicy": "drop-oldest", "queueQos0Messages": True,
               "maxSessionExpiryInterval": 3600},
}


def test_the_brief_example_in_all_three_spellings():
    a = sim.load_scenario({"horizon": 60, "mqttConsumer": {"session expiry interval": 15, "clean start": False}})
    b = sim.load_scenario({"horizon": 60, "mqtt_consumer": {"session_expiry_interval": 15, "clean_start": False}})
    c = sim.load_scenario({"horizon": 60, "mqttConsumer": {"sessionExpiryInterval": 15, "cleanStart": False}})
    assert a == b == c
    assert consumer(a).session_expiry_interval == 15
    assert consumer(a).clean_start is False


@pytest.mark.parametrize("other", [SNAKE, CAMEL], ids=["snake_case", "camelCase"])
def test_spellings_give_the_same_scenario(other):
    a = sim.load_scenario(TRANSPORT)
    b = sim.load_scenario(other)
    assert semantic(a) == semantic(b)
    assert a == b
    c = consumer(a)
    assert (c.session_expiry_interval, c.clean_start, c.qos, c.topic_filter, c.receive_maximum) == (15, False, 1, "sensors/+", 10)
    assert c.outages.leave_probability == 0.001
    p = publisher(a)
    assert (p.rate, p.payload_bytes, p.message_expiry_interval, p.offline_buffer) == (1.0, 200, 5, 3)
    assert a.broker.max_queued_messages == 10
    assert a.broker.queue_full_policy == "drop-oldest"
    assert a.broker.max_session_expiry_interval == 3600


def test_defaults():
    scn = sim.load_scenario({"horizon": 10, "mqttConsumer": {}, "mqttPublisher": {"rate": 1}})
    assert scn.name == "scenario"
    c = consumer(scn)
    assert c.session_expiry_interval == 0
    assert c.clean_start is True
    assert c.qos == 0
    assert c.clients == 1
    assert c.topic_filter == "#"
    assert c.receive_maximum == 65535
    assert c.network_latency == 0
    p = publisher(scn)
    assert (p.session_expiry_interval, p.clean_start, p.qos, p.clients) == (0, True, 0, 1)
    assert p.payload_bytes == 100
    assert p.message_expiry_interval is None
    assert p.offline_buffer == 0
    assert scn.broker.queue_full_policy == "drop-new"


def test_explicit_defaults_equal_omitted_defaults():
    omitted = sim.load_scenario({"horizon": 10, "mqttConsumer": {}})
    explicit = sim.load_scenario({"horizon": 10, "mqttConsumer": {
        "session expiry interval": 0, "clean start": True, "qos": 0, "clients": 1}})
    assert semantic(omitted) == semantic(explicit)


@pytest.mark.parametrize("text, seconds", [
    (42, 42), (2.5, 2.5), ("15s", 15), ("10m", 600), ("2h", 7200), ("30d", 30 * 86400),
    ("2w", 14 * 86400), ("1y", 365 * 86400), ("uint_max", UINT_MAX),
])
def test_durations(text, seconds):
    scn = sim.load_scenario(scenario({"horizon": text}))
    assert scn.horizon == seconds


def test_duration_in_latency_and_distribution_equals_seconds():
    a = sim.load_scenario(scenario({"mqttConsumer.network latency": "1s",
                                    "mqttConsumer.outages": {"up": {"distribution": "exponential", "mean": "6h"},
                                                             "down": {"distribution": "fixed", "value": "2m"}}}))
    b = sim.load_scenario(scenario({"mqttConsumer.network latency": 1,
                                    "mqttConsumer.outages": {"up": {"distribution": "exponential", "mean": 21600},
                                                             "down": {"distribution": "fixed", "value": 120}}}))
    assert semantic(a).consumers == semantic(b).consumers
    assert consumer(a).network_latency == 1


@pytest.mark.parametrize("text, seconds", [
    (0, 0), (15, 15), (3600, 3600), (UINT_MAX, UINT_MAX), ("15s", 15), ("1h", 3600), ("2m", 120),
    ("uint_max", UINT_MAX),
])
def test_intervals(text, seconds):
    scn = sim.load_scenario(scenario({"mqttConsumer.session expiry interval": text,
                                      "mqttPublisher.message expiry interval": text,
                                      "broker.max session expiry interval": text}))
    assert consumer(scn).session_expiry_interval == seconds
    assert isinstance(consumer(scn).session_expiry_interval, int)
    assert publisher(scn).message_expiry_interval == seconds
    assert scn.broker.max_session_expiry_interval == seconds


def test_disconnect_session_expiry_interval_parsed():
    scn = sim.load_scenario(scenario({"mqttConsumer.session expiry interval": 10,
                                      "mqttConsumer.outages": {"trace": [[10, 14]], "disconnect": "clean",
                                                               "disconnect session expiry interval": "1m"}}))
    assert consumer(scn).outages.disconnect_session_expiry_interval == 60


@pytest.mark.parametrize("text, per_second", [
    ("1/s", 1.0), ("10/m", 10 / 60), (0.5, 0.5), (2, 2.0), ("3600/h", 1.0), ("86400/d", 1.0),
])
def test_rates(text, per_second):
    scn = sim.load_scenario(scenario({"mqttPublisher.rate": text}))
    assert publisher(scn).rate == pytest.approx(per_second, rel=1e-12)


@pytest.mark.parametrize("dist", [
    {"distribution": "exponential", "mean": "6h"},
    {"distribution": "lognormal", "median": "2m", "sigma": 1.5},
    {"distribution": "lognormal", "mean": "2m", "sigma": 0.5},
    {"distribution": "weibull", "shape": 0.7, "scale": "1h"},
    {"distribution": "pareto", "shape": 1.5, "scale": 30},
    {"distribution": "fixed", "value": "10m"},
], ids=lambda d: d["distribution"] + "-" + "-".join(k for k in d if k != "distribution"))
def test_distributions_accepted(dist):
    scn = sim.load_scenario(scenario({"mqttConsumer.outages": {"up": dist, "down": dist}}))
    assert consumer(scn).outages.up == consumer(scn).outages.down
    assert consumer(scn).outages.up is not None


def test_schedule_instead_of_rate():
    scn = sim.load_scenario(scenario({"mqttPublisher.rate": DELETE, "mqttPublisher.schedule": [11, 12, 13]}))
    assert list(publisher(scn).schedule) == [11, 12, 13]
    assert publisher(scn).rate is None


def test_list_of_blocks():
    scn = sim.load_scenario(scenario({"mqttConsumer": [{"clients": 2, "qos": 1}, {"clients": 3, "qos": 2}]}))
    assert [c.clients for c in scn.consumers] == [2, 3]
    assert [c.qos for c in scn.consumers] == [1, 2]


def test_publisher_topic_without_matching_consumer_is_allowed():
    scn = sim.load_scenario(scenario({"mqttConsumer.topic filter": "alarms/#",
                                      "mqttPublisher.topic": "sensors/{id}/temp"}))
    assert publisher(scn).topic == "sensors/{id}/temp"


YAML_TEXT = """\
name: from-file
horizon: 1m
mqttConsumer:
  clients: 2
  session expiry interval: 15
  clean start: false
  qos: 1
  outages:
    trace: {trace}
mqttPublisher:
  qos: 1
  topic: sensors/{{id}}
  schedule: [1, 2, 3]
"""


def _write_trace(folder: Path, rel: str = "traces/t.csv") -> Path:
    p = folder / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("client,disconnect,reconnect\n0,10,14\n1,20,\n")
    return p


def test_load_from_yaml_file(tmp_path):
    f = tmp_path / "scn.yaml"
    f.write_text(YAML_TEXT.format(trace="[[10, 14]]"))
    for src in (f, str(f)):
        scn = sim.load_scenario(src)
        assert scn.name == "from-file"
        assert scn.horizon == 60
        assert consumer(scn).session_expiry_interval == 15
        assert consumer(scn).clean_start is False
        assert list(publisher(scn).schedule) == [1, 2, 3]
    from_dict = sim.load_scenario({
        "name": "from-file", "horizon": "1m",
        "mqttConsumer": {"clients": 2, "session expiry interval": 15, "clean start": False, "qos": 1,
                         "outages": {"trace": [[10, 14]]}},
        "mqttPublisher": {"qos": 1, "topic": "sensors/{id}", "schedule": [1, 2, 3]}})
    assert semantic(scn) == semantic(from_dict)


def test_csv_trace_relative_to_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    _write_trace(folder)
    f = folder / "scn.yaml"
    f.write_text(YAML_TEXT.format(trace="traces/t.csv"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path must not be resolved against the working directory
    scn = sim.load_scenario("../scenarios/scn.yaml")
    traces = consumer(scn).outages.traces
    assert [list(map(tuple, t)) for t in traces] == [[(10.0, 14.0)], [(20.0, None)]]
    # updated() keeps resolving against the scenario's folder
    scn2 = scn.updated({"mqttConsumer.session expiry interval": 60})
    assert consumer(scn2).outages.traces == traces


def test_csv_trace_relative_path_is_not_resolved_against_cwd(tmp_path, monkeypatch):
    """docs/model.md: 'a relative path is resolved against the scenario file's folder'."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    f = folder / "scn.yaml"
    f.write_text(YAML_TEXT.format(trace="traces/t.csv"))
    cwd = tmp_path / "cwd"
    _write_trace(cwd)  # a file of that name exists only in the working directory
    monkeypatch.chdir(cwd)
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(f)
    assert info.value.field == "mqttConsumer.outages.trace"
    assert "t.csv" in str(info.value)


def test_csv_trace_in_dict_with_absolute_path(tmp_path):
    p = _write_trace(tmp_path)
    scn = sim.load_scenario(scenario({"mqttConsumer.clients": 2, "mqttConsumer.outages": {"trace": str(p)}}))
    assert [list(map(tuple, t)) for t in consumer(scn).outages.traces] == [[(10.0, 14.0)], [(20.0, None)]]


def test_updated_returns_new_validated_scenario_and_leaves_original():
    scn = sim.load_scenario(scenario({"mqttConsumer.session expiry interval": 0}))
    before = copy.deepcopy(scn)
    new = scn.updated({"mqttConsumer.session expiry interval": 60})
    assert isinstance(new, type(scn))
    assert new is not scn
    assert consumer(new).session_expiry_interval == 60
    assert consumer(scn).session_expiry_interval == 0
    assert scn == before
    assert semantic(new) == semantic(sim.load_scenario(scenario({"mqttConsumer.session expiry interval": 60})))


def test_updated_parses_values_like_the_loader():
    scn = sim.load_scenario(scenario())
    new = scn.updated({"mqttConsumer.session expiry interval": "uint_max", "broker.max queued messages": 10,
                       "horizon": "1d"})
    assert consumer(new).session_expiry_interval == UINT_MAX
    assert new.broker.max_queued_messages == 10
    assert new.horizon == 86400
    assert scn.horizon == 60


@pytest.mark.parametrize("value, allowed", [(-1, "4294967295"), (4294967296, "4294967295"), (1.5, "4294967295"),
                                            (True, "4294967295")])
def test_updated_refuses_bad_value_the_same_way(value, allowed):
    scn = sim.load_scenario(scenario())
    with pytest.raises(sim.ScenarioError) as upd:
        scn.updated({"mqttConsumer.session expiry interval": value})
    with pytest.raises(sim.ScenarioError) as load:
        sim.load_scenario(scenario({"mqttConsumer.session expiry interval": value}))
    assert upd.value.field == load.value.field == "mqttConsumer.session expiry interval"
    assert str(upd.value) == str(load.value)
    assert allowed in str(upd.value)
    assert consumer(scn).session_expiry_interval == 0


def test_updated_refuses_unknown_field():
    scn = sim.load_scenario(scenario())
    with pytest.raises(sim.ScenarioError) as info:
        scn.updated({"mqttConsumer.session expiry intervall": 5})
    assert "session expiry intervall" in str(info.value)


# =============================================================================== (b) bad input

TRACE = "mqttConsumer.outages.trace"


def bad(id_, changes, field, value, allowed=(), base=BASE, xfail=None):
    """One bad-input case.

    field: the exact dotted field, or a tuple of acceptable fields; an entry ending in '*' is a prefix.
    value: substring(s) of the message showing the offending value (tuple = any one); None = not checked.
    allowed: substrings that must all appear (case-insensitive); 'a|b' = either.
    """
    marks = [pytest.mark.xfail(reason=xfail, strict=True)] if xfail else []
    return pytest.param(changes, field, value, allowed, base, id=id_, marks=marks)


BAD = [
    # --- intervals (MQTT Four Byte Integer, whole seconds 0..UINT_MAX)
    bad("expiry-negative", {"mqttConsumer.session expiry interval": -1},
        "mqttConsumer.session expiry interval", "-1", ["4294967295"]),
    bad("expiry-above-uint-max", {"mqttConsumer.session expiry interval": 4294967296},
        "mqttConsumer.session expiry interval", "4294967296", ["4294967295"]),
    bad("expiry-fraction", {"mqttConsumer.session expiry interval": 1.5},
        "mqttConsumer.session expiry interval", "1.5", ["4294967295"]),
    bad("expiry-word", {"mqttConsumer.session expiry interval": "abc"},
        "mqttConsumer.session expiry interval", "'abc'", ["4294967295"]),
    bad("expiry-fraction-string", {"mqttConsumer.session expiry interval": "1.5s"},
        "mqttConsumer.session expiry interval", "'1.5s'", ["4294967295"]),
    bad("expiry-bool", {"mqttConsumer.session expiry interval": True},
        "mqttConsumer.session expiry interval", "True", ["4294967295"]),
    bad("expiry-null", {"mqttConsumer.session expiry interval": None},
        "mqttConsumer.session expiry interval", "None", ["4294967295"]),
    bad("publisher-expiry-word", {"mqttPublisher.session expiry interval": "uint_max_plus"},
        "mqttPublisher.session expiry interval", "'uint_max_plus'", ["4294967295"]),
    bad("message-expiry-negative", {"mqttPublisher.message expiry interval": -1},
        "mqttPublisher.message expiry interval", "-1", ["4294967295"]),
    bad("broker-max-expiry-above-uint-max", {"broker.max session expiry interval": 4294967296},
        "broker.max session expiry interval", "4294967296", ["4294967295"]),
    bad("disconnect-expiry-negative",
        {"mqttConsumer.session expiry interval": 10,
         "mqttConsumer.outages": {"trace": [[10, 14]], "disconnect": "clean", "disconnect session expiry interval": -5}},
        "mqttConsumer.outages.disconnect session expiry interval", "-5", ["4294967295"]),
    # --- unknown keys
    bad("unknown-top-level-key", {"colour": "blue"}, "colour", "colour", ["unknown|not allowed|allowed"]),
    bad("unknown-consumer-key", {"mqttConsumer.session expiry intervall": 15},
        ("mqttConsumer.session expiry intervall", "mqttConsumer"), "session expiry intervall",
        ["unknown|not allowed|allowed"]),
    bad("unknown-outages-key", {"mqttConsumer.outages": {**OUT_OK, "uptime": 5}},
        ("mqttConsumer.outages.uptime", "mqttConsumer.outages"), "uptime", ["unknown|not allowed|allowed"]),
    bad("unknown-broker-key", {"broker.max queue messages": 5},
        ("broker.max queue messages", "broker"), "max queue messages", ["unknown|not allowed|allowed"]),
    bad("same-key-in-two-spellings", {"mqttConsumer.session expiry interval": 5, "mqttConsumer.session_expiry_interval": 6},
        "mqttConsumer.session expiry interval", ("5", "6"), ["twice|duplicate|two spellings|more than once"]),
    # --- distributions
    bad("unknown-distribution", {"mqttConsumer.outages": {**OUT_OK, "up": {"distribution": "gaussian", "mean": "6h"}}},
        ("mqttConsumer.outages.up.distribution", "mqttConsumer.outages.up"), "'gaussian'",
        ["exponential", "lognormal", "weibull", "pareto", "fixed"]),
    bad("distribution-missing-parameter", {"mqttConsumer.outages": {**OUT_OK, "up": {"distribution": "exponential"}}},
        ("mqttConsumer.outages.up.mean", "mqttConsumer.outages.up"), None, ["mean"]),
    bad("weibull-missing-shape",
        {"mqttConsumer.outages": {**OUT_OK, "down": {"distribution": "weibull", "scale": "2m"}}},
        ("mqttConsumer.outages.down.shape", "mqttConsumer.outages.down"), None, ["shape"]),
    bad("distribution-negative-mean", {"mqttConsumer.outages": {**OUT_OK, "up": {"distribution": "exponential", "mean": -5}}},
        "mqttConsumer.outages.up.mean", "-5", ["> 0|>0|positive"]),
    bad("distribution-zero-mean", {"mqttConsumer.outages": {**OUT_OK, "down": {"distribution": "exponential", "mean": 0}}},
        "mqttConsumer.outages.down.mean", "0", ["> 0|>0|positive"]),
    bad("lognormal-negative-sigma",
        {"mqttConsumer.outages": {**OUT_OK, "down": {"distribution": "lognormal", "median": "2m", "sigma": -1}}},
        "mqttConsumer.outages.down.sigma", "-1", ["> 0|>0|positive"]),
    bad("pareto-zero-scale",
        {"mqttConsumer.outages": {**OUT_OK, "down": {"distribution": "pareto", "shape": 2, "scale": 0}}},
        "mqttConsumer.outages.down.scale", "0", ["> 0|>0|positive"]),
    bad("unknown-distribution-parameter",
        {"mqttConsumer.outages": {**OUT_OK, "up": {"distribution": "exponential", "mean": "6h", "meen": 1}}},
        ("mqttConsumer.outages.up.meen", "mqttConsumer.outages.up"), "meen", ["mean"]),
    bad("trace-with-down", {"mqttConsumer.outages": {"trace": [[10, 14]], "down": OUT_OK["down"]}},
        ("mqttConsumer.outages.down", TRACE, "mqttConsumer.outages"), None, ["trace"]),
    bad("horizon-bool", {"horizon": True}, "horizon", "True", ["15s|seconds"]),
    bad("leave-probability-above-one", {"mqttConsumer.outages": {**OUT_OK, "leave probability": 1.5}},
        "mqttConsumer.outages.leave probability", "1.5", ["[0, 1]|0 to 1|0..1|between 0 and 1|<= 1"]),
    bad("disconnect-kind", {"mqttConsumer.outages": {**OUT_OK, "disconnect": "abrupt"}},
        "mqttConsumer.outages.disconnect", "'abrupt'", ["network", "clean"]),
    bad("jitter-above-one", {"mqttConsumer.outages": {**OUT_OK, "reconnect": {"jitter": 1.5}}},
        "mqttConsumer.outages.reconnect.jitter", "1.5", ["[0, 1|0 to 1|0..1|between 0 and 1|< 1|<= 1"]),
    # --- rates
    bad("rate-zero", {"mqttPublisher.rate": 0}, "mqttPublisher.rate", "0", ["> 0"]),
    bad("rate-negative", {"mqttPublisher.rate": -1}, "mqttPublisher.rate", "-1", ["> 0"]),
    bad("rate-word", {"mqttPublisher.rate": "fast"}, "mqttPublisher.rate", "'fast'", ["/s|/m|per second"]),
    bad("rate-zero-per-second", {"mqttPublisher.rate": "0/s"}, "mqttPublisher.rate", "'0/s'", ["> 0"]),
    bad("rate-infinite", {"mqttPublisher.rate": float("inf")}, "mqttPublisher.rate", "inf", ["> 0|finite"]),
    bad("rate-and-schedule", {"mqttPublisher.schedule": [1, 2]},
        ("mqttPublisher.rate", "mqttPublisher.schedule", "mqttPublisher"), None, ["rate", "schedule"]),
    bad("neither-rate-nor-schedule", {"mqttPublisher.rate": DELETE},
        ("mqttPublisher.rate", "mqttPublisher.schedule", "mqttPublisher"), None, ["rate", "schedule"]),
    bad("schedule-negative-time", {"mqttPublisher.rate": DELETE, "mqttPublisher.schedule": [1, -2, 3]},
        ("mqttPublisher.schedule", "mqttPublisher.schedule*"), "-2", [">= 0|>=0|0 or more|non-negative|negative"]),
    # --- horizon
    bad("horizon-zero", {"horizon": 0}, "horizon", "0", ["> 0"]),
    bad("horizon-negative", {"horizon": -5}, "horizon", "-5", ["> 0"]),
    bad("horizon-missing", {"horizon": DELETE}, "horizon", None, ["missing|required"]),
    bad("horizon-bad-unit", {"horizon": "10 parsecs"}, "horizon", "'10 parsecs'", ["15s|10m|2h|30d"]),
    bad("horizon-nan", {"horizon": float("nan")}, "horizon", "nan", ["finite|> 0"]),
    # --- client blocks
    bad("consumer-qos-3", {"mqttConsumer.qos": 3}, "mqttConsumer.qos", "3", ["0", "2"]),
    bad("publisher-qos-negative", {"mqttPublisher.qos": -1}, "mqttPublisher.qos", "-1", ["0", "2"]),
    bad("qos-bool", {"mqttConsumer.qos": True}, "mqttConsumer.qos", "True", ["0", "2"]),
    bad("clients-zero", {"mqttConsumer.clients": 0}, "mqttConsumer.clients", "0", [">= 1|1"]),
    bad("clients-fraction", {"mqttPublisher.clients": 2.5}, "mqttPublisher.clients", "2.5", ["integer|whole"]),
    bad("clients-infinite", {"mqttConsumer.clients": float("inf")}, "mqttConsumer.clients", "inf", ["integer|whole"]),
    bad("qos-nan", {"mqttConsumer.qos": float("nan")}, "mqttConsumer.qos", "nan", ["0", "2"]),
    bad("clean-start-string", {"mqttConsumer.clean start": "false"}, "mqttConsumer.clean start", "'false'",
        ["true", "false"]),
    bad("network-latency-word", {"mqttConsumer.network latency": "fast"}, "mqttConsumer.network latency", "'fast'",
        ["15s|seconds"]),
    bad("payload-bytes-fraction", {"mqttPublisher.payload bytes": 1.5}, "mqttPublisher.payload bytes", "1.5",
        ["integer|whole"]),
    bad("schedule-empty", {"mqttPublisher.rate": DELETE, "mqttPublisher.schedule": []},
        ("mqttPublisher.schedule", "mqttPublisher.rate", "mqttPublisher"), None, ["schedule"]),
    bad("receive-maximum-zero", {"mqttConsumer.receive maximum": 0}, "mqttConsumer.receive maximum", "0", ["1", "65535"]),
    bad("receive-maximum-65536", {"mqttConsumer.receive maximum": 65536}, "mqttConsumer.receive maximum", "65536",
        ["1", "65535"]),
    bad("network-latency-negative", {"mqttConsumer.network latency": -0.5}, "mqttConsumer.network latency", "-0.5",
        [">= 0|>=0|non-negative"]),
    bad("payload-bytes-negative", {"mqttPublisher.payload bytes": -1}, "mqttPublisher.payload bytes", "-1", ["0"]),
    bad("offline-buffer-negative", {"mqttPublisher.offline buffer": -1}, "mqttPublisher.offline buffer", "-1", ["0"]),
    bad("topic-filter-hash-not-last", {"mqttConsumer.topic filter": "a/#/b"}, "mqttConsumer.topic filter", "'a/#/b'",
        ["#", "last"]),
    bad("topic-filter-partial-plus", {"mqttConsumer.topic filter": "a/b+/c"}, "mqttConsumer.topic filter", "'a/b+/c'",
        ["+", "level"]),
    bad("topic-with-wildcard", {"mqttPublisher.topic": "sensors/+/temp"}, "mqttPublisher.topic", "'sensors/+/temp'",
        ["wildcard"]),
    bad("second-block-qos", {"mqttPublisher": [{"rate": 1}, {"rate": 1, "qos": 5}]},
        ("mqttPublisher[1].qos", "mqttPublisher.1.qos"), "5", ["0", "2"]),
    # --- broker
    bad("queue-full-policy", {"broker.queue full policy": "drop-random"}, "broker.queue full policy", "'drop-random'",
        ["drop-new", "drop-oldest"]),
    bad("max-queued-messages-negative", {"broker.max queued messages": -1}, "broker.max queued messages", "-1",
        [">= 0|0 to|>=0"]),
    bad("max-queued-bytes-fraction", {"broker.max queued bytes": 1.5}, "broker.max queued bytes", "1.5",
        ["integer|whole"]),
    bad("message-expiry-check", {"broker.message expiry check": "sometimes"}, "broker.message expiry check",
        "'sometimes'", ["eager", "lazy"]),
    bad("unknown-profile", {"broker.profile": "nosuchbroker"}, "broker.profile", "'nosuchbroker'",
        ["mosquitto|profiles"]),
    # --- traces
    bad("trace-reconnect-before-disconnect", {"mqttConsumer.outages": {"trace": [[10, 5]]}},
        (TRACE, TRACE + "*"), "10, 5", ["reconnect|after|before|>"]),
    bad("trace-overlapping-pairs", {"mqttConsumer.outages": {"trace": [[10, 20], [15, 30]]}},
        (TRACE, TRACE + "*"), "15, 30", ["overlap|order|before|after"]),
    bad("trace-null-reconnect-not-last", {"mqttConsumer.outages": {"trace": [[10, None], [20, 30]]}},
        (TRACE, TRACE + "*"), ("10, None", "20, 30"), ["last|null|left for good|leaves for good"]),
    bad("trace-negative-time", {"mqttConsumer.outages": {"trace": [[-1, 5]]}},
        (TRACE, TRACE + "*"), "-1", [">= 0|>=0|negative|0"]),
    bad("trace-with-up", {"mqttConsumer.outages": {"trace": [[10, 14]], **OUT_OK}},
        ("mqttConsumer.outages.up", "mqttConsumer.outages.down", TRACE, "mqttConsumer.outages"), None, ["trace"]),
    bad("trace-with-leave-probability", {"mqttConsumer.outages": {"trace": [[10, 14]], "leave probability": 0.1}},
        ("mqttConsumer.outages.leave probability", TRACE, "mqttConsumer.outages"), None, ["trace"]),
    bad("trace-csv-missing", {"mqttConsumer.outages": {"trace": "/nonexistent-dir/trace.csv"}},
        TRACE, "trace.csv", ["exist|not found|no such"]),
]


def _field_ok(actual: str, expected) -> bool:
    for e in (expected if isinstance(expected, tuple) else (expected,)):
        if e.endswith("*") and actual.startswith(e[:-1]):
            return True
        if actual == e:
            return True
    return False


@pytest.mark.parametrize("changes, field, value, allowed, base", BAD)
def test_bad_input_is_refused(changes, field, value, allowed, base):
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario(changes, base))
    err = info.value
    msg = str(err)
    assert _field_ok(err.field, field), f"field {err.field!r}, expected {field!r}; message: {msg}"
    assert msg.startswith(f"{err.field}: "), msg
    assert "\n" not in msg
    if value is not None:
        alts = value if isinstance(value, tuple) else (value,)
        assert any(v in msg for v in alts), f"offending value {value!r} not in: {msg}"
    for group in allowed:
        assert any(a.lower() in msg.lower() for a in group.split("|")), f"{group!r} not in: {msg}"


def test_bad_input_count():
    assert len(BAD) >= 30
    assert len({p.id for p in BAD}) == len(BAD)


def test_message_format_is_field_value_repr_problem():
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario({"mqttConsumer.session expiry interval": 4294967296}))
    err = info.value
    assert err.field == "mqttConsumer.session expiry interval"
    assert err.value == 4294967296
    assert str(err).startswith("mqttConsumer.session expiry interval: 4294967296 ")
    assert "UINT_MAX (4294967295)" in str(err)


def test_unknown_key_hint():
    """Nice to have: a key close to a known one gets a 'did you mean'."""
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario({"mqttConsumer.session expiry intervall": 15}))
    assert "session expiry interval" in str(info.value).replace("session expiry intervall", "")


def test_string_value_repr_is_quoted():
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario({"broker.queue full policy": "drop-random"}))
    assert str(info.value).startswith("broker.queue full policy: 'drop-random' ")
    assert info.value.value == "drop-random"


def test_csv_trace_bad_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("client,disconnect,reconnect\n0,10,5\n")
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario({"mqttConsumer.outages": {"trace": str(p)}}))
    assert info.value.field.startswith(TRACE)
    p.write_text("client,disconnect,reconnect\n3,10,14\n")  # client index outside 0..clients-1
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(scenario({"mqttConsumer.clients": 2, "mqttConsumer.outages": {"trace": str(p)}}))
    assert info.value.field.startswith(TRACE)
    assert "3" in str(info.value)


def test_missing_yaml_file_is_a_scenario_error(tmp_path):
    with pytest.raises(sim.ScenarioError):
        sim.load_scenario(tmp_path / "nope.yaml")


# =============================================================================== (c) CLI

GOOD_YAML = """\
name: cli-good
horizon: 60s
mqttConsumer:
  session expiry interval: 10
  clean start: false
  qos: 1
  outages:
    trace: [[10, 14]]
mqttPublisher:
  qos: 1
  topic: sensors/{id}
  schedule: [5, 11, 12, 20]
"""
BAD_YAML = GOOD_YAML.replace("session expiry interval: 10", "session expiry interval: 4294967296")


def _cli(args, cwd):
    exe = ROOT / ".venv" / "bin" / "mqtt-sim"
    if exe.exists():
        cmd = [str(exe), *args]
    else:  # not installed as a console script yet: call the entry point the script would call
        cmd = [sys.executable, "-c", "import sys; from sim.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _cli_in_process(args, capsys) -> tuple[int, list[str]]:
    """Call the entry point the console script calls; returns (exit status, non-empty output lines)."""
    from sim.cli import main

    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse or an explicit sys.exit
        status = exc.code
    out = capsys.readouterr()
    return (0 if status is None else status), [ln for ln in (out.out + out.err).splitlines() if ln.strip()]


def test_cli_bad_scenario_subprocess(tmp_path):
    """End to end through the installed console script: one error line, exit status 2."""
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_YAML)
    proc = _cli(["run", str(f)], tmp_path)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert lines == ["error: mqttConsumer.session expiry interval: 4294967296 is above UINT_MAX (4294967295)"], lines


@pytest.mark.parametrize("text, field, value", [
    (BAD_YAML, "mqttConsumer.session expiry interval", "4294967296"),
    (GOOD_YAML.replace("qos: 1\n  outages", "qos: 1\n  colour: blue\n  outages"), "mqttConsumer.colour", "colour"),
    (GOOD_YAML.replace("horizon: 60s", "horizon: -5"), "horizon", "-5"),
    (GOOD_YAML.replace("trace: [[10, 14]]", "trace: [[10, 5]]"), "mqttConsumer.outages.trace", "10, 5"),
], ids=["expiry-above-uint-max", "unknown-key", "horizon-negative", "trace-reversed"])
def test_cli_bad_scenario_one_error_line_exit_2(tmp_path, capsys, text, field, value):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    status, lines = _cli_in_process(["run", str(f)], capsys)
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: " + field), lines
    assert value in lines[0], lines


def test_cli_missing_file_exit_2(tmp_path, capsys):
    status, lines = _cli_in_process(["run", str(tmp_path / "nope.yaml")], capsys)
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "nope.yaml" in lines[0]


def test_cli_good_scenario_prints_summary_exit_0(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD_YAML)
    proc = _cli(["run", str(f), "--seed", "1"], tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "error" not in proc.stderr.lower()
    for word in ("published", "routed", "delivered", "loss_ratio"):
        assert word in proc.stdout, proc.stdout


def test_yaml_key_repeated_in_one_mapping_is_refused(tmp_path):
    """PyYAML would silently keep the last value; the loader refuses the file instead."""
    f = tmp_path / "dup.yaml"
    f.write_text("horizon: 10s\nmqttConsumer:\n  session expiry interval: 10\n  session expiry interval: 20\n")
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(f)
    assert info.value.field == "session expiry interval"
    assert "line 4" in str(info.value)


def test_relative_profile_path_is_resolved_against_the_scenario_folder(tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny.yaml").write_text("settings:\n  max queued messages: 7\n")
    f = tmp_path / "scn.yaml"
    f.write_text("horizon: 10s\nbroker: {profile: profiles/tiny.yaml}\n")
    monkeypatch.chdir("/")
    assert sim.load_scenario(f).broker.max_queued_messages == 7


@pytest.mark.parametrize("trace,where", [
    ([[10, 14], [None, 30]], "[1]"),      # a null disconnect is only allowed first
    ([[None, None]], "[0]"),              # [null, t] needs the first connect time
])
def test_first_connect_pair_rules(trace, where):
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario({"horizon": 60, "mqttConsumer": {"outages": {"trace": trace}}})
    assert info.value.field == f"mqttConsumer.outages.trace{where}"
    assert "first" in str(info.value)


def test_first_connect_pair_is_parsed():
    scn = sim.load_scenario({"horizon": 60, "mqttConsumer": {"clients": 2, "outages": {"trace": [[None, 5], [10, 20]]}}})
    out = scn.consumers[0].outages
    assert out.first_connect == (5.0, 5.0) and out.traces == (((10.0, 20.0),), ((10.0, 20.0),))

"""Network outages shared by many clients (scenario key ``network outages``) and the
reconnect storm after them: scripted outcomes computed by hand, who drops, validation,
determinism, the storm's summary fields, and the engines.

The scripted scenarios: a publisher publishes one QoS 1 message a second at t = 1 .. 39 to
three QoS 1 consumers (Session Expiry Interval 60 s, Clean Start 0), horizon 40 s, and a
network outage holds over [10, 20). Connection changes come before messages at the same
instant (docs/model.md), so the message of t = 10 finds the consumers dropped and that of
t = 20 finds them back.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pandas as pd
import pytest

import sim
from sim.config import ConsumerBlock, PublisherBlock, Scenario
from sim.network import SlotWindows, offline_period, peak_per_second
from sim.outage_plan import Outage
from sim.outages import Backoff, NetworkOutages

PUBLISHES = list(range(1, 40))


def scripted(consumer: dict | None = None, publisher: dict | None = None, network: dict | None = None,
             clients: int = 3) -> dict:
    return {
        "name": "storm", "horizon": 40,
        "mqttConsumer": {"clients": clients, "session expiry interval": 60, "clean start": False, "qos": 1,
                         **(consumer or {})},
        "mqttPublisher": {"qos": 1, "schedule": PUBLISHES, **(publisher or {})},
        "network outages": {"trace": [[10, 20]], "blocks": ["mqttConsumer"], **(network or {})},
    }


def run(d: dict, seed: int = 1, **kw) -> sim.Result:
    return sim.run(sim.load_scenario(d), seed=seed, **kw)


def fate_counts(res: sim.Result) -> pd.DataFrame:
    cols = ["routed", "delivered", "lost", "lost_session_expired", "lost_no_session", "lost_publisher_offline",
            "pending", "departed_pairs"]
    return res.fates.set_index("client_id")[cols]


def events(res: sim.Result, event: str) -> pd.DataFrame:
    ev = res.events
    return ev[ev["event"] == event]


def held_at(res: sim.Result, t: float) -> int:
    """The retained bytes the memory step function holds at ``t``."""
    m = res.memory
    return int(m[m["time"] <= t]["bytes"].iloc[-1])


def message_bytes(scn: Scenario, consumers: int) -> int:
    """Memory one queued message adds: its stored body once (shared store) + one entry per session."""
    b = scn.broker
    body = b.message_overhead_bytes + len(scn.publishers[0].topic_of(0).encode()) + scn.publishers[0].payload_bytes
    assert b.shared_message_store
    return body + consumers * b.queue_entry_overhead_bytes


# ------------------------------------------------------------------ scripted outcomes


def test_sessions_that_outlive_the_outage_queue_and_deliver_everything():
    scn = sim.load_scenario(scripted())
    res = sim.run(scn, seed=1, record_messages=True)
    f = fate_counts(res)
    assert (f["routed"] == 39).all() and (f["delivered"] == 39).all() and (f["lost"] == 0).all()
    drops = events(res, "disconnect")
    assert list(drops["time"]) == [10.0] * 3 and set(drops["detail"]) == {"network"}  # no DISCONNECT packet
    back = events(res, "connect")
    back = back[back["time"] > 0]
    assert list(back["time"]) == [20.0] * 3 and back["session_present"].all()
    # each (message, consumer) pair has exactly one fate; the ten of [10, 20) were queued, then delivered at 20
    m = res.messages
    assert len(m) == 39 * 3 and m.groupby(["message_id", "consumer"]).size().eq(1).all()
    held = m[(m["published_at"] >= 10) & (m["published_at"] < 20)]
    assert len(held) == 30 and (held["fate"] == "delivered").all() and (held["fate_at"] == 20).all()
    s = res.summary
    assert s["network_outages"] == 1 and s["network_outage_disconnects"] == 3
    assert s["storm_reconnects"] == 3 and s["storm_reconnects_per_s"] == 3 and s["storm_seconds"] == 0
    assert s["storm_peak_queued"] == 30  # 10 messages x 3 sessions, just before t = 20
    assert s["storm_peak_memory_bytes"] == held_at(res, 19) == held_at(res, 9) + 10 * message_bytes(scn, 3)
    assert s["storm_peak_memory_bytes"] == s["memory_peak_bytes"]


def test_a_session_shorter_than_the_outage_expires_during_it():
    res = run(scripted({"session expiry interval": 5}))
    f = fate_counts(res)
    # 10 .. 14 queued, lost when the sessions expire at 15; 15 .. 19 find no session
    assert (f["delivered"] == 29).all() and (f["lost_session_expired"] == 5).all() and (f["lost_no_session"] == 5).all()
    assert list(events(res, "session_expired")["time"]) == [15.0] * 3
    back = events(res, "connect")
    assert not back[back["time"] == 20]["session_present"].any()
    assert res.summary["storm_peak_queued"] == 15  # 5 messages x 3 sessions, at 14


def test_session_expiry_zero_ends_the_session_at_the_drop():
    res = run(scripted({"session expiry interval": 0, "clean start": True}))
    f = fate_counts(res)
    assert (f["delivered"] == 29).all() and (f["lost_no_session"] == 10).all() and (f["lost"] == 10).all()
    assert list(events(res, "session_ended")["time"]) == [10.0] * 3
    assert res.summary["storm_peak_queued"] == 0


def test_publishers_in_an_outage_buffer_then_lose():
    res = run(scripted(publisher={"offline buffer": 3}, network={"blocks": ["mqttPublisher"]}))
    f = fate_counts(res)
    # 10, 11, 12 wait in the publisher's buffer and are sent at 20; 13 .. 19 do not fit
    assert (f["delivered"] == 32).all() and (f["lost_publisher_offline"] == 7).all()
    assert list(events(res, "disconnect")["client_id"]) == ["publisher-0"]
    assert res.summary["network_outage_disconnects"] == 1 and res.summary["storm_reconnects"] == 1


def test_reconnects_follow_each_clients_back_off():
    # attempts 1, 2, 4, 8 s apart from the drop at 10: 11, 13, 17, 25 -> back at 25
    backoff = {"reconnect": {"initial delay": 1, "multiplier": 2, "max delay": 120}}
    res = run(scripted({"outages": backoff}))
    assert list(events(res, "connect").query("time > 0")["time"]) == [25.0] * 3
    s = res.summary
    assert s["storm_seconds"] == 5 and s["storm_reconnects"] == 3 and s["storm_reconnects_per_s"] == 3
    assert s["storm_peak_queued"] == 15 * 3  # 10 .. 24
    row = res.network_outages.iloc[0]
    assert row["last_reconnect"] == 25 and row["storm_end"] == 25
    assert (fate_counts(res)["delivered"] == 39).all()


def test_jitter_spreads_the_storm():
    backoff = {"reconnect": {"initial delay": 1, "multiplier": 2, "max delay": 120, "jitter": 0.5}}
    res = run(scripted({"outages": backoff}, clients=20), seed=4)
    back = events(res, "connect").query("time > 0")["time"].to_numpy()
    assert len(back) == 20 and (back >= 20).all() and len(np.unique(back)) == 20  # one instant each
    s = res.summary
    assert s["storm_reconnects"] == 20
    assert s["storm_seconds"] == pytest.approx(back.max() - 20)
    assert s["storm_reconnects_per_s"] == peak_per_second(list(back)) < 20


def test_own_outage_and_network_outage_overlap_into_one_offline_period():
    # already offline (own outage 5 .. 15) when the network fails: not dropped by it; back when it returns
    res = run(scripted({"outages": {"trace": [[5, 15]]}}))
    assert list(events(res, "disconnect")["time"]) == [5.0] * 3
    assert list(events(res, "connect").query("time > 0")["time"]) == [20.0] * 3
    s = res.summary
    assert s["network_outage_disconnects"] == 0 and s["storm_reconnects"] == 3
    assert s["storm_peak_queued"] == 15 * 3  # 5 .. 19
    # dropped by the network, then its own outage (15 .. 30) holds it longer: not part of the storm
    res = run(scripted({"outages": {"trace": [[15, 30]]}}))
    assert list(events(res, "disconnect")["time"]) == [10.0] * 3
    assert list(events(res, "connect").query("time > 0")["time"]) == [30.0] * 3
    s = res.summary
    assert s["network_outage_disconnects"] == 3 and s["storm_reconnects"] == 0 and math.isnan(s["storm_seconds"])
    assert s["storm_peak_queued"] == 10 * 3  # held over [10, 20): the window ends with the outage
    assert (fate_counts(res)["delivered"] == 39).all()


def test_a_client_that_leaves_during_the_outage_leaves_then():
    res = run(scripted({"outages": {"trace": [[15, None]]}}))
    assert list(events(res, "departed")["time"]) == [15.0] * 3
    assert list(events(res, "connect").query("time > 0")["time"]) == []
    f = fate_counts(res)
    # 10 .. 14 were queued before it left: departed with it; so is everything after
    assert (f["delivered"] == 9).all() and (f["lost"] == 0).all() and (f["departed_pairs"] == 30).all()
    assert res.summary["storm_reconnects"] == 0


def test_a_departed_client_is_unaffected():
    res = run(scripted({"outages": {"trace": [[5, None]]}}))
    assert res.summary["network_outage_disconnects"] == 0 and res.summary["storm_reconnects"] == 0
    assert list(events(res, "disconnect")["time"]) == [5.0] * 3


def test_no_connect_gets_through_while_the_network_is_down():
    res = run(scripted(network={"trace": [[0, 5]]}))
    assert list(events(res, "connect")[lambda e: e["role"] == "consumer"]["time"]) == [5.0] * 3
    f = fate_counts(res)
    assert (f["lost_no_session"] == 4).all() and (f["delivered"] == 35).all()  # 1 .. 4 found no session
    assert res.summary["network_outage_disconnects"] == 0 and res.summary["storm_reconnects"] == 3


def test_clients_that_do_not_reconnect_by_themselves_leave_with_the_network():
    res = run(scripted({"auto reconnect": False}))
    assert list(events(res, "departed")["time"]) == [10.0] * 3
    assert res.summary["storm_reconnects"] == 0


def test_outages_past_the_horizon_do_not_count_and_one_running_into_it_has_no_storm():
    res = run(scripted(network={"trace": [[30, 50], [60, 70]]}))
    t = res.network_outages
    assert len(t) == 1 and t["start"].tolist() == [30.0] and t["storm_end"].tolist() == [40.0]
    s = res.summary
    assert s["network_outages"] == 1 and s["storm_reconnects"] == 0 and math.isnan(s["storm_seconds"])
    assert s["storm_reconnects_per_s"] == 0 and s["storm_peak_queued"] == 10 * 3  # 30 .. 39, pending at the horizon
    assert (fate_counts(res)["pending"] == 10).all()


def test_the_offline_period_without_network_windows_is_reconnect_time():
    """offline_period reproduces the back-off draws of a plain outage exactly."""
    from sim.outage_plan import reconnect_time

    b = Backoff(initial_delay=0.5, max_delay=8, multiplier=2, jitter=0.5)
    for seed in range(20):
        want = reconnect_time(13.7, 10.0, b, np.random.default_rng(seed))
        got = offline_period(10.0, 13.7, None, None, SlotWindows([]), b, np.random.default_rng(seed), 1e9)
        assert got.back == want and got.storm is None
    got = offline_period(10.0, None, Outage(12.0, 30.0), None, SlotWindows([(10.0, 20.0, 0)]), None, None, 1e9)
    assert got.back == 30.0 and got.storm is None and got.own is None


# ------------------------------------------------------------------ who drops


def test_fraction_takes_its_share_over_many_outages():
    d = {"horizon": 200 * 110,
         "mqttConsumer": {"clients": 10},
         "mqttPublisher": {"schedule": [1]},
         "network outages": {"up": {"distribution": "fixed", "value": 100},
                             "down": {"distribution": "fixed", "value": 10},
                             "fraction": 0.25, "blocks": ["mqttConsumer"]}}
    res = run(d, seed=5)
    t = res.network_outages
    assert len(t) == 200 and res.summary["network_outages"] == 200
    assert set(t["clients"]) <= {2, 3}  # 0.25 x 10 = 2.5: two or three each time
    assert t["clients"].mean() / 10 == pytest.approx(0.25, abs=0.05)
    assert (t["disconnected"] == t["clients"]).all()  # nobody was offline already
    per_client = events(res, "disconnect")["client_id"].value_counts()
    assert len(per_client) == 10 and per_client.between(50 - 25, 50 + 25).all()  # each slot about 1/4 of 200
    assert per_client.sum() == t["clients"].sum()


def test_blocks_filter_by_position_and_by_name():
    d = scripted(network={"blocks": ["mqttConsumer[1]"]})
    d["mqttConsumer"] = [{**d["mqttConsumer"], "client id": "a"},
                         {**d["mqttConsumer"], "client id": "b", "name": "cell-b"}]
    res = run(d)
    assert sorted(events(res, "disconnect")["client_id"]) == ["b-0", "b-1", "b-2"]
    d["network outages"]["blocks"] = ["cell-b"]
    assert sorted(events(run(d), "disconnect")["client_id"]) == ["b-0", "b-1", "b-2"]
    d["network outages"]["blocks"] = ["mqtt_consumer"]  # the kind, in any spelling: every block of it
    assert len(events(run(d), "disconnect")) == 6
    del d["network outages"]["blocks"]  # default: every block
    assert set(events(run(d), "disconnect")["role"]) == {"consumer", "publisher"}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("change, field, words", [
    ({"blocks": ["mqttConsumers"]}, "network outages.blocks[0]", "use one of mqttConsumer, mqttConsumer[0], mqttPublisher"),
    ({"fraction": 0}, "network outages.fraction", "allowed (0, 1]"),
    ({"fraction": 1.5}, "network outages.fraction", "allowed (0, 1]"),
    ({"trace": [[10, 20], [15, 30]]}, "network outages.trace[1]", "not overlap"),
    ({"trace": [[30, 40], [10, 20]]}, "network outages.trace[1]", "time order"),
    ({"trace": [[20, 10]]}, "network outages.trace[0]", "end must be > start"),
    ({"trace": [["soon", 10]]}, "network outages.trace[0][0]", "not a duration"),
    ({"trace": None, "up": {"distribution": "exponential", "mean": "1h"}}, "network outages.down", "is missing"),
    ({"up": {"distribution": "exponential", "mean": "1h"}}, "network outages.up", "cannot be combined with a trace"),
    ({"colour": "red"}, "network outages.colour", "unknown key"),
])
def test_bad_values_are_refused_naming_field_value_and_what_is_allowed(change, field, words, tmp_path):
    d = scripted()
    d["network outages"] = {k: v for k, v in {**d["network outages"], **change}.items() if v is not None}
    with pytest.raises(sim.ScenarioError) as err:
        sim.load_scenario(d)
    assert err.value.field == field and words in str(err.value)
    # the same from a YAML file
    import yaml

    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({k.replace("_", " "): v for k, v in d.items()}))
    with pytest.raises(sim.ScenarioError) as err:
        sim.load_scenario(f)
    assert err.value.field == field


def test_python_objects_validate_themselves():
    with pytest.raises(sim.ScenarioError, match=r"^network outages\.fraction: 1\.5 is out of range"):
        NetworkOutages(trace=[[10, 20]], fraction=1.5)
    with pytest.raises(sim.ScenarioError, match=r"^network outages\.trace\[1\]"):
        NetworkOutages(trace=[[10, 20], [19, 30]])
    with pytest.raises(sim.ScenarioError) as err:
        Scenario(name="s", horizon=40, consumers=[ConsumerBlock(clients=3)], publishers=[PublisherBlock(schedule=[1])],
                 network_outages=NetworkOutages(trace=[[10, 20]], blocks=["broker"]))
    assert err.value.field == "network outages.blocks[0]" and err.value.value == "broker"
    assert "mqttConsumer[0]" in str(err.value)


def test_yaml_and_python_objects_give_the_same_scenario_and_run(tmp_path):
    f = tmp_path / "storm.yaml"
    f.write_text("""
name: storm
horizon: 40
mqttConsumer: {clients: 3, session expiry interval: 60, clean start: false, qos: 1}
mqttPublisher: {qos: 1, schedule: [1, 5, 12, 18, 25]}
network_outages:              # snake_case works too
  trace: [[10s, 20s]]
  fraction: 0.5
  blocks: [mqttConsumer]
""")
    from_yaml = sim.load_scenario(f)
    built = Scenario(name="storm", horizon=40,
                     consumers=[ConsumerBlock(clients=3, session_expiry_interval=60, clean_start=False, qos=1)],
                     publishers=[PublisherBlock(qos=1, schedule=[1, 5, 12, 18, 25])],
                     network_outages=NetworkOutages(trace=[[10, 20]], fraction=0.5, blocks=["mqttConsumer"]))
    assert from_yaml == built
    a, b = sim.run(from_yaml, seed=3), sim.run(built, seed=3)
    pd.testing.assert_series_equal(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert Scenario.from_dict(built.to_dict()) == built  # to_dict round-trips
    assert from_yaml.updated({"network outages.fraction": 1}).network_outages.fraction == 1.0


# ------------------------------------------------------------------ randomness


RANDOM = {"horizon": "6h",
          "mqttConsumer": {"clients": 8, "session expiry interval": 300, "clean start": False, "qos": 1,
                           "outages": {"up": {"distribution": "exponential", "mean": "1h"},
                                       "down": {"distribution": "exponential", "mean": "2m"},
                                       "reconnect": {"initial delay": 1, "max delay": 60, "jitter": 0.5}}},
          "mqttPublisher": {"qos": 1, "rate": "1/10s"},
          "network outages": {"up": {"distribution": "exponential", "mean": "1h"},
                              "down": {"distribution": "fixed", "value": "10m"}, "fraction": 0.5}}


def test_same_seed_same_frames():
    a, b = run(RANDOM, seed=7), run(RANDOM, seed=7)
    pd.testing.assert_series_equal(a.summary, b.summary)
    for frame in ("fates", "memory", "events", "network_outages"):
        pd.testing.assert_frame_equal(getattr(a, frame), getattr(b, frame))
    assert a.summary["network_outages"] > 0
    c = run(RANDOM, seed=8)
    assert not c.network_outages.equals(a.network_outages)


def test_scenarios_keep_their_random_streams():
    """Adding network outages (here all after the horizon) changes no other draw."""
    without = {k: v for k, v in RANDOM.items() if k != "network outages"}
    later = {**without, "network outages": {"trace": [["7h", "8h"]]}}
    a, b = run(without, seed=2), run(later, seed=2)
    for frame in ("fates", "memory", "events"):
        pd.testing.assert_frame_equal(getattr(a, frame), getattr(b, frame))
    same = [f for f in a.summary.index if not f.startswith(("storm_", "network_outage"))]
    pd.testing.assert_series_equal(a.summary[same], b.summary[same])
    assert a.summary["network_outages"] == 0 and math.isnan(a.summary["storm_peak_queued"])
    assert len(a.network_outages) == 0


def test_policies_see_the_same_network_outages():
    """Common random numbers: who drops when does not depend on the session policy."""
    a = run(RANDOM, seed=11)
    b = sim.run(sim.load_scenario(RANDOM).updated({"mqttConsumer.session expiry interval": 0}), seed=11)
    cols = ["start", "end", "clients"]
    pd.testing.assert_frame_equal(a.network_outages[cols], b.network_outages[cols])


def test_memory_keeps_every_row_around_the_outage():
    res = run(RANDOM, seed=7, memory_points=8)
    full = run(RANDOM, seed=7, memory_points=None).memory
    for row in res.network_outages.itertuples():
        inside = full[(full["time"] > row.start) & (full["time"] <= row.storm_end)]
        kept = res.memory[(res.memory["time"] > row.start) & (res.memory["time"] <= row.storm_end)]
        pd.testing.assert_frame_equal(inside.reset_index(drop=True), kept.reset_index(drop=True))
    assert len(res.memory) < len(full)


def test_storm_fields_survive_record_memory_false():
    a, b = run(RANDOM, seed=7), run(RANDOM, seed=7, record_memory=False)
    storm = [f for f in a.summary.index if f.startswith(("storm_", "network_outage"))]
    pd.testing.assert_series_equal(a.summary[storm], b.summary[storm])
    assert len(b.memory) == 0


# ------------------------------------------------------------------ engines, example


def test_the_interval_engine_refuses_and_auto_falls_back(monkeypatch):
    scn = sim.load_scenario(scripted())
    with pytest.raises(sim.EngineError, match="network outages"):
        sim.run(scn, engine="interval")
    run_module = importlib.import_module("sim.run")
    monkeypatch.setattr(run_module, "AUTO_INTERVAL_PAIRS", 0)  # auto would take the interval engine ...
    plain = sim.load_scenario({k: v for k, v in scripted().items() if k != "network outages"})
    assert sim.run(plain, engine="auto", record_messages=False).engine == "interval"
    assert sim.run(scn, engine="auto", record_messages=False).engine == "exact"  # ... but not for these


def test_shipped_example_loads_and_runs():
    scn = sim.load_scenario("data/scenarios/network_outage.yaml")
    assert scn == sim.load_scenario(sim.config.example_path("network_outage"))
    res = sim.run(scn.updated({"horizon": "3h", "mqttConsumer.clients": 20}), seed=1)
    s = res.summary
    assert s["network_outages"] == 1 and s["network_outage_disconnects"] > 0
    assert s["storm_reconnects"] > 0 and s["storm_seconds"] > 0 and s["storm_peak_queued"] > 0


@pytest.mark.parametrize("seed", range(6))
def test_nobody_is_connected_while_the_network_is_down(seed):
    """fraction 1, every block: churn, departures with replacement, back-off with jitter and
    buffering publishers, and still no CONNECT inside a network outage, every client connected
    at its start drops then, and every pair has one fate (the run checks conservation)."""
    d = {"horizon": "3h",
         "mqttConsumer": {"clients": 6, "session expiry interval": 600, "clean start": False, "qos": 1,
                          "outages": {"up": {"distribution": "exponential", "mean": "20m"},
                                      "down": {"distribution": "exponential", "mean": "3m"},
                                      "leave probability": 0.2, "replace departed": True,
                                      "reconnect": {"initial delay": 1, "max delay": 30, "jitter": 0.5}}},
         "mqttPublisher": {"clients": 2, "qos": 1, "rate": "1/30s", "offline buffer": 5,
                           "outages": {"up": {"distribution": "exponential", "mean": "1h"},
                                       "down": {"distribution": "fixed", "value": 60}}},
         "network outages": {"up": {"distribution": "exponential", "mean": "30m"},
                             "down": {"distribution": "exponential", "mean": "5m"}}}
    res = run(d, seed=seed)
    windows = res.network_outages
    assert len(windows) > 0
    ev = res.events
    connects = ev[ev["event"] == "connect"]["time"].to_numpy()
    for w in windows.itertuples():
        assert not ((connects >= w.start) & (connects < w.end)).any()
        drops = ev[(ev["event"] == "disconnect") & (ev["time"] == w.start)]
        assert w.disconnected <= len(drops) and w.clients == 6 + 2
    s = res.summary
    assert s["storm_reconnects"] == windows["reconnects"].sum() > 0
    f = res.fates
    assert (f["routed"] == f["delivered"] + f["lost"] + f["pending"] + f["departed_pairs"]).all()

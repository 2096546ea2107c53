"""Warm-up and memory that never settles.

``sim.run(..., warmup=W)`` counts only messages produced at or after ``W`` and measures the
time-persistent statistics over [W, horizon); the summary's ``memory_growth_bytes_per_day``
tells memory that keeps growing (sessions that never expire, in a fleet with departures)
from memory that has levelled off. Hand-computed on scripted scenarios.
"""
from __future__ import annotations

import warnings

import pytest

import sim

S_OVH, SUB_OVH, ENT, MSG_OVH = 1000, 100, 56, 200


def scenario(schedule, trace=None, sei=100, horizon=40, **extra):
    c = {"client id": "c", "session expiry interval": sei, "clean start": False, "qos": 1, "topic filter": "a/+"}
    if trace:
        c["outages"] = {"trace": trace}
    return sim.load_scenario({
        "name": "warmup", "horizon": horizon,
        "broker": {"max queued messages": 0, "session overhead bytes": S_OVH, "subscription overhead bytes": SUB_OVH,
                   "queue entry overhead bytes": ENT, "message overhead bytes": MSG_OVH, "shared message store": True,
                   **extra},
        "mqttConsumer": c, "mqttPublisher": {"client id": "p", "qos": 1, "topic": "a/b", "payload bytes": 100,
                                             "schedule": schedule}})


@pytest.mark.parametrize("record", [True, False])  # per pair, and booked in bulk
def test_only_messages_produced_after_the_warmup_count(record):
    """Down [5, 15): 2, 4 delivered before W = 10; 6 and 8 queued before W, delivered after
    it (not counted: produced before W); 10, 12 queued from W on, delivered at 15 (counted);
    20, 30 delivered (counted)."""
    scn = scenario([2, 4, 6, 8, 10, 12, 20, 30], trace=[[5, 15]])
    res = sim.run(scn, seed=0, warmup=10, record_messages=record)
    s = res.summary
    assert (s["published"], s["routed"], s["delivered"], s["lost"]) == (4, 4, 4, 0)
    if record:
        assert sorted(res.messages["published_at"]) == [10, 12, 20, 30]


def test_loss_before_the_warmup_is_not_counted():
    """Interval 0, down [5, 15): 6, 8 (before W = 10) and 12 (after) find no session."""
    scn = scenario([6, 8, 12, 20], trace=[[5, 15]], sei=0)
    full = sim.run(scn, seed=0).summary
    warm = sim.run(scn, seed=0, warmup=10).summary
    assert (full["lost_no_session"], full["routed"]) == (3, 4)
    assert (warm["lost_no_session"], warm["routed"], warm["loss_ratio"]) == (1, 2, 0.5)


def test_memory_statistics_cover_the_measured_period_only():
    """Sessions: p (1003 B) from 0; c (1000+3+100+3 = 1106 B) from 0. Down [5, 15) with
    interval 100: 6 queued at 6 (56 B entry + 303 B message) until 15. W = 10: [10, 40)
    holds 2109 + 359 over [10, 15) and 2109 over [15, 40)."""
    scn = scenario([6], trace=[[5, 15]])
    s = sim.run(scn, seed=0, warmup=10).summary
    sessions = 1003 + 1106
    assert s["memory_byte_seconds"] == pytest.approx((sessions + 359) * 5 + sessions * 25)
    assert s["memory_mean_bytes"] == pytest.approx(((sessions + 359) * 5 + sessions * 25) / 30)
    assert s["memory_peak_bytes"] == sessions + 359
    s = sim.run(scn, seed=0, warmup=20).summary
    assert s["memory_peak_bytes"] == sessions and s["memory_mean_bytes"] == pytest.approx(sessions)
    assert s["queued_messages_peak"] == 0


def test_short_warmup_warns_and_bad_warmup_is_refused():
    scn = scenario([6], trace=[[5, 15]], sei=100)
    with pytest.warns(UserWarning, match="shorter than the longest finite session expiry interval"):
        sim.run(scn, seed=0, warmup=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run(scenario([6], trace=[[5, 15]], sei="uint_max"), seed=0, warmup=10)  # never expires: no finite bound
    for bad in (-1, 40, 50, "10", True):
        with pytest.raises(ValueError, match="warmup:"):
            sim.run(scn, seed=0, warmup=bad)


def test_interval_engine_refuses_a_warmup_and_auto_falls_back():
    scn = scenario([6], trace=[[5, 15]], sei="uint_max")
    with pytest.raises(sim.EngineError, match="warmup"):
        sim.run(scn, seed=0, warmup=10, engine="interval")
    assert sim.run(scn, seed=0, warmup=10).engine == "exact"


def test_growth_rate_tells_stranded_sessions_from_settled_memory():
    """On the shipped UINT_MAX fleet (departed devices replaced): with UINT_MAX, stranded
    sessions pile up and memory grows by tens of kB a day; with a one-hour expiry it
    levels off (growth within a few % of that)."""
    scn = sim.load_scenario("data/scenarios/uint_max_fleet.yaml")
    never = sim.run(scn, seed=1, record_events=False).summary
    hour = sim.run(scn.updated({"mqttConsumer.session expiry interval": 3600}), seed=1, record_events=False).summary
    assert never["memory_growth_bytes_per_day"] > 50_000
    assert abs(hour["memory_growth_bytes_per_day"]) < 0.1 * never["memory_growth_bytes_per_day"]


def test_growth_rate_by_hand():
    """Memory 2109 B on [0, 20), then 2109 + 359 on [20, 40) (a message queued at 20 for a
    client away from 19 to the horizon): halves [0, 20) and [20, 40), means 2109 and 2468,
    midpoints 20 s apart: 359 B per 20 s = 1,550,880 B/day."""
    scn = scenario([20], trace=[[19, None]], sei="uint_max")
    s = sim.run(scn, seed=0).summary
    assert s["memory_growth_bytes_per_day"] == pytest.approx(359 / 20 * 86400)

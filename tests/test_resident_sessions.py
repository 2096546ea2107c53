"""Sessions left behind: Little's law (sim.analytic.resident_sessions) and the simulated
count of disconnected sessions (sim.memory.session_counts), against each other."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import sim
from sim import analytic
from sim.memory import session_counts, time_average


def test_littles_law_by_hand():
    assert analytic.resident_sessions(2.0, 60) == 120.0
    assert analytic.resident_sessions(2.0, 60, elapsed=30) == 60.0  # not yet in steady state
    assert analytic.resident_sessions(2.0, sim.UINT_MAX) == math.inf  # never expires: no bound
    assert analytic.resident_sessions(2.0, sim.UINT_MAX, elapsed=1000) == 2000.0
    assert analytic.resident_sessions(0.0, sim.UINT_MAX) == 0.0
    assert analytic.resident_sessions(2.0, 0) == 0.0
    assert np.allclose(analytic.resident_sessions(np.array([1.0, 3.0]), 10), [10.0, 30.0])
    assert analytic.expiry_for_resident(4.0, 100) == 25.0
    assert analytic.resident_sessions(4.0, analytic.expiry_for_resident(4.0, 100)) == pytest.approx(100)
    assert analytic.expiry_for_resident(0.0, 5) == math.inf
    with pytest.raises(ValueError):
        analytic.resident_sessions(-1, 60)


def test_time_average_of_a_step_function():
    f = pd.DataFrame({"time": [0.0, 10.0, 30.0], "x": [1, 3, 0]})
    assert time_average(f, "x", 0, 40) == pytest.approx((10 * 1 + 20 * 3) / 40)
    assert time_average(f, "x", 20, 30) == pytest.approx(3.0)


def test_session_counts_of_a_scripted_run():
    # one consumer off from 10 to 14 s with a 2 s expiry: its session is held from 10 to 12 s
    res = sim.run(sim.load_scenario("data/scenarios/scripted.yaml"), seed=1)
    c = session_counts(res.memory, res.events)
    at = lambda t: c[c["time"] <= t].iloc[-1]  # noqa: E731
    assert (at(5)["connected"], at(5)["disconnected"]) == (2, 0)  # the consumer and the publisher
    assert at(5)["connected_consumers"] == 1 and at(11)["connected_consumers"] == 0
    assert (at(11)["connected"], at(11)["disconnected"]) == (1, 1)
    assert (at(13)["connected"], at(13)["disconnected"]) == (1, 0)
    assert (at(20)["connected"], at(20)["disconnected"]) == (2, 0)


def test_simulated_resident_sessions_follow_littles_law():
    # random client ids: every disconnect leaves a session nobody resumes, held for the expiry
    expiry = 60
    scn = sim.load_scenario({
        "name": "random-ids", "horizon": "40m", "broker": {"profile": "mosquitto"},
        "mqttConsumer": {"clients": 10, "client id": "rnd", "session expiry interval": expiry,
                         "clean start": False, "qos": 1, "topic filter": "f/#",
                         "outages": {"up": {"distribution": "exponential", "mean": "15s"},
                                     "down": {"distribution": "exponential", "mean": "1s"},
                                     "leave probability": 1.0, "replace departed": True}},
        "mqttPublisher": {"clients": 1, "qos": 1, "topic": "f/x", "rate": "1/10s", "payload bytes": 10}})
    res = sim.run(scn, seed=4, engine="interval", memory_points=None)
    counts = session_counts(res.memory, res.events)
    horizon, warmup = float(res.summary["horizon"]), 5 * expiry
    simulated = time_average(counts, "disconnected", warmup, horizon)
    rate = res.events[(res.events["event"] == "disconnect") & (res.events["time"] >= warmup)].shape[0] / (horizon - warmup)
    assert simulated == pytest.approx(analytic.resident_sessions(rate, expiry), rel=0.05)

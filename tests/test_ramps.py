"""Broker memory in closed form (sim/ramps.py) against the change-by-change step function.

The interval engine keeps an offline session's queue as a range of the message sequence and,
for large runs, computes the memory statistics from those ranges without a record per queued
message. Here the same runs are computed both ways: peaks, final values, the frame's values
and the queued-message figures must be identical; time integrals (means, byte-seconds) agree
to floating-point rounding.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim.interval import IntervalEngine, unsupported
from sim.ramps import AreaIndex, Ramps, envelope

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engines import scenarios, seeds  # noqa: E402

EXACT = {"memory_peak_bytes", "memory_final_bytes", "queued_messages_peak"}


def both_ways(scn, seed, points=100_000):
    def go(mode):
        eng = IntervalEngine(scn, seed, False, True, memory_points=points, memory_mode=mode).run()
        return eng, eng.memory_result()

    eng, closed = go("closed") if _closed_ok(scn, seed) else (None, None)
    if closed is None:
        return None
    _, enumerated = go("enumerate")
    return closed, enumerated


def _closed_ok(scn, seed):
    eng = IntervalEngine(scn, seed, False, False).run()
    return eng._closed_form_group() is not None


def assert_agree(closed, enumerated):
    (cs, cf), (es, ef) = closed, enumerated
    assert cs.keys() == es.keys()
    scale = max(1.0, abs(es["memory_mean_bytes"]))
    for key in es:
        a, b = cs[key], es[key]
        if key in EXACT:
            assert a == b, f"{key}: closed {a!r}, change by change {b!r}"
        elif math.isnan(b):
            assert math.isnan(a), key
        else:
            tol = 1e-9 * scale * (86_400 if key == "memory_growth_bytes_per_day" else 1)
            if key == "memory_byte_seconds":
                tol *= ef["time"].iloc[-1] if len(ef) else 1
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=tol), f"{key}: closed {a!r}, change by change {b!r}"
    # every row of the bounded frame is the step function's value at that time
    idx = np.searchsorted(ef["time"].to_numpy(), cf["time"].to_numpy(), "right") - 1
    want = ef.iloc[idx].reset_index(drop=True).drop(columns="time")
    got = cf.drop(columns="time").reset_index(drop=True)
    assert (want.to_numpy() == got.to_numpy()).all()
    assert cf["bytes"].max() == cs["memory_peak_bytes"]  # the peak is a row of the frame
    assert cf.iloc[-1, 1:].tolist() == ef.iloc[-1, 1:].tolist()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scenarios(), seed=seeds)
def test_closed_form_equals_change_by_change(d, seed):
    scn = sim.load_scenario(d)
    assert unsupported(scn) == []
    out = both_ways(scn, seed)
    if out is not None:  # message expiry or drop-oldest evictions: change by change only
        assert_agree(*out)


def _queueing(d: dict, qos: int) -> dict:
    """A random scenario turned into one where offline sessions hold queues: QoS >= 1 (or
    QoS 0 queued), outages on every consumer, no message expiry, drop-new."""
    d = {**d, "broker": {**d["broker"], "queue full policy": "drop-new", "queue qos0 messages": True}}
    cons = d["mqttConsumer"] if isinstance(d["mqttConsumer"], list) else [d["mqttConsumer"]]
    pubs = d["mqttPublisher"] if isinstance(d["mqttPublisher"], list) else [d["mqttPublisher"]]
    cons = [{**c, "qos": qos, "topic filter": "#", "outages": c.get("outages") or {
        "up": {"distribution": "exponential", "mean": 3.0}, "down": {"distribution": "exponential", "mean": 4.0},
        "leave probability": 0.2, "replace departed": True}} for c in cons]
    pubs = [{k: v for k, v in {**p, "qos": qos}.items() if k != "message expiry interval"} for p in pubs]
    return {**d, "mqttConsumer": cons, "mqttPublisher": pubs}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scenarios(), seed=seeds, qos=st.integers(0, 2))
def test_closed_form_equals_change_by_change_with_queues(d, seed, qos):
    scn = sim.load_scenario(_queueing(d, qos))
    out = both_ways(scn, seed)
    assert out is not None
    assert_agree(*out)


@pytest.mark.parametrize("name", ["uint_max_fleet", "transport_example", "clean_start_consumer"])
def test_shipped_examples_closed_form(name):
    scn = sim.load_scenario(f"data/scenarios/{name}.yaml")
    out = both_ways(scn.updated({"horizon": min(scn.horizon, 3 * 86400)}), seed=2, points=600)
    assert out is not None
    assert_agree(*out)
    assert len(out[0][1]) <= 600


def test_hand_computed_queue_and_store():
    """One consumer offline over [10, 20) (UINT_MAX expiry), two over [12, 30): messages at
    11, 13, 15 and 25; entry 10 B, message store 100 B each (shared), queue limit 2 (drop-new).

    consumer a holds 11, 13 (15 is dropped) until 20; b holds 13, 15 until 30 (25 dropped).
    Store: 11 until 20, 13 until 30, 15 until 30. Just before 20: entries a:2, b:2 -> 40 B,
    store 3 messages -> 300 B (peak of queued memory 340 B plus the sessions' bytes)."""
    d = {"name": "hand", "horizon": 40,
         "broker": {"max queued messages": 2, "queue full policy": "drop-new", "shared message store": True,
                    "queue entry overhead bytes": 10, "message overhead bytes": 100 - len("t"),
                    "session overhead bytes": 0, "subscription overhead bytes": 0},
         "mqttConsumer": [{"client id": "a", "topic filter": "t", "qos": 1, "clean start": False,
                           "session expiry interval": "uint_max", "outages": {"trace": [[10, 20]]}},
                          {"client id": "b", "topic filter": "t", "qos": 1, "clean start": False,
                           "session expiry interval": "uint_max", "outages": {"trace": [[12, 30]]}}],
         "mqttPublisher": {"client id": "p", "topic": "t", "qos": 1, "payload bytes": 0,
                           "schedule": [11, 13, 15, 25]}}
    scn = sim.load_scenario(d)
    closed, enumerated = both_ways(scn, 0)
    assert_agree(closed, enumerated)
    stats, frame = closed
    at = frame.iloc[int(np.searchsorted(frame["time"].to_numpy(), 19.5, "right")) - 1]  # just before 20
    assert (at["queued"], at["entry_bytes"], at["store_bytes"]) == (4, 40, 300)
    assert stats["queued_messages_peak"] == 4
    assert stats["memory_peak_bytes"] == at["bytes"] == at["session_bytes"] + 340
    # byte-seconds of the queues: entries a: 10*(20-11) + 10*(20-13); b: 10*(30-13) + 10*(30-15);
    # store: 100*(20-11) + 100*(30-13) + 100*(30-15); the rest is the sessions' own bytes
    queued = 10 * (9 + 7 + 17 + 15) + 100 * (9 + 17 + 15)
    sessions = float(np.sum(frame["session_bytes"].to_numpy()[:-1] * np.diff(frame["time"].to_numpy())))
    assert stats["memory_byte_seconds"] == pytest.approx(queued + sessions)


def brute_envelope(lo, hi, rel):
    top = {}
    for a, b, r in zip(lo, hi, rel):
        for m in range(a, b):
            top[m] = max(top.get(m, -np.inf), r)
    return top


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.sampled_from([1.0, 2.0, 5.0, 9.0, math.inf])),
                max_size=25))
def test_envelope_is_the_latest_release_of_each_message(ranges):
    lo = [a for a, _, _ in ranges]
    hi = [a + n for a, n, _ in ranges]
    rel = [r for _, _, r in ranges]
    env = envelope(Ramps.of(lo, hi, rel, [1] * len(lo)))
    got = {m: r for u, v, r in zip(env.lo, env.hi, env.release) for m in range(u, v)}
    assert got == brute_envelope(lo, hi, rel)
    assert (env.lo[1:] >= env.hi[:-1]).all()  # disjoint, in order


def per_message_area(t, w, lo, hi, end):
    return sum(float(np.sum((1 if w is None else w[a:b]) * np.maximum(e - t[a:b], 0.0)))
               for a, b, e in zip(lo, hi, end))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12_000), start=st.sampled_from([0.0, 4.29e9]), seed=st.integers(0, 2**31),
       weighted=st.booleans())
def test_area_index_equals_the_sum_over_messages(n, start, seed, weighted):
    """Held byte-seconds from prefix sums (no visit per message) against the direct sum, also
    near t = 4.29e9 s, ranges within a block, across blocks and past their end time."""
    rng = np.random.default_rng(seed)
    t = start + np.sort(rng.uniform(0, n, n))
    w = rng.integers(1, 400, n) if weighted else None
    lo = rng.integers(0, n, 50)
    hi = np.minimum(n, lo + rng.integers(1, 9000, 50))
    end = t[np.minimum(hi, n - 1)] + rng.uniform(-100, 300, 50)
    got = AreaIndex(t, w).area(lo, hi, end)
    want = per_message_area(t, w, lo, hi, end)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-6)

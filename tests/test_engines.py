"""The interval engine (sim/interval.py) against the message-by-message engine.

Given the same scenario and seed, both engines replay the same connection histories and
publish stream; the interval engine must give identical per-consumer fates (every column of
``res.fates``), identical counters, and identical memory statistics (peak, time-weighted
means, final value, byte-seconds: compared with ==, the float arithmetic is reproduced).
Covered: scripted rule scenarios (tests/test_rules.py) and random scenarios over every
broker setting the interval engine supports (queue limits by count and bytes, both drop
policies, QoS 0 queueing on/off and counted or not, message expiry eager/lazy, broker
maximum expiry, UINT_MAX read either way, DISCONNECT expiry changes, Clean Start on
reconnects, departures with and without replacement, first connects after t = 0, back-off
with jitter, several consumer and publisher blocks, shared or per-session message store).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sim
from sim.interval import publish_stream, unsupported
from sim import protocol
from sim.run import EngineError, _expected_messages, _expected_pairs

UINT_MAX = sim.UINT_MAX


def assert_same(scn, seed, record_events=True):
    # every row of the memory step function: the interval engine then rebuilds it change by
    # change (for large runs it computes it in closed form: tests/test_ramps.py)
    a = sim.run(scn, seed=seed, engine="exact", record_messages=False, record_events=record_events, memory_points=None)
    b = sim.run(scn, seed=seed, engine="interval", record_events=record_events, memory_points=None)
    assert a.engine == "exact" and b.engine == "interval"
    fa = a.fates.sort_values("client_id").reset_index(drop=True)
    fb = b.fates.sort_values("client_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(fa, fb)
    for key in a.summary.index:
        x, y = a.summary[key], b.summary[key]
        assert x == y or (math.isnan(x) and math.isnan(y)), f"{key}: exact {x!r}, interval {y!r}"
    # the memory step function: the same breakpoints and values
    pd.testing.assert_frame_equal(a.memory, b.memory)
    if not record_events:
        return a, b
    # the same lifecycle events (same-instant order may differ between engines)
    cols = ["time", "client_id", "event", "session_present", "session_expiry_interval", "detail"]
    ea = a.events[cols].astype({"time": float}).astype(str).sort_values(cols).reset_index(drop=True)
    eb = b.events[cols].astype({"time": float}).astype(str).sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(ea, eb)
    return a, b


# ------------------------------------------------------------------ scripted rule scenarios

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_rules import REGISTRY  # noqa: E402

SUPPORTED = sorted(name for name, (fn, kw) in REGISTRY.items() if not unsupported(sim.load_scenario(fn(**kw))))


def test_most_rule_scenarios_are_supported():
    assert len(SUPPORTED) >= 50, (len(SUPPORTED), len(REGISTRY))  # the rest use latency or publisher outages


@pytest.mark.parametrize("name", SUPPORTED)
def test_rule_scenarios_agree(name):
    fn, kw = REGISTRY[name]
    assert_same(sim.load_scenario(fn(**kw)), seed=1)


# ------------------------------------------------------------------ shipped examples

@pytest.mark.parametrize("name", ["transport_example", "uint_max_fleet", "clean_start_consumer", "scripted"])
def test_shipped_examples_agree(name):
    scn = sim.load_scenario(f"data/scenarios/{name}.yaml")
    assert_same(scn.updated({"horizon": min(scn.horizon, 2 * 86400)}), seed=3)


# ------------------------------------------------------------------ random scenarios

seeds = st.integers(min_value=0, max_value=2**32 - 1)
expiry = st.one_of(st.just(0), st.integers(1, 8), st.just(UINT_MAX))


@st.composite
def distributions(draw):
    kind = draw(st.sampled_from(["exponential", "fixed", "lognormal"]))
    if kind == "exponential":
        return {"distribution": "exponential", "mean": draw(st.sampled_from([0.5, 2.0, 5.0]))}
    if kind == "lognormal":
        return {"distribution": "lognormal", "median": draw(st.sampled_from([1.0, 3.0])), "sigma": 1.0}
    return {"distribution": "fixed", "value": draw(st.sampled_from([0.5, 1.0, 3.0]))}


@st.composite
def consumer_outages(draw):
    if draw(st.integers(0, 5)) == 0:
        return None
    if draw(st.integers(0, 3)) == 0:
        times = sorted(draw(st.sets(st.integers(1, 30), min_size=2, max_size=8)))
        pairs = [[times[i], times[i + 1]] for i in range(0, len(times) - 1, 2)]
        if draw(st.booleans()):
            pairs[-1][1] = None
        if draw(st.booleans()):
            pairs.insert(0, [None, draw(st.integers(0, times[0] - 1))])  # first connect after t = 0
        o = {"trace": pairs}
    else:
        o = {"up": draw(distributions()), "down": draw(distributions())}
        p = draw(st.sampled_from([0.0, 0.0, 0.2, 0.5]))
        if p:
            o["leave probability"] = p
            o["replace departed"] = draw(st.booleans())
    if draw(st.booleans()):
        o["disconnect"] = draw(st.sampled_from(["network", "clean"]))
        if o["disconnect"] == "clean" and draw(st.booleans()):
            o["disconnect session expiry interval"] = draw(expiry)
    if draw(st.booleans()):
        o["reconnect clean start"] = draw(st.booleans())
    if "trace" not in o and draw(st.integers(0, 3)) == 0:
        o["reconnect"] = {"initial delay": 0.5, "max delay": 4, "multiplier": 2, "jitter": draw(st.sampled_from([0, 0.5]))}
    return o


@st.composite
def scenarios(draw):
    limits = draw(st.booleans())
    broker = {
        "max queued messages": draw(st.sampled_from([0, 1, 3, 10])) if limits else 0,
        "max queued bytes": draw(st.sampled_from([0, 0, 150, 600])) if limits else 0,
        "queue full policy": draw(st.sampled_from(["drop-new", "drop-oldest"])),
        "queue bytes check": draw(st.sampled_from(["fits", "below"])),
        "queue limits count qos0": draw(st.booleans()),
        "queue qos0 messages": draw(st.booleans()),
        "message expiry check": draw(st.sampled_from(["eager", "lazy"])),
        "shared message store": draw(st.booleans()),
        "max session expiry interval": draw(st.sampled_from([UINT_MAX, UINT_MAX, 3, 0])),
        "uint max never expires": draw(st.booleans()),
        "queue entry overhead bytes": draw(st.sampled_from([0, 56])),
    }
    qos = draw(st.integers(0, 2))
    payload = draw(st.sampled_from([0, 20, 200]))
    mei = None if limits or draw(st.booleans()) else draw(st.integers(0, 6))
    consumers = []
    for i in range(draw(st.integers(1, 2))):
        c = {"clients": draw(st.integers(1, 4)), "session expiry interval": draw(expiry),
             "clean start": draw(st.booleans()), "qos": draw(st.integers(0, 2)),
             "topic filter": draw(st.sampled_from(["#", "t/+"])),
             "receive maximum": draw(st.sampled_from([1, 65535]))}
        o = draw(consumer_outages())
        if o is not None:
            c["outages"] = o
        consumers.append(c)
    publishers = []
    for i in range(draw(st.integers(1, 2))):
        p = {"clients": draw(st.integers(1, 2)), "qos": qos, "topic": draw(st.sampled_from(["t/{id}", "u/{id}"])),
             "payload bytes": payload,
             "session expiry interval": draw(st.sampled_from([0, 5, UINT_MAX])), "clean start": draw(st.booleans())}
        if draw(st.integers(0, 2)) == 0:
            p["schedule"] = sorted(draw(st.lists(st.integers(0, 30), min_size=1, max_size=30)))
        else:
            p["rate"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
        if mei is not None:
            p["message expiry interval"] = mei
        publishers.append(p)
    return {"name": "engines", "horizon": draw(st.sampled_from([5, 15, 30, 40, 200])), "broker": broker,
            "mqttConsumer": consumers if len(consumers) > 1 else consumers[0],
            "mqttPublisher": publishers if len(publishers) > 1 else publishers[0]}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scenarios(), seed=seeds)
def test_random_scenarios_agree(d, seed):
    scn = sim.load_scenario(d)
    assert unsupported(scn) == []
    assert_same(scn, seed)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scenarios(), seed=seeds, horizon=st.sampled_from([40, 200, 1000]))
def test_random_scenarios_agree_whole_lives(d, seed, horizon):
    """Without event rows, consumers with drawn outages (no trace, no back-off) are computed a
    whole life at a time (sim/renewal.py): the same results as the exact engine."""
    d = {**d, "horizon": horizon}
    scn = sim.load_scenario(d)
    assert_same(scn, seed, record_events=False)


@st.composite
def renewal_scenarios(draw):
    """Fleets whose consumers' outages are drawn (computed a whole life at a time when no
    event rows are kept): every session setting, queues that fill, departures."""
    broker = {"max queued messages": draw(st.sampled_from([0, 2, 10])),
              "max queued bytes": draw(st.sampled_from([0, 0, 600])),
              "queue full policy": "drop-new",
              "queue qos0 messages": draw(st.booleans()),
              "queue limits count qos0": draw(st.booleans()),
              "shared message store": draw(st.booleans()),
              "max session expiry interval": draw(st.sampled_from([UINT_MAX, 3])),
              "uint max never expires": draw(st.booleans()),
              "queue entry overhead bytes": draw(st.sampled_from([0, 56]))}
    consumers = []
    for _ in range(draw(st.integers(1, 2))):
        o = {"up": draw(distributions()), "down": draw(distributions()),
             "leave probability": draw(st.sampled_from([0.0, 0.05, 0.3])),
             "replace departed": draw(st.booleans())}
        if draw(st.booleans()):
            o["disconnect"] = "clean"
            if draw(st.booleans()):
                o["disconnect session expiry interval"] = draw(expiry)
        if draw(st.booleans()):
            o["reconnect clean start"] = draw(st.booleans())
        consumers.append({"clients": draw(st.integers(1, 5)), "session expiry interval": draw(expiry),
                          "clean start": draw(st.booleans()), "qos": draw(st.integers(0, 2)), "topic filter": "#",
                          "auto reconnect": draw(st.sampled_from([True, True, True, False])), "outages": o})
    qos = draw(st.integers(0, 2))
    publishers = [{"clients": draw(st.integers(1, 2)), "qos": qos, "topic": "t/{id}",
                   "payload bytes": draw(st.sampled_from([0, 200])), "rate": draw(st.sampled_from([0.5, 2.0, 5.0]))}]
    return {"name": "renewal", "horizon": draw(st.sampled_from([30, 300, 2000])), "broker": broker,
            "mqttConsumer": consumers, "mqttPublisher": publishers}


def routed_pairs_estimate(scn) -> float:
    """About how many (message, consumer) pairs the exact engine visits: every consumer
    (sim.run's own estimate), plus the stranded sessions of departed clients that outlive the
    horizon (they pile up: about clients x leave probability x horizon / cycle of them by the
    end, half that on average)."""
    H, msgs = scn.horizon, _expected_messages(scn)
    pairs = _expected_pairs(scn)
    for c in scn.consumers:
        o = c.outages
        if protocol.effective_expiry(c.session_expiry_interval, scn.broker.max_session_expiry_interval) >= H:
            pairs += msgs * c.clients * (o.leave_probability or 0.0) * H / (o.up.mean + o.down.mean) / 2
    return pairs


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(d=renewal_scenarios(), seed=seeds)
def test_whole_lives_agree_with_the_exact_engine(d, seed):
    # (fleets whose stranded sessions pile up to millions of pairs take a minute or more in the
    # exact engine each: the counts and ramps tests check those sizes against the interval engine)
    scn = sim.load_scenario(d)
    assume(routed_pairs_estimate(scn) <= 1_000_000)
    assert unsupported(scn) == []
    assert_same(scn, seed, record_events=False)


# ------------------------------------------------------------------ choosing the engine

def test_unsupported_features_are_refused_by_name():
    scn = sim.load_scenario({"horizon": 60, "mqttConsumer": {"network latency": 0.1},
                             "mqttPublisher": {"rate": 1, "outages": {"trace": [[5, 10]]}}})
    with pytest.raises(EngineError) as err:
        sim.run(scn, engine="interval")
    text = str(err.value)
    assert "mqttConsumer.network latency" in text and "mqttPublisher.outages" in text
    assert sim.run(scn, engine="auto").engine == "exact"  # auto falls back to the exact engine
    with pytest.raises(EngineError, match="record_messages"):
        sim.run(sim.load_scenario({"horizon": 60, "mqttConsumer": {}, "mqttPublisher": {"rate": 1}}),
                engine="interval", record_messages=True)
    with pytest.raises(EngineError, match="mqttConsumer.network latency"):  # "fast": the interval engine
        sim.run(scn, engine="fast")
    with pytest.raises(ValueError, match="engine: 'quick' is not one of auto, exact, interval, fast"):
        sim.run(scn, engine="quick")
    ok = sim.load_scenario({"horizon": 600, "mqttConsumer": {"clients": 3}, "mqttPublisher": {"rate": 1}})
    fast, interval = sim.run(ok, seed=4, engine="fast"), sim.run(ok, seed=4, engine="interval")
    assert fast.engine == "interval"
    assert pd.Series(fast.summary).equals(pd.Series(interval.summary))  # (NaN where both are)


def test_auto_picks_the_interval_engine_for_large_runs():
    small = sim.load_scenario({"horizon": 60, "mqttConsumer": {}, "mqttPublisher": {"rate": 1}})
    assert sim.run(small).engine == "exact"
    big = sim.load_scenario("data/scenarios/uint_max_fleet.yaml").updated({"horizon": "1y"})
    res = sim.run(big, record_events=False)
    assert res.engine == "interval"


def test_publish_stream_is_the_exact_engines():
    """The interval engine's publish times are the message-by-message engine's, to the bit."""
    scn = sim.load_scenario({"horizon": 500, "mqttConsumer": {},
                             "mqttPublisher": [{"clients": 2, "rate": 3, "topic": "a/{id}"},
                                               {"schedule": [0, 0.1, 0.2, 7.3], "topic": "b"}]})
    res = sim.run(scn, seed=9, engine="exact", record_messages=True)
    stream = publish_stream(scn, np.random.SeedSequence(9).spawn(2)[1])
    want = np.sort(res.messages["published_at"].to_numpy())
    assert np.array_equal(np.sort(stream.t), want)


# ------------------------------------------------------------------ long horizons, bounded outputs

@pytest.mark.parametrize("engine", ["exact", "interval"])
def test_one_second_expiry_near_uint_max_and_a_horizon_beyond_it(engine):
    """Time is float seconds; near t = 4.29e9 s the spacing of floats is about 1e-6 s, so a
    1 s Session Expiry Interval still behaves as 1 s (horizon 200 years, beyond UINT_MAX)."""
    T0 = 4_294_967_000
    scn = sim.load_scenario({
        "name": "late", "horizon": "200y", "broker": {"max queued messages": 0},
        "mqttConsumer": {"client id": "c", "session expiry interval": 1, "clean start": False, "qos": 1,
                         "outages": {"trace": [[T0, T0 + 2]]}},
        "mqttPublisher": {"client id": "p", "qos": 1,
                          "schedule": [T0 - 1, T0 + 0.5, T0 + 0.999, T0 + 1.0, T0 + 1.5, T0 + 2.0, T0 + 2.5]}})
    assert scn.horizon == 200 * 365 * 86400 > UINT_MAX
    res = sim.run(scn, seed=0, engine=engine)
    s = res.summary
    # T0-1, T0+2, T0+2.5 delivered; T0+0.5 and T0+0.999 die with the session at T0+1;
    # T0+1.0 (the expiry instant) and T0+1.5 find no session
    assert (s["delivered"], s["lost_session_expired"], s["lost_no_session"]) == (3, 2, 2)
    ev = res.events
    assert ev.loc[ev["event"] == "session_expired", "time"].tolist() == [T0 + 1.0]


def test_memory_frame_is_thinned_for_plotting_but_statistics_are_whole():
    scn = sim.load_scenario("data/scenarios/uint_max_fleet.yaml").updated({"horizon": "2d"})
    full = sim.run(scn, seed=1, engine="interval", memory_points=None)
    thin = sim.run(scn, seed=1, engine="interval", memory_points=300)
    assert len(full.memory) > 1000 and len(thin.memory) <= 300
    pd.testing.assert_series_equal(full.summary, thin.summary)
    assert thin.memory["bytes"].max() == full.memory["bytes"].max()  # the peak row is kept
    assert thin.memory.iloc[-1].equals(full.memory.iloc[-1])  # and the final one
    assert thin.memory["time"].is_monotonic_increasing


def test_per_message_records_refused_for_runs_too_big_to_hold():
    scn = sim.load_scenario("benchmarks/fleet_uint_max.yaml")
    with pytest.raises(ValueError, match="record_messages: this run would route about"):
        sim.run(scn, record_messages=True)


@pytest.mark.parametrize("engine", ["exact", "interval"])
def test_a_progress_bar_changes_nothing(engine, capsys):
    scn = sim.load_scenario("data/scenarios/uint_max_fleet.yaml").updated({"horizon": "2d"})
    quiet = sim.run(scn, seed=4, engine=engine)
    shown = sim.run(scn, seed=4, engine=engine, progress=True)
    assert "100%" in capsys.readouterr().err
    pd.testing.assert_series_equal(quiet.summary, shown.summary)
    pd.testing.assert_frame_equal(quiet.memory, shown.memory)
    pd.testing.assert_frame_equal(quiet.fates, shown.fates)


def test_long_runs_count_events_without_keeping_their_rows():
    """record_events=None (the default): a run with more than about a million connection
    changes keeps no event rows (the interval engine then settles whole lives in arrays) but
    the summary still counts them; a run that would publish more messages than one run can
    hold is refused before it starts, naming the horizon."""
    from sim.run import AUTO_EVENT_ROWS

    scn = sim.load_scenario("benchmarks/fleet_uint_max.yaml").updated(
        {"horizon": "1y", "mqttConsumer.clients": 2000, "mqttPublisher.rate": "1/h"})
    res = sim.run(scn, seed=1, record_memory=False)
    assert res.engine == "interval" and res.events.empty
    assert res.summary["connects"] + res.summary["disconnects"] > AUTO_EVENT_ROWS
    assert res.summary["departures"] > 0 and res.summary["routed"] > 0
    small = sim.run(scn.updated({"mqttConsumer.clients": 3}), seed=1)
    assert not small.events.empty  # few changes: rows kept
    # past the message limit the stream is kept as counts (tests/test_counts.py) where it can be;
    # where it cannot, the run is refused before it starts, with the reasons
    big = sim.load_scenario("benchmarks/fleet_uint_max.yaml").updated({"broker.queue full policy": "drop-oldest"})
    with pytest.raises(ValueError, match=r"horizon: this run would publish about 4,294,967,295 messages.*drop-oldest"):
        sim.run(big)

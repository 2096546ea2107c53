"""The interval engine over a publish stream kept as counts (sim.counts).

Handed the stream it drew, written out message by message (each stretch's messages at their
expected order statistics), the interval engine with every publish time (sim.interval,
itself checked against the message-by-message engine in test_engines.py) gives the same
fates per consumer, counters and sessions, the same memory peak and final value, and the
same time integrals to rounding: on every broker setting the counts path supports, with
epochs short enough that sessions, queues and the store cross many epoch boundaries.
Then: what it refuses, determinism, precision near t = 4.3e9, closed-form checks and
agreement in distribution with the message-by-message engine.
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
from sim import interval
from sim.counts import CountsEngine, unsupported
from sim.interval import IntervalEngine, Stream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engines import renewal_scenarios  # noqa: E402

UINT_MAX = 4_294_967_295


def written_out(eng: CountsEngine) -> np.ndarray:
    """The counts engine's stream, message by message: each stretch's c messages at
    start + i / (c + 1) x length."""
    parts = []
    for C, N in eng.stream_cuts:
        c, g = np.diff(N), np.diff(C)
        k = np.repeat(np.arange(len(c)), c)
        i = np.arange(len(k)) - np.repeat(np.cumsum(c) - c, c) + 1
        parts.append(C[k] + g[k] * i / (c[k] + 1.0))
    return np.concatenate(parts) if parts else np.zeros(0)


def assert_same_as_interval(scn, seed: int, epoch_cuts: int = 1_000_000, mode: str = "enumerate"):
    ce = CountsEngine(scn, seed, keep_stream=True, epoch_cuts=epoch_cuts, memory_points=None).run()
    ce.fates.check_conservation()
    t = written_out(ce)
    assert len(t) == ce.published
    assert np.all(np.diff(t) > 0)
    body = ce.body

    def stream(_scenario, _seed):
        return Stream(t, np.zeros(len(t), np.int16), np.full(len(t), body, np.int32))

    saved = interval.publish_stream
    interval.publish_stream = stream
    try:
        ie = IntervalEngine(scn, seed, False, True, memory_points=None, memory_mode=mode).run()
    finally:
        interval.publish_stream = saved
    ie.fates.check_conservation()
    a, b = ce.fates.fates_frame(), ie.fates.fates_frame()
    if lockstep(scn):
        # replacements that join at the same instant in different slots are numbered in slot
        # order here, in SimPy's scheduling order there (only fixed up-times tie)
        a, b = (f.drop(columns="client_id").sort_values(list(f.columns[1:])).reset_index(drop=True) for f in (a, b))
    pd.testing.assert_frame_equal(a, b)
    assert ce.log.counters == ie.log.counters
    assert ce.sessions_final == ie.sessions_final
    s1, fc = ce.memory_result()
    s2, fi = ie.memory_result()  # (once: it settles the engine's memory records)
    if lockstep(scn) and (a.departed.any() or b.departed.any()):
        return ce  # identifiers of different lengths (device-9, device-10) hold different session bytes
    for k in ("memory_peak_bytes", "memory_final_bytes", "queued_messages_peak"):
        assert s1[k] == s2[k], (k, s1[k], s2[k])
    for k in s1:
        assert math.isclose(s1[k], s2[k], rel_tol=1e-9, abs_tol=1e-6) or (math.isnan(s1[k]) and math.isnan(s2[k])), \
            (k, s1[k], s2[k])
    if mode == "enumerate":  # (in closed form the interval engine's frame has its own breakpoints)
        assert_frame_rows_on_the_step_function(fc, fi)
    return ce


def assert_frame_rows_on_the_step_function(fc: pd.DataFrame, fi: pd.DataFrame) -> None:
    """Every row of the counts engine's memory frame ``fc`` (a stretch's start, or its last
    arrival) is the interval engine's step function ``fi`` at that time: all its columns."""
    assert len(fc) and list(fc.columns) == list(fi.columns)
    at = np.searchsorted(fi["time"].to_numpy(), fc["time"].to_numpy(), "right") - 1
    assert (at >= 0).all()
    want = fi.iloc[at].drop(columns="time").reset_index(drop=True)
    got = fc.drop(columns="time").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def lockstep(scn) -> bool:
    """Fixed up-times: departures in different slots can fall at the same instant."""
    return any(c.outages.up.kind == "fixed" for c in scn.consumers)


@st.composite
def counts_scenarios(draw):
    """Every broker and session setting the counts path supports: test_engines' fleets with
    drawn outages, with one message size (one topic) and the broker's own byte overheads."""
    d = draw(renewal_scenarios())
    d["broker"] = {**d["broker"], "message overhead bytes": draw(st.sampled_from([0, 100])),
                   "session overhead bytes": draw(st.sampled_from([0, 300]))}
    d["mqttPublisher"] = [{**p, "topic": "t/x"} for p in d["mqttPublisher"]]
    return d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(d=counts_scenarios(), seed=st.integers(0, 2**32 - 1), epoch_cuts=st.sampled_from([3, 40, 1_000_000]))
def test_counts_agree_with_the_interval_engine_on_the_same_stream(d, seed, epoch_cuts):
    scn = sim.load_scenario(d)
    assume(unsupported(scn) == [])
    assert_same_as_interval(scn, seed, epoch_cuts)


@pytest.mark.parametrize("mode", ["enumerate", "closed"])
def test_the_uint_max_fleet_example_crossing_many_epochs(mode):
    scn = sim.load_scenario("data/scenarios/uint_max_fleet.yaml")
    ce = assert_same_as_interval(scn, 7, epoch_cuts=25, mode=mode)
    assert len(ce.stream_cuts) > 10


# ------------------------------------------------------------------ sim.run(stream=...)

FLEET = {"name": "fleet", "horizon": 3 * 86400, "broker": {"profile": "mosquitto"},
         "mqttConsumer": {"clients": 20, "session expiry interval": "uint_max", "clean start": False, "qos": 1,
                          "topic filter": "fleet/#",
                          "outages": {"up": {"distribution": "exponential", "mean": "6h"},
                                      "down": {"distribution": "lognormal", "median": "10m", "sigma": 1},
                                      "leave probability": 0.05, "replace departed": True}},
         "mqttPublisher": {"qos": 1, "topic": "fleet/commands", "rate": "1/s", "payload bytes": 100}}


def test_run_keeps_counts_and_says_so():
    scn = sim.load_scenario(FLEET)
    res = sim.run(scn, seed=3, stream="counts")
    assert (res.engine, res.stream) == ("interval", "counts")
    s = res.summary
    assert s["routed"] == s["delivered"] + s["lost"] + s["pending"] + s["departed_pairs"]
    assert s["departures"] > 0 and s["departed_held"] > 0 and s["sessions_final"] > 20
    assert 0 < len(res.memory) <= 100_100 and res.memory["time"].is_monotonic_increasing
    assert res.memory["bytes"].max() == s["memory_peak_bytes"]
    assert res.events.empty  # counted, not kept
    again = sim.run(scn, seed=3, stream="counts")  # the same seed: the same frames
    pd.testing.assert_series_equal(res.summary, again.summary)
    pd.testing.assert_frame_equal(res.fates, again.fates)
    pd.testing.assert_frame_equal(res.memory, again.memory)
    assert sim.run(scn, seed=3).stream == "times"  # small runs keep every publish time


def test_auto_keeps_counts_past_the_message_limit(monkeypatch):
    run_module = sys.modules["sim.run"]

    scn = sim.load_scenario(FLEET)
    monkeypatch.setattr(run_module, "MAX_MESSAGES", 1000)
    assert sim.run(scn, seed=1).stream == "counts"
    with pytest.raises(ValueError, match="horizon: .*up/down distributions"):
        sim.run(sim.load_scenario({**FLEET, "mqttConsumer": {**FLEET["mqttConsumer"],
                                                            "outages": {"trace": [[10, 20]]}}}), seed=1)


def test_counts_are_refused_by_name():
    from sim.run import EngineError

    scn = sim.load_scenario(FLEET)
    with pytest.raises(EngineError, match="engine='exact'"):
        sim.run(scn, stream="counts", engine="exact")
    with pytest.raises(EngineError, match="record_events=True"):
        sim.run(scn, stream="counts", record_events=True)
    with pytest.raises(ValueError, match="stream: 'fast' is not one of auto, times, counts"):
        sim.run(scn, stream="fast")
    sched = sim.load_scenario({**FLEET, "mqttPublisher": {"topic": "fleet/x", "schedule": [1, 2, 3]}})
    with pytest.raises(EngineError, match=r"mqttPublisher.schedule"):
        sim.run(sched, stream="counts")
    oldest = sim.load_scenario({**FLEET, "broker": {"profile": "mosquitto", "queue full policy": "drop-oldest"}})
    with pytest.raises(EngineError, match="drop-oldest"):
        sim.run(oldest, stream="counts")


def test_a_one_second_expiry_near_uint_max_seconds():
    """One disconnect at t = 4,294,967,295 s, back 2 s later, Session Expiry Interval 1 s, one
    message a second: the session expires 1 s after the close (§3.1.2.11.2), so on average one
    message is lost to the expiry and one finds no session, at any point of a 200-year horizon."""
    d = {"name": "late", "horizon": "200y", "broker": {"max queued messages": 0},
         "mqttConsumer": {"session expiry interval": 1, "clean start": False, "qos": 1,
                          "outages": {"up": {"distribution": "fixed", "value": UINT_MAX},
                                      "down": {"distribution": "fixed", "value": 2}}},
         "mqttPublisher": {"qos": 1, "rate": "1/s"}}
    scn = sim.load_scenario(d)
    assert scn.horizon > UINT_MAX + 2
    expired, none = [], []
    for seed in range(300):
        eng = CountsEngine(scn, seed).run()
        assert eng.log.counters == CountsEngine(scn, seed).run().log.counters
        f = eng.fates.fates_frame().iloc[0]
        assert eng.log.counters[[k for k in eng.log.counters if "expired" in k][0]] == 1
        expired.append(f["lost_session_expired"])
        none.append(f["lost_no_session"])
    # Poisson(1) each: mean 1, standard error 1/sqrt(300) = 0.058
    assert abs(np.mean(expired) - 1) < 0.25 and abs(np.mean(none) - 1) < 0.25


def test_long_run_loss_and_queue_match_the_renewal_closed_form():
    """Exponential up (U) and down (D) times, Session Expiry E, rate lam, no queue limit:
    loss ratio (E + D) exp(-E/D) / (U + D), queued messages lam E[min(X, E)^2] / (2 (U + D))
    per consumer (sim.analytic)."""
    from sim import analytic

    U, D, E, lam, n = 100.0, 20.0, 15.0, 2.0, 200
    d = {"name": "renewal", "horizon": 200_000, "broker": {"max queued messages": 0},
         "mqttConsumer": {"clients": n, "session expiry interval": E, "clean start": False, "qos": 1,
                          "outages": {"up": {"distribution": "exponential", "mean": U},
                                      "down": {"distribution": "exponential", "mean": D}}},
         "mqttPublisher": {"qos": 1, "rate": lam}}
    res = sim.run(sim.load_scenario(d), seed=5, stream="counts")
    assert res.summary["loss_ratio"] == pytest.approx(analytic.loss_ratio(U, D, E), rel=0.02)
    assert res.summary["queued_messages_mean"] / n == pytest.approx(analytic.mean_queued(U, D, E, lam), rel=0.03)


def test_means_over_replications_agree_with_the_message_by_message_engine():
    """Both engines draw their own streams: over 30 replications each, the means of the loss
    ratio, the memory mean and peak, and the queued messages agree (Welch t test)."""
    from scipy import stats

    d = {**FLEET, "horizon": 4 * 3600,
         "mqttConsumer": {**FLEET["mqttConsumer"], "clients": 6, "session expiry interval": 300,
                          "outages": {"up": {"distribution": "exponential", "mean": "10m"},
                                      "down": {"distribution": "lognormal", "median": "4m", "sigma": 1},
                                      "leave probability": 0.05, "replace departed": True}},
         "broker": {"profile": "mosquitto", "max queued messages": 100}}
    scn = sim.load_scenario(d)
    cols = ["loss_ratio", "memory_mean_bytes", "memory_peak_bytes", "queued_messages_mean", "lost_session_expired"]
    exact = pd.DataFrame([sim.run(scn, seed=s, engine="exact").summary[cols] for s in range(30)])
    counts = pd.DataFrame([sim.run(scn, seed=s, stream="counts").summary[cols] for s in range(30)])
    for c in cols:
        p = stats.ttest_ind(exact[c], counts[c], equal_var=False).pvalue
        assert p > 0.001, (c, exact[c].mean(), counts[c].mean(), p)


def test_the_cli_runs_a_uint_max_horizon_scenario_with_a_progress_bar(tmp_path, capsys):
    """data/scenarios/uint_max_horizon.yaml, shortened to 60 days: counts kept, progress shown."""
    import yaml

    from sim.cli import main

    d = yaml.safe_load(open("data/scenarios/uint_max_horizon.yaml"))
    assert d["horizon"] == "uint_max" and sim.load_scenario(d).horizon == UINT_MAX
    d["horizon"], d["mqttConsumer"]["clients"] = "60d", 50
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(d))
    saved = sys.modules["sim.run"].MAX_MESSAGES
    sys.modules["sim.run"].MAX_MESSAGES = 1_000_000  # 60 days at 1/s: 5.2 million messages, kept as counts
    try:
        assert main(["run", str(path), "--seed", "2", "--out", str(tmp_path / "out")]) == 0
    finally:
        sys.modules["sim.run"].MAX_MESSAGES = saved
    out = capsys.readouterr()
    assert "simulated time" in out.err and "100%" in out.err
    assert "publish stream kept as counts" in out.out
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").iloc[0]
    assert summary["published"] > 5_000_000 and summary["departures"] >= 0


def test_policies_share_the_publish_stream():
    """Counts are drawn between the cuts every policy shares (drops and reconnects), and a
    Session Expiry instant splits its stretch binomially from a stream of its own: for the
    same seed, different expiries see the same messages (common random numbers in sweeps)."""
    scn = sim.load_scenario(FLEET)
    runs = [sim.run(scn.updated({"mqttConsumer.session expiry interval": e}), seed=4, stream="counts")
            for e in (0, 60, 3600, "uint_max")]
    assert len({r.summary["published"] for r in runs}) == 1
    assert len({r.summary["disconnects"] for r in runs}) == 1
    stay = [r.fates[~r.fates.departed].set_index("client_id")["routed"] for r in runs]
    for s in stay[1:]:
        pd.testing.assert_series_equal(s, stay[0])
    assert runs[1].summary["sessions_expired"] > 0 and runs[1].summary["lost_session_expired"] > 0


@settings(max_examples=200, deadline=None)
@given(v=st.lists(st.integers(0, 40), min_size=1, max_size=90), tail=st.sampled_from([0, 3, 64]),
       block=st.sampled_from([1, 2, 7, 128]))
def test_nearest_holders_match_a_direct_search(v, tail, block):
    """The shared store's nearest holders (sim.counts._previous_greater, _next_at_least):
    pointer jumping and the block search for long chains give what a direct search gives."""
    from sim.counts import _next_reaching, _previous_greater, _next_at_least

    n = len(v)
    arr = np.array(v, np.int64)
    previous = [max([j for j in range(i) if v[j] > v[i]], default=-1) for i in range(n)]
    following = [min([j for j in range(i + 1, n) if v[j] >= v[i]], default=n) for i in range(n)]
    assert _previous_greater(arr).tolist() == previous
    assert _next_at_least(arr).tolist() == following
    assert _next_reaching(arr, False, tail, block).tolist() == following
    assert (n - 1 - _next_reaching(arr[::-1], True, tail, block)[::-1]).tolist() == previous

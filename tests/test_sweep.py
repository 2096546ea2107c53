"""Sweeps: validation up front, common random numbers, worker-count independence, resume, t-intervals."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim.sweep import replication_seeds, summarize, sweep

SCN = sim.load_scenario({
    "name": "small",
    "horizon": "2h",
    "mqttConsumer": {"clients": 3, "session expiry interval": 60, "clean start": False, "qos": 1,
                     "outages": {"up": {"distribution": "exponential", "mean": "10m"},
                                 "down": {"distribution": "exponential", "mean": "2m"}}},
    "mqttPublisher": {"clients": 1, "qos": 1, "rate": "1/10s"},
})
GRID = {"mqttConsumer.session expiry interval": [0, 60, sim.UINT_MAX], "mqttConsumer.clean start": [False, True]}
VOLATILE = ["wall_seconds"]


def test_bad_grid_value_is_refused_before_any_run(tmp_path):
    out = tmp_path / "runs.csv"
    with pytest.raises(sim.ScenarioError) as info:
        sweep(SCN, {"mqttConsumer.session expiry interval": [0, -1]}, replications=2, out=out, progress=False)
    assert info.value.field == "mqttConsumer.session expiry interval"
    assert not out.exists()


def test_common_random_numbers_same_outages_in_every_cell():
    df = sweep(SCN, GRID, replications=3, seed=7, progress=False)
    assert len(df) == 6 * 3
    per_rep = df.groupby("replication")[["connects", "disconnects", "published", "run_seed"]].nunique()
    assert (per_rep == 1).all().all(), "policies must see the same outages and publishes"
    assert df.groupby("replication")["run_seed"].first().nunique() == 3
    # the policy does change the outcome
    assert df.groupby("mqttConsumer.session expiry interval")["loss_ratio"].mean().nunique() > 1


def test_results_do_not_depend_on_the_number_of_workers():
    one = sweep(SCN, GRID, replications=2, seed=3, jobs=1, progress=False).drop(columns=VOLATILE)
    two = sweep(SCN, GRID, replications=2, seed=3, jobs=2, progress=False).drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(one, two)


def test_interrupted_sweep_resumes_without_losing_or_redoing_runs(tmp_path, monkeypatch):
    out = tmp_path / "runs.csv"
    full = sweep(SCN, GRID, replications=2, seed=5, out=out, progress=False)
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 12
    out.write_text("\n".join(lines[:6]) + "\n")  # as if killed after 5 finished runs
    import sys
    sweep_module = sys.modules["sim.sweep"]
    calls = []
    real = sweep_module._one
    monkeypatch.setattr(sweep_module, "_one", lambda *a: calls.append(a) or real(*a))
    resumed = sweep(SCN, GRID, replications=2, seed=5, out=out, progress=False)
    assert len(calls) == 12 - 5
    cols = [c for c in full.columns if c not in VOLATILE]
    pd.testing.assert_frame_equal(full[cols].reset_index(drop=True), resumed[cols].reset_index(drop=True),
                                  check_dtype=False)
    assert len(pd.read_csv(out)) == 12


def test_replication_seeds_are_reproducible_and_distinct():
    a, b = replication_seeds(1, 5), replication_seeds(1, 5)
    assert a == b and len(set(a)) == 5
    assert replication_seeds(2, 5) != a


def test_summarize_gives_t_intervals_over_replications():
    df = pd.DataFrame({"policy": ["a"] * 4 + ["b"],
                       "loss_ratio": [0.1, 0.2, 0.3, 0.4, 0.5], "lost": [1, 2, 3, 4, 5]})
    s = summarize(df, by=["policy"], metrics=["loss_ratio", "lost"]).set_index("policy")
    from scipy import stats
    lo, hi = stats.t.interval(0.95, 3, loc=0.25, scale=np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / 2)
    assert s.loc["a", "n"] == 4
    assert s.loc["a", "loss_ratio"] == pytest.approx(0.25)
    assert (s.loc["a", "loss_ratio_ci_low"], s.loc["a", "loss_ratio_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert s.loc["b", "loss_ratio_ci_low"] == s.loc["b", "loss_ratio_ci_high"] == 0.5  # one replication


def test_demo_writes_table_and_figure(tmp_path, capsys):
    from sim.cli import main
    rc = main(["demo", "--out", str(tmp_path), "--replications", "2", "--horizon", "20m", "--jobs", "1", "--quiet"])
    assert rc == 0
    table = pd.read_csv(tmp_path / "policy_comparison.csv")
    assert len(table) == 10 and {"policy", "loss_ratio", "loss_ratio_ci_low", "memory_peak_bytes"} <= set(table.columns)
    assert Path(tmp_path / "policy_comparison.png").stat().st_size > 10_000
    # the headline figure (loss and memory against the expiry, 0 to never) beside its table
    assert Path(tmp_path / "expiry_headline.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "expiry UINT_MAX, clean start false" in printed
    assert printed.rstrip().splitlines()[-1].startswith("headline figure")


def test_parquet_output_resumes_from_its_partial_csv(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "runs.parquet"
    grid = {"mqttConsumer.session expiry interval": [0, 60]}
    full = sim.sweep(SCN, grid, replications=2, seed=2, out=out, progress=False)
    assert out.exists() and not (tmp_path / "runs.parquet.partial.csv").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out).drop(columns=VOLATILE), full.drop(columns=VOLATILE),
                                  check_dtype=False)
    # an interrupted parquet sweep: two runs finished in the partial CSV, no parquet yet
    out.unlink()
    partial = tmp_path / "runs.parquet.partial.csv"
    full.head(2).to_csv(partial, index=False)
    again = sim.sweep(SCN, grid, replications=2, seed=2, out=out, progress=False)
    cols = [c for c in full.columns if c not in VOLATILE]
    pd.testing.assert_frame_equal(again[cols], full[cols], check_dtype=False)
    assert not partial.exists()


def test_cli_sweep_and_plot(tmp_path, capsys):
    from sim.cli import main
    runs = tmp_path / "runs.csv"
    rc = main(["sweep", "data/scenarios/transport_example.yaml", "--grid", "mqttConsumer.session expiry interval=0,uint_max",
               "--grid", "horizon=10m", "--replications", "2", "--out", str(runs), "--quiet"])
    assert rc == 0
    df = pd.read_csv(runs)
    assert len(df) == 4 and set(df["horizon"]) == {"10m"}          # the grid value is kept, not the summary's
    assert set(df["mqttConsumer.session expiry interval"].astype(str)) == {"0", "uint_max"}  # as given
    assert main(["plot", str(runs), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["sweep", "data/scenarios/transport_example.yaml", "--grid", "mqttConsumer.qos=3",
                 "--out", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: mqttConsumer.qos: 3 is out of range: use an integer from 0 to 2 (MQTT QoS 0, 1 or 2)"]
    assert not (tmp_path / "bad.csv").exists()

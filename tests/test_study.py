"""Studies described in a file (sim/study.py, data/sweeps/), and `mqtt-sim sweep STUDY.yaml`."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import yaml

import sim
from sim.cli import main
from sim.study import load_study, logspace_axis

E = "mqttConsumer.session expiry interval"
SCN = {"name": "s", "horizon": 60,
       "mqttConsumer": {"clients": 2, "session expiry interval": 5, "clean start": False, "qos": 1,
                        "outages": {"up": {"distribution": "exponential", "mean": 10},
                                    "down": {"distribution": "exponential", "mean": 4}}},
       "mqttPublisher": {"qos": 1, "rate": 1}}


def test_logspace_axis_by_hand():
    # 1 s to 1000 s in 4 points: 1, 10, 100, 1000; plus 0 and UINT_MAX
    assert logspace_axis({"logspace": [1, "1000s"], "points": 4, "include": [0, "uint_max"]}, "f") == \
        [0, 1, 10, 100, 1000, sim.UINT_MAX]
    assert logspace_axis({"logspace": [10, "1d"], "points": 3}, "f") == [10, 930, 86400]  # sqrt(864000) = 929.5
    assert logspace_axis({"logspace": [0.5, 8], "points": 5}, "f") == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0])


def test_grid_product_and_zip(tmp_path):
    study = load_study({"scenario": SCN, "grid": {E: [0, 5], "mqttConsumer.clean start": [False, True]},
                        "zip": {"broker.max queued messages": [10, 100], "broker.queue full policy": ["drop-new", "drop-oldest"]},
                        "replications": 2, "seed": 3}, base_dir=tmp_path)
    assert len(study.cells) == 2 * 2 * 2
    assert study.cells[0] == {E: 0, "mqttConsumer.clean start": False, "broker.max queued messages": 10,
                              "broker.queue full policy": "drop-new"}
    assert study.cells[1]["broker.max queued messages"] == 100 and study.cells[1]["broker.queue full policy"] == "drop-oldest"
    runs = study.run(progress=False)
    assert len(runs) == 16 and list(sim.summarize(runs)["n"]) == [2] * 8


@pytest.mark.parametrize("change, field, words", [
    ({"replications": 0}, "sweep.replications", ">= 1"),
    ({"grid": {E: {"logspace": [10, 1], "points": 3}}}, f"sweep.grid.{E}.logspace", "0 < low < high"),
    ({"grid": {E: {"logspace": [1, 10], "points": 1}}}, f"sweep.grid.{E}.points", "from 2 to 1000"),
    ({"grid": {E: {"logspace": [1, 10], "pionts": 3}}}, f"sweep.grid.{E}.pionts", "unknown key"),
    ({"grid": {E: [0, -5]}}, "mqttConsumer.session expiry interval", ""),  # validated before any run
    ({"grid": {"mqttConsumer.sesion expiry interval": [1]}}, "mqttConsumer.sesion expiry interval", "did you mean"),
    ({"zip": {E: [1, 2], "mqttConsumer.qos": [1]}}, "sweep.zip", "same number of values"),
    ({"replicatons": 3}, "sweep.replicatons", "did you mean 'replications'"),
    ({"out": "runs.txt"}, "sweep.out", ".csv or .parquet"),
    ({"warmup": "2m"}, "sweep.warmup", "below the horizon"),
])
def test_bad_study_refused_before_anything_runs(tmp_path, change, field, words):
    d = {"scenario": SCN, "grid": {E: [0, 5]}, **change}
    with pytest.raises(sim.ScenarioError) as err:
        load_study(d, base_dir=tmp_path)
    assert err.value.field == field and words in str(err.value)


def test_shipped_expiry_policy_study_loads():
    study = load_study("data/sweeps/expiry_policy.yaml")
    values = sorted({c[E] for c in study.cells})
    assert values[0] == 0 and values[-1] == sim.UINT_MAX and len(values) == 8
    assert study.out.name == "expiry_policy.parquet" and study.replications == 10


def test_cli_runs_a_study_file_and_writes_parquet(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"scenario": SCN, "grid": {E: {"logspace": [1, 100], "points": 3, "include": [0]}},
                                    "replications": 3, "seed": 1, "out": "runs.parquet"}))
    assert main(["sweep", str(path), "--quiet"]) == 0
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert len(runs) == 4 * 3 and set(runs[E]) == {0, 1, 10, 100}
    assert "study 's': 4 policies x 3 replications" in capsys.readouterr().out
    assert main(["sweep", str(path), "--grid", "mqttConsumer.qos=1"]) == 2  # its grid is in the file


def test_a_sweep_warns_about_a_short_warmup_once(tmp_path):
    scn = sim.load_scenario(SCN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.sweep(scn, {E: [5, 30]}, replications=3, seed=1, warmup=10, progress=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    # interval 5 + mean outage 4 < 10 s: settled; interval 30 + 4 > 10 s: not yet
    assert len(msgs) == 1 and "in 1 of 2 policies" in msgs[0]


def test_replications_auto_until_the_interval_is_tight():
    scn = sim.load_scenario(SCN)
    runs = sim.sweep(scn, {E: [0, 5]}, replications="auto", seed=2, progress=False,
                     precision={"metric": "loss_ratio", "relative": 0.15, "min": 4, "max": 40})
    prec = runs.attrs["precision"].set_index(E)
    for e in (0, 5):
        n, rel = prec.loc[e, "n"], prec.loc[e, "relative"]
        assert 4 <= n <= 40 and (rel <= 0.15 or n == 40), (e, n, rel)
        assert n == (runs[E] == e).sum()
    assert prec["n"].max() > 4  # at least one grid point needed more than the first batch
    # common random numbers: replication r has the same seed in every cell
    seeds = runs.groupby("replication")["run_seed"].nunique()
    assert (seeds == 1).all()
    with pytest.raises(ValueError, match="precision.relative"):
        sim.sweep(scn, {E: [0]}, replications="auto", precision={"relative": 2}, progress=False)
    with pytest.raises(ValueError, match="only with replications='auto'"):
        sim.sweep(scn, {E: [0]}, replications=3, precision={"relative": 0.1}, progress=False)


def test_study_file_with_automatic_replications(tmp_path):
    study = load_study({"scenario": SCN, "grid": {E: [5]}, "replications": "auto",
                        "precision": {"metric": "memory_mean_bytes", "relative": 0.05, "min": 3, "max": 12}},
                       base_dir=tmp_path)
    runs = study.run(progress=False)
    prec = runs.attrs["precision"].iloc[0]
    assert 3 <= prec["n"] <= 12 and (prec["relative"] <= 0.05 or prec["n"] == 12)
    with pytest.raises(sim.ScenarioError) as err:
        load_study({"scenario": SCN, "grid": {E: [5]}, "replications": "auto", "precision": {"relative": 5}})
    assert err.value.field == "sweep.precision"

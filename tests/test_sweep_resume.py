"""Nothing lost, even mid-write: a sweep killed at any instant resumes to the same runs file.

A killed sweep (SIGKILL, at 20 random moments, including in the middle of writing a row)
is started again until it finishes; the runs file must then hold exactly the rows of an
uninterrupted sweep (wall_seconds aside), none lost and none repeated. A torn trailing row
is detected and dropped, never read as data; a run that raises is recorded with its error
and does not stop the others.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

import sim
import importlib

sweep_module = importlib.import_module("sim.sweep")  # the module (sim.sweep is also the function)

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = {"name": "resume", "horizon": 120,
            "mqttConsumer": {"clients": 3, "session expiry interval": 5, "clean start": False, "qos": 1,
                             "outages": {"up": {"distribution": "exponential", "mean": 20},
                                         "down": {"distribution": "exponential", "mean": 5}}},
            "mqttPublisher": {"qos": 1, "rate": 2}}
GRID = {"mqttConsumer.session expiry interval": [0, 5, 60], "mqttConsumer.clean start": [True, False]}
REPS = 8

CHILD = f"""
import sys, sim
scn = sim.load_scenario({SCENARIO!r})
sim.sweep(scn, {GRID!r}, replications={REPS}, seed=4, out=sys.argv[1], progress=False)
"""


def _rows(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path).drop(columns=["wall_seconds"])
    return df.sort_values(list(GRID) + ["replication"]).reset_index(drop=True)


def test_killed_at_20_random_moments_resumes_to_the_same_file(tmp_path):
    clean = tmp_path / "clean.csv"
    t0 = time.perf_counter()  # the uninterrupted sweep also times one whole child (start-up included)
    subprocess.run([sys.executable, "-c", CHILD, str(clean)], check=True, cwd=ROOT, timeout=300)
    full = time.perf_counter() - t0
    want = _rows(clean)
    assert len(want) == len(GRID["mqttConsumer.session expiry interval"]) * 2 * REPS
    out = tmp_path / "killed.csv"
    rng = random.Random(20261202)
    kills = 0
    for _ in range(200):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], cwd=ROOT)
        if kills < 20:
            time.sleep(rng.uniform(0.0, full))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
            continue
        assert proc.wait(timeout=300) == 0
        break
    assert kills == 20
    got = _rows(out)
    assert not got.duplicated(list(GRID) + ["replication"]).any(), "a run was written twice"
    pd.testing.assert_frame_equal(got, want)


def test_torn_trailing_row_is_dropped_and_its_run_done_again(tmp_path):
    scn = sim.load_scenario(SCENARIO)
    grid = {"mqttConsumer.session expiry interval": [0, 5]}
    clean = sim.sweep(scn, grid, replications=3, seed=1, out=tmp_path / "clean.csv", progress=False)
    path = tmp_path / "torn.csv"
    sim.sweep(scn, {"mqttConsumer.session expiry interval": [0]}, replications=3, seed=1, out=path, progress=False)
    whole = path.read_bytes()
    line = (tmp_path / "clean.csv").read_bytes().splitlines(keepends=True)[4]  # expiry 5, replication 0
    path.write_bytes(whole + line[: len(line) // 2])  # killed in the middle of writing it
    got = sim.sweep(scn, grid, replications=3, seed=1, out=path, progress=False)
    assert path.read_bytes().count(b"\n") == 1 + 6
    cols = [c for c in clean.columns if c != "wall_seconds"]
    pd.testing.assert_frame_equal(got[cols], clean[cols])
    pd.testing.assert_frame_equal(_read(path)[cols], _read(tmp_path / "clean.csv")[cols])


def _read(path):
    df = pd.read_csv(path)
    return df.sort_values(["mqttConsumer.session expiry interval", "replication"]).reset_index(drop=True)


def test_a_run_that_raises_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    real = sweep_module.run

    def flaky(scenario, seed, **kw):
        if seed == sweep_module.replication_seeds(1, 3)[1]:
            raise RuntimeError("boom")
        return real(scenario, seed=seed, **kw)

    monkeypatch.setattr(sweep_module, "run", flaky)
    scn = sim.load_scenario(SCENARIO)
    runs = sim.sweep(scn, {"mqttConsumer.session expiry interval": [0, 5]}, replications=3, seed=1,
                     out=tmp_path / "runs.csv", progress=False)
    assert len(runs) == 6
    bad = runs[runs["error"] != ""]
    assert list(bad["replication"]) == [1, 1] and (bad["error"] == "RuntimeError: boom").all()
    assert bad["routed"].isna().all() and runs.loc[runs["error"] == "", "routed"].notna().all()
    back = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert (back["error"] == "RuntimeError: boom").sum() == 2
    table = sim.summarize(runs)
    assert list(table["n"]) == [3, 3]  # the failed runs count in n; their metrics are left out

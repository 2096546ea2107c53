"""Sweeps on Dask distributed: a real `dask scheduler` and two `dask worker` processes on
127.0.0.1 (free ports, stopped by PID). The rows are the same as in-process and with jobs=2;
a worker killed in the middle of a sweep loses no run and repeats none in the runs file.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import sim

distributed = pytest.importorskip("distributed")

E = "mqttConsumer.session expiry interval"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_workers(address: str, n: int, timeout: float = 120) -> None:
    with distributed.Client(address, timeout="60s") as c:
        c.wait_for_workers(n, timeout=timeout)


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-threaded workers, each its own process; all stopped by PID."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    logs = []

    def start(args, name):
        log = open(tmp_path / f"{name}.log", "w")
        logs.append(log)
        p = subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT,
                             cwd=tmp_path, start_new_session=True)
        procs.append(p)
        return p

    start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler")
    workers = [start(["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                      "--no-dashboard", "--name", f"w{i}", "--death-timeout", "60"], f"worker{i}") for i in range(2)]
    try:
        _wait_workers(address, 2)
        yield address, workers
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()


def _scenario():
    return sim.load_scenario("data/scenarios/transport_example.yaml").updated({"horizon": "30m"})


def _cmp(a, b):
    a, b = a.copy(), b.copy()
    for df in (a, b):  # "" read back from a CSV file is NaN
        df["error"] = df["error"].fillna("").astype(object)
    cols = [c for c in a.columns if c != "wall_seconds"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def test_same_rows_in_process_with_jobs_and_on_dask(dask_cluster, tmp_path):
    address, _ = dask_cluster
    grid = {E: [0, 15, 300]}
    inproc = sim.sweep(_scenario(), grid, replications=4, seed=5, progress=False)
    pool = sim.sweep(_scenario(), grid, replications=4, seed=5, jobs=2, progress=False)
    dask = sim.sweep(_scenario(), grid, replications=4, seed=5, progress=False, backend="dask", scheduler=address,
                     out=tmp_path / "dask.csv")
    _cmp(inproc, pool)
    _cmp(inproc, dask)
    assert len(pd.read_csv(tmp_path / "dask.csv")) == 12


def test_a_worker_killed_mid_sweep_loses_and_repeats_nothing(dask_cluster, tmp_path):
    address, workers = dask_cluster
    grid = {E: [0, 15, 60, 300, 3600]}
    want = sim.sweep(_scenario(), grid, replications=6, seed=7, progress=False)
    out = tmp_path / "runs.csv"
    child = (f"import sim\nscn = sim.load_scenario('data/scenarios/transport_example.yaml').updated({{'horizon': '30m'}})\n"
             f"sim.sweep(scn, {grid!r}, replications=6, seed=7, progress=False, backend='dask', "
             f"scheduler={address!r}, out={str(out)!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=Path(__file__).resolve().parent.parent)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 4):
        time.sleep(0.05)  # some runs are written: the sweep is under way
    os.killpg(workers[0].pid, signal.SIGKILL)  # one worker dies, with whatever it was running
    assert proc.wait(timeout=300) == 0
    got = pd.read_csv(out).sort_values([E, "replication"]).reset_index(drop=True)
    assert not got.duplicated([E, "replication"]).any()
    _cmp(want, got)

"""Sweep machinery: parallel speed-up against a trivial multiprocessing baseline, and overhead.

Run: .venv/bin/python benchmarks/bench_sweep.py [--repeats 3] [--runs 200]

This machine's two cores are shared: two CPU-bound Python processes run at about half speed
each, so an absolute speed-up says little. In the same invocation the script times
(1) a trivial CPU-bound pure-Python task serially and on a 2-process multiprocessing pool
(the baseline speed-up the machine allows now), and (2) a sweep of ``--runs`` runs with
jobs=1, jobs=2 (the pool's start-up included) and Dask with 2 local workers (the cluster
started before timing, as the baseline's pool is); it prints each speed-up and its ratio to the
baseline's (target >= 0.9). Then the sweep overhead: a sweep of tiny scenarios against
calling sim.run on them directly, per run (target <= 5 ms). Medians over ``--repeats``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time
import warnings

import sim

SCENARIO = {"name": "bench-sweep", "horizon": "30m", "broker": {"profile": "mosquitto"},
            "mqttConsumer": {"clients": 10, "session expiry interval": 15, "clean start": False, "qos": 1,
                             "outages": {"up": {"distribution": "exponential", "mean": "5m"},
                                         "down": {"distribution": "lognormal", "median": "10s", "sigma": 1.2}}},
            "mqttPublisher": {"clients": 2, "qos": 1, "rate": 1}}
TINY = {"name": "tiny", "horizon": 10, "mqttConsumer": {}, "mqttPublisher": {"schedule": [1, 2]}}
E = "mqttConsumer.session expiry interval"


def spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def baseline(tasks: int, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for _ in range(tasks):
        spin(n)
    serial = time.perf_counter() - t0
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(spin, [1000] * 2)  # started before timing, like a sweep's pool warming up
        t0 = time.perf_counter()
        pool.map(spin, [n] * tasks, chunksize=1)
        parallel = time.perf_counter() - t0
    return serial, parallel


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}; {time.strftime('%Y-%m-%d')}; "
          f"medians of {args.repeats}")
    scn = sim.load_scenario(SCENARIO)
    reps = args.runs // 4
    grid = {E: [0, 15, 300, sim.UINT_MAX]}
    one = timed(lambda: sim.run(scn, seed=1, record_events=False, record_memory=False))
    n_spin = int(2e6 * one / max(timed(lambda: spin(2_000_000)), 1e-9))  # a task as long as one run
    rows = {"baseline": [], "jobs=2": [], "dask 2 workers": []}
    for _ in range(args.repeats):
        s, p = baseline(args.runs, n_spin)
        rows["baseline"].append((s, p))
        serial = timed(lambda: sim.sweep(scn, grid, replications=reps, seed=1, progress=False))
        rows["jobs=2"].append((serial, timed(lambda: sim.sweep(scn, grid, replications=reps, seed=1, jobs=2,
                                                                progress=False))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from distributed import Client, LocalCluster

            # started (and its workers' imports warmed) before timing, like the baseline's pool
            with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                client.run(lambda: __import__("sim"))
                rows["dask 2 workers"].append((serial, timed(lambda: sim.sweep(
                    scn, grid, replications=reps, seed=1, backend="dask", scheduler=cluster.scheduler_address,
                    progress=False))))
    base = statistics.median(s / p for s, p in rows["baseline"])
    print(f"{args.runs} runs of about {one * 1000:.0f} ms each")
    print(f"{'':<24}{'serial s':>10}{'parallel s':>12}{'speed-up':>10}{'/ baseline':>12}")
    for name, pairs in rows.items():
        s = statistics.median(x for x, _ in pairs)
        p = statistics.median(y for _, y in pairs)
        up = statistics.median(x / y for x, y in pairs)
        print(f"{name:<24}{s:>10.2f}{p:>12.2f}{up:>10.2f}{up / base:>12.2f}")
    tiny = sim.load_scenario(TINY)
    n = 200
    direct, swept = [], []
    for _ in range(args.repeats):
        direct.append(timed(lambda: [sim.run(tiny, seed=s, record_messages=False, record_events=False,
                                             record_memory=False) for s in range(n)]))
        swept.append(timed(lambda: sim.sweep(tiny, None, replications=n, seed=1, progress=False)))
    over = (statistics.median(swept) - statistics.median(direct)) / n * 1000
    print(f"sweep overhead: {over:.2f} ms per run (tiny runs: {statistics.median(direct) / n * 1000:.2f} ms direct)")


if __name__ == "__main__":
    main()

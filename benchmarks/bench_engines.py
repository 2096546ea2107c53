"""The two engines on the fast-path target fleet, scaled down: wall time and peak memory.

Run: .venv/bin/python benchmarks/bench_engines.py [--repeats 3] [--quick]

The fleet is benchmarks/fleet_uint_max.yaml (1 msg/s QoS 1, up-times exponential mean 1 d,
down-times lognormal median 10 min, 0.1 % of disconnects for good and replaced, sessions
that never expire, Mosquitto profile), with fewer clients and a shorter horizon per row.
Each measurement runs in a fresh process (so peak RSS is that run's); the table gives the
median wall time over the repeats and the largest peak RSS. Beside each size, a bare
vectorised renewal loop of the same fleet (numpy only: up and down times, departures,
Poisson arrivals capped at the queue limit; no SimPy, no ledger) is timed in the same way,
as the yardstick the interval engine is measured against (target: within 8x of it).
Both engines give the same summary for the same seed; the script checks the routed and
lost counts and the memory peak agree wherever both ran.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
import sim
from sim.units import parse_duration
kind, clients, horizon = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
if kind == "bare":
    H = parse_duration(horizon, "horizon")
    rng = np.random.default_rng(1)
    lam, limit, mu = 1.0, 1000, np.log(600.0)
    total = 0
    t = np.zeros(clients)
    alive = np.ones(clients, dtype=bool)
    while alive.any():
        n = int(alive.sum())
        up = rng.exponential(86400.0, n)
        down = rng.lognormal(mu, 1.0, n)
        leave = rng.random(n) < 0.001
        start = t[alive] + up
        ok = start < H
        queued = np.minimum(rng.poisson(lam * np.minimum(down, np.maximum(H - start, 0))), limit)
        total += int(queued[ok].sum())
        t[alive] = np.where(leave, start, start + down)  # a departed slot's replacement starts at once
        alive[alive] = ok
    out = {"wall": time.perf_counter() - t0, "queued": total}
else:
    scn = sim.load_scenario(sys.argv[4]).updated({"horizon": horizon, "mqttConsumer.clients": clients})
    res = sim.run(scn, seed=1, engine=kind, record_events=False, record_memory=False)
    s = res.summary
    out = {"wall": time.perf_counter() - t0, "routed": int(s["routed"]), "lost": int(s["lost"]),
           "departed": int(s["departed_pairs"]), "peak": s["memory_peak_bytes"]}
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def measure(kind: str, clients: int, horizon: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, "-c", CHILD, kind, str(clients), horizon, str(ROOT / "benchmarks" / "fleet_uint_max.yaml")]
        runs.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    out = dict(runs[0])
    out["wall"] = statistics.median(r["wall"] for r in runs)
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the smallest sizes")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}; {time.strftime('%Y-%m-%d')}; "
          f"median of {args.repeats} runs, each in a fresh process")
    sizes = [(100, "1d", True), (100, "7d", True), (1000, "1d", True), (1000, "7d", False), (1000, "30d", False),
             (10000, "1d", False), (10000, "7d", False), (100, "1y", False), (1000, "1y", False)]
    if args.quick:
        sizes = sizes[:1]
    print(f"{'clients':>8}{'horizon':>9}{'exact s':>10}{'exact MiB':>10}{'interval s':>12}{'interval MiB':>13}"
          f"{'bare loop s':>13}{'interval/bare':>15}{'exact/interval':>16}")
    for clients, horizon, with_exact in sizes:
        iv = measure("interval", clients, horizon, args.repeats)
        bare = measure("bare", clients, horizon, args.repeats)
        ex = measure("exact", clients, horizon, args.repeats) if with_exact else None
        if ex is not None:
            for key in ("routed", "lost", "departed", "peak"):
                assert ex[key] == iv[key], (clients, horizon, key, ex[key], iv[key])
        print(f"{clients:>8}{horizon:>9}{ex['wall'] if ex else float('nan'):>10.2f}"
              f"{ex['rss_mb'] if ex else float('nan'):>10.0f}{iv['wall']:>12.2f}{iv['rss_mb']:>13.0f}"
              f"{bare['wall']:>13.3f}{iv['wall'] / bare['wall']:>15.1f}"
              f"{(ex['wall'] / iv['wall']) if ex else float('nan'):>16.1f}")


if __name__ == "__main__":
    main()

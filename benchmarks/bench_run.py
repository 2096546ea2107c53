"""Throughput of the exact per-message path: (message, consumer) pairs simulated per second.

Run: .venv/bin/python benchmarks/bench_run.py [--repeats 5]
Prints, per shipped example scenario, the routed pairs, the median wall time of the repeats
(same seed, recording off, as in a sweep) and pairs per second. Scenarios that publish more
messages than one run can hold with every publish time (``sim.run.MAX_MESSAGES``, e.g. the
UINT_MAX-horizon example) are listed as skipped: the exact path cannot run them
(``benchmarks/bench_engines.py`` measures those).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import sim
from sim.run import MAX_MESSAGES, _expected_messages

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}; "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'scenario':<28}{'pairs':>12}{'median s':>10}{'pairs/s':>12}")
    for path in sorted((ROOT / "data" / "scenarios").glob("*.yaml")) + [ROOT / "benchmarks" / "fleet_100.yaml"]:
        scn = sim.load_scenario(path)
        msgs = _expected_messages(scn)
        if msgs > MAX_MESSAGES:
            print(f"{path.name:<28}  skipped: about {msgs:,.0f} messages, past what the exact path holds")
            continue
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = sim.run(scn, seed=1, record_messages=False, record_events=False, record_memory=False, engine="exact")
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        pairs = int(res.summary["routed"])
        print(f"{path.name:<28}{pairs:>12,}{med:>10.3f}{pairs / med:>12,.0f}")


if __name__ == "__main__":
    main()

"""The engines on the fast-path target fleet: wall time and peak memory, beside a bare numpy loop.

Run from the repository root (the child processes import this checkout's ``sim``):

    .venv/bin/python benchmarks/bench_engines.py --rows target     # the issue's target row
    .venv/bin/python benchmarks/bench_engines.py --rows scaling    # the scaling table
    .venv/bin/python benchmarks/bench_engines.py                   # both (--rows all)
    .venv/bin/python benchmarks/bench_engines.py --quick           # tiny sizes, one run each: a smoke run
    .venv/bin/python benchmarks/bench_engines.py --plan            # which kinds each row would run; runs nothing

Other options: ``--repeats N`` (runs per measurement, default 3; 1 with ``--quick``),
``--kinds exact,interval,counts,bare`` (a subset to run), ``--clients 100,1000`` and
``--horizons 1d,uint_max`` (the scaling table's sizes), ``--timeout S`` (give up on a single
run after S seconds: the cell says "error"), ``--kernels numpy`` (or ``numba``, ``auto``: sets
``MQTT_SIM_KERNELS`` for the runs, e.g. to time the counts engine without its compiled loops;
the target row says whether they ran). The figures are wall times of CPU-bound runs:
measure on a quiet machine. Progress goes to stderr, the tables (markdown, ready for
benchmarks/RESULTS.md) to stdout.

The fleet is benchmarks/fleet_uint_max.yaml (1 msg/s QoS 1, up-times exponential mean 1 d,
down-times lognormal median 10 min, 0.1 % of disconnects for good and replaced, sessions
that never expire, Mosquitto profile), with the number of clients and the horizon set per
row. Four kinds of measurement, each run in a fresh child process (so its peak RSS is that
run's) with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set to 1, so that each
uses one core:

- ``exact``: ``sim.run(..., engine="exact", stream="times", record_memory=False)``, SimPy
  message by message; only for small runs (clients x horizon up to 1,000 client-days:
  100 clients x 7 d, 1,000 x 1 d);
- ``interval``: ``sim.run(..., engine="interval", stream="times", record_memory=False)``,
  every publish time kept; only up to ``sim.run.MAX_MESSAGES`` messages (1 y at 1 msg/s; it
  refuses runs past that);
- ``counts``: ``sim.run(..., stream="counts", record_memory=True)``, the interval engine over
  the publish stream kept as Poisson counts between the fleet's connection changes
  (sim/counts.py); every size except 10,000 clients past 1 y (too long for a table run);
- ``bare``: the yardstick the issue names, a vectorised renewal loop of the same fleet in
  numpy only (up and down times, departures, one Poisson count per offline interval capped
  at the queue limit; no SimPy, no publish stream, no fates, no memory statistics); every size.

All runs use seed 1 and ``record_events=False``. A cell is the median wall time over the
repeats (timed after the imports: loading the fleet and ``sim.run``) or the largest peak RSS in MiB
(``ru_maxrss`` of the child: Python with sim, numpy, pandas and simpy loaded is about
170 MiB of it; the bare loop's child loads numpy only); "—" marks a kind not run at that size.

The target row (``--rows target``): 1,000 clients over the ``uint_max`` horizon
(4,294,967,295 s, about 136 years, 4.3 billion messages), counts stream, beside the bare loop
of the same fleet and horizon measured in the same invocation, and their ratio (the two run
in turn, counts then bare, and the ratio quoted is the median of the pairs' ratios, each
taken while the machine ran at one speed; every run's time is printed too). Targets:
wall <= 60 s on one core, peak RSS <= 1 GiB, counts within 8x of the bare loop; the script
prints each figure against its target ("met" / "NOT met").

The scaling table (``--rows scaling``): clients 100, 1,000, 10,000 against horizons 1 d, 7 d,
30 d, 1 y, 10 y and uint_max; its 1,000 x UINT_MAX row reuses the target row's measurements
when both are run. Where both the exact and the interval engine ran, the script checks they
agree on routed, lost and departed pairs and the memory peak (same seed, same stream; it
exits with status 1 if not). The counts stream draws its own Poisson counts, so its figures
are not compared exactly: the table shows its loss ratio beside the interval engine's as an
informal check only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "benchmarks" / "fleet_uint_max.yaml"
KINDS = ("exact", "interval", "counts", "bare")
DAY = 86_400.0

TARGET = (1000, "uint_max")
TARGET_WALL_S = 60.0
TARGET_RSS_MIB = 1024.0
TARGET_RATIO = 8.0
SCALING_CLIENTS = (100, 1000, 10_000)
SCALING_HORIZONS = ("1d", "7d", "30d", "1y", "10y", "uint_max")
QUICK_TARGET = (100, "7d")
QUICK_CLIENTS = (10, 100)
QUICK_HORIZONS = ("1d",)

#: exact engine only where clients x horizon is at most this (client-seconds): 1,000 client-days
EXACT_MAX_CLIENT_SECONDS = 1000 * DAY
#: counts stream past this horizon (1 y) only up to this many clients (10,000 x 10 y would take too long)
COUNTS_LONG_HORIZON, COUNTS_LONG_MAX_CLIENTS = "1y", 1000

# The parent process never imports sim (nor pandas): on Linux a child's peak RSS (ru_maxrss)
# starts from its parent's size at fork, which would put a floor of about 170 MiB under every
# figure. What it needs from sim (horizons in seconds, the fleet's publish rate, the message
# limit) it asks one child for, once.
INFO = r"""
import json, sys
import sim
from sim.run import MAX_MESSAGES
from sim.units import parse_duration
scn = sim.load_scenario(sys.argv[1])
print(json.dumps({"sim": sim.__file__, "max_messages": MAX_MESSAGES,
                  "rate": sum(p.clients * p.rate for p in scn.publishers),
                  "seconds": {h: parse_duration(h, "horizon") for h in sys.argv[2:]}}))
"""
_info: dict = {}


def load_info(horizons) -> None:
    """Horizons in seconds, the fleet's publish rate and sim.run.MAX_MESSAGES, from one child process."""
    proc = subprocess.run([sys.executable, "-c", INFO, str(FLEET), *sorted(set(horizons))], capture_output=True,
                          text=True, cwd=ROOT, env=child_env())
    if proc.returncode != 0:
        sys.exit("bench_engines: " + (proc.stderr.strip().splitlines() or ["could not read the fleet"])[-1])
    _info.update(json.loads(proc.stdout))

CHILD = r"""
import json, resource, sys, time
import numpy as np
kind, clients, horizon = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind != "bare":
    import sim
if kind == "bare":  # numpy only: sim is not even imported
    np.random.default_rng(0).poisson(1.0, 1)  # numpy.random's one-off set-up (about 15 ms), outside the timing
t0 = time.perf_counter()
if kind == "bare":
    H = float(sys.argv[5])
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
    import sim.counts
    used = []  # whether the counts engine ran its compiled loops (sim/kernels.py)
    _run = sim.counts.CountsEngine.run
    def run(self, *a, **k):
        out = _run(self, *a, **k)
        used.append(self.compiled_loops)
        return out
    sim.counts.CountsEngine.run = run
    if kind == "counts":
        res = sim.run(scn, seed=1, stream="counts", record_events=False, record_memory=True)
    else:
        res = sim.run(scn, seed=1, engine=kind, stream="times", record_events=False, record_memory=False)
    s = res.summary
    out = {"wall": time.perf_counter() - t0, "kernels": "numba" if any(used) else "numpy", "routed": int(s["routed"]), "lost": int(s["lost"]),
           "departed": int(s["departed_pairs"]), "peak": s["memory_peak_bytes"],
           "loss_ratio": float(s["loss_ratio"]), "engine": res.engine, "stream": res.stream}
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if _kernels:
        env["MQTT_SIM_KERNELS"] = _kernels[0]
    return env


_kernels: list[str] = []  # --kernels, when given


_measured: dict[tuple, dict] = {}


def measure(kind: str, clients: int, horizon: str, repeats: int, timeout: float | None) -> dict:
    """Median wall time and largest peak RSS of ``repeats`` fresh child runs; {"error": ...} if one fails.

    A size measured once in this invocation (the target row is also a row of the table) is not rerun."""
    key = (kind, clients, seconds(horizon), repeats)
    if key not in _measured:
        _measured[key] = _measure(kind, clients, horizon, repeats, timeout)
    return _measured[key]


class _Failed(Exception):
    pass


def _child(kind: str, clients: int, horizon: str, timeout: float | None) -> dict:
    """One run of ``kind`` in a fresh process (its figures as the child printed them)."""
    cmd = [sys.executable, "-c", CHILD, kind, str(clients), horizon, str(FLEET), repr(seconds(horizon))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _Failed(f"timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        raise _Failed((proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(kind: str, runs: list[dict]) -> dict:
    out = dict(runs[0])
    out["walls"] = [r["wall"] for r in runs]
    out["wall"] = statistics.median(out["walls"])
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    if kind == "counts":
        assert out["stream"] == "counts", out
    elif kind == "interval":
        assert (out["engine"], out["stream"]) == ("interval", "times"), out
    return out


def _measure(kind: str, clients: int, horizon: str, repeats: int, timeout: float | None) -> dict:
    print(f"  {kind} {clients} x {horizon} ...", end="", file=sys.stderr, flush=True)
    try:
        runs = [_child(kind, clients, horizon, timeout) for _ in range(repeats)]
    except _Failed as e:
        print(f" failed: {e}", file=sys.stderr)
        return {"error": str(e)}
    out = _summary(kind, runs)
    print(f" {out['wall']:.3f} s, {out['rss_mb']:.0f} MiB", file=sys.stderr)
    return out


def measure_pairs(clients: int, horizon: str, repeats: int, timeout: float | None) -> tuple[dict, dict]:
    """The counts stream and the bare loop run in turn (counts, bare, counts, bare, ...): each
    pair's ratio is taken on the machine as it was during that pair (a shared machine's speed
    drifts), and the ratio quoted is the median of the pairs' ratios."""
    print(f"  counts and bare in turn, {clients} x {horizon} ...", end="", file=sys.stderr, flush=True)
    runs: dict[str, list] = {"counts": [], "bare": []}
    try:
        for _ in range(repeats):
            for kind in runs:
                runs[kind].append(_child(kind, clients, horizon, timeout))
    except _Failed as e:
        print(f" failed: {e}", file=sys.stderr)
        return {"error": str(e)}, {"error": str(e)}
    counts, bare = _summary("counts", runs["counts"]), _summary("bare", runs["bare"])
    counts["pair_ratios"] = [c / b for c, b in zip(counts["walls"], bare["walls"])]
    counts["pair_ratio"] = statistics.median(counts["pair_ratios"])
    print(f" counts {counts['wall']:.3f} s, bare {bare['wall']:.3f} s", file=sys.stderr)
    key = (clients, seconds(horizon), repeats)
    _measured[("counts", *key)], _measured[("bare", *key)] = counts, bare
    return counts, bare


def seconds(horizon: str) -> float:
    return _info["seconds"][horizon]


def messages(horizon: str) -> float:
    """Messages the fleet's publishers produce over ``horizon`` (rate x horizon)."""
    return _info["rate"] * seconds(horizon)


def feasible(kind: str, clients: int, horizon: str) -> bool:
    """Whether the scaling table runs ``kind`` at this size (see the module docstring)."""
    if kind == "exact":
        return clients * seconds(horizon) <= EXACT_MAX_CLIENT_SECONDS
    if kind == "interval":
        return messages(horizon) <= _info["max_messages"]
    if kind == "counts":
        return seconds(horizon) <= seconds(COUNTS_LONG_HORIZON) or clients <= COUNTS_LONG_MAX_CLIENTS
    return True


def label(horizon: str) -> str:
    if horizon.lower() in ("uint_max", "uint-max"):
        return "UINT_MAX"
    return f"{horizon[:-1]} {horizon[-1]}" if horizon[:-1].isdigit() else horizon


def cell(m: dict | None, key: str, fmt: str) -> str:
    if m is None:
        return "—"
    if "error" in m:
        return "error"
    return format(m[key], fmt)


def ratio(a: dict | None, b: dict | None) -> str:
    if a is None or b is None or "error" in a or "error" in b or b["wall"] <= 0:
        return "—"
    return f"{a['wall'] / b['wall']:,.1f}×"


def ok(m: dict | None) -> bool:
    return m is not None and "error" not in m


def target_row(args, clients: int, horizon: str) -> list[str]:
    print(f"\n### Target row: {clients:,} clients over {label(horizon)}, counts stream, one core\n")
    if "counts" in args.kinds and "bare" in args.kinds:
        counts, bare = measure_pairs(clients, horizon, args.repeats, args.timeout)
    else:
        counts = measure("counts", clients, horizon, args.repeats, args.timeout) if "counts" in args.kinds else None
        bare = measure("bare", clients, horizon, args.repeats, args.timeout) if "bare" in args.kinds else None
    print("| clients | horizon | messages | counts s | counts MiB | bare s | counts / bare "
          "| routed | lost | loss ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    paired = ok(counts) and "pair_ratio" in counts
    quoted = f"{counts['pair_ratio']:,.1f}×" if paired else ratio(counts, bare)
    print(f"| {clients:,} | {label(horizon)} | {messages(horizon):,.0f} | {cell(counts, 'wall', '.2f')} "
          f"| {cell(counts, 'rss_mb', ',.0f')} | {cell(bare, 'wall', '.3f')} | {quoted} "
          f"| {cell(counts, 'routed', ',')} | {cell(counts, 'lost', ',')} | {cell(counts, 'loss_ratio', '.3g')} |")
    print()
    if ok(counts):
        print(f"- compiled loops (sim/kernels.py, numba): {'on' if counts.get('kernels') == 'numba' else 'off (numpy)'}")
    for name, m in (("counts", counts), ("bare", bare)):
        if ok(m) and len(m["walls"]) > 1:
            print(f"- {name} runs: " + ", ".join(f"{w:.2f} s" for w in m["walls"]))
    if paired and len(counts["pair_ratios"]) > 1:
        print("- counts / bare, pair by pair: " + ", ".join(f"{r:.1f}×" for r in counts["pair_ratios"])
              + " (median quoted)")
    checks = []
    if ok(counts):
        checks.append(("wall", f"{counts['wall']:.1f} s", f"<= {TARGET_WALL_S:g} s", counts["wall"] <= TARGET_WALL_S))
        checks.append(("peak RSS", f"{counts['rss_mb']:,.0f} MiB", f"<= {TARGET_RSS_MIB / 1024:g} GiB",
                       counts["rss_mb"] <= TARGET_RSS_MIB))
        if ok(bare):
            r = counts["pair_ratio"] if paired else counts["wall"] / bare["wall"]
            checks.append(("counts / bare", f"{r:,.1f}×", f"<= {TARGET_RATIO:g}×", r <= TARGET_RATIO))
    for name, value, target, met in checks:
        print(f"- {name}: {value} (target {target}): {'met' if met else 'NOT met'}")
    if not checks:
        print("- no counts figure: targets not checked")
    return []


def scaling_table(args, clients_list, horizons) -> list[str]:
    problems = []
    print("\n### Scaling table\n")
    print("| clients | horizon | exact s | exact MiB | interval s | interval MiB | counts s | counts MiB | bare s "
          "| interval / bare | counts / bare | interval loss | counts loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clients in clients_list:
        for horizon in horizons:
            m = {k: measure(k, clients, horizon, args.repeats, args.timeout)
                 if k in args.kinds and feasible(k, clients, horizon) else None for k in KINDS}
            ex, iv, co, bare = (m[k] for k in KINDS)
            if ok(ex) and ok(iv):
                for key in ("routed", "lost", "departed", "peak"):
                    if ex[key] != iv[key]:
                        problems.append(f"{clients} x {horizon}: exact and interval differ in {key}: "
                                        f"{ex[key]} vs {iv[key]}")
            print(f"| {clients:,} | {label(horizon)} | {cell(ex, 'wall', '.2f')} | {cell(ex, 'rss_mb', ',.0f')} "
                  f"| {cell(iv, 'wall', '.2f')} | {cell(iv, 'rss_mb', ',.0f')} | {cell(co, 'wall', '.2f')} "
                  f"| {cell(co, 'rss_mb', ',.0f')} | {cell(bare, 'wall', '.3f')} | {ratio(iv, bare)} "
                  f"| {ratio(co, bare)} | {cell(iv, 'loss_ratio', '.3g')} | {cell(co, 'loss_ratio', '.3g')} |",
                  flush=True)
    return problems


def print_plan(args, target, clients_list, horizons) -> None:
    """What the chosen rows would run, without running anything."""
    if args.rows in ("target", "all"):
        kinds = [k for k in ("counts", "bare") if k in args.kinds]
        print(f"target row: {target[0]:,} clients x {label(target[1])}: {', '.join(kinds) or 'nothing'}")
    if args.rows in ("scaling", "all"):
        print("| clients | horizon | messages | " + " | ".join(KINDS) + " |")
        print("|---:|---:|---:|" + ":---:|" * len(KINDS))
        for clients in clients_list:
            for horizon in horizons:
                runs = ["run" if k in args.kinds and feasible(k, clients, horizon) else "—" for k in KINDS]
                print(f"| {clients:,} | {label(horizon)} | {messages(horizon):,.0f} | " + " | ".join(runs) + " |")
    print(f"each measurement: {args.repeats} fresh process(es)")


def revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", choices=("target", "scaling", "all"), default="all",
                    help="the target row, the scaling table, or both (default)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs per measurement, each in a fresh process (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny sizes for a smoke run: target row {QUICK_TARGET[0]} x {QUICK_TARGET[1]}, table "
                         f"{'/'.join(map(str, QUICK_CLIENTS))} clients x {'/'.join(QUICK_HORIZONS)}")
    ap.add_argument("--kinds", type=csv, default=list(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--clients", type=lambda s: [int(c.replace("_", "")) for c in csv(s)],
                    help="scaling table's client counts, comma-separated (default 100,1000,10000)")
    ap.add_argument("--horizons", type=csv, help="scaling table's horizons, comma-separated "
                                                  "(default 1d,7d,30d,1y,10y,uint_max)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before a single run is given up")
    ap.add_argument("--kernels", choices=("auto", "numba", "numpy"), default=None,
                    help="MQTT_SIM_KERNELS for the runs: the counts engine's compiled loops (default: as the environment says)")
    ap.add_argument("--plan", action="store_true", help="print which kinds each row would run, and run nothing")
    args = ap.parse_args()
    if args.kernels:
        _kernels.append(args.kernels)
    bad = [k for k in args.kinds if k not in KINDS]
    if bad:
        ap.error(f"--kinds: {', '.join(bad)} not among {', '.join(KINDS)}")
    clients_list = args.clients or (QUICK_CLIENTS if args.quick else SCALING_CLIENTS)
    horizons = args.horizons or (QUICK_HORIZONS if args.quick else SCALING_HORIZONS)
    target = QUICK_TARGET if args.quick else TARGET
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        ap.error("--repeats: at least 1")
    load_info([*horizons, target[1], COUNTS_LONG_HORIZON])
    if args.plan:
        print_plan(args, target, clients_list, horizons)
        return
    print(f"python {platform.python_version()} on {platform.machine()} ({cpu()}, {os.cpu_count()} CPUs, "
          f"runs on one core); revision {revision()}; {time.strftime('%Y-%m-%d %H:%M %Z')}; median of "
          f"{args.repeats} runs, each in a fresh process; fleet {FLEET.relative_to(ROOT)}, seed 1; "
          f"sim from {Path(_info['sim']).parent}"
          + ("; --quick (tiny sizes)" if args.quick else ""))
    problems = []
    if args.rows in ("target", "all"):
        problems += target_row(args, *target)
    if args.rows in ("scaling", "all"):
        problems += scaling_table(args, clients_list, horizons)
    for p in problems:
        print(f"MISMATCH: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()

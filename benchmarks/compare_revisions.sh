#!/usr/bin/env bash
# Side-by-side throughput of an older revision and the working tree on the shipped scenarios,
# runs alternating between the two so that machine noise hits both alike.
# Usage (from the repository root, after `make install`): benchmarks/compare_revisions.sh OLD_REV [REPEATS]
set -euo pipefail
old=$1; repeats=${2:-5}
tree=$(mktemp -d)/old
git worktree add -q "$tree" "$old"
trap 'git worktree remove --force "$tree"' EXIT
PY=$PWD/.venv/bin/python
one=$(mktemp --suffix=.py)
cat > "$one" <<'PY'
import sys, time
import sim
t0 = time.perf_counter()
res = sim.run(sim.load_scenario(sys.argv[1]), seed=1, record_messages=False, record_events=False, record_memory=False)
print(f"{time.perf_counter() - t0:.4f} {int(res.summary['routed'])} {sim.__file__}")
PY
echo "scenario,revision,median_s,pairs,pairs_per_s"
for f in data/scenarios/*.yaml benchmarks/*.yaml; do
  : > /tmp/_old.txt; : > /tmp/_new.txt
  for _ in $(seq "$repeats"); do
    PYTHONPATH="$tree" "$PY" "$one" "$PWD/$f" >> /tmp/_old.txt
    PYTHONPATH="$PWD" "$PY" "$one" "$PWD/$f" >> /tmp/_new.txt
  done
  for rev in old new; do
    sort -n /tmp/_$rev.txt | awk -v f="$(basename "$f")" -v r="$rev" \
      '{t[NR]=$1; p=$2} END {m=t[int((NR+1)/2)]; printf "%s,%s,%.4f,%d,%.0f\n", f, r, m, p, p/m}'
  done
  grep -q "$tree" /tmp/_old.txt || { echo "old revision was not the one imported" >&2; exit 1; }
done

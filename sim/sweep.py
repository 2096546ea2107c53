"""Experiments: policy grids × replications with common random numbers, and t-intervals.

Every grid cell is validated before the first run. Replication ``r`` of every cell uses the
same run seed (drawn from ``SeedSequence(seed)``), so cells are compared under common random
numbers: the same outages and publishes, only the policy differs. With ``out=`` each finished
run is appended to a CSV file at once (for ``out="x.parquet"``, to ``x.parquet.partial.csv``,
turned into the Parquet file when the sweep completes; needs pyarrow), and a rerun with the
same arguments skips the runs already there, so an interrupted sweep loses no finished run.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import Scenario
from .protocol import DEPARTED_FATES, LOSS_CAUSES
from .run import run
from .units import ScenarioError

#: Summary columns :func:`summarize` gives intervals for by default.
DEFAULT_METRICS = ("loss_ratio", "lost", "routed", "delivered", "duplicates", "memory_peak_bytes",
                   "memory_mean_bytes", "memory_final_bytes", "memory_mean_stranded_bytes",
                   "consumers_with_loss_fraction", "consumer_loss_ratio_p50", "consumer_loss_ratio_p90",
                   "consumer_loss_ratio_p99") + tuple(f"lost_{c}" for c in LOSS_CAUSES) + (
                   "departed_pairs",) + DEPARTED_FATES


def replication_seeds(seed: int, replications: int) -> list[int]:
    """The run seed of each replication: independent streams from one root SeedSequence."""
    return [int(s.generate_state(1, np.uint64)[0] >> np.uint64(1)) for s in np.random.SeedSequence(seed).spawn(replications)]


def grid_cells(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The full factorial of ``grid`` (dotted field path -> values), in a stable order; or,
    given a list of cells (dicts of field path -> value, all with the same keys), those."""
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        cells = [dict(c) for c in grid]
        if not cells or any(not isinstance(c, Mapping) for c in grid) or any(set(c) != set(cells[0]) for c in cells):
            raise ScenarioError("grid", grid, "must be a mapping of field paths to values, or a non-empty list of "
                                "cells with the same field paths")
        return cells
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ScenarioError(f"grid.{key}", values, "must be a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _one(scenario: Scenario, cell: dict[str, Any], replication: int, run_seed: int,
         warmup: float = 0.0) -> dict[str, Any]:
    """One run of the sweep as a row; a run that raises is recorded with its error (its
    metrics empty) and does not stop the others."""
    import warnings

    from .run import WarmupWarning

    row: dict[str, Any] = {**cell, "replication": replication, "run_seed": run_seed}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WarmupWarning)  # said once for the whole sweep
            res = run(scenario.updated(cell) if cell else scenario, seed=run_seed, record_messages=False,
                      record_events=False, record_memory=False, warmup=warmup)
    except Exception as exc:  # noqa: BLE001 - recorded, not lost: the row names it
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row.update({k: v for k, v in res.summary.to_dict().items() if k not in cell})  # a grid value (e.g. horizon) wins
    row["wall_seconds"] = res.wall_seconds
    row["error"] = ""
    return row


def run_columns(grid_keys: Sequence[str]) -> list[str]:
    """The columns of a runs file, in order: grid keys, replication, run_seed, the summary
    fields, wall_seconds and error (empty when the run finished)."""
    from .run import SUMMARY_FIELDS

    return [*grid_keys, "replication", "run_seed", *(f for f in SUMMARY_FIELDS if f not in grid_keys),
            "wall_seconds", "error"]


class RunsFile:
    """An append-only CSV of finished runs that survives being killed at any instant.

    Each run is appended as one complete line by a single ``os.write`` of the whole line (the
    header with the first one). Reading it back, a trailing line without its newline — a
    row torn by a kill in the middle of writing it — is cut off the file and not read as
    data; its run is simply run again.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns

    def read(self) -> pd.DataFrame | None:
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):  # a torn trailing row (or header): drop it from the file too
            with open(self.path, "r+b") as f:
                f.truncate(cut)
        if cut == 0:
            return None
        import io

        df = pd.read_csv(io.BytesIO(data[:cut]))
        self.columns = list(df.columns)  # a file written by an earlier version keeps its own columns
        return df

    def append(self, row: Mapping[str, Any]) -> None:
        header = not self.path.exists() or self.path.stat().st_size == 0
        line = pd.DataFrame([[row.get(c) for c in self.columns]], columns=self.columns).to_csv(index=False,
                                                                                                header=header)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = line.encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)


def _key(cell: Mapping[str, Any], replication: int) -> str:
    return json.dumps([{k: cell[k] for k in sorted(cell)}, replication], default=str, sort_keys=True)


def sweep(scenario: Scenario, grid: Mapping[str, Sequence[Any]] | None = None, replications: int | str = 10,
          seed: int = 0, jobs: int = 1, out: str | Path | None = None, progress: bool = True, warmup: float = 0.0,
          precision: Mapping[str, Any] | None = None, backend: str = "processes",
          scheduler: str | None = None) -> pd.DataFrame:
    """Run every grid cell ``replications`` times; one row per run (grid values, replication, summary).

    ``grid`` maps dotted field paths (``"mqttConsumer.session expiry interval"``) to lists of
    values. ``jobs`` > 1 runs in that many processes; results do not depend on it.
    ``warmup`` (seconds) is passed to every :func:`sim.run`.

    ``replications="auto"`` adds replications to each grid point until the 95 % t-interval of
    ``precision["metric"]`` (default ``loss_ratio``) has a half-width of at most
    ``precision["relative"]`` (default 0.1) times its mean, starting from ``precision["min"]``
    (default 5) and never beyond ``precision["max"]`` (default 100) replications. Replication
    ``r`` still uses the same seed in every cell (common random numbers). The precision
    reached per grid point is in ``df.attrs["precision"]`` (see :func:`precision_table`).

    ``backend``: ``"processes"`` (default: in this process for ``jobs=1``, else a local
    process pool of ``jobs``) or ``"dask"`` (Dask distributed: the scheduler at ``scheduler``,
    e.g. ``"tcp://10.0.0.5:8786"``, or a ``LocalCluster`` of ``jobs`` single-threaded workers
    when none is given; needs ``pip install 'mqtt-session-sim[dask]'``). Rows are the same
    whatever the backend; results are written by this process only, so a worker that dies
    mid-sweep loses no run (Dask runs its tasks again elsewhere) and repeats none.
    """
    if backend not in ("processes", "dask"):
        raise ValueError(f"backend: {backend!r} is not one of processes, dask")
    if scheduler is not None and backend != "dask":
        raise ValueError("scheduler: only with backend='dask'")
    auto = replications == "auto"
    if auto:
        prec = _precision_spec(precision)
        replications = prec["min"]
    elif precision is not None:
        raise ValueError("precision: only with replications='auto'")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise ValueError(f"replications: {replications!r} must be an integer >= 1, or 'auto'")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: {jobs!r} must be an integer >= 1")
    cells = grid_cells(grid if grid is not None else {})
    keys = list(cells[0]) if cells else []
    for cell in cells:  # validate every cell before any simulation
        scenario.updated(cell)
    if warmup:
        _warn_warmup_once(scenario, cells, warmup)
    seeds = replication_seeds(seed, prec["max"] if auto else replications)
    todo = [(cell, r) for cell in cells for r in range(replications)]
    rows: list[dict[str, Any]] = []
    final = Path(out) if out is not None else None
    parquet = final is not None and final.suffix == ".parquet"
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError("out: a .parquet file needs pyarrow (pip install 'mqtt-session-sim[parquet]'); "
                              "or give a .csv path") from None
    # finished runs are appended to a CSV at once (for .parquet: a .partial.csv beside it)
    path = final.with_name(final.name + ".partial.csv") if parquet else final
    runs_file = RunsFile(path, run_columns(keys)) if path is not None else None
    done_frames = []
    if parquet and final.exists():
        done_frames.append(pd.read_parquet(final))
    if runs_file is not None:
        partial = runs_file.read()
        if partial is not None:
            done_frames.append(partial)
    if done_frames:
        done = pd.concat(done_frames, ignore_index=True)
        seen: set[str] = set()
        for row in done.to_dict("records"):
            k = _key({c: _restore(row[c]) for c in keys}, int(row["replication"]))  # per-column dtypes kept
            if k not in seen:  # a run in both the Parquet file and its partial CSV counts once
                seen.add(k)
                rows.append(row)
        todo = [(c, r) for c, r in todo if _key(c, r) not in seen]
    runner = _DaskRunner(scheduler, jobs) if backend == "dask" else None
    try:
        _sweep_runs(scenario, cells, keys, todo, seeds, warmup, jobs, rows, runs_file, progress, auto,
                    prec if auto else None, runner)
    finally:
        if runner is not None:
            runner.close()
    df = _frame(rows, runs_file, keys)
    df["error"] = df["error"].fillna("").astype(str) if "error" in df.columns else ""
    order = keys + ["replication"]
    df = df.sort_values(order, kind="stable", key=lambda s: s.map(str) if s.dtype == object else s).reset_index(drop=True)
    df.attrs["grid"] = keys
    if auto:
        df.attrs["precision"] = precision_table(df, prec["metric"], keys)
    if parquet:  # written whole under another name, then renamed: never a half-written Parquet file
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, final)
        path.unlink(missing_ok=True)
    return df


def _sweep_runs(scenario, cells, keys, todo, seeds, warmup, jobs, rows, runs_file, progress, auto, prec,
                runner) -> None:
    _run_all(scenario, todo, seeds, warmup, jobs, rows, runs_file, progress, runner)
    while auto:  # more replications where the interval is still too wide
        have = _frame(rows, runs_file, keys)
        more = []
        for cell in cells:
            mine = _cell_rows(have, cell, keys)
            n_now = int(mine["replication"].max() + 1) if len(mine) else 0
            more += [(cell, r) for r in range(n_now, _replications_needed(mine, prec, n_now))]
        if not more:
            return
        _run_all(scenario, more, seeds, warmup, jobs, rows, runs_file, progress, runner)


def _run_all(scenario, todo, seeds, warmup, jobs, rows, runs_file, progress, runner=None) -> None:
    bar = _progress(len(todo), progress)
    try:
        if runner is not None:
            for row in runner.map(scenario, todo, seeds, warmup):
                _keep(rows, row, runs_file, bar)
        elif jobs == 1:
            for cell, r in todo:
                _keep(rows, _one(scenario, cell, r, seeds[r], warmup), runs_file, bar)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_one, scenario, cell, r, seeds[r], warmup) for cell, r in todo]
                for fut in as_completed(futures):
                    _keep(rows, fut.result(), runs_file, bar)
    finally:
        if bar is not None:
            bar.close()


def _batch(scenario: Scenario, items: list, warmup: float) -> list[dict[str, Any]]:
    return [_one(scenario, cell, r, seed, warmup) for cell, r, seed in items]


def _guided(n: int, workers: int, share: int = 4, largest: int = 64) -> list[tuple[int, int]]:
    """``[start, end)`` bounds of batches over ``n`` runs, guided self-scheduling style: each
    batch takes ``1 / (share * workers)`` of the runs still unassigned (at most ``largest``,
    at least one), so batch sizes fall towards one at the end of the sweep."""
    out, i = [], 0
    while i < n:
        size = max(1, min(largest, (n - i) // (share * workers)))
        out.append((i, i + size))
        i += size
    return out


class _DaskRunner:
    """Runs of a sweep on Dask distributed: an existing scheduler, or a local cluster."""

    def __init__(self, scheduler: str | None, jobs: int):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("backend: 'dask' needs dask distributed (pip install 'mqtt-session-sim[dask]')") from None
        self.cluster = None
        if scheduler is None:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler, timeout="30s")

    def map(self, scenario, todo, seeds, warmup):
        """Each run's row as its batch finishes. Runs go to the workers in batches that shrink as
        the sweep proceeds (:func:`_guided`: the scheduler's per-task cost is spread over many
        runs early, and the last batches are single runs, so no worker idles long at the end); a batch
        whose worker dies is run again by the scheduler on another worker, and its rows reach
        this process once."""
        from distributed import as_completed as dask_completed

        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        batches = [[(cell, r, seeds[r]) for cell, r in todo[i:j]] for i, j in _guided(len(todo), workers)]
        scn = self.client.scatter(scenario, broadcast=True)
        futures = [self.client.submit(_batch, scn, b, warmup, pure=False, retries=3) for b in batches]
        for fut in dask_completed(futures):
            yield from fut.result()
            fut.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _precision_spec(precision: Mapping[str, Any] | None) -> dict[str, Any]:
    from .run import SUMMARY_FIELDS

    p = {"metric": "loss_ratio", "relative": 0.1, "min": 5, "max": 100, **dict(precision or {})}
    unknown = set(p) - {"metric", "relative", "min", "max"}
    if unknown:
        raise ValueError(f"precision: unknown keys {sorted(unknown)}; allowed: metric, relative, min, max")
    if p["metric"] not in SUMMARY_FIELDS:
        raise ValueError(f"precision.metric: {p['metric']!r} is not a summary field")
    if not (isinstance(p["relative"], (int, float)) and 0 < p["relative"] < 1):
        raise ValueError(f"precision.relative: {p['relative']!r} must be between 0 and 1 (e.g. 0.1 = +-10 %)")
    for k in ("min", "max"):
        if isinstance(p[k], bool) or not isinstance(p[k], int) or p[k] < 2:
            raise ValueError(f"precision.{k}: {p[k]!r} must be an integer >= 2")
    if p["max"] < p["min"]:
        raise ValueError(f"precision.max: {p['max']!r} must be >= precision.min ({p['min']})")
    return p


def _frame(rows, runs_file, keys) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=runs_file.columns if runs_file is not None else run_columns(keys))


def _cell_rows(df: pd.DataFrame, cell: Mapping[str, Any], keys: list[str]) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k in keys:
        mask &= df[k].map(lambda v, want=cell[k]: _key({"v": _restore(v)}, 0) == _key({"v": want}, 0)).to_numpy()
    return df[mask]


def _half_width(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, half-width of the 95 % t-interval (:func:`t_interval`, not truncated), relative
    half-width; 0 when there is no spread, inf with fewer than two values)."""
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return (float(np.mean(x)) if len(x) else math.nan), math.inf, math.inf
    mean, lo, hi = t_interval(x, 0.95)
    h = (hi - lo) / 2
    rel = 0.0 if h == 0 else (h / abs(mean) if mean != 0 else math.inf)
    return mean, h, rel


def _replications_needed(cell_runs: pd.DataFrame, prec, n_now: int) -> int:
    """How many replications a cell (its runs so far) should have: more (at most ``max``)
    while the interval is too wide, by the usual 1/sqrt(n) scaling from what it has."""
    _, _, rel = _half_width(cell_runs[prec["metric"]].to_numpy(dtype=float))
    if rel <= prec["relative"] or n_now >= prec["max"]:
        return n_now
    grow = math.ceil(n_now * (rel / prec["relative"]) ** 2) if math.isfinite(rel) else 2 * n_now
    return min(prec["max"], max(n_now + 1, grow))


def precision_table(runs: pd.DataFrame, metric: str = "loss_ratio", by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per grid point: replications ``n``, the metric's ``mean``, the 95 % t-interval's
    ``half_width`` and ``relative`` half-width (0 when every replication agrees)."""
    keys = list(by) if by is not None else grid_columns(runs)
    out = []
    groups = runs.groupby(keys, sort=False, dropna=False) if keys else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        mean, h, rel = _half_width(g[metric].to_numpy(dtype=float))
        out.append({**dict(zip(keys, key)), "n": len(g), "metric": metric, "mean": mean, "half_width": h,
                    "relative": rel})
    return pd.DataFrame(out)


def _warn_warmup_once(scenario: Scenario, cells: list[dict], warmup: float) -> None:
    import warnings

    from .run import WarmupWarning, _warn_short_warmup

    short = 0
    for cell in cells:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", WarmupWarning)
            _warn_short_warmup(scenario.updated(cell) if cell else scenario, warmup)
        short += bool(caught)
    if short:
        warnings.warn(f"warmup {warmup:g} s is shorter than the longest finite session expiry interval plus the mean "
                      f"outage in {short} of {len(cells)} policies: their first measured stretch is not yet in steady "
                      "state (docs/model.md, 'Warm-up')", WarmupWarning, stacklevel=3)


def _restore(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _keep(rows: list, row: dict, runs_file: RunsFile | None, bar) -> None:
    rows.append(row)
    if runs_file is not None:
        runs_file.append(row)
    if bar is not None:
        bar.update(1)


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm  # plain text bar: works in terminals and notebooks without ipywidgets

    return tqdm(total=total, desc="runs", unit="run")


def summarize(df: pd.DataFrame, by: Sequence[str] | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
              confidence: float = 0.95) -> pd.DataFrame:
    """Mean and confidence interval over replications per grid point: ``<metric>``,
    ``<metric>_ci_low``, ``<metric>_ci_high``, and ``n``.

    ``by`` defaults to the grid keys (:func:`grid_columns`): those :func:`sweep` recorded in
    ``df.attrs["grid"]``, or, for a runs frame read back from a file, the columns named by a
    dotted field path (``mqttConsumer.session expiry interval``) and ``horizon``. Columns
    you add yourself are not grouped by unless you name them in ``by``.

    Intervals are Student t intervals (scipy.stats.t, n-1 degrees of freedom) truncated to
    the range the metric can take (:data:`sim.run.SUMMARY_FIELDS`: ratios in [0, 1], counts
    and bytes >= 0). Truncation only removes values the metric cannot have, so it keeps the
    t-interval's coverage; it does not cure the t-interval's optimism for skewed metrics with
    few replications (a loss ratio near 0 with n = 5): use more replications there. With one
    replication, or no variation, the interval is the mean itself.
    """
    from .run import SUMMARY_FIELDS

    if by is None:
        by = grid_columns(df)
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise KeyError(f"metrics: {missing} are not columns of the runs frame")
    out = []
    groups = df.groupby(list(by), sort=False, dropna=False) if by else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(g)
        for m in metrics:
            x = g[m].astype(float).to_numpy()
            lower, upper = SUMMARY_FIELDS.get(m, (-np.inf, np.inf))
            row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = t_interval(x, confidence, lower, upper)
        out.append(row)
    return pd.DataFrame(out)


def grid_columns(df: pd.DataFrame) -> list[str]:
    """The grid keys of a runs frame: ``df.attrs["grid"]`` as :func:`sweep` sets it, else the
    columns with a dotted field path, plus ``horizon`` when it varies (a top-level scenario
    key, in every summary, that is only a grid key when it takes several values)."""
    grid = df.attrs.get("grid")
    if grid is not None:
        return [c for c in grid if c in df.columns]
    return [c for c in df.columns if isinstance(c, str) and "." in c
            or (c == "horizon" and df[c].nunique(dropna=False) > 1)]


def t_interval(x: np.ndarray, confidence: float = 0.95, lower: float = -np.inf,
               upper: float = np.inf) -> tuple[float, float, float]:
    """(mean, low, high): the Student t interval for the mean of ``x``, truncated to
    [``lower``, ``upper``]. NaN values are left out; all NaN gives NaN."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(x))
    sem = float(stats.sem(x)) if len(x) > 1 else 0.0
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    return mean, float(min(max(lo, lower), upper)), float(max(min(hi, upper), lower))

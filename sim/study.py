"""A study described in a file: the scenario, the policy grid, replications, seed, warm-up, out.

``mqtt-sim sweep data/sweeps/expiry_policy.yaml`` or ``sim.load_study(path).run()``::

    scenario: ../scenarios/uint_max_fleet.yaml   # a path (relative to this file) or an inline scenario
    grid:                                        # every combination of these axes (product)
      mqttConsumer.session expiry interval: {logspace: [1, 30d], points: 8, include: [0, uint_max]}
      mqttConsumer.clean start: [false, true]
    zip:                                         # optional: axes varied together, value by value
      broker.max queued messages: [100, 1000]    #   (combined with the grid as a product)
      broker.queue full policy: [drop-new, drop-oldest]
    replications: 10                             # or auto, with precision: {metric: loss_ratio, relative: 0.1, max: 100}
    seed: 1
    warmup: 1d                                   # optional, seconds or a duration
    jobs: 2                                      # optional
    out: ../results/expiry_policy.parquet        # optional, relative to this file

Keys are accepted in the same spellings as scenarios; a grid axis is a dotted field path in
any spelling, with a list of values or a ``{logspace: [low, high], points: n, include: [...]}``
helper: ``n`` values spaced evenly on a log scale from ``low`` to ``high`` (durations;
rounded to whole seconds when both ends are whole, as Session Expiry Intervals must be),
plus the ``include`` values (``0`` and ``uint_max`` are the usual ones), sorted, each once.
Everything, every grid cell included, is validated before the first run, and errors name
the field as scenario errors do (``sweep.grid.mqttConsumer.session expiry interval.points``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from .config import Scenario, _StrictLoader, load_scenario
from .protocol import UINT_MAX
from .units import ScenarioError, as_mapping, check_keys, parse_duration, parse_int, subfield

_KEYS = {"name", "description", "scenario", "grid", "zip", "replications", "precision", "seed", "warmup", "jobs",
         "out"}
_LOGSPACE_KEYS = {"logspace", "points", "include"}


@dataclass(frozen=True)
class Study:
    """A validated study: run it with :meth:`run`."""

    name: str
    scenario: Scenario
    cells: tuple[dict, ...]  # every policy to run (grid x zip), validated
    axes: tuple[str, ...]  # the grid and zip keys, in order
    replications: int | str  # or "auto" (see precision)
    seed: int
    warmup: float
    jobs: int
    out: Path | None
    precision: dict | None = None  # with replications "auto": metric, relative, min, max

    def run(self, progress: bool = True, jobs: int | None = None, out: str | Path | None = None,
            scheduler: str | None = None):
        """Run the study with :func:`sim.sweep` (on a Dask scheduler when ``scheduler`` is given);
        returns its runs frame."""
        from .sweep import sweep

        return sweep(self.scenario, list(self.cells), replications=self.replications, seed=self.seed,
                     jobs=jobs or self.jobs, out=out if out is not None else self.out, progress=progress,
                     warmup=self.warmup, precision=self.precision,
                     backend="dask" if scheduler else "processes", scheduler=scheduler)


def is_study_file(path: str | Path) -> bool:
    """Whether a YAML file describes a study (it has a ``scenario`` and a ``grid`` or ``zip``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(data, Mapping):
        return False
    keys = {str(k).strip().lower() for k in data}
    return "scenario" in keys and ("grid" in keys or "zip" in keys)


def load_study(source: str | Path | Mapping[str, Any], base_dir: str | Path | None = None) -> Study:
    """Load and validate a study from a YAML file or a dict; raises :class:`ScenarioError`."""
    where = "sweep"
    if isinstance(source, Mapping):
        data, base = source, Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ScenarioError(where, str(source), "is not an existing YAML file")
        try:
            data = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as exc:
            raise ScenarioError(where, str(source), f"is not valid YAML: {exc}".replace("\n", " ")) from None
        base = path.resolve().parent
    d = as_mapping(data, where)
    check_keys(d, _KEYS, where)
    if "scenario" not in d:
        raise ScenarioError(subfield(where, "scenario"), None, "is missing: a scenario file path or an inline scenario")
    scn = d["scenario"]
    if isinstance(scn, str):
        p = Path(scn)
        scenario = load_scenario(p if p.is_absolute() else base / p)
    elif isinstance(scn, Mapping):
        scenario = Scenario.from_dict(scn, base_dir=base)
    else:
        raise ScenarioError(subfield(where, "scenario"), scn, "must be a scenario file path or a mapping")
    grid = _axes(d.get("grid"), f"{where}.grid")
    zipped = _axes(d.get("zip"), f"{where}.zip")
    if not grid and not zipped:
        raise ScenarioError(subfield(where, "grid"), None, "is missing: give a grid (or zip) of policies to compare")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ScenarioError(f"{where}.zip", {k: len(v) for k, v in zipped.items()},
                            "axes varied together must have the same number of values")
    overlap = set(grid) & set(zipped)
    if overlap:
        raise ScenarioError(f"{where}.zip.{sorted(overlap)[0]}", None, "is also a grid axis: give it in one place")
    rows = [dict(zip(zipped, vals)) for vals in zip(*zipped.values())] if zipped else [{}]
    cells = tuple({**dict(zip(grid, combo)), **row}
                  for combo in itertools.product(*grid.values()) for row in rows)
    for cell in cells:  # every cell validated before anything runs
        scenario.updated(cell)
    reps = d.get("replications", 10)
    if isinstance(reps, str) and reps.strip().lower() == "auto":
        replications: int | str = "auto"
        from .sweep import _precision_spec

        try:
            precision = _precision_spec(as_mapping(d.get("precision"), subfield(where, "precision")))
        except ValueError as exc:
            raise ScenarioError(subfield(where, "precision"), d.get("precision"), str(exc)) from None
    else:
        replications = parse_int(reps, subfield(where, "replications"), 1)
        precision = None
        if "precision" in d:
            raise ScenarioError(subfield(where, "precision"), d["precision"], "goes with replications: auto")
    seed = parse_int(d.get("seed", 0), subfield(where, "seed"), 0)
    jobs = parse_int(d.get("jobs", 1), subfield(where, "jobs"), 1)
    warmup = parse_duration(d.get("warmup", 0), subfield(where, "warmup"), allow_zero=True)
    if warmup >= scenario.horizon:
        raise ScenarioError(subfield(where, "warmup"), d.get("warmup"), f"must be below the horizon ({scenario.horizon:g} s)")
    out = d.get("out")
    if out is not None:
        if not isinstance(out, str) or not out.endswith((".csv", ".parquet")):
            raise ScenarioError(subfield(where, "out"), out, "must be a .csv or .parquet file path")
        out = Path(out) if Path(out).is_absolute() else base / out
    name = d.get("name", scenario.name)
    if not isinstance(name, str) or not name:
        raise ScenarioError(subfield(where, "name"), name, "must be a non-empty string")
    return Study(name, scenario, cells, tuple(grid) + tuple(zipped), replications, seed, warmup, jobs, out, precision)


def _axes(value: Any, where: str) -> dict[str, list]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(where, value, "must be a mapping of field paths to lists of values")
    out: dict[str, list] = {}
    for key, values in value.items():
        field = f"{where}.{key}"
        if isinstance(values, Mapping):
            values = logspace_axis(values, field)
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
            raise ScenarioError(field, values, "must be a non-empty list of values, or {logspace: [low, high], points: n}")
        out[str(key)] = list(values)
    return out


def _interval_value(v: Any, field: str) -> float:
    if isinstance(v, str) and v.strip().lower() in ("uint_max", "uint-max", "uintmax"):
        return float(UINT_MAX)
    return parse_duration(v, field, allow_zero=True)


def logspace_axis(spec: Mapping[str, Any], field: str) -> list:
    """``{logspace: [low, high], points: n, include: [...]}`` -> the axis's values (see module doc)."""
    d = {str(k).strip().lower(): v for k, v in spec.items()}
    unknown = set(d) - _LOGSPACE_KEYS
    if unknown:
        raise ScenarioError(f"{field}.{sorted(unknown)[0]}", d[sorted(unknown)[0]],
                            f"is an unknown key; allowed: {', '.join(sorted(_LOGSPACE_KEYS))}")
    ends = d.get("logspace")
    if not isinstance(ends, (list, tuple)) or len(ends) != 2:
        raise ScenarioError(f"{field}.logspace", ends, "must be [low, high], two durations > 0")
    lo = _interval_value(ends[0], f"{field}.logspace[0]")
    hi = _interval_value(ends[1], f"{field}.logspace[1]")
    if not 0 < lo < hi:
        raise ScenarioError(f"{field}.logspace", ends, "must have 0 < low < high")
    points = parse_int(d.get("points", 8), f"{field}.points", 2, 1000)
    values = np.geomspace(lo, hi, points)
    whole = float(lo).is_integer() and float(hi).is_integer()
    vals: list = [int(round(v)) for v in values] if whole else [float(v) for v in values]
    if whole:
        vals[0], vals[-1] = int(lo), int(hi)  # the ends exactly, whatever the rounding
    include = d.get("include", [])
    if not isinstance(include, (list, tuple)):
        raise ScenarioError(f"{field}.include", include, "must be a list of values")
    for i, v in enumerate(include):
        x = _interval_value(v, f"{field}.include[{i}]")
        vals.append(int(x) if x.is_integer() else x)
    out = sorted(set(vals))
    if any(not math.isfinite(v) for v in out):
        raise ScenarioError(field, spec, "gives values that are not finite")
    return out

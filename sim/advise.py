"""The policy advisor: the least-memory policy that meets a loss target and a memory budget.

``sim.advise(scenario, max_loss_ratio=0.001, memory_budget="2GiB")`` sweeps the Session
Expiry Interval from 0 to UINT_MAX ("never") on a log axis, for each Clean Start (and QoS)
asked for, with replications under common random numbers; then, for each combination, it
bisects the expiry between the largest interval that surely misses the target and the
smallest that meets it, so the answer is not limited to grid points. A policy *meets* the
target when the upper end of its loss ratio's confidence interval is at most
``max_loss_ratio``, and *fits* the budget when the upper end of its peak memory's interval is
at most ``memory_budget``. Among those, the pick is the one with the least mean memory.

The result (:class:`Advice`) holds the pick (or None, with the nearest candidates and what
they cost), every evaluated policy, the loss–memory Pareto frontier, the bracket within
which the smallest expiry meeting the target lies (the resolution of the answer), a
one-paragraph explanation computed from these numbers; :func:`sim.plots.advice_figure` draws it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .config import Scenario
from .protocol import UINT_MAX
from .sweep import summarize, sweep

E = "mqttConsumer.session expiry interval"
CS = "mqttConsumer.clean start"
QOS = "mqttConsumer.qos"
DEFAULT_EXPIRIES = (0, 1, 10, 60, 600, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400, UINT_MAX)
_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, field: str = "memory_budget") -> float:
    """``2GiB``, ``500 MiB``, ``1e9`` -> bytes (KiB, MiB, GiB, TiB binary; kB, MB, GB, TB decimal)."""
    from .units import ScenarioError

    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value):
        return float(value)
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(value))
    if m and m.group(2).lower() in _UNITS | {"": 1}:
        try:
            x = float(m.group(1)) * _UNITS.get(m.group(2).lower(), 1)
        except ValueError:
            x = -1
        if x > 0 and math.isfinite(x):
            return x
    raise ScenarioError(field, value, "must be a size in bytes > 0, e.g. 500MiB or 2GiB")


def parse_ratio(value: Any, field: str = "max_loss_ratio") -> float:
    """``0.001`` or ``0.1%`` -> 0.001."""
    from .units import ScenarioError

    text = str(value).strip()
    try:
        x = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        x = -1.0
    if isinstance(value, bool) or not 0 <= x < 1:
        raise ScenarioError(field, value, "must be a loss ratio in [0, 1), e.g. 0.001 or 0.1%")
    return x


@dataclass
class Advice:
    pick: dict | None  #: the recommended policy's row (grid values and statistics), or None
    policies: pd.DataFrame  #: every evaluated policy: means and interval bounds, meets/fits flags
    frontier: pd.DataFrame  #: the loss–memory Pareto frontier among them
    brackets: pd.DataFrame  #: per Clean Start/QoS: the expiry bracket of the smallest one meeting the target
    explanation: str
    max_loss_ratio: float
    memory_budget: float | None
    confidence: float
    runs: pd.DataFrame = field(repr=False, default=None)  #: every run (a sweep's runs frame)


def advise(scenario: Scenario, max_loss_ratio: Any, memory_budget: Any = None, confidence: float = 0.95,
           clean_start: Sequence[bool] = (False, True), qos: Sequence[int] | None = None,
           expiries: Sequence[int] | None = None, replications: int = 10, seed: int = 0, jobs: int = 1,
           refine: int = 8, progress: bool = True) -> Advice:
    """Recommend a Session Expiry Interval and Clean Start (and QoS) for ``scenario``."""
    target = parse_ratio(max_loss_ratio)
    budget = parse_bytes(memory_budget) if memory_budget is not None else None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence!r} must be between 0 and 1")
    axis = sorted(set(int(e) for e in (expiries if expiries is not None else DEFAULT_EXPIRIES)))
    combos = [{CS: bool(c)} for c in clean_start]
    if qos is not None:
        combos = [{**c, QOS: int(q)} for c in combos for q in qos]
    cells = [{E: e, **c} for c in combos for e in axis]
    runs = [sweep(scenario, cells, replications=replications, seed=seed, jobs=jobs, progress=progress)]
    keys = list(cells[0])
    brackets = []
    for combo in combos:
        for step in range(refine + 1):  # bisect until the boundary is narrow, or no step is left
            table = _table(pd.concat(runs, ignore_index=True), keys, confidence, target, budget)
            mine = table[np.logical_and.reduce([table[k] == v for k, v in combo.items()])].sort_values(E)
            mid = None if step == refine else _next_expiry(mine)
            if mid is None:
                lo, hi = _bracket(mine)
                brackets.append({**combo, "surely_missing": lo, "meeting": hi})
                break
            runs.append(sweep(scenario, [{E: mid, **combo}], replications=replications, seed=seed, jobs=jobs,
                              progress=False))
    all_runs = pd.concat(runs, ignore_index=True)
    table = _table(all_runs, keys, confidence, target, budget)
    ok = table[table["meets"] & table["fits"]]
    pick = ok.sort_values(["memory_mean_bytes", E]).iloc[0].to_dict() if len(ok) else None
    frontier = pareto(table)
    brackets_df = pd.DataFrame(brackets)
    text = _explain(pick, table, brackets_df, target, budget, confidence)
    return Advice(pick, table, frontier, brackets_df, text, target, budget, confidence, all_runs)


def _table(runs: pd.DataFrame, keys: list[str], confidence: float, target: float, budget: float | None) -> pd.DataFrame:
    t = summarize(runs, by=keys, metrics=("loss_ratio", "memory_mean_bytes", "memory_peak_bytes"),
                  confidence=confidence)
    t["meets"] = t["loss_ratio_ci_high"] <= target
    t["surely_misses"] = t["loss_ratio_ci_low"] > target
    t["fits"] = True if budget is None else t["memory_peak_bytes_ci_high"] <= budget
    return t.sort_values(keys[1:] + [E]).reset_index(drop=True)


def _next_expiry(mine: pd.DataFrame) -> int | None:
    """The expiry to evaluate next for one Clean Start/QoS (its rows, by expiry): halfway, on a
    log scale, between the largest interval not meeting the target and the smallest meeting
    it; None when there is nothing left to narrow (5 % or 1 s apart, or no such pair)."""
    hi = _bracket(mine)[1]
    if hi is None:
        return None
    missing = mine[(mine[E] < hi) & ~mine["meets"]]
    if not len(missing):
        return None
    lo = int(missing[E].max())
    if hi - lo <= max(1, 0.05 * hi):
        return None
    mid = int(round(math.sqrt(lo * hi))) if lo > 0 else max(1, hi // 10)
    if not lo < mid < hi:
        mid = (lo + hi) // 2
    if mid in set(mine[E]) or not lo < mid < hi:
        return None
    return mid


def _bracket(mine: pd.DataFrame) -> tuple[int | None, int | None]:
    """(largest expiry that surely misses the target below the smallest meeting one, that one)."""
    meeting = mine[mine["meets"]]
    if not len(meeting):
        return None, None
    hi = int(meeting[E].min())
    below = mine[(mine[E] < hi) & mine["surely_misses"]]
    lo = int(below[E].max()) if len(below) else None
    return lo, hi


def pareto(table: pd.DataFrame, loss: str = "loss_ratio", memory: str = "memory_mean_bytes") -> pd.DataFrame:
    """The policies no other beats on both loss and memory (lower is better), by memory."""
    t = table.sort_values([memory, loss]).reset_index(drop=True)
    keep, best = [], math.inf
    for i, row in t.iterrows():
        if row[loss] < best:
            keep.append(i)
            best = row[loss]
    return t.loc[keep].reset_index(drop=True)


def _fmt_e(e: Any) -> str:
    if e is None or (isinstance(e, float) and math.isnan(e)):
        return "none"
    e = int(e)
    if e == UINT_MAX:
        return "never (UINT_MAX)"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if e >= size and e % size == 0:
            return f"{e // size} {unit}"
    return f"{e} s"


def _fmt_b(x: float) -> str:
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(x) >= size:
            return f"{x / size:,.3g} {unit}"
    return f"{x:,.0f} B"


def _policy(row: dict) -> str:
    text = f"Session Expiry Interval {_fmt_e(row[E])}, Clean Start {'1' if row[CS] else '0'}"
    return text + (f", QoS {int(row[QOS])}" if QOS in row else "")


def _explain(pick, table, brackets, target, budget, confidence) -> str:
    level = f"{100 * confidence:g} %"
    goal = f"a loss ratio of at most {100 * target:.3g} % (upper end of the {level} interval)"
    if budget is not None:
        goal += f" and a peak broker memory of at most {_fmt_b(budget)}"
    n = len(table)
    if pick is None:
        near = table.sort_values("loss_ratio_ci_high").head(3)
        costs = "; ".join(f"{_policy(r)}: loss up to {100 * r['loss_ratio_ci_high']:.3g} %, peak memory up to "
                          f"{_fmt_b(r['memory_peak_bytes_ci_high'])}" for r in near.to_dict("records"))
        return (f"No policy of the {n} evaluated meets {goal}. The nearest candidates are: {costs}. "
                "Loosen the loss target or the memory budget, or reduce the outages the fleet sees.")
    bracket_row = None
    for b in brackets.to_dict("records"):
        if all(b[k] == pick[k] for k in b if k in (CS, QOS)):
            bracket_row = b
    res = ""
    if bracket_row is not None and bracket_row["meeting"] is not None:
        lo = bracket_row["surely_missing"]
        res = (f" The smallest interval meeting the target lies between {_fmt_e(lo)} (which surely misses it) "
               f"and {_fmt_e(bracket_row['meeting'])}." if lo is not None else
               f" Every interval evaluated up to {_fmt_e(bracket_row['meeting'])} could meet it.")
    row = pick
    return (f"Recommended: {_policy(row)}. Of the {n} policies evaluated it is the one with the least broker "
            f"memory ({_fmt_b(row['memory_mean_bytes'])} on average, peak up to {_fmt_b(row['memory_peak_bytes_ci_high'])}) "
            f"that meets {goal}: its loss ratio is {100 * row['loss_ratio']:.3g} % "
            f"({level} interval up to {100 * row['loss_ratio_ci_high']:.3g} %).{res}")

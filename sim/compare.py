"""Policies compared with a baseline, pair by pair under common random numbers.

Replication ``r`` of every grid cell of a :func:`sim.sweep` uses the same run seed, so the
cells see the same outages and publishes: the per-replication difference between a policy
and the baseline cancels that shared noise. :func:`compare` gives, per policy and metric,
the mean paired difference with its Student t interval (``scipy.stats.ttest_rel``), the
Welch interval that ignores the pairing (``scipy.stats.ttest_ind``, unequal variances) for
comparison, and Bonferroni-adjusted confidence when several policies are compared with the
same baseline (each interval at ``1 - (1 - confidence) / m`` for ``m`` policies, so all ``m``
hold together with probability at least ``confidence``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .sweep import grid_columns


def compare(runs: pd.DataFrame, baseline: Mapping[str, Any], metrics: Sequence[str] = ("loss_ratio",),
            confidence: float = 0.95, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Each policy (grid cell) of ``runs`` against ``baseline``, one row per (policy, metric).

    ``runs``: a :func:`sim.sweep` frame (or its file read back). ``baseline``: the grid values
    of the reference policy, e.g. ``{"mqttConsumer.session expiry interval": 3600,
    "mqttConsumer.clean start": False}`` (grid keys not named must have one value). Pairs are
    the replications both cells ran without error. Columns: the policy's grid values,
    ``metric``, ``n`` (pairs), ``baseline``, ``policy`` (means over the pairs),
    ``difference`` (policy - baseline), ``ci_low``, ``ci_high`` (paired t interval at the
    adjusted confidence), ``p_value`` (paired t test, Bonferroni-adjusted, capped at 1),
    ``unpaired_ci_low``, ``unpaired_ci_high`` (Welch, same confidence), ``confidence``
    (adjusted) and ``significant`` (the paired interval excludes 0).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence!r} must be between 0 and 1")
    keys = list(by) if by is not None else grid_columns(runs)
    if not keys:
        raise ValueError("runs: no grid columns to tell the policies apart (pass by=[...])")
    unknown = [k for k in baseline if k not in keys]
    if unknown:
        raise KeyError(f"baseline: {unknown} are not grid columns of the runs ({keys})")
    missing = [m for m in metrics if m not in runs.columns]
    if missing:
        raise KeyError(f"metrics: {missing} are not columns of the runs")
    ok = runs[runs["error"].fillna("").astype(str) == ""] if "error" in runs.columns else runs
    cells = [(k if isinstance(k, tuple) else (k,), g.set_index("replication"))
             for k, g in ok.groupby(keys, sort=False, dropna=False)]
    base_cells = [i for i, (k, _) in enumerate(cells) if all(_same(k[keys.index(c)], v) for c, v in baseline.items())]
    if len(base_cells) != 1:
        raise ValueError(f"baseline: {dict(baseline)} matches {len(base_cells)} grid cells, not one "
                         f"(name a value for every grid key that varies: {keys})")
    base = cells[base_cells[0]][1]
    others = [c for i, c in enumerate(cells) if i != base_cells[0]]
    m = max(1, len(others))
    level = 1 - (1 - confidence) / m
    rows = []
    import warnings

    with warnings.catch_warnings():
        # a policy with the same value in every replication (e.g. no loss at all) is a valid
        # sample; scipy warns about its zero spread, the interval it gives is right
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        for k, pol in others:
            rows.extend(_compare_cell(keys, k, base, pol, metrics, level, m))
    return pd.DataFrame(rows)


def _compare_cell(keys, k, base, pol, metrics, level, m) -> list[dict]:
    """The rows of one policy ``k`` (its runs ``pol``) against the baseline's runs ``base``."""
    rows = []
    common = base.index.intersection(pol.index)
    for metric in metrics:
        a = base.loc[common, metric].astype(float)
        b = pol.loc[common, metric].astype(float)
        keep = a.notna() & b.notna()
        a, b = a[keep].to_numpy(), b[keep].to_numpy()
        row: dict[str, Any] = dict(zip(keys, k))
        row.update(metric=metric, n=len(a), baseline=float(np.mean(a)) if len(a) else np.nan,
                   policy=float(np.mean(b)) if len(b) else np.nan)
        d = b - a
        row["difference"] = float(np.mean(d)) if len(d) else np.nan
        if len(d) >= 2 and np.ptp(d) > 0:
            t = stats.ttest_rel(b, a)
            ci = t.confidence_interval(level)
            row.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=min(1.0, float(t.pvalue) * m))
        else:  # one pair, or the same difference in every pair: no spread to test against
            row.update(ci_low=row["difference"], ci_high=row["difference"],
                       p_value=np.nan if len(d) < 2 else (1.0 if row["difference"] == 0 else 0.0))
        if len(a) >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):
            w = stats.ttest_ind(b, a, equal_var=False).confidence_interval(level)
            row.update(unpaired_ci_low=float(w.low), unpaired_ci_high=float(w.high))
        else:
            row.update(unpaired_ci_low=row["difference"], unpaired_ci_high=row["difference"])
        row["confidence"] = level
        row["significant"] = bool(row["ci_low"] > 0 or row["ci_high"] < 0)
        rows.append(row)
    return rows


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, (bool, np.bool_)) or isinstance(y, (bool, np.bool_)):
        return str(x).lower() == str(y).lower()
    try:
        return float(x) == float(y)
    except (TypeError, ValueError):
        return str(x) == str(y)

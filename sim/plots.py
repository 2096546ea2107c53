"""Matplotlib figures from result DataFrames.

Every function takes plain pandas objects (``res.summary``, ``res.memory``, a table with one
row per policy, or the output of a sweep summary) and returns the
:class:`matplotlib.figure.Figure` it drew on. Nothing here calls ``pyplot``: figures are
built with the object API (``matplotlib.figure.Figure``), so importing this module and
drawing needs no display and leaves no figure registered with pyplot. In Jupyter, run
``%matplotlib inline`` (or import ``matplotlib.pyplot``) once so that a returned figure is
shown when it is the value of a cell; ``fig.savefig("x.png")`` works everywhere.

Functions:

- :func:`loss_by_cause` -- stacked horizontal bars: loss ratio (% of routed pairs) by cause.
- :func:`memory_over_time` -- the broker-memory step function, stacked by session state.
- :func:`policy_tradeoff` -- loss ratio versus mean broker memory, one labelled point per policy.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .protocol import LOSS_CAUSES, UINT_MAX

__all__ = ["loss_by_cause", "memory_over_time", "policy_tradeoff", "byte_unit", "time_unit"]

#: Display names of the loss causes (legend entries).
CAUSE_LABELS = {
    "session_expired": "session expired",
    "clean_start": "discarded by Clean Start",
    "qos0_offline": "QoS 0 while offline",
    "queue_full": "queue full",
    "message_expired": "message expired",
    "no_session": "no session",
    "publisher_inflight": "publisher in-flight",
    "publisher_offline": "publisher offline",
}

#: One fixed colour per cause so that figures can be compared side by side.
CAUSE_COLORS = dict(zip(LOSS_CAUSES, (
    "#d62728",  # session_expired: red
    "#9467bd",  # clean_start: purple
    "#ff7f0e",  # qos0_offline: orange
    "#8c564b",  # queue_full: brown
    "#e377c2",  # message_expired: pink
    "#7f7f7f",  # no_session: grey
    "#bcbd22",  # publisher_inflight: olive
    "#17becf",  # publisher_offline: cyan
)))

#: Display names and colours of the memory components of ``res.memory``.
COMPONENT_LABELS = {
    "connected_bytes": "connected sessions",
    "offline_bytes": "offline sessions (resumable)",
    "stranded_bytes": "stranded sessions (client left)",
    "store_bytes": "shared message store",
    "session_bytes": "session + subscription overhead",
    "entry_bytes": "queue entries",
    "message_bytes": "stored messages",
    "bytes": "total",
}
COMPONENT_COLORS = {
    "connected_bytes": "#2ca02c",
    "offline_bytes": "#1f77b4",
    "stranded_bytes": "#d62728",
    "store_bytes": "#ff7f0e",
    "session_bytes": "#9467bd",
    "entry_bytes": "#8c564b",
    "message_bytes": "#17becf",
    "bytes": "#7f7f7f",
}

_BYTE_UNITS = (("B", 1.0), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12))
_TIME_UNITS = (("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86_400.0), ("y", 365 * 86_400.0))

_STAT_SUFFIXES = ("", "_mean")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def byte_unit(max_bytes: float) -> tuple[str, float]:
    """The decimal unit (B, kB, MB, GB, TB) and its size in bytes for values up to ``max_bytes``."""
    value = abs(float(max_bytes)) if max_bytes is not None and np.isfinite(max_bytes) else 0.0
    name, size = _BYTE_UNITS[0]
    for unit_name, unit_size in _BYTE_UNITS:
        if value >= unit_size:
            name, size = unit_name, unit_size
    return name, size


def time_unit(span_seconds: float) -> tuple[str, float]:
    """The time unit (s, min, h, d, y) and its length in seconds for an axis spanning ``span_seconds``.

    A unit is used once the span covers at least two of it: 90 s stays in seconds, 3 h is shown
    in hours, 30 d in days and a UINT_MAX horizon (~136 years) in years (365 d).
    """
    value = abs(float(span_seconds)) if span_seconds is not None and np.isfinite(span_seconds) else 0.0
    name, size = _TIME_UNITS[0]
    for unit_name, unit_size in _TIME_UNITS:
        if value >= 2 * unit_size:
            name, size = unit_name, unit_size
    return name, size


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _as_frame(data: pd.Series | pd.DataFrame) -> pd.DataFrame:
    """One row per policy: a summary Series becomes a one-row frame indexed by its name."""
    if isinstance(data, pd.Series):
        frame = data.to_frame().T
        frame.index = [data.name if data.name is not None else "scenario"]
        return frame
    if isinstance(data, pd.DataFrame):
        return data
    raise TypeError(f"expected a pandas Series (res.summary) or DataFrame, got {type(data).__name__}")


def _column(df: pd.DataFrame, name: str) -> pd.Series | None:
    """``df[name]`` as floats, or the ``<name>_mean`` column of a sweep summary, or None."""
    for suffix in _STAT_SUFFIXES:
        if name + suffix in df.columns:
            return pd.to_numeric(df[name + suffix], errors="coerce").astype(float)
    return None


def _format_value(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and int(value) == UINT_MAX:
        return "UINT_MAX"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return "UINT_MAX" if int(value) == UINT_MAX else str(int(value))
    return str(value)


def _labels(df: pd.DataFrame, label: str | None) -> list[str]:
    """Row labels: the ``label`` column if given, else the index (a MultiIndex as ``name=value, ...``)."""
    if label is not None:
        return [str(v) for v in df[label]]
    index = df.index
    if isinstance(index, pd.MultiIndex):
        names = list(index.names)
        out = []
        for key in index:
            parts = [f"{n}={_format_value(v)}" if n else _format_value(v) for n, v in zip(names, key)]
            out.append(", ".join(parts))
        return out
    return [_format_value(v) for v in index]


# ---------------------------------------------------------------------------------------------
# loss by cause
# ---------------------------------------------------------------------------------------------

def loss_by_cause(summary_or_df: pd.Series | pd.DataFrame, ax: Axes | None = None, *,
                  label: str | None = None, title: str | None = "Message loss by cause",
                  causes: Sequence[str] = LOSS_CAUSES) -> Figure:
    """Stacked horizontal bars of the loss ratio (%) split by cause, one bar per policy.

    ``summary_or_df`` is one ``res.summary`` Series (one bar, labelled with the scenario name)
    or a DataFrame with one row per policy (labels from the index, or from the ``label``
    column). Each segment is ``lost_<cause> / routed`` in percent, so a bar's length is the
    loss ratio. Missing ``lost_<cause>`` columns count as 0; a row with ``routed`` = 0 shows no
    loss. Sweep summaries with ``lost_<cause>_mean`` / ``routed_mean`` columns work too.
    """
    df = _as_frame(summary_or_df)
    labels = _labels(df, label)
    n = len(df)
    fig, ax = _new_axes(ax, (9.0, max(2.4, 0.5 * n + 1.6)))

    routed = _column(df, "routed")
    if routed is None:
        raise ValueError("loss_by_cause needs a 'routed' column (res.summary has one)")
    routed = routed.fillna(0.0).to_numpy()
    safe = np.where(routed > 0, routed, 1.0)

    y = np.arange(n)
    left = np.zeros(n)
    shown = []
    for cause in causes:
        lost = _column(df, f"lost_{cause}")
        if lost is None:
            continue
        pct = np.where(routed > 0, 100.0 * lost.fillna(0.0).to_numpy() / safe, 0.0)
        if not np.any(pct > 0):
            continue
        ax.barh(y, pct, left=left, height=0.6, color=CAUSE_COLORS.get(cause),
                label=CAUSE_LABELS.get(cause, cause.replace("_", " ")), edgecolor="white", linewidth=0.5)
        left = left + pct
        shown.append(cause)

    total = left
    upper = float(total.max()) if n else 0.0
    ax.set_xlim(0.0, upper * 1.18 if upper > 0 else 1.0)
    for yi, value, r in zip(y, total, routed):
        text = f"{value:.3g} %" if r > 0 else "nothing routed"
        ax.annotate(text, (value, yi), xytext=(4, 0), textcoords="offset points",
                    va="center", ha="left", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_ylim(n - 0.5, -0.5)  # first row on top
    ax.set_xlabel("Loss ratio (% of routed message-consumer pairs)")
    ax.set_ylabel("Policy" if n > 1 else "Scenario")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if shown:
        ax.legend(title="cause", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title_fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no messages lost", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# memory over time
# ---------------------------------------------------------------------------------------------

def _bin_step_function(t: np.ndarray, values: np.ndarray, t_end: float, bins: int):
    """Time-weighted mean per bin of each column of a step function, and the maximum of the sum.

    ``values[i]`` holds on ``[t[i], t[i+1])`` (the last row until ``t_end``). Returns the bin
    left edges (plus the final edge), the per-bin means (bins x columns) and the per-bin maxima
    of the row sums.
    """
    edges = np.linspace(t[0], t_end, bins + 1)
    dt = np.diff(np.append(t, t_end))
    integral = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values * dt[:, None], axis=0)])
    idx = np.clip(np.searchsorted(t, edges, side="right") - 1, 0, len(t) - 1)
    at_edges = integral[idx] + values[idx] * (edges - t[idx])[:, None]
    width = np.diff(edges)
    means = np.diff(at_edges, axis=0) / width[:, None]
    totals = values.sum(axis=1)
    stop = np.searchsorted(t, edges[1:], side="left")
    maxima = np.array([totals[a:max(a + 1, b)].max() for a, b in zip(idx[:-1], stop)])
    return edges, means, maxima


def memory_over_time(memory_df: pd.DataFrame, ax: Axes | None = None,
                     components: Sequence[str] = ("connected_bytes", "offline_bytes",
                                                  "stranded_bytes", "store_bytes"), *,
                     horizon: float | None = None, title: str | None = "Broker memory retained",
                     max_points: int = 20_000, bins: int = 2_000) -> Figure:
    """The broker-memory step function (``res.memory``) as stacked step areas.

    Each row of ``memory_df`` holds from its ``time`` until the next row's (``steps-post``);
    the last row holds until ``horizon`` (if given, else ``memory_df.attrs["horizon"]`` when
    present, else it ends at the last row). Components missing from the frame are skipped; with
    none present the ``bytes`` total is drawn. A black step line shows ``bytes`` when present.
    The byte unit (B/kB/MB/GB) and the time unit (s/min/h/d/y) follow the data.

    Frames longer than ``max_points`` rows are reduced to ``bins`` equal time bins: the areas
    are then time-weighted means per bin and a thin line marks the per-bin peak of the total.
    """
    fig, ax = _new_axes(ax, (9.0, 4.2))
    present = [c for c in components if c in memory_df.columns]
    if not present and "bytes" in memory_df.columns:
        present = ["bytes"]
    if horizon is None:
        horizon = memory_df.attrs.get("horizon") if hasattr(memory_df, "attrs") else None

    data = memory_df.sort_values("time", kind="stable") if "time" in memory_df.columns else memory_df.iloc[:0]
    t = pd.to_numeric(data["time"], errors="coerce").to_numpy(dtype=float) if len(data) else np.zeros(0)
    values = (data[present].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy(dtype=float)
              if len(data) and present else np.zeros((len(t), len(present))))
    total = (pd.to_numeric(data["bytes"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
             if len(data) and "bytes" in data.columns else None)

    if len(t):
        t_end = float(horizon) if horizon is not None and float(horizon) > t[-1] else float(t[-1])
        span = t_end - float(t[0])
    else:
        t_end, span = 0.0, 0.0
    t_name, t_size = time_unit(span)
    peak = max(float(values.sum(axis=1).max()) if values.size else 0.0,
               float(total.max()) if total is not None and total.size else 0.0)
    b_name, b_size = byte_unit(peak)

    binned = len(t) > max_points and t_end > t[0]
    if binned:
        cols = values if total is None else np.column_stack([values, total])
        edges, means, _ = _bin_step_function(t, cols, t_end, bins)
        x = edges
        stack_values = means[:, :len(present)]
        line = means[:, len(present)] if total is not None else None
        peak_line = values.sum(axis=1) if total is None else total
        _, _, maxima = _bin_step_function(t, peak_line[:, None], t_end, bins)
    else:
        x = np.append(t, t_end) if len(t) else t
        stack_values = values
        line = total
        maxima = None

    def extend(v: np.ndarray) -> np.ndarray:  # repeat the last value so the last step is drawn
        return np.append(v, v[-1]) if len(v) else v

    xs = x / t_size
    lower = np.zeros(len(stack_values))
    for j, comp in enumerate(present):
        upper = lower + stack_values[:, j]
        ax.fill_between(xs, extend(lower / b_size), extend(upper / b_size), step="post",
                        color=COMPONENT_COLORS.get(comp), alpha=0.75, linewidth=0,
                        label=COMPONENT_LABELS.get(comp, comp))
        lower = upper
    if line is not None and present != ["bytes"] and len(line):
        ax.plot(xs, extend(line / b_size), drawstyle="steps-post", color="black", linewidth=0.9,
                label="total" + (" (bin mean)" if binned else ""))
    if maxima is not None and len(maxima):
        ax.plot(xs, extend(maxima / b_size), drawstyle="steps-post", color="black", linewidth=0.5,
                linestyle=":", label="total (bin peak)")

    if len(t):
        ax.set_xlim(float(t[0]) / t_size, t_end / t_size if t_end > t[0] else float(t[0]) / t_size + 1)
    ax.set_ylim(bottom=0)
    if peak == 0:
        ax.set_ylim(0, 1)
    ax.set_xlabel(f"Simulated time ({t_name})")
    ax.set_ylabel(f"Broker memory ({b_name})")
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    if present:
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    if not len(t):
        ax.text(0.5, 0.5, "no memory samples", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# policy trade-off
# ---------------------------------------------------------------------------------------------

def _ci(df: pd.DataFrame, name: str, centre: np.ndarray, scale: float) -> np.ndarray | None:
    """Asymmetric error bars from ``<name>_ci_low`` / ``<name>_ci_high`` columns, or None."""
    for low_name, high_name in ((f"{name}_ci_low", f"{name}_ci_high"),
                                (f"{name}_mean_ci_low", f"{name}_mean_ci_high"),
                                (f"{name}_low", f"{name}_high")):
        if low_name in df.columns and high_name in df.columns:
            low = pd.to_numeric(df[low_name], errors="coerce").to_numpy(dtype=float) * scale
            high = pd.to_numeric(df[high_name], errors="coerce").to_numpy(dtype=float) * scale
            err = np.vstack([centre - low, high - centre])
            return np.nan_to_num(np.clip(err, 0.0, None))
    return None


def policy_tradeoff(df: pd.DataFrame, ax: Axes | None = None, *, x: str = "memory_mean_bytes",
                    y: str = "loss_ratio", label: str | None = None, logx: bool = False,
                    title: str | None = "Loss versus broker memory, per policy") -> Figure:
    """Loss ratio (%) against mean broker memory, one labelled point per policy (row).

    ``df`` has one row per policy with the columns ``x`` (bytes; default the time-weighted mean
    ``memory_mean_bytes``) and ``y`` (a ratio in 0..1; default ``loss_ratio``); labels come
    from the index or the ``label`` column. When ``<y>_ci_low``/``<y>_ci_high`` (or the same
    for ``x``) exist, they are drawn as error bars. ``logx`` draws memory on a log scale, useful
    when the policies span orders of magnitude. A single ``res.summary`` Series is accepted too.
    """
    df = _as_frame(df)
    labels = _labels(df, label)
    fig, ax = _new_axes(ax, (8.0, 5.0))
    xv = _column(df, x)
    yv = _column(df, y)
    if xv is None or yv is None:
        missing = [c for c, v in ((x, xv), (y, yv)) if v is None]
        raise ValueError(f"policy_tradeoff needs the column(s) {missing}")
    xv = xv.to_numpy(dtype=float)
    yp = 100.0 * yv.to_numpy(dtype=float)
    finite_x = xv[np.isfinite(xv)]
    b_name, b_size = byte_unit(finite_x.max() if finite_x.size else 0.0)
    xs = xv / b_size

    xerr = _ci(df, x, xv, 1.0)
    yerr = _ci(df, y, yp, 100.0)
    if xerr is not None:
        xerr = xerr / b_size
    if xerr is not None or yerr is not None:
        ax.errorbar(xs, yp, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.45", elinewidth=1,
                    capsize=3, zorder=1, label="95 % confidence interval")
    colors = [f"C{i % 10}" for i in range(len(df))]
    ax.scatter(xs, yp, c=colors, s=45, zorder=2, edgecolors="black", linewidths=0.5)
    for xi, yi, text in zip(xs, yp, labels):
        if np.isfinite(xi) and np.isfinite(yi):
            ax.annotate(text, (xi, yi), xytext=(5, 4), textcoords="offset points", fontsize=8)

    if logx and finite_x.size and np.all(finite_x > 0):
        ax.set_xscale("log")
        ax.set_xlabel(f"Mean broker memory ({b_name}, log scale)")
        ax.margins(x=0.2)
    else:
        ax.set_xlabel(f"Mean broker memory ({b_name})")
        hi = xs + (xerr[1] if xerr is not None else 0.0)
        right = float(np.nanmax(hi)) if np.isfinite(hi).any() else 0.0
        ax.set_xlim(-0.03 * right if right > 0 else -0.05,
                    right * 1.25 if right > 0 else 1.0)  # room for the labels
    ax.set_ylabel("Loss ratio (% of routed message-consumer pairs)")
    hi = yp + (yerr[1] if yerr is not None else 0.0)
    top = float(np.nanmax(hi)) if np.isfinite(hi).any() else 0.0
    ax.set_ylim(-0.03 * top if top > 0 else -0.05, top * 1.12 if top > 0 else 1.0)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    if xerr is not None or yerr is not None:
        ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return fig

"""Matplotlib figures from result DataFrames.

Every function takes plain pandas objects (``res.summary``, ``res.memory``, a table with one
row per policy, or the output of a sweep summary) and returns the
:class:`matplotlib.figure.Figure` it drew on. Nothing here calls ``pyplot``: figures are
built with the object API (``matplotlib.figure.Figure``), so importing this module and
drawing needs no display and leaves no figure registered with pyplot. In Jupyter, run
``%matplotlib inline`` (or import ``matplotlib.pyplot``) once so that a returned figure is
shown when it is the value of a cell; ``fig.savefig("x.png")`` works everywhere.

Functions:

- :func:`loss_by_cause` -- stacked horizontal bars: loss ratio (% of the pairs of consumers
  that come back) by cause.
- :func:`departed_traffic` -- stacked horizontal bars: traffic to departed devices by what
  became of it, drawn apart from loss (it is not loss: those consumers never return).
- :func:`memory_over_time` -- the broker-memory step function, stacked by session state.
- :func:`policy_tradeoff` -- loss ratio versus mean broker memory, one labelled point per policy.
- :func:`loss_against_expiry`, :func:`memory_against_expiry`, :func:`expiry_figure` -- loss
  ratio and peak/mean memory against the Session Expiry Interval from "0" to "never", with
  confidence bands (the headline figure of ``mqtt-sim demo``).
- :func:`memory_over_decades` -- several runs' memory up to a UINT_MAX horizon (~136 years).
- :func:`session_timeline` -- per consumer: connected, offline resumable, expired, departed,
  with each message marked by its fate (small scripted scenarios).
- :func:`frontier_figure`, :func:`advice_figure` -- the advisor's frontier and its pick.
- :func:`storm_figure` -- memory and queued messages around fleet-wide network outages.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .protocol import DEPARTED_FATES, LOSS_CAUSES, UINT_MAX

__all__ = ["loss_by_cause", "departed_traffic", "memory_over_time", "advice_figure", "expiry_positions", "policy_tradeoff",
           "policy_figure", "byte_unit", "time_unit", "loss_against_expiry", "memory_against_expiry", "expiry_figure",
           "memory_over_decades", "session_timeline", "frontier_figure", "storm_figure"]

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
    "broker_restart": "broker restart",
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
    "#1f77b4",  # broker_restart: blue
)))

#: Display names and colours of the departed fates (traffic to clients that left for good).
DEPARTED_LABELS = {
    "departed_expired": "held until the session ended",
    "departed_queue_full": "dropped by a queue limit",
    "departed_message_expired": "message expired",
    "departed_not_queued": "never held",
    "departed_held": "still held at the horizon",
}
DEPARTED_COLORS = dict(zip(DEPARTED_FATES, ("#6baed6", "#08519c", "#c6dbef", "#bdbdbd", "#3182bd")))

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

#: Byte units of every figure (and of the CLI's and the advisor's text): binary, 1 KiB = 1024 B.
_BYTE_UNITS = (("B", 1.0), ("KiB", 2.0 ** 10), ("MiB", 2.0 ** 20), ("GiB", 2.0 ** 30), ("TiB", 2.0 ** 40))
_TIME_UNITS = (("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86_400.0), ("y", 365 * 86_400.0))

_STAT_SUFFIXES = ("", "_mean")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def byte_unit(max_bytes: float) -> tuple[str, float]:
    """The binary unit (B, KiB, MiB, GiB, TiB; 1 KiB = 1024 B) and its size in bytes for values
    up to ``max_bytes``: the largest unit not above it. Every figure labels bytes this way."""
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


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Plain-number ticks on a log axis showing values from ``lo`` to ``hi`` (in the axis unit):
    1, 2 and 5 per decade when the values span at most three decades (a decade, ``10^-1`` to
    ``10^0``, would otherwise have no label in between), else one per decade; written as
    ``0.05`` or ``200`` rather than as powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    axis.set_minor_formatter(NullFormatter())


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
    """Row labels: the ``label`` column if given; for a ``sim.summarize`` table (default index,
    grid columns named by field path) the grid values that vary; else the index (a MultiIndex
    as ``name=value, ...``)."""
    if label is not None:
        return [str(v) for v in df[label]]
    index = df.index
    grid = [c for c in df.columns if isinstance(c, str) and "." in c]  # sim.sweep's field paths
    if isinstance(index, pd.RangeIndex) and grid:
        varying = [c for c in grid if df[c].astype(str).nunique() > 1] or grid
        return [", ".join(f"{c.split('.')[-1]}={_format_value(v)}" for c, v in zip(varying, row))
                for row in df[varying].itertuples(index=False)]
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

def _stacked_ratio_bars(df: pd.DataFrame, ax: Axes, labels: list[str], parts: Sequence[tuple[str, str, str]],
                        denominator: np.ndarray, empty_text: str, legend_title: str) -> None:
    """Horizontal stacked bars of ``part / denominator`` in percent, one bar per row."""
    n = len(df)
    safe = np.where(denominator > 0, denominator, 1.0)
    y = np.arange(n)
    left = np.zeros(n)
    shown = 0
    for column, text, colour in parts:
        values = _column(df, column)
        if values is None:
            continue
        pct = np.where(denominator > 0, 100.0 * values.fillna(0.0).to_numpy() / safe, 0.0)
        if not np.any(pct > 0):
            continue
        ax.barh(y, pct, left=left, height=0.6, color=colour, label=text, edgecolor="white", linewidth=0.5)
        left = left + pct
        shown += 1
    upper = float(left.max()) if n else 0.0
    ax.set_xlim(0.0, upper * 1.18 if upper > 0 else 1.0)
    for yi, value, r in zip(y, left, denominator):
        ax.annotate(f"{value:.3g} %" if r > 0 else "none routed", (value, yi), xytext=(4, 0),
                    textcoords="offset points", va="center", ha="left", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_ylim(n - 0.5, -0.5)  # first row on top
    ax.set_ylabel("Policy" if n > 1 else "Scenario")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if shown:
        ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title_fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, empty_text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def loss_by_cause(summary_or_df: pd.Series | pd.DataFrame, ax: Axes | None = None, *,
                  label: str | None = None, title: str | None = "Message loss by cause",
                  causes: Sequence[str] = LOSS_CAUSES) -> Figure:
    """Stacked horizontal bars of the loss ratio (%) split by cause, one bar per policy.

    ``summary_or_df`` is one ``res.summary`` Series (one bar, labelled with the scenario name)
    or a DataFrame with one row per policy (labels from the index, or from the ``label``
    column). Each segment is ``lost_<cause> / (routed - departed_pairs)`` in percent: the
    share of the pairs of consumers that come back, so a bar's length is the loss ratio.
    Traffic to departed devices is not loss (see :func:`departed_traffic`). Missing
    ``lost_<cause>`` columns count as 0, a missing ``departed_pairs`` as 0; a row with
    nothing routed to returning consumers shows no loss. Sweep summaries with
    ``<metric>_mean`` columns work too.
    """
    df = _as_frame(summary_or_df)
    labels = _labels(df, label)
    fig, ax = _new_axes(ax, (9.0, max(2.4, 0.5 * len(df) + 1.6)))
    routed = _column(df, "routed")
    if routed is None:
        raise ValueError("loss_by_cause needs a 'routed' column (res.summary has one)")
    if not any(_column(df, f"lost_{cause}") is not None for cause in causes):
        raise ValueError("loss_by_cause needs lost_<cause> columns (res.summary has them; for "
                         "sim.summarize pass metrics that include e.g. 'lost_session_expired')")
    departed = _column(df, "departed_pairs")
    returning = routed.fillna(0.0).to_numpy() - (departed.fillna(0.0).to_numpy() if departed is not None else 0.0)
    parts = [(f"lost_{c}", CAUSE_LABELS.get(c, c.replace("_", " ")), CAUSE_COLORS.get(c)) for c in causes]
    _stacked_ratio_bars(df, ax, labels, parts, returning, "no messages lost", "cause")
    ax.set_xlabel("Loss ratio (% of pairs routed to consumers that come back)")
    if title:
        ax.set_title(title)
    return fig


def departed_traffic(summary_or_df: pd.Series | pd.DataFrame, ax: Axes | None = None, *,
                     label: str | None = None, title: str | None = "Traffic to departed devices (not loss)") -> Figure:
    """Stacked horizontal bars: pairs routed to clients that left for good, by what became of
    them, in % of all routed pairs, one bar per policy.

    These pairs are not losses (the device never connects again); what they cost is broker
    memory while their sessions hold them (``memory_mean_stranded_bytes``). Needs the
    ``departed_<kind>`` columns of ``res.summary`` (or their ``_mean`` in a sweep summary)
    and ``routed``.
    """
    df = _as_frame(summary_or_df)
    labels = _labels(df, label)
    fig, ax = _new_axes(ax, (9.0, max(2.4, 0.5 * len(df) + 1.6)))
    routed = _column(df, "routed")
    if routed is None or not any(_column(df, f) is not None for f in DEPARTED_FATES):
        raise ValueError("departed_traffic needs 'routed' and departed_<kind> columns (res.summary has them; "
                         "for sim.summarize pass metrics that include e.g. 'departed_queue_full')")
    parts = [(f, DEPARTED_LABELS[f], DEPARTED_COLORS[f]) for f in DEPARTED_FATES]
    _stacked_ratio_bars(df, ax, labels, parts, routed.fillna(0.0).to_numpy(), "no traffic to departed devices",
                        "what became of it")
    ax.set_xlabel("Pairs routed to devices that left for good (% of all routed pairs)")
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
    The byte unit (B/KiB/MiB/GiB, binary) and the time unit (s/min/h/d/y) follow the data.

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
        if len(t) and not np.any(values[:, j] > 0):
            # nothing to stack: no area (its outline would look like a thin layer), legend only
            ax.add_patch(Rectangle((0, 0), 0, 0, visible=False, color=COMPONENT_COLORS.get(comp),
                                   alpha=0.8, label=COMPONENT_LABELS.get(comp, comp) + ": none"))
            continue
        positive = extend(stack_values[:, j] > 0)
        # a step holding on [x_i, x_i+1) needs both of its end points in the filled region
        where = positive | np.concatenate([[False], positive[:-1]])
        ax.fill_between(xs, extend(lower / b_size), extend(upper / b_size), step="post", where=where,
                        color=COMPONENT_COLORS.get(comp), alpha=0.8, linewidth=0.6,
                        edgecolor=COMPONENT_COLORS.get(comp),  # keeps brief steps visible
                        label=COMPONENT_LABELS.get(comp, comp))
        lower = upper
    if line is not None and present != ["bytes"] and len(line):
        ax.plot(xs, extend(line / b_size), drawstyle="steps-post", color="black", linewidth=0.5,
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
    if present:  # beside the axes: spikes and growth reach every corner of the plot
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
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


def _group_points(ax: Axes, xs: np.ndarray, ys: np.ndarray, labels: list[str],
                  tolerance_px: float = 4.0) -> list[tuple[list[int], list[str]]]:
    """Rows whose points fall within a few pixels of one another, with their labels.

    Policies often give identical results under common random numbers (every Clean Start = 1
    policy loses the same messages, for instance): such points share one marker and one label.
    """
    ok = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    if not len(ok):
        return []
    px = ax.transData.transform(np.column_stack([xs[ok], ys[ok]]))
    groups: list[tuple[np.ndarray, list[int], list[str]]] = []
    for i, p in zip(ok, px):
        for anchor, idx, labs in groups:
            if np.hypot(*(anchor - p)) <= tolerance_px:
                idx.append(int(i))
                labs.append(labels[i])
                break
        else:
            groups.append((p, [int(i)], [labels[i]]))
    return [(idx, labs) for _, idx, labs in groups]


def _label_offsets(ax: Axes, xs: np.ndarray, ys: np.ndarray, groups, fontsize: float):
    """Offsets (points) that put every group's label beside its marker without overlaps, or None.

    Tries a few positions around each point (right, left, above, below) and keeps the first
    that stays inside the axes and overlaps neither an earlier label nor another marker. Text
    sizes are estimated from the number of characters, so nothing has to be drawn.
    """
    to_px = ax.figure.dpi / 72.0
    box = ax.bbox
    anchors = np.array([ax.transData.transform((xs[idx[0]], ys[idx[0]])) for idx, _ in groups])
    placed: list[tuple[float, float, float, float]] = []
    offsets: list[tuple[float, float] | None] = [None] * len(groups)
    pad, marker = 4.0 * to_px, 4.0 * to_px  # marker: radius of a size-45 scatter marker, rounded up

    def free(r, own: int) -> bool:
        x0, y0, x1, y1 = r
        if x0 < box.x0 + 2 or x1 > box.x1 - 2 or y0 < box.y0 + 2 or y1 > box.y1 - 2:
            return False
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in placed):
            return False
        others = np.arange(len(anchors)) != own
        hit = others & ((anchors[:, 0] > x0 - marker) & (anchors[:, 0] < x1 + marker)
               & (anchors[:, 1] > y0 - marker) & (anchors[:, 1] < y1 + marker))
        return not hit.any()

    order = sorted(range(len(groups)), key=lambda g: (-anchors[g][1], anchors[g][0]))
    for g in order:
        labs = groups[g][1]
        w = 0.6 * fontsize * max(len(t) for t in labs) * to_px
        h = 1.2 * fontsize * len(labs) * to_px
        p = anchors[g]
        for dx, dy in ((pad, pad / 2), (pad, -h - pad / 2), (-w - pad, pad / 2), (-w - pad, -h - pad / 2),
                       (pad, -h / 2), (-w - pad, -h / 2), (-w / 2, pad + marker / 2), (-w / 2, -h - pad - marker / 2)):
            rect = (p[0] + dx, p[1] + dy, p[0] + dx + w, p[1] + dy + h)
            if free(rect, g):
                placed.append(rect)
                offsets[g] = (dx / to_px, dy / to_px)
                break
        else:
            return None
    return offsets


def policy_tradeoff(df: pd.DataFrame, ax: Axes | None = None, *, x: str = "memory_mean_bytes",
                    y: str = "loss_ratio", label: str | None = None, logx: bool | None = None,
                    title: str | None = "Loss versus broker memory, per policy",
                    fontsize: float = 8) -> Figure:
    """Loss ratio (%) against mean broker memory, one labelled point per policy (row).

    ``df`` has one row per policy with the columns ``x`` (bytes; default the time-weighted mean
    ``memory_mean_bytes``) and ``y`` (a ratio in 0..1; default ``loss_ratio``); labels come
    from the index or the ``label`` column. When ``<y>_ci_low``/``<y>_ci_high`` (or the same
    for ``x``) exist, they are drawn as error bars. ``logx`` draws memory on a log scale; by
    default it does when the positive memory values differ by more than a factor of 20 (on a
    linear axis the small ones would crowd at 0). A single ``res.summary`` Series is accepted too.

    Policies with the same result share a marker and a label. Labels are written beside the
    points when they fit without overlapping; otherwise the points are keyed in a legend.
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

    # limits first: label placement needs the final data-to-pixel transform
    x_hi = xs + (xerr[1] if xerr is not None else 0.0)
    x_lo = xs - (xerr[0] if xerr is not None else 0.0)
    what = {"memory_mean_bytes": "Mean broker memory", "memory_peak_bytes": "Peak broker memory",
            "memory_final_bytes": "Broker memory at the horizon"}.get(x, x.replace("_", " "))
    if logx is None:
        positive_x = finite_x[finite_x > 0]
        logx = bool(positive_x.size and np.all(finite_x > 0) and positive_x.max() / positive_x.min() > 20)
    if logx and finite_x.size and np.all(finite_x > 0):
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} ({b_name}, log scale)")
        lo = float(np.nanmin(np.where(x_lo > 0, x_lo, xs)))
        hi = float(np.nanmax(x_hi))
        ax.set_xlim(lo / 1.6, hi * 1.6 if hi > lo else lo * 10)
        _log_ticks(ax.xaxis, *ax.get_xlim())
    else:
        ax.set_xlabel(f"{what} ({b_name})")
        right = float(np.nanmax(x_hi)) if np.isfinite(x_hi).any() else 0.0
        ax.set_xlim(-0.03 * right if right > 0 else -0.05, right * 1.2 if right > 0 else 1.0)
    ax.set_ylabel("Loss ratio (% of pairs routed to consumers that come back)" if y == "loss_ratio" else y)
    y_hi = yp + (yerr[1] if yerr is not None else 0.0)
    top = float(np.nanmax(y_hi)) if np.isfinite(y_hi).any() else 0.0
    ax.set_ylim(-0.04 * top if top > 0 else -0.05, top * 1.15 if top > 0 else 1.0)
    if title:
        ax.set_title(title)
    try:  # run the layout so that the axes have their final size
        fig.draw_without_rendering()
    except Exception:  # pragma: no cover - only a better guess of the label sizes is lost
        pass

    if xerr is not None or yerr is not None:
        ax.errorbar(xs, yp, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.45", elinewidth=1,
                    capsize=3, zorder=1, label="95 % confidence interval")
    groups = _group_points(ax, xs, yp, labels)
    offsets = _label_offsets(ax, xs, yp, groups, fontsize) if groups else []
    for g, (idx, labs) in enumerate(groups):
        ax.scatter(xs[idx], yp[idx], color=f"C{g % 10}", s=45, zorder=2, edgecolors="black",
                   linewidths=0.5, label="\n".join(labs) if offsets is None else None)
        if offsets is not None:
            ax.annotate("\n".join(labs), (xs[idx[0]], yp[idx[0]]), xytext=offsets[g],
                        textcoords="offset points", ha="left", va="bottom", fontsize=fontsize,
                        linespacing=1.0)
    if offsets is None:
        ax.legend(title="policy", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=fontsize,
                  title_fontsize=fontsize, frameon=False, labelspacing=0.8)
    elif xerr is not None or yerr is not None:
        ax.legend(loc="best", fontsize=fontsize)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def policy_figure(table: pd.DataFrame, *, logx: bool | None = None) -> Figure:
    """The demo's figure, per policy: loss by cause (top left), traffic to departed devices
    drawn apart from loss (bottom left), and loss versus mean memory (right).

    ``table`` has one row per policy (index = label), e.g. :func:`sim.sweep.summarize` output
    with ``lost_<cause>``, ``departed_<kind>`` and ``routed`` metrics. Without departed
    columns the bottom-left panel says there was no such traffic. ``logx``: memory on a log
    scale (default: when the policies' memory differs by more than a factor of 20).
    """
    fig = Figure(figsize=(15, 0.9 * len(table) + 4.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1.1, 1.0))
    loss_by_cause(table, ax=fig.add_subplot(grid[0, 0]))
    lower = fig.add_subplot(grid[1, 0])
    if any(_column(table, f) is not None for f in DEPARTED_FATES):
        departed_traffic(table, ax=lower)
    else:
        lower.set_axis_off()
        lower.text(0.5, 0.5, "no departed-traffic columns in this table", ha="center", va="center", color="0.4")
    policy_tradeoff(table, ax=fig.add_subplot(grid[:, 1]), logx=logx)
    return fig


# ---------------------------------------------------------------------------------------------
# against the Session Expiry Interval, from 0 to never
# ---------------------------------------------------------------------------------------------

#: The grid columns of a sweep (``sim.sweep`` / ``sim.summarize``) the expiry figures read.
EXPIRY_FIELD = "mqttConsumer.session expiry interval"
CLEAN_START_FIELD = "mqttConsumer.clean start"

#: Least distance between two labelled expiry ticks, in decades of the log axis.
_MIN_TICK_DECADES = 0.6

_EXPIRY_TICKS = ((1, "1 s"), (10, "10 s"), (60, "1 min"), (600, "10 min"), (3600, "1 h"), (6 * 3600, "6 h"),
                 (86_400, "1 d"), (7 * 86_400, "7 d"), (30 * 86_400, "30 d"), (365 * 86_400, "1 y"),
                 (10 * 365 * 86_400, "10 y"), (100 * 365 * 86_400, "100 y"))


def expiry_positions(values) -> tuple[np.ndarray, list[float], list[str]]:
    """x positions for Session Expiry Intervals on a log axis where 0 and UINT_MAX ("never")
    get their own places: 0 one decade left of the smallest positive value, never one decade
    right of the largest finite one. Returns (positions, tick positions, tick labels)."""
    v = np.asarray(values, dtype=float)
    finite = v[(v > 0) & (v < UINT_MAX)]
    lo = finite.min() if finite.size else 1.0
    hi = finite.max() if finite.size else 10.0
    pos = np.where(v == 0, lo / 10, np.where(v >= UINT_MAX, hi * 10, v))
    ticks, labels = [], []
    for x, text in ((lo / 10, "0"), (hi * 10, "never")):
        ticks.append(x)
        labels.append(text)
    distinct = np.unique(finite)
    if 0 < len(distinct) <= 8:  # few values (a sweep's grid): a tick at each that has room
        candidates = [(float(t), _expiry_text(t)) for t in distinct]
    else:
        candidates = [(float(t), text) for t, text in _EXPIRY_TICKS if lo <= t <= hi]
    round_values = {t for t, _ in _EXPIRY_TICKS}
    # round values first (1 min, 1 h, ...), then the others, each only where it keeps
    # MIN_TICK_DECADES from every tick already placed (0 and never included): no overlaps
    kept = [math.log10(x) for x in ticks]
    shown = []
    for t, text in sorted(candidates, key=lambda c: (c[0] not in round_values, c[0])):
        if all(abs(math.log10(t) - k) >= _MIN_TICK_DECADES for k in kept):
            kept.append(math.log10(t))
            shown.append((t, text))
    for t, text in sorted(shown):
        ticks.append(t)
        labels.append(text)
    return pos, ticks, labels


def _expiry_text(seconds: float) -> str:
    """A Session Expiry Interval as a tick label in its largest whole unit: "15 s", "5 min",
    "1 h", "30 d", "190 s"."""
    for unit, size in (("y", 365 * 86_400), ("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size and float(seconds) % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _expiry_axis(ax: Axes, ticks: list[float], labels: list[str]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.xaxis.set_minor_locator(_NullLocator())
    ax.set_xlabel("Session Expiry Interval (s to y, log scale; 0 and never at the ends)")
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)


def _NullLocator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _expiry_groups(df: pd.DataFrame, expiry: str, by: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    """The rows of a policy table by the column ``by`` (default: Clean Start, when it varies)."""
    if expiry not in df.columns:
        raise ValueError(f"the table needs the expiry column {expiry!r} (a sim.summarize table of a sweep "
                         "over the Session Expiry Interval has it)")
    if by is None and CLEAN_START_FIELD in df.columns and df[CLEAN_START_FIELD].astype(str).nunique() > 1:
        by = CLEAN_START_FIELD
    if by is None:
        return [(None, df)]
    name = "Clean Start" if by == CLEAN_START_FIELD else by.split(".")[-1]
    out = []
    for value, g in df.groupby(by, sort=True):
        text = ("1" if value else "0") if by == CLEAN_START_FIELD else _format_value(value)
        out.append((f"{name} {text}", g))
    return out


def _legend_beside(ax: Axes) -> None:
    """The legend right of the axes, where it covers no line and no confidence band."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _finish_panel(fig: Figure, ax: Axes, banded: bool, title: str | None) -> Figure:
    """A legend entry for the confidence bands (when drawn), the legend beside the axes, the title."""
    if banded:
        ax.plot([], [], color="0.5", alpha=0.3, lw=6, label="95 % confidence band")
    _legend_beside(ax)
    if title:
        ax.set_title(title)
    return fig


def _widths(g: int, groups: int) -> tuple[float, float]:
    """Line width and marker size of group ``g`` of ``groups``: earlier groups wider, so that a
    line another one covers (Clean Start 0 and 1 often give the same memory) still shows as a
    rim around it."""
    wider = groups - 1 - g
    return 1.5 + 1.3 * wider, 4.0 + 2.5 * wider


def _band(ax: Axes, df: pd.DataFrame, name: str, x: np.ndarray, scale: float, color, floor: float | None = None) -> bool:
    """A confidence band from ``<name>_ci_low``/``<name>_ci_high`` (data with replications), drawn
    when present (on a log axis its low end is kept at ``floor`` or above); True when drawn."""
    for low_name, high_name in ((f"{name}_ci_low", f"{name}_ci_high"), (f"{name}_mean_ci_low", f"{name}_mean_ci_high")):
        if low_name in df.columns and high_name in df.columns:
            low = pd.to_numeric(df[low_name], errors="coerce").to_numpy(dtype=float)
            high = pd.to_numeric(df[high_name], errors="coerce").to_numpy(dtype=float)
            if floor is not None:
                low = np.maximum(low, floor)
            ax.fill_between(x, low / scale, high / scale, color=color, alpha=0.2, linewidth=0)
            return True
    return False


def loss_against_expiry(table: pd.DataFrame, ax: Axes | None = None, *, expiry: str = EXPIRY_FIELD,
                        by: str | None = None, target: float | None = None,
                        title: str | None = "Message loss against the Session Expiry Interval") -> Figure:
    """Loss ratio (%) against the Session Expiry Interval on a log axis where 0 and UINT_MAX
    are labelled "0" and "never", one line per Clean Start (or per value of ``by``).

    ``table`` has one row per policy: a :func:`sim.summarize` table of a sweep over the expiry
    (``loss_ratio`` and, with replications, ``loss_ratio_ci_low``/``_ci_high``, drawn as a
    band), ``advice.policies`` of :func:`sim.advise`, or any frame with those columns.
    ``target`` (a ratio) draws the loss target.
    """
    fig, ax = _new_axes(ax, (8.0, 4.5))
    loss = _column(table, "loss_ratio")
    if loss is None:
        raise ValueError("loss_against_expiry needs a 'loss_ratio' column")
    pos, ticks, labels = expiry_positions(table[expiry] if expiry in table.columns else [])
    df = table.assign(_x=pos, _y=100.0 * loss.to_numpy(dtype=float))
    banded = False
    groups = _expiry_groups(df, expiry, by)
    for g, (name, rows) in enumerate(groups):
        rows = rows.sort_values("_x")
        lw, ms = _widths(g, len(groups))
        line, = ax.plot(rows["_x"], rows["_y"], marker="o", ms=ms, lw=lw, color=f"C{g}", label=name or "loss ratio")
        banded |= _band(ax, rows, "loss_ratio", rows["_x"].to_numpy(), 0.01, line.get_color())
    if target is not None:
        ax.axhline(100 * float(target), color="k", ls="--", lw=1, label=f"loss target {100 * float(target):.3g} %")
    _expiry_axis(ax, ticks, labels)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Loss ratio (% of pairs to returning consumers)")
    return _finish_panel(fig, ax, banded, title)


def memory_against_expiry(table: pd.DataFrame, ax: Axes | None = None, *, expiry: str = EXPIRY_FIELD,
                          by: str | None = None, logy: bool | None = None,
                          title: str | None = "Broker memory against the Session Expiry Interval") -> Figure:
    """Peak (solid) and time-weighted mean (dashed) broker memory against the Session Expiry
    Interval, 0 and UINT_MAX labelled "0" and "never", one colour per Clean Start (or ``by``).

    Needs ``memory_peak_bytes`` and ``memory_mean_bytes`` (their ``_ci_low``/``_ci_high`` are
    drawn as bands). Bytes in binary units (KiB, MiB, GiB). ``logy`` (default: when the values
    span more than two decades) draws memory on a log scale.
    """
    fig, ax = _new_axes(ax, (8.0, 4.5))
    peak, mean = _column(table, "memory_peak_bytes"), _column(table, "memory_mean_bytes")
    if peak is None or mean is None:
        raise ValueError("memory_against_expiry needs 'memory_peak_bytes' and 'memory_mean_bytes' columns")
    values = np.concatenate([peak.to_numpy(dtype=float), mean.to_numpy(dtype=float)])
    positive = values[np.isfinite(values) & (values > 0)]
    b_name, b_size = byte_unit(positive.max() if positive.size else 0.0)
    if logy is None:
        logy = bool(positive.size and positive.max() / positive.min() > 100)
    pos, ticks, labels = expiry_positions(table[expiry] if expiry in table.columns else [])
    df = table.assign(_x=pos)
    banded = False
    groups = _expiry_groups(df, expiry, by)
    for g, (name, rows) in enumerate(groups):
        rows = rows.sort_values("_x")
        lw, ms = _widths(g, len(groups))
        x = rows["_x"].to_numpy()
        prefix = f"{name}: " if name else ""
        for metric, style, what in (("memory_peak_bytes", "-", "peak"), ("memory_mean_bytes", "--", "mean")):
            y = _column(rows, metric).to_numpy(dtype=float) / b_size
            line, = ax.plot(x, y, ls=style, marker="o" if style == "-" else "s", ms=ms, lw=lw, color=f"C{g}",
                            label=prefix + what)
            banded |= _band(ax, rows, metric, x, b_size, line.get_color(),
                            floor=positive.min() / 2 if logy and positive.size else None)
    _expiry_axis(ax, ticks, labels)
    if logy:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis, positive.min() / b_size, positive.max() / b_size)
        ax.set_ylabel(f"Broker memory ({b_name}, log scale)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"Broker memory ({b_name})")
    return _finish_panel(fig, ax, banded, title)


def expiry_figure(table: pd.DataFrame, *, expiry: str = EXPIRY_FIELD, by: str | None = None,
                  target: float | None = None, title: str | None = None) -> Figure:
    """The headline figure: loss ratio (left) and peak and mean broker memory (right) against
    the Session Expiry Interval from 0 to never, per Clean Start, with confidence bands when
    the table has intervals (a :func:`sim.summarize` table of a sweep; ``mqtt-sim demo``
    writes it as ``expiry_headline.png``)."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    loss_against_expiry(table, ax=left, expiry=expiry, by=by, target=target, title="Loss")
    memory_against_expiry(table, ax=right, expiry=expiry, by=by, title="Broker memory")
    fig.suptitle(title or "What each Session Expiry Interval loses and what it costs in broker memory")
    return fig


# ---------------------------------------------------------------------------------------------
# memory over decades
# ---------------------------------------------------------------------------------------------

def memory_over_decades(frames, ax: Axes | None = None, *, horizon: float | None = None,
                        stranded: bool = True, logy: bool | None = None, bins: int = 300,
                        confidence: float = 0.95, title: str | None = "Broker memory over the years") -> Figure:
    """Broker memory of several runs over a long horizon, one line per run or policy: stranded
    sessions (clients that left for good) accumulate with sessions that never expire, finite
    expiries level off.

    ``frames`` maps a label (e.g. ``"expiry 1 d"``, ``"never"``) to a ``res.memory`` frame, or
    to a list of them (replications of one policy: the line is their mean per bin, with a
    ``confidence`` t-interval band across them); a list of ``(label, frames)`` pairs works too.
    Each step function is reduced to its time-weighted mean per bin (``bins`` equal bins from 0
    up to the horizon: ``horizon``, else the frame's ``attrs["horizon"]``, else its last row);
    with ``stranded``, the memory of stranded sessions is drawn dashed in the same colour. Time
    in s/min/h/d/y as the span requires (a UINT_MAX horizon, about 136 years, in years); bytes in
    binary units, on a log scale by default when the lines differ by more than two decades.
    """
    from scipy import stats

    items = list(frames.items()) if hasattr(frames, "items") else list(frames)
    if not items:
        raise ValueError("memory_over_decades needs at least one res.memory frame")
    fig, ax = _new_axes(ax, (9.0, 4.8))
    curves = []
    for name, runs in items:
        runs = [runs] if isinstance(runs, pd.DataFrame) else list(runs)
        ends = []
        for frame in runs:
            if "time" not in frame.columns or "bytes" not in frame.columns or not len(frame):
                raise ValueError(f"{name}: a res.memory frame with 'time' and 'bytes' rows is needed")
            end = horizon if horizon is not None else frame.attrs.get("horizon")
            ends.append(max(float(end) if end is not None else 0.0, float(frame["time"].max())))
        t_end = max(ends)
        cols = ["bytes"] + (["stranded_bytes"] if stranded and all("stranded_bytes" in f.columns for f in runs) else [])
        binned = []
        for frame in runs:
            data = frame.sort_values("time", kind="stable")
            t = data["time"].to_numpy(dtype=float)
            values = data[cols].to_numpy(dtype=float)
            if t[0] > 0:  # nothing held before the first row
                t, values = np.concatenate([[0.0], t]), np.vstack([np.zeros((1, len(cols))), values])
            if t_end > 0:
                _, means, _ = _bin_step_function(t, values, t_end, bins)
            else:
                means = values[-1:]
            binned.append(means)
        stack = np.stack(binned)  # runs x bins x columns
        x = np.linspace(0.0, t_end, len(stack[0]) + 1)
        mean = stack.mean(axis=0)
        band = None
        if len(runs) > 1:
            half = stats.t.ppf(0.5 + confidence / 2, len(runs) - 1) * stack[:, :, 0].std(axis=0, ddof=1) / np.sqrt(len(runs))
            band = (np.clip(mean[:, 0] - half, 0.0, None), mean[:, 0] + half)
        y = np.vstack([mean, mean[-1:]])
        curves.append((str(name), x, y, len(cols) > 1 and bool(np.any(stack[:, :, -1] > 0)), band, len(runs)))
    span = max(float(x[-1]) for _, x, _, _, _, _ in curves)
    t_name, t_size = time_unit(span)
    top = max(float(np.nanmax(y[:, 0] if band is None else np.append(y[:, 0], band[1])))
              for _, _, y, _, band, _ in curves)
    positive = np.concatenate([y[:, 0][y[:, 0] > 0] for _, _, y, _, _, _ in curves])
    b_name, b_size = byte_unit(top)
    if logy is None:
        logy = bool(positive.size and positive.max() / positive.min() > 100)
    banded = False
    for g, (name, x, y, has_stranded, band, n) in enumerate(curves):
        color = f"C{g % 10}"
        label = f"{name}: total" + (f" (mean of {n} runs)" if n > 1 else "")
        ax.plot(x / t_size, y[:, 0] / b_size, drawstyle="steps-post", color=color, lw=1.4, label=label)
        if band is not None:
            low, high = band
            if logy and positive.size:
                low = np.maximum(low, positive.min() / 2)
            ax.fill_between(x / t_size, np.append(low, low[-1]) / b_size, np.append(high, high[-1]) / b_size,
                            step="post", color=color, alpha=0.2, linewidth=0)
            banded = True
        if has_stranded:
            ax.plot(x / t_size, y[:, 1] / b_size, drawstyle="steps-post", color=color, lw=1.0, ls="--",
                    label=f"{name}: stranded sessions")
    ax.set_xlim(0, span / t_size)
    ax.set_xlabel(f"Simulated time ({t_name})")
    if logy:
        ax.set_yscale("log")
        if positive.size:
            _log_ticks(ax.yaxis, positive.min() / b_size / 2, top / b_size)
        ax.set_ylim(bottom=positive.min() / b_size / 2 if positive.size else None)
        ax.set_ylabel(f"Broker memory ({b_name}, log scale; bin means)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"Broker memory ({b_name}; bin means)")
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    if banded:
        ax.plot([], [], color="0.5", alpha=0.3, lw=6, label=f"{100 * confidence:g} % confidence band")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# session timeline (small scripted scenarios)
# ---------------------------------------------------------------------------------------------

#: Session states of the timeline and their colours.
TIMELINE_STATES = {
    "connected": ("connected", "#2ca02c"),
    "offline": ("offline, session resumable", "#1f77b4"),
    "expired": ("offline, no session (expired or ended)", "#d9d9d9"),
    "departed": ("departed (left for good)", "#7f7f7f"),
}

#: Colours of the message marks by fate (loss causes as in :data:`CAUSE_COLORS`).
FATE_COLORS = {"delivered": "#2ca02c", "pending": "#ffbb78", **CAUSE_COLORS,
               **{f: "#525252" for f in DEPARTED_FATES}}


def _client_states(events: pd.DataFrame, horizon: float) -> dict[str, list[tuple[float, float, str]]]:
    """Per consumer client id, its (start, end, state) spans from the lifecycle events."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    ev = events[events["role"] == "consumer"] if "role" in events.columns else events
    for cid, g in ev.groupby("client_id", sort=False):
        spans: list[tuple[float, float, str]] = []
        state, since, departed = None, None, False
        for t, event in zip(g["time"].astype(float), g["event"]):
            new = state
            if event == "connect":
                new = "connected"
            elif event == "disconnect":
                new = "offline"
            elif event in ("session_expired", "session_ended") and state == "offline" and not departed:
                new = "expired"
            elif event == "departed":
                departed, new = True, "departed"
            if new != state:
                if state is not None and t > since:
                    spans.append((since, t, state))
                state, since = new, t
        if state is not None and horizon > since:
            spans.append((since, horizon, state))
        out[str(cid)] = spans
    return out


def session_timeline(events: pd.DataFrame, messages: pd.DataFrame | None = None, ax: Axes | None = None, *,
                     horizon: float | None = None, clients: Sequence[str] | None = None,
                     title: str | None = "Sessions and messages per consumer") -> Figure:
    """One row per consumer client id: when it was connected, offline with a resumable session,
    offline without a session (expired or ended), or departed for good; with ``messages``
    (``res.messages`` of the exact engine, ``record_messages=True``) each message routed to it
    is a mark at its publish time, coloured by its fate (delivered, the loss cause, departed).

    ``events`` is ``res.events``; ``horizon`` (default: the latest time seen) ends the last
    spans. Meant for small scripted scenarios: a few clients and messages.
    """
    if not {"time", "client_id", "event"} <= set(events.columns):
        raise ValueError("session_timeline needs res.events (time, client_id, event)")
    t_last = float(events["time"].max()) if len(events) else 0.0
    if messages is not None and len(messages):
        t_last = max(t_last, float(messages["published_at"].max()), float(messages["fate_at"].max()))
    horizon = float(horizon) if horizon is not None else t_last
    states = _client_states(events, horizon)
    ids = list(clients) if clients is not None else list(states)
    if messages is not None and clients is None:
        ids += [c for c in pd.unique(messages["consumer"].astype(str)) if c not in states]
    fig, ax = _new_axes(ax, (10.0, 1.2 + 0.55 * max(1, len(ids))))
    t_name, t_size = time_unit(horizon)
    row = {cid: i for i, cid in enumerate(ids)}
    for cid, i in row.items():
        for state in TIMELINE_STATES:
            spans = [(a / t_size, (b - a) / t_size) for a, b, s in states.get(cid, []) if s == state]
            if spans:
                ax.broken_barh(spans, (i - 0.3, 0.6), color=TIMELINE_STATES[state][1], alpha=0.85)
    handles = [Patch(color=colour, alpha=0.85, label=text) for text, colour in TIMELINE_STATES.values()]
    if messages is not None and len(messages):
        m = messages[messages["consumer"].astype(str).isin(row)]
        for fate, g in m.groupby("fate", sort=False):
            y = g["consumer"].astype(str).map(row).to_numpy(dtype=float)
            lost = fate in LOSS_CAUSES
            ax.scatter(g["published_at"].to_numpy(dtype=float) / t_size, y, marker="X" if lost else "o",
                       s=60 if lost else 36, color=FATE_COLORS.get(fate, "black"), edgecolors="black",
                       linewidths=0.5, zorder=3,
                       label=f"message: {CAUSE_LABELS.get(fate, DEPARTED_LABELS.get(fate, fate))}")
    ax.set_yticks(range(len(ids)), ids)
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.set_xlim(0, horizon / t_size if horizon > 0 else 1)
    ax.set_xlabel(f"Simulated time ({t_name})")
    ax.set_ylabel("Consumer (client id)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    marks, texts = ax.get_legend_handles_labels()
    ax.legend(handles=handles + marks, labels=[h.get_label() for h in handles] + texts, fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# the policy advisor
# ---------------------------------------------------------------------------------------------

def frontier_figure(advice, ax: Axes | None = None, *, logx: bool | None = None,
                    title: str | None = "Loss against memory: the Pareto frontier") -> Figure:
    """Loss ratio against mean broker memory for every policy :func:`sim.advise` evaluated,
    the loss–memory Pareto frontier, the loss target, the memory budget (when given, against
    peak memory, so drawn for reference) and the recommended policy starred. Bytes in binary
    units; ``logx`` (default: when the policies' memory differs by more than a factor of 20)
    draws memory on a log scale."""
    t, f = advice.policies, advice.frontier
    fig, ax = _new_axes(ax, (8.0, 4.8))
    b_name, b_size = byte_unit(float(t["memory_mean_bytes"].max()))
    memory = t["memory_mean_bytes"].to_numpy(dtype=float)
    if logx is None:  # policies far apart in memory: a linear axis would crowd the small ones at 0
        logx = bool(np.all(memory > 0) and memory.max() / memory.min() > 20)
    ax.scatter(t["memory_mean_bytes"] / b_size, 100 * t["loss_ratio"], s=18, color="0.6", label="evaluated policy")
    ax.plot(f["memory_mean_bytes"] / b_size, 100 * f["loss_ratio"], color="C3", marker="o", ms=4,
            label="Pareto frontier")
    ax.axhline(100 * advice.max_loss_ratio, color="k", ls="--", lw=1, label="loss target")
    if advice.memory_budget is not None and advice.memory_budget <= 1.5 * float(t["memory_mean_bytes"].max()):
        ax.axvline(advice.memory_budget / b_size, color="k", ls=":", lw=1, label="memory budget (peak)")
    if advice.pick is not None:
        p = advice.pick
        ax.scatter([p["memory_mean_bytes"] / b_size], [100 * p["loss_ratio"]], marker="*", s=220, color="gold",
                   edgecolor="k", zorder=5, label="recommended")
    if logx:
        ax.set_xscale("log")
        _log_ticks(ax.xaxis, memory.min() / b_size, memory.max() / b_size)
    ax.set_xlabel(f"Mean broker memory ({b_name}{', log scale' if logx else ''})")
    ax.set_ylabel("Loss ratio (% of pairs to returning consumers)")
    ax.grid(alpha=0.3)
    _legend_beside(ax)
    if title:
        ax.set_title(title)
    return fig


def advice_figure(advice) -> Figure:
    """The advisor's answer: loss ratio against the Session Expiry Interval per Clean Start
    (with the confidence band and the target), and loss against mean memory with the Pareto
    frontier; the recommended policy is starred in both."""
    from .advise import CS, E

    t = advice.policies
    fig = Figure(figsize=(13, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    loss_against_expiry(t, ax=left, expiry=E, by=CS, target=advice.max_loss_ratio,
                        title=f"Loss against expiry ({100 * advice.confidence:g} % intervals)")
    if advice.pick is not None:
        p = advice.pick
        x = expiry_positions(list(t[E]) + [p[E]])[0][-1]
        left.scatter([x], [100 * p["loss_ratio"]], marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                     label="recommended")
        _legend_beside(left)
    frontier_figure(advice, ax=right, title="Loss against memory")
    return fig


def storm_figure(res, outage: int | None = None, *, margin: float = 0.5) -> Figure:
    """Memory and queued messages around fleet-wide network outages, from a :class:`sim.Result`.

    Two panels on one time axis: the retained bytes (``res.memory["bytes"]``) and the queued
    messages (``res.memory["queued"]``) as step functions; every network outage is shaded
    (``res.network_outages``), its reconnect storm (from the outage's end to its last storm
    reconnect) lightly, and the storm's reconnects are ticked along the bottom panel.
    ``outage``: the index of one network outage to zoom on (default: from the first outage's
    start to the last storm's end); ``margin``: extra time on each side, as a share of that span.
    The byte unit (B/KiB/MiB/GiB, binary) and the time unit (s/min/h/d) follow the data.
    """
    storms = res.network_outages if res.network_outages is not None else pd.DataFrame()
    if not len(storms):
        raise ValueError("storm_figure: this result has no network outage (scenario key 'network outages')")
    if outage is not None and not 0 <= outage < len(storms):
        raise ValueError(f"outage: {outage!r} is not the index of a network outage (0 .. {len(storms) - 1})")
    chosen = storms if outage is None else storms.iloc[[outage]]
    start, stop = float(chosen["start"].min()), float(chosen["storm_end"].max())
    horizon = float(res.summary["horizon"])
    pad = margin * (stop - start)
    lo, hi = max(0.0, start - pad), min(horizon, stop + pad)
    mem = res.memory.sort_values("time", kind="stable")
    t = mem["time"].to_numpy(dtype=float)
    inside = (t >= lo) & (t <= hi)
    before = np.flatnonzero(t < lo)  # the value held when the window opens
    rows = np.concatenate([before[-1:], np.flatnonzero(inside)]).astype(int)
    x = np.append(np.maximum(t[rows], lo), hi)
    t_name, t_size = time_unit(hi - lo)
    nbytes, queued = mem["bytes"].to_numpy(dtype=float)[rows], mem["queued"].to_numpy(dtype=float)[rows]
    b_name, b_size = byte_unit(float(nbytes.max()) if len(nbytes) else 0.0)

    fig = Figure(figsize=(9.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    if len(rows):
        top.plot(x / t_size, np.append(nbytes, nbytes[-1]) / b_size, drawstyle="steps-post", color="C0",
                 label="broker memory")
        bottom.plot(x / t_size, np.append(queued, queued[-1]), drawstyle="steps-post", color="C1",
                    label="queued messages")
    for i, row in enumerate(chosen.itertuples()):
        for ax in (top, bottom):
            ax.axvspan(row.start / t_size, row.end / t_size, color="0.5", alpha=0.25, lw=0,
                       label="network outage" if i == 0 else None)
            if row.storm_end > row.end:
                ax.axvspan(row.end / t_size, row.storm_end / t_size, color="C3", alpha=0.12, lw=0,
                           label="reconnect storm" if i == 0 else None)
    top.set_ylabel(f"Broker memory ({b_name})")
    bottom.set_ylabel("Queued messages (count)")
    bottom.set_xlabel(f"Simulated time ({t_name})")
    top.set_xlim(lo / t_size, hi / t_size)
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    top.set_title(f"Network outage{'s' if len(chosen) > 1 else ''}: peak {chosen['peak_bytes'].max() / b_size:.3g} "
                  f"{b_name}, {chosen['peak_queued'].max():.0f} queued, "
                  f"at most {chosen['reconnects_peak_per_s'].max():.0f} reconnect"
                  f"{'' if chosen['reconnects_peak_per_s'].max() == 1 else 's'} in one second")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return fig

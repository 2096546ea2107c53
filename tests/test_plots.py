"""sim.plots: each figure function returns a labelled Figure on a tiny real result."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import sim
from sim import plots

ROOT = Path(__file__).resolve().parents[1]


def _has_unit(label: str) -> bool:
    return bool(re.search(r"\([^)]+\)|%", label))

# One consumer that drops at t=10 and is back at t=14 with a 2 s Session Expiry Interval:
# its session expires at t=12, so the message published at t=11 is lost (session_expired).
SCRIPTED = {
    "name": "tiny",
    "horizon": "60s",
    "mqttConsumer": {
        "clients": 1,
        "session expiry interval": 2,
        "clean start": False,
        "qos": 1,
        "outages": {"trace": [[10, 14]]},
    },
    "mqttPublisher": {"clients": 1, "qos": 1, "schedule": [5, 11, 20, 30]},
}
# The same without outages: nothing is lost.
NO_LOSS = {k: v for k, v in SCRIPTED.items()}
NO_LOSS["name"] = "no-loss"
NO_LOSS["mqttConsumer"] = {k: v for k, v in SCRIPTED["mqttConsumer"].items() if k != "outages"}


@pytest.fixture(scope="module")
def lossy():
    return sim.run(sim.load_scenario(SCRIPTED), seed=1)


@pytest.fixture(scope="module")
def lossless():
    return sim.run(sim.load_scenario(NO_LOSS), seed=1)


@pytest.fixture(scope="module")
def policies(lossy, lossless):
    return pd.DataFrame({"SEI 2 s": lossy.summary, "no outage": lossless.summary}).T


def _axes_labelled(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    for label in (ax.get_xlabel(), ax.get_ylabel()):
        assert label.strip(), "empty axis label"
    # at least the quantitative axes carry a unit in parentheses or a % sign
    assert _has_unit(ax.get_xlabel()) or _has_unit(ax.get_ylabel())
    assert ax.get_title()
    fig.savefig(io.BytesIO(), format="png")  # renders without a display


def test_tiny_result_has_a_loss(lossy, lossless):
    assert lossy.summary["lost"] > 0
    assert lossless.summary["lost"] == 0


def test_loss_by_cause_from_summary(lossy):
    fig = plots.loss_by_cause(lossy.summary)
    _axes_labelled(fig)
    ax = fig.axes[0]
    assert "%" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tiny"]
    width = sum(p.get_width() for p in ax.patches)
    assert width == pytest.approx(100 * lossy.summary["loss_ratio"])


def test_loss_by_cause_from_frame_one_bar_per_policy(policies):
    fig = plots.loss_by_cause(policies)
    _axes_labelled(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SEI 2 s", "no outage"]
    # the segments of each bar add up to that policy's loss ratio
    totals = {}
    for p in ax.patches:
        row = round(p.get_y() + p.get_height() / 2)
        totals[row] = totals.get(row, 0.0) + p.get_width()
    assert totals.get(0, 0.0) == pytest.approx(100 * policies["loss_ratio"].iloc[0])
    assert totals.get(1, 0.0) == pytest.approx(0.0)
    legend = ax.get_legend()
    assert legend is not None and "session expired" in [t.get_text() for t in legend.get_texts()]


def test_memory_over_time(lossy):
    fig = plots.memory_over_time(lossy.memory, horizon=float(lossy.summary["horizon"]))
    _axes_labelled(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel().endswith("(s)")  # a 60 s horizon is shown in seconds
    assert re.search(r"\((B|KiB|MiB)\)", ax.get_ylabel())
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(0.0) and hi == pytest.approx(60.0)


def test_memory_over_time_on_given_axes(lossy):
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.memory_over_time(lossy.memory, ax=ax) is fig


def test_policy_tradeoff(policies):
    fig = plots.policy_tradeoff(policies)
    _axes_labelled(fig)
    ax = fig.axes[0]
    assert "%" in ax.get_ylabel()
    assert re.search(r"\((B|KiB|MiB|GiB)", ax.get_xlabel())
    legend = ax.get_legend()
    shown = [t.get_text() for t in ax.texts] + ([t.get_text() for t in legend.get_texts()] if legend else [])
    assert {"SEI 2 s", "no outage"} <= {line for text in shown for line in text.split("\n")}


def test_policy_tradeoff_merges_identical_results(lossy):
    # identical policies (as common random numbers often give) share one marker and label
    df = pd.DataFrame([lossy.summary] * 3, index=["a", "b", "c"])
    ax = plots.policy_tradeoff(df).axes[0]
    assert [t.get_text() for t in ax.texts] == ["a\nb\nc"]


def test_policy_tradeoff_error_bars(policies):
    df = policies.copy()
    df["loss_ratio_ci_low"] = df["loss_ratio"].astype(float) * 0.5
    df["loss_ratio_ci_high"] = df["loss_ratio"].astype(float) * 1.5
    fig = plots.policy_tradeoff(df)
    _axes_labelled(fig)
    assert fig.axes[0].containers, "no error bars drawn"


def test_all_zero_loss(lossless):
    s = lossless.summary
    assert s["lost"] == 0
    _axes_labelled(plots.loss_by_cause(s))
    _axes_labelled(plots.policy_tradeoff(pd.DataFrame([s, s], index=["a", "b"])))
    _axes_labelled(plots.memory_over_time(lossless.memory))


def test_zero_routed_row_does_not_divide_by_zero():
    df = pd.DataFrame({"routed": [0, 10], "lost_queue_full": [0, 5], "loss_ratio": [0.0, 0.5],
                       "memory_mean_bytes": [0.0, 0.0]}, index=["empty", "half"])
    _axes_labelled(plots.loss_by_cause(df))
    _axes_labelled(plots.policy_tradeoff(df))


def test_units_follow_the_data():
    assert plots.byte_unit(0) == ("B", 1.0)
    assert plots.byte_unit(999)[0] == "B"
    assert plots.byte_unit(1023) == ("B", 1.0)  # binary units: 1 KiB = 1024 B
    assert plots.byte_unit(1024) == ("KiB", 1024.0)
    assert plots.byte_unit(1536) == ("KiB", 1024.0)
    assert plots.byte_unit(2.5e6) == ("MiB", 2.0 ** 20)
    assert plots.byte_unit(3 * 2**30) == ("GiB", 2.0 ** 30)
    assert plots.byte_unit(5 * 2**40) == ("TiB", 2.0 ** 40)
    assert plots.time_unit(60)[0] == "s"
    assert plots.time_unit(3 * 3600)[0] == "h"
    assert plots.time_unit(30 * 86400)[0] == "d"
    assert plots.time_unit(sim.UINT_MAX)[0] == "y"


def test_long_memory_frames_are_binned_preserving_the_integral():
    rng = np.random.default_rng(0)
    n = 30_000
    t = np.concatenate([[0.0], np.sort(rng.uniform(0, 86_400, n - 1))])
    comp = {c: rng.integers(0, 5_000, n).astype(float) for c in
            ("connected_bytes", "offline_bytes", "stranded_bytes", "store_bytes")}
    df = pd.DataFrame({"time": t, **comp})
    df["bytes"] = sum(comp.values())
    fig = plots.memory_over_time(df, horizon=86_400, max_points=10_000, bins=500)
    _axes_labelled(fig)
    assert fig.axes[0].get_xlabel().endswith("(h)")
    values = df[list(comp)].to_numpy()
    edges, means, maxima = plots._bin_step_function(t, values, 86_400.0, 500)
    exact = (values * np.diff(np.append(t, 86_400.0))[:, None]).sum(axis=0)
    assert (means * np.diff(edges)[:, None]).sum(axis=0) == pytest.approx(exact, rel=1e-9)
    assert maxima.max() == pytest.approx(values.sum(axis=1).max())


def test_import_does_not_load_pyplot():
    code = "import sys, sim.plots; assert 'matplotlib.pyplot' not in sys.modules"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_sweep_summary_tables_are_labelled_by_the_varying_grid_values():
    # the shape of sim.summarize output: default index, grid columns named by field path
    df = pd.DataFrame({
        "mqttConsumer.session expiry interval": [0, sim.UINT_MAX],
        "mqttConsumer.clean start": [False, False],
        "routed": [100.0, 100.0], "lost_no_session": [4.0, 0.0], "loss_ratio": [0.04, 0.0],
        "loss_ratio_ci_low": [0.03, 0.0], "loss_ratio_ci_high": [0.05, 0.0],
        "memory_mean_bytes": [9e3, 2e4],
        "memory_mean_bytes_ci_low": [8e3, 1.5e4], "memory_mean_bytes_ci_high": [1e4, 2.5e4],
    })
    expected = ["session expiry interval=0", "session expiry interval=UINT_MAX"]
    ax = plots.loss_by_cause(df).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    fig = plots.policy_tradeoff(df)
    _axes_labelled(fig)
    assert fig.axes[0].containers  # error bars in both directions


def test_loss_by_cause_refuses_a_table_without_causes():
    with pytest.raises(ValueError, match="lost_<cause>"):
        plots.loss_by_cause(pd.DataFrame({"routed": [10], "loss_ratio": [0.1]}))


def test_storm_figure(tmp_path):
    scn = sim.load_scenario("data/scenarios/network_outage.yaml").updated({"horizon": "3h", "mqttConsumer.clients": 10})
    res = sim.run(scn, seed=2)
    fig = plots.storm_figure(res)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    top, bottom = fig.axes
    assert re.search(r"^Broker memory \((B|KiB|MiB)\)$", top.get_ylabel())
    assert bottom.get_ylabel() == "Queued messages (count)"
    assert bottom.get_xlabel() == "Simulated time (h)"  # an hour-long outage and its storm: hours
    assert "network outage" in [t.get_text() for t in top.get_legend().get_texts()]
    assert top.get_title()
    lo, hi = top.get_xlim()
    row = res.network_outages.iloc[0]
    assert lo * 3600 < row["start"] and hi * 3600 > row["storm_end"]  # the outage and its storm are in view
    # the queued-messages line reaches the storm's peak
    assert max(line.get_ydata().max() for line in bottom.get_lines()) == res.summary["storm_peak_queued"]
    out = tmp_path / "storm.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no network outage"):
        plots.storm_figure(sim.run(sim.load_scenario(SCRIPTED), seed=1))
    with pytest.raises(ValueError, match="outage: 3"):
        plots.storm_figure(res, outage=3)


# ------------------------------------------------------------------ figures against the expiry, decades, timeline

E = "mqttConsumer.session expiry interval"
CS = "mqttConsumer.clean start"


@pytest.fixture(scope="module")
def expiry_table():
    """A small replicated sweep over the expiry, 0 to never, and both Clean Starts."""
    scn = sim.load_scenario(ROOT / "data/scenarios/transport_example.yaml").updated({"horizon": "10m"})
    runs = sim.sweep(scn, {E: [0, 15, 3600, sim.UINT_MAX], CS: [False, True]}, replications=2, seed=3,
                     progress=False)
    return sim.summarize(runs, by=[E, CS])


def _saved(fig: Figure, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 5_000
    return path


def _ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def test_expiry_figure_labels_zero_and_never(expiry_table, tmp_path):
    fig = plots.expiry_figure(expiry_table)
    _saved(fig, tmp_path, "expiry")
    loss_ax, memory_ax = fig.axes[:2]
    for ax in (loss_ax, memory_ax):
        assert ax.get_xscale() == "log"
        assert _ticks(ax)[0] == "0" and "never" in _ticks(ax)
        assert "log scale" in ax.get_xlabel() and _has_unit(ax.get_xlabel())
    assert "%" in loss_ax.get_ylabel()
    assert re.search(r"\((B|KiB|MiB|GiB)", memory_ax.get_ylabel())
    # one line per Clean Start on the loss panel, peak and mean per Clean Start on the memory panel
    assert len([ln for ln in loss_ax.get_lines() if len(ln.get_xdata()) == 4]) == 2
    assert len([ln for ln in memory_ax.get_lines() if len(ln.get_xdata()) == 4]) == 4
    assert loss_ax.collections, "replicated data: the confidence bands are missing"
    # the line drawn is the table's loss ratio, in %, with "never" right of every finite expiry
    cs0 = expiry_table[~expiry_table[CS]].sort_values(E)
    line = loss_ax.get_lines()[0]
    assert np.allclose(line.get_ydata(), 100 * cs0["loss_ratio"].to_numpy())
    assert np.argmax(line.get_xdata()) == 3


def test_memory_against_expiry_without_intervals_draws_no_band():
    df = pd.DataFrame({E: [0, 60, sim.UINT_MAX], "memory_peak_bytes": [2e3, 5e4, 3e9],
                       "memory_mean_bytes": [1e3, 2e4, 1e9]})
    fig = plots.memory_against_expiry(df)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # six decades apart
    assert "GiB" in ax.get_ylabel()
    assert not ax.collections
    assert _ticks(ax)[:2] == ["0", "never"]


def test_memory_over_decades_to_uint_max(tmp_path):
    base = sim.load_scenario(ROOT / "data/scenarios/uint_max_fleet.yaml").updated(
        {"horizon": "uint_max", "mqttConsumer.clients": 2, "mqttConsumer.outages.up.mean": "1y",
         "mqttPublisher.rate": "1/30d"})
    frames = {name: sim.run(base.updated({E: e}), seed=2, engine="interval").memory
              for name, e in (("expiry 1 d", 86_400), ("never", sim.UINT_MAX))}
    fig = plots.memory_over_decades(frames, horizon=sim.UINT_MAX)
    _saved(fig, tmp_path, "decades")
    ax = fig.axes[0]
    assert ax.get_xlabel().endswith("(y)")
    assert ax.get_xlim()[1] == pytest.approx(sim.UINT_MAX / (365 * 86_400))  # about 136 years
    assert re.search(r"\((B|KiB|MiB|GiB)", ax.get_ylabel())
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "never: total" in labels and "expiry 1 d: total" in labels
    # sessions that never expire end the horizon holding more than a one-day expiry
    finals = {ln.get_label(): ln.get_ydata()[-1] for ln in ax.get_lines()}
    assert finals["never: total"] > finals["expiry 1 d: total"]


def test_session_timeline_of_the_scripted_scenario(tmp_path):
    res = sim.run(sim.load_scenario(ROOT / "data/scenarios/scripted.yaml"), seed=1)
    fig = plots.session_timeline(res.events, res.messages, horizon=res.summary["horizon"])
    _saved(fig, tmp_path, "timeline")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Simulated time (s)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["consumer-0"]
    # connected 0-10, offline with its session 10-12 (expiry 2 s), without one 12-14, connected 14-60
    assert plots._client_states(res.events, 60.0)["consumer-0"] == [
        (0.0, 10.0, "connected"), (10.0, 12.0, "offline"), (12.0, 14.0, "expired"), (14.0, 60.0, "connected")]
    marks = [c for c in ax.collections if c.get_label().startswith("message: ")]
    assert sum(len(c.get_offsets()) for c in marks) == len(res.messages)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {plots.TIMELINE_STATES[s][0] for s in plots.TIMELINE_STATES} <= set(legend)
    assert {"message: delivered", "message: session expired", "message: no session"} <= set(legend)


def test_session_timeline_shows_a_departure():
    scn = sim.load_scenario({"name": "leaves", "horizon": "60s",
                             "mqttConsumer": {"clients": 1, "session expiry interval": 5, "clean start": False,
                                              "qos": 1, "outages": {"trace": [[10, None]]}},
                             "mqttPublisher": {"clients": 1, "qos": 1, "schedule": [5, 12, 30]}})
    res = sim.run(scn, seed=1)
    spans = plots._client_states(res.events, 60.0)["consumer-0"]
    assert spans[0] == (0.0, 10.0, "connected") and spans[-1][2] == "departed" and spans[-1][1] == 60.0
    fig = plots.session_timeline(res.events, res.messages, horizon=60)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(text.startswith("message: ") and "held until the session ended" in text for text in legend)


def test_frontier_and_advice_figures(tmp_path):
    scn = sim.load_scenario(ROOT / "data/scenarios/transport_example.yaml").updated({"horizon": "10m"})
    advice = sim.advise(scn, max_loss_ratio="5%", replications=2, expiries=[0, 60, sim.UINT_MAX], refine=1,
                        progress=False)
    fig = plots.frontier_figure(advice)
    _saved(fig, tmp_path, "frontier")
    ax = fig.axes[0]
    assert re.search(r"\((B|KiB|MiB|GiB)\)", ax.get_xlabel()) and "%" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto frontier" in legend
    assert ("recommended" in legend) == (advice.pick is not None)
    both = plots.advice_figure(advice)
    _saved(both, tmp_path, "advice")
    assert _ticks(both.axes[0])[0] == "0" and "never" in _ticks(both.axes[0])


@pytest.mark.parametrize("values", [
    [0, 10, 60, 190, 600, 3600, 86_400, sim.UINT_MAX],   # an advisor's grid after a bisection step
    [0, 15, 300, 3600, sim.UINT_MAX],                     # the demo's grid
    [0, *np.geomspace(1, 1e8, 40), sim.UINT_MAX],          # many values: round ticks only
])
def test_expiry_ticks_keep_their_distance(values):
    pos, ticks, labels = plots.expiry_positions(values)
    assert labels[:2] == ["0", "never"] and len(ticks) == len(labels)
    logs = np.sort(np.log10(ticks))
    assert np.diff(logs).min() >= 0.6 - 1e-9  # labels do not run into one another
    assert pos.min() == min(ticks) and pos.max() == max(ticks)  # 0 and never sit on their ticks


def test_memory_over_decades_of_replications_draws_their_mean_and_band(tmp_path):
    base = sim.load_scenario(ROOT / "data/scenarios/uint_max_fleet.yaml").updated(
        {"horizon": "10y", "mqttConsumer.clients": 2, "mqttConsumer.outages.up.mean": "30d",
         "mqttPublisher.rate": "1/7d", E: sim.UINT_MAX})
    runs = [sim.run(base, seed=s, engine="interval").memory for s in (1, 2, 3)]
    fig = plots.memory_over_decades({"never": runs}, bins=50)
    _saved(fig, tmp_path, "decades_replications")
    ax = fig.axes[0]
    assert ax.get_xlabel().endswith("(y)")
    (total,) = [ln for ln in ax.get_lines() if ln.get_label() == "never: total (mean of 3 runs)"]
    assert "95 % confidence band" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.collections) == 1  # the band
    # the line is the mean of the runs' time-weighted bin means, in the unit the label names
    per_run = [plots._bin_step_function(m["time"].to_numpy(float), m[["bytes"]].to_numpy(float),
                                        float(base.horizon), 50)[1][:, 0] for m in runs]
    name = re.search(r"\((B|KiB|MiB|GiB)", ax.get_ylabel()).group(1)
    size = dict(plots._BYTE_UNITS)[name]
    assert np.allclose(total.get_ydata()[:-1], np.mean(per_run, axis=0) / size)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() >= total.get_ydata().max() - 1e-9


# ------------------------------------------------------------------ read at the size it is shown

def _outside(inner, outer, slack: float) -> bool:
    return (inner.x0 < outer.x0 - slack or inner.y0 < outer.y0 - slack or inner.x1 > outer.x1 + slack
            or inner.y1 > outer.y1 + slack)


def _drawn(fig: Figure):
    """Draw ``fig`` at its own size (layout included); its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _cut_off(fig: Figure) -> bool:
    """Whether anything drawn (labels, tick labels, titles, legends) reaches outside the figure:
    the tight bounding box of what is drawn must lie within the figure at its own size."""
    renderer = _drawn(fig)
    return _outside(fig.get_tightbbox(renderer), fig.bbox_inches, slack=1 / 72)


def test_no_text_is_cut_off_at_the_size_a_figure_is_made(lossy, policies, expiry_table):
    res = sim.run(sim.load_scenario(ROOT / "data/scenarios/network_outage.yaml").updated(
        {"horizon": "3h", "mqttConsumer.clients": 10}), seed=2)
    figures = {
        "loss_by_cause": plots.loss_by_cause(policies),
        "departed_traffic": plots.departed_traffic(policies),
        "memory_over_time": plots.memory_over_time(lossy.memory),
        "policy_tradeoff": plots.policy_tradeoff(policies),
        "policy_figure": plots.policy_figure(policies),
        "expiry_figure": plots.expiry_figure(expiry_table, target=0.01),
        "session_timeline": plots.session_timeline(lossy.events),
        "storm_figure": plots.storm_figure(res),
    }
    for name, fig in figures.items():
        assert not _cut_off(fig), name


def test_memory_over_time_keeps_its_legend_off_the_data(lossy):
    fig = plots.memory_over_time(lossy.memory)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside the axes


def test_log_memory_axes_have_plain_ticks_within_a_decade():
    # 20 KiB to 6 MiB: 1-2-5 ticks written as plain numbers, not just 10^-1 and 10^0
    df = pd.DataFrame({E: [0, 3600, sim.UINT_MAX], "memory_peak_bytes": [2e4, 1.5e6, 6.5e6],
                       "memory_mean_bytes": [2e4, 7e5, 3.5e6]})
    fig = plots.memory_against_expiry(df)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "MiB" in ax.get_ylabel()
    low, high = ax.get_ylim()
    shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks()) if low <= v <= high]
    assert {"0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"} <= set(shown)
    assert not any("10^" in s or "times" in s for s in shown)


def test_coinciding_clean_start_lines_stay_visible():
    # Clean Start 0 and 1 with the same memory: the first line is wider, a rim around the second
    df = pd.DataFrame({E: [0, 60, 0, 60], CS: [False, False, True, True], "memory_peak_bytes": [4e3, 8e3] * 2,
                       "memory_mean_bytes": [2e3, 4e3] * 2, "loss_ratio": [0.1, 0.0] * 2})
    for fig in (plots.memory_against_expiry(df), plots.loss_against_expiry(df)):
        lines = fig.axes[0].get_lines()
        first = next(ln for ln in lines if ln.get_label().startswith("Clean Start 0"))
        second = next(ln for ln in lines if ln.get_label().startswith("Clean Start 1"))
        assert np.allclose(first.get_ydata(), second.get_ydata())
        assert first.get_linewidth() > second.get_linewidth() and first.get_markersize() > second.get_markersize()


def test_memory_axis_turns_logarithmic_when_policies_are_far_apart():
    near = pd.DataFrame({"memory_mean_bytes": [10e3, 40e3], "loss_ratio": [0.1, 0.0]}, index=["a", "b"])
    far = pd.DataFrame({"memory_mean_bytes": [10e3, 40e3, 900e3], "loss_ratio": [0.1, 0.0, 0.0]}, index=["a", "b", "c"])
    assert plots.policy_tradeoff(near).axes[0].get_xscale() == "linear"
    ax = plots.policy_tradeoff(far).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Mean broker memory (KiB, log scale)"
    assert plots.policy_tradeoff(far, logx=False).axes[0].get_xscale() == "linear"


def test_expiry_legends_stand_beside_the_bands(expiry_table):
    fig = plots.expiry_figure(expiry_table)
    renderer = _drawn(fig)
    for ax in fig.axes[:2]:
        assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert not _cut_off(fig)

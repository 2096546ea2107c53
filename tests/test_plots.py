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
    assert re.search(r"\((B|kB|MB)\)", ax.get_ylabel())
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
    assert re.search(r"\((B|kB|MB|GB)", ax.get_xlabel())
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
    assert plots.byte_unit(1500)[0] == "kB"
    assert plots.byte_unit(2.5e6)[0] == "MB"
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
    assert re.search(r"^Broker memory \((B|kB|MB)\)$", top.get_ylabel())
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

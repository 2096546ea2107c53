"""sim.compare: policies against a baseline, paired by replication (common random numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim

E = "mqttConsumer.session expiry interval"


def _runs():
    base = np.array([0.10, 0.20, 0.15, 0.30, 0.25])
    return pd.DataFrame({
        E: [0] * 5 + [15] * 5 + [3600] * 5,
        "replication": list(range(5)) * 3,
        "loss_ratio": np.r_[base, base - np.array([0.01, 0.03, 0.02, 0.02, 0.02]), base],
        "memory_peak_bytes": np.r_[[100.0] * 5, [150, 160, 150, 170, 150], [400, 400, 400, 400, 400]],
        "error": [""] * 15,
    })


def test_paired_differences_by_hand_with_bonferroni():
    runs = _runs()
    out = sim.compare(runs, baseline={E: 0}, metrics=["loss_ratio", "memory_peak_bytes"])
    assert list(out[E]) == [15, 15, 3600, 3600] and list(out["metric"]) == ["loss_ratio", "memory_peak_bytes"] * 2
    assert (out["confidence"] == 0.975).all()  # two policies: 1 - 0.05 / 2
    r = out.iloc[0]
    d = np.array([-0.01, -0.03, -0.02, -0.02, -0.02])
    assert r["n"] == 5 and r["difference"] == pytest.approx(d.mean())
    half = stats.t.ppf(1 - 0.025 / 2, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r["p_value"] == pytest.approx(min(1, 2 * stats.ttest_rel(runs.loc[5:9, "loss_ratio"],
                                                                      runs.loc[0:4, "loss_ratio"]).pvalue))
    assert r["significant"]
    # the same loss in every replication: a zero difference with no spread
    r = out.iloc[2]
    assert (r["difference"], r["ci_low"], r["ci_high"], r["significant"]) == (0, 0, 0, False)
    # memory: constant +300 B, exactly
    r = out.iloc[3]
    assert (r["difference"], r["ci_low"], r["ci_high"], r["significant"]) == (300, 300, 300, True)


def test_pairs_only_replications_both_ran_without_error():
    runs = _runs()
    runs.loc[7, "error"] = "RuntimeError: boom"  # expiry 15, replication 2
    runs = runs.drop(index=13)                   # expiry 3600, replication 3 missing
    out = sim.compare(runs, baseline={E: 0}).set_index(E)
    assert out.loc[15, "n"] == 4 and out.loc[3600, "n"] == 4


def test_baseline_must_name_one_cell():
    runs = _runs()
    runs["mqttConsumer.clean start"] = False
    with pytest.raises(KeyError, match="not grid columns"):
        sim.compare(runs, baseline={"broker.max queued messages": 5})
    with pytest.raises(ValueError, match="matches 0 grid cells"):
        sim.compare(runs, baseline={E: 7})


def test_paired_interval_much_narrower_than_unpaired_under_crn():
    """The point of common random numbers: the same outages and publishes in both policies."""
    scn = sim.load_scenario("data/scenarios/transport_example.yaml").updated({"horizon": "1h"})
    runs = sim.sweep(scn, {E: [15, 30]}, replications=12, seed=3, progress=False)
    out = sim.compare(runs, baseline={E: 15}, metrics=["loss_ratio"]).iloc[0]
    paired = out["ci_high"] - out["ci_low"]
    unpaired = out["unpaired_ci_high"] - out["unpaired_ci_low"]
    assert out["n"] == 12 and out["difference"] < 0 and out["significant"]
    assert paired < 0.3 * unpaired, (paired, unpaired)  # measured: about 0.16

"""The policy advisor (sim.advise, mqtt-sim advise) against a closed form."""
from __future__ import annotations

import pandas as pd
import pytest
from scipy import optimize

import sim
from sim import analytic
from sim.cli import main

U, D, LAM = 30.0, 20.0, 0.2
E = "mqttConsumer.session expiry interval"
SCN = {"name": "advise", "horizon": 5000, "broker": {"max queued messages": 0, "max queued bytes": 0},
       "mqttConsumer": {"clients": 4, "session expiry interval": 0, "clean start": False, "qos": 1,
                        "outages": {"up": {"distribution": "exponential", "mean": U},
                                    "down": {"distribution": "exponential", "mean": D}}},
       "mqttPublisher": {"qos": 1, "rate": LAM}}


def test_pick_agrees_with_the_analytic_smallest_expiry_within_the_stated_bracket():
    """Exponential up/down, no limits: loss(E) = (E + D) exp(-E/D) / (U + D) (sim.analytic).
    For a 5 % target the smallest E meeting it is about 72 s; the advisor's bracket (largest
    interval that surely misses, smallest meeting) must contain it, and its pick is that
    smallest meeting interval, with Clean Start 0 (Clean Start 1 loses every offline message)."""
    target = 0.05
    exact = optimize.brentq(lambda e: analytic.loss_ratio(U, D, e) - target, 0, 1000)
    a = sim.advise(sim.load_scenario(SCN), target, replications=8, seed=1, progress=False)
    assert a.pick is not None and a.pick["mqttConsumer.clean start"] == False  # noqa: E712
    b = a.brackets.set_index("mqttConsumer.clean start").loc[False]
    assert b["surely_missing"] <= exact <= b["meeting"], (b.to_dict(), exact)
    assert a.pick[E] == b["meeting"]
    assert b["meeting"] - b["surely_missing"] <= 0.5 * b["meeting"]  # bisection narrowed the grid's 60 s .. 600 s
    assert "Recommended: Session Expiry Interval" in a.explanation and f"{int(b['meeting'])} s" in a.explanation
    # the frontier: no policy beats a frontier point on both loss and memory
    t = a.policies
    for f in a.frontier.to_dict("records"):
        better = t[(t["loss_ratio"] < f["loss_ratio"]) & (t["memory_mean_bytes"] < f["memory_mean_bytes"])]
        assert better.empty
    assert a.pick[E] in set(a.frontier[E])


def test_no_policy_fits_a_tiny_budget_and_the_answer_says_so():
    a = sim.advise(sim.load_scenario(SCN), "5%", memory_budget="1KiB", replications=3, seed=1, progress=False,
                   expiries=[0, 60, 600], refine=0)
    assert a.pick is None
    assert a.explanation.startswith("No policy of the 6 evaluated meets") and "nearest candidates" in a.explanation
    assert "peak broker memory of at most 1 KiB" in a.explanation  # bytes in binary units, as in the figures
    with pytest.raises(sim.ScenarioError, match="memory_budget"):
        sim.advise(sim.load_scenario(SCN), 0.05, memory_budget="lots")
    with pytest.raises(sim.ScenarioError, match="max_loss_ratio"):
        sim.advise(sim.load_scenario(SCN), "150%")


def test_advice_text_writes_bytes_in_binary_units():
    from sim.advise import _fmt_b, parse_bytes

    assert parse_bytes("2MiB") == 2 * 2**20 and parse_bytes("2MB") == 2e6  # input: either
    assert _fmt_b(1000) == "1,000 B"
    assert _fmt_b(1536) == "1.5 KiB"
    assert _fmt_b(2e6) == "1.91 MiB"  # a decimal budget is written in the binary unit of the figures
    assert _fmt_b(3 * 2**30) == "3 GiB"


def test_cli_advise_writes_files_pandas_opens(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    scn = tmp_path / "scn.yaml"
    import yaml

    scn.write_text(yaml.safe_dump(SCN))
    assert main(["advise", str(scn), "--max-loss", "5%", "--memory", "1MiB", "--replications", "3",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Recommended:" in out and "loss-memory frontier" in out
    front = pd.read_parquet(tmp_path / "out" / "advice_frontier.parquet")
    assert len(front) >= 2 and (tmp_path / "out" / "advice.png").stat().st_size > 10_000

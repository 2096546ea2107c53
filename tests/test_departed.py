"""Traffic to departed devices is not loss (docs/model.md "Fates").

Scripted scenarios with hand-computed outcomes: a pair whose consumer left for good and
that it had not received gets a departed fate (``departed_expired``, ``departed_queue_full``,
``departed_message_expired``, ``departed_not_queued``, ``departed_held``), never a loss
cause; ``loss_ratio = lost / (routed - departed_pairs)``. Also the per-consumer loss
spread, the bounded intervals of ``sim.summarize`` and the demo's table, each against a
hand count.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import sim
from sim.cli import demo_table
from sim.sweep import t_interval

UINT = sim.UINT_MAX


def scenario(consumers, publishers, horizon=100, **broker):
    b = {"profile": "mosquitto", "max queued messages": 0, "max queued bytes": 0, "queue full policy": "drop-new",
         "queue qos0 messages": False, "message expiry check": "eager", "max session expiry interval": "uint_max"}
    b.update({k.replace("_", " "): v for k, v in broker.items()})
    return sim.load_scenario({"name": "departed", "horizon": horizon, "broker": b,
                              "mqttConsumer": consumers, "mqttPublisher": publishers})


def consumer(cid="c", sei=UINT, trace=None, **kw):
    d = {"clients": 1, "client id": cid, "session expiry interval": sei, "clean start": False, "qos": 1,
         "topic filter": "a/+"}
    if trace is not None:
        d["outages"] = {"trace": [list(p) for p in trace]}
    d.update({k.replace("_", " "): v for k, v in kw.items()})
    return d


def publisher(schedule, **kw):
    d = {"clients": 1, "client id": "p", "qos": 1, "topic": "a/b", "payload bytes": 100, "schedule": list(schedule)}
    d.update({k.replace("_", " "): v for k, v in kw.items()})
    return d


def fates_of(res, cid):
    m = res.messages[res.messages["consumer"] == cid].sort_values("published_at", kind="stable")
    return [(float(t), f) for t, f in zip(m["published_at"], m["fate"])]


def run(scn):
    return sim.run(scn, seed=1, record_messages=True)


AFTER = [11, 12, 13, 14, 15]  # five messages published after the device left at t = 10


# ------------------------------------------------------------------ the scripted cases

def test_uint_max_queue_limit_two_departed_at_10():
    """UINT_MAX, queue limit 2, leaves for good at 10; 5 messages after: 0 lost, 2 held at
    the horizon, 3 dropped by the limit (drop-new keeps the first two)."""
    res = run(scenario(consumer(trace=[(10, None)]), publisher(AFTER), max_queued_messages=2))
    assert fates_of(res, "c-0") == [(11, "departed_held"), (12, "departed_held"), (13, "departed_queue_full"),
                                    (14, "departed_queue_full"), (15, "departed_queue_full")]
    s = res.summary
    assert (s["lost"], s["departed_held"], s["departed_queue_full"], s["departed_pairs"]) == (0, 2, 3, 5)
    assert s["routed"] == 5 and s["pending"] == 0
    assert math.isnan(s["loss_ratio"])  # no pair of a consumer that comes back
    assert s["consumers_counted"] == 0
    # the memory is the policy's real cost and stays split as stranded: session + 2 entries
    mem = res.memory.set_index("time")["stranded_bytes"]
    assert mem.loc[:50].iloc[-1] > 0


def test_drop_oldest_keeps_the_last_two():
    res = run(scenario(consumer(trace=[(10, None)]), publisher(AFTER), max_queued_messages=2,
                       queue_full_policy="drop-oldest"))
    assert [f for _, f in fates_of(res, "c-0")] == ["departed_queue_full"] * 3 + ["departed_held"] * 2


def test_expiry_3_departed_expired_at_13():
    """Expiry 3, left at 10, horizon past 13: the two held messages end with the session at
    13 (departed_expired); the three over the limit before that were dropped by it."""
    res = run(scenario(consumer(sei=3, trace=[(10, None)]), publisher([11, 11.5, 12, 12.5, 12.9]),
                       max_queued_messages=2, horizon=30))
    assert fates_of(res, "c-0") == [(11, "departed_expired"), (11.5, "departed_expired"),
                                    (12, "departed_queue_full"), (12.5, "departed_queue_full"),
                                    (12.9, "departed_queue_full")]
    m = res.messages.set_index("published_at")
    assert m.loc[11, "fate_at"] == 13
    assert res.summary["lost"] == 0 and res.summary["sessions_expired"] == 1
    assert sim.run(scenario(consumer(sei=3, trace=[(10, None)]), publisher(AFTER), max_queued_messages=2,
                            horizon=30), seed=1).summary["routed"] == 2  # nothing routed once the session is gone


def test_a_consumer_that_reconnects_is_unaffected():
    """Beside the departed c, a consumer r with the same settings that is back at 20: its
    two queued messages are delivered, the three over the limit are real loss."""
    res = run(scenario([consumer("c", trace=[(10, None)]), consumer("r", trace=[(10, 20)])],
                       publisher(AFTER), max_queued_messages=2))
    assert fates_of(res, "r-0") == [(11, "delivered"), (12, "delivered"), (13, "queue_full"),
                                    (14, "queue_full"), (15, "queue_full")]
    f = res.fates.set_index("client_id")
    assert f.loc["r-0", "lost_queue_full"] == 3 and f.loc["r-0", "departed_pairs"] == 0
    assert f.loc["c-0", "lost"] == 0 and f.loc["c-0", "departed_pairs"] == 5
    assert res.summary["loss_ratio"] == pytest.approx(3 / 5)
    assert f.loc["r-0", "loss_ratio"] == pytest.approx(3 / 5) and math.isnan(f.loc["c-0", "loss_ratio"])


@pytest.mark.parametrize("sei,fate", [(UINT, "departed_held"), (5, "departed_expired"), (0, "departed_expired")])
def test_in_flight_at_departure_is_departed_not_lost(sei, fate):
    """Latency 1: the message published at 9.5 is on the wire when the device leaves at 10
    (it would arrive at 10.5). With interval 0 the session ends at the close; with 5 at 15."""
    res = run(scenario(consumer(sei=sei, trace=[(10, None)], network_latency=1), publisher([5, 9.5]), horizon=30))
    assert fates_of(res, "c-0") == [(5, "delivered"), (9.5, fate)]
    assert res.summary["lost"] == 0 and res.summary["loss_ratio"] == 0


def test_queued_behind_the_window_at_departure_is_departed():
    """Receive Maximum 1, latency 1: 9.2 is in flight, 9.4 waits in the queue when the
    device leaves at 10 (9.2's PUBACK would come at 11.2)."""
    res = run(scenario(consumer(trace=[(10, None)], network_latency=1, receive_maximum=1), publisher([9.2, 9.4]),
                       horizon=30))
    assert fates_of(res, "c-0") == [(9.2, "departed_held"), (9.4, "departed_held")]
    assert res.summary["lost"] == 0


def test_qos0_and_message_expiry_for_a_departed_device():
    """QoS 0 is not queued for an offline session (departed_not_queued); a QoS 1 message
    whose Message Expiry Interval passes in the departed session: departed_message_expired."""
    res = run(scenario(consumer(trace=[(10, None)]),
                       [publisher([12], client_id="q0", qos=0), publisher([13], client_id="exp", message_expiry_interval=4)],
                       horizon=30))
    assert sorted(f for _, f in fates_of(res, "c-0")) == ["departed_message_expired", "departed_not_queued"]
    assert res.summary["lost"] == 0


def test_publisher_side_loss_for_a_departed_device():
    """A publisher offline with no buffer at 12: its message is lost for every consumer it
    would have reached; for the departed device (session still held) that is departed
    traffic, for the present one a loss."""
    res = run(scenario([consumer("c", trace=[(10, None)]), consumer("r")],
                       publisher([12], outages={"trace": [[11, 20]]}), horizon=30))
    assert fates_of(res, "c-0") == [(12, "departed_not_queued")]
    assert fates_of(res, "r-0") == [(12, "publisher_offline")]
    assert res.summary["loss_ratio"] == 1.0


def test_replacement_inherits_nothing_and_loses_nothing():
    """The departed c-0 is replaced at 10 by c-1 (a new client id), which gets everything."""
    c = consumer(trace=[(10, None)])
    c["outages"]["replace departed"] = True
    res = run(scenario(c, publisher(AFTER), max_queued_messages=2))
    assert [f for _, f in fates_of(res, "c-1")] == ["delivered"] * 5
    assert res.summary["departed_pairs"] == 5 and res.summary["lost"] == 0 and res.summary["loss_ratio"] == 0


# ------------------------------------------------------------------ per-consumer spread

def test_per_consumer_spread_hand_counted():
    """Four consumers on a 10-message schedule (t = 1..10), no queueing (interval 0):
    a never disconnects (0/10 lost); b is down [2.5, 4.5) (2/10: 3, 4); c is down [0.5, 5.5)
    (5/10: 1..5); d leaves for good at 8.5 after being down [5.5, 6.5) (loss 1 of the 8 pairs
    routed before it left: 6; 9 and 10 are not routed, its session is gone).

    Counted consumers: a, b, c, d (d has pairs of a returning consumer). Per-consumer ratios
    0, 0.2, 0.5, 0.125. Fraction with loss 3/4. Percentiles (numpy linear): sorted
    [0, 0.125, 0.2, 0.5] -> p50 = 0.1625, p90 = 0.2 + 0.7 * 0.3 = 0.41, p99 = 0.2 + 0.97 * 0.3 = 0.491.
    """
    cons = [consumer("a", sei=0), consumer("b", sei=0, trace=[(2.5, 4.5)]), consumer("c", sei=0, trace=[(0.5, 5.5)]),
            consumer("d", sei=0, trace=[(5.5, 6.5), (8.5, None)])]
    res = run(scenario(cons, publisher(range(1, 11)), horizon=20))
    f = res.fates.set_index("client_id")
    assert f["lost"].to_dict() == {"a-0": 0, "b-0": 2, "c-0": 5, "d-0": 1}
    assert f["routed"].to_dict() == {"a-0": 10, "b-0": 10, "c-0": 10, "d-0": 8}
    assert f["loss_ratio"].to_dict() == pytest.approx({"a-0": 0, "b-0": 0.2, "c-0": 0.5, "d-0": 0.125})
    s = res.summary
    assert s["consumers_counted"] == 4
    assert s["consumers_with_loss_fraction"] == 0.75
    assert s["consumer_loss_ratio_p50"] == pytest.approx(0.1625)
    assert s["consumer_loss_ratio_p90"] == pytest.approx(0.41)
    assert s["consumer_loss_ratio_p99"] == pytest.approx(0.491)
    assert s["loss_ratio"] == pytest.approx(8 / 38)


# ------------------------------------------------------------------ intervals within bounds

def test_t_interval_is_truncated_at_the_metric_bounds():
    mean, lo, hi = t_interval(np.array([0, 0, 0, 0.01]), 0.95, 0.0, 1.0)
    assert mean == pytest.approx(0.0025) and lo == 0.0 and hi > mean
    mean, lo, hi = t_interval(np.array([1, 1, 1, 0.99]), 0.95, 0.0, 1.0)
    assert hi == 1.0 and lo < mean
    # inside the bounds it is the plain Student t interval
    x = np.array([0.2, 0.3, 0.25, 0.35])
    from scipy import stats
    want = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    assert t_interval(x, 0.95, 0.0, 1.0)[1:] == pytest.approx(want)


def test_summarize_never_shows_a_loss_interval_outside_0_1():
    runs = pd.DataFrame({"mqttConsumer.session expiry interval": [15] * 5 + [0] * 5,
                         "replication": list(range(5)) * 2,
                         "loss_ratio": [0, 0, 0, 0, 0.02, 1, 1, 1, 1, 0.9],
                         "memory_peak_bytes": [10, 11, 12, 10, 10, 5, 5, 5, 5, 6]})
    table = sim.summarize(runs, metrics=["loss_ratio", "memory_peak_bytes"])
    assert list(table["n"]) == [5, 5]
    assert (table["loss_ratio_ci_low"] >= 0).all() and (table["loss_ratio_ci_high"] <= 1).all()
    assert table["loss_ratio_ci_low"].iloc[0] == 0 and table["loss_ratio_ci_high"].iloc[1] == 1


def test_summarize_groups_by_grid_columns_only(tmp_path):
    """Summary fields are metrics, not grid keys; a column the user adds does not split the
    groups (it did: 2 groups of n = 4 became 8 of n = 1); the same after a round trip to CSV."""
    scn = scenario(consumer(trace=[(10, None)]), publisher(AFTER))
    runs = sim.sweep(scn, {"mqttConsumer.session expiry interval": [0, 5]}, replications=4, seed=1, progress=False,
                     out=tmp_path / "runs.csv")
    assert list(sim.summarize(runs)["n"]) == [4, 4]
    runs["my_score"] = np.arange(len(runs), dtype=float)
    assert list(sim.summarize(runs)["n"]) == [4, 4]
    back = pd.read_csv(tmp_path / "runs.csv")
    back["my_score"] = 1.5 * np.arange(len(back))
    table = sim.summarize(back)
    assert list(table["n"]) == [4, 4] and list(table.columns[:2]) == ["mqttConsumer.session expiry interval", "n"]


# ------------------------------------------------------------------ the demo's table

def test_demo_table_hand_counted():
    """Two policies, one replication each, from hand-made summaries: loss in % of returning
    pairs, by cause in the same unit, departed in % of all routed pairs."""
    table = pd.DataFrame({
        "policy": ["expiry 0", "expiry UINT_MAX"],
        "loss_ratio": [0.1, 0.0], "loss_ratio_ci_low": [0.05, 0.0], "loss_ratio_ci_high": [0.15, 0.0],
        "routed": [100.0, 140.0], "departed_pairs": [0.0, 40.0],
        **{f"lost_{c}": [10.0 if c == "no_session" else 0.0, 0.0] for c in sim.LOSS_CAUSES},
        "consumer_loss_ratio_p90": [0.3, 0.0],
        "memory_peak_bytes": [2000.0, 9000.0], "memory_mean_bytes": [1500.0, 6000.0],
        "memory_mean_stranded_bytes": [0.0, 4000.0],
    })
    show = demo_table(table)
    assert list(show["loss %"]) == [10.0, 0.0]
    assert list(show["95% CI"]) == ["[5, 15]", "[0, 0]"]
    assert list(show["no_session %"]) == [10.0, 0.0]  # 10 of 100 returning pairs; none of 100
    assert "queue_full %" not in show.columns  # causes that never happened are left out
    assert list(show["departed %"]) == pytest.approx([0.0, 100 * 40 / 140])
    assert list(show["p90 consumer loss %"]) == [30.0, 0.0]
    assert list(show["stranded KiB"]) == [0.0, 4000 / 1024]  # binary units, as the figures


# ------------------------------------------------------------------ the shipped fleet (issue's acceptance)

def test_uint_max_fleet_ranking_with_one_seed():
    """On data/scenarios/uint_max_fleet.yaml, one seed, only the expiry changed: a session
    that never expires loses no more than one of an hour, which loses no more than none."""
    scn = sim.load_scenario("data/scenarios/uint_max_fleet.yaml")
    out = {}
    for e in (0, 3600, UINT):
        s = sim.run(scn.updated({"mqttConsumer.session expiry interval": e}), seed=1, record_events=False,
                    record_memory=False).summary
        out[e] = s
    assert out[UINT]["loss_ratio"] <= out[3600]["loss_ratio"] <= out[0]["loss_ratio"]
    assert out[UINT]["departed_pairs"] > out[3600]["departed_pairs"] > 0
    assert out[UINT]["departed_queue_full"] > 0 and out[UINT]["lost_queue_full"] == 0
    # the same returning consumers' pairs under every policy, and the stranded memory grows with expiry
    returning = {e: s["routed"] - s["departed_pairs"] for e, s in out.items()}
    assert returning[0] == returning[3600] == returning[UINT]
    assert out[UINT]["memory_mean_stranded_bytes"] > out[3600]["memory_mean_stranded_bytes"] > 0

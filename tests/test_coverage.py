"""95 % intervals from sim.summarize's method cover the analytic value at about their rate.

A single consumer-churn scenario with a closed form (exponential up- and down-times, no
queue limits, no message expiry: sim.analytic.loss_ratio). 500 replications (one sweep,
independent seeds) are cut into 100 groups of 5; each group's 95 % t-interval of the loss
ratio (sim.sweep.t_interval, truncated to [0, 1]) should cover the closed form; at least 90
of 100 must (binomial(100, 0.95): fewer than 90 has probability about 3 %). A warm-up of
five cycles removes the all-connected start, so the finite horizon's bias is far below the
intervals' width. Seeds are fixed, so the outcome is deterministic.
"""
from __future__ import annotations

import warnings


import sim
from sim import analytic
from sim.sweep import t_interval

U, D, E, LAM = 30.0, 20.0, 20, 0.2


def test_95_percent_intervals_cover_the_closed_form_at_least_90_of_100_times():
    scn = sim.load_scenario({
        "name": "coverage", "horizon": 2750,
        "broker": {"max queued messages": 0, "max queued bytes": 0},
        "mqttConsumer": {"clients": 4, "session expiry interval": E, "clean start": False, "qos": 1,
                         "outages": {"up": {"distribution": "exponential", "mean": U},
                                     "down": {"distribution": "exponential", "mean": D}}},
        "mqttPublisher": {"qos": 1, "rate": LAM}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the warm-up is shorter than E + D: measured, not needed
        runs = sim.sweep(scn, replications=500, seed=11, warmup=250, progress=False, jobs=2)
    want = analytic.loss_ratio(U, D, E)
    x = runs.sort_values("replication")["loss_ratio"].to_numpy()
    covered = 0
    for group in x.reshape(100, 5):
        _, lo, hi = t_interval(group, 0.95, 0.0, 1.0)
        covered += lo <= want <= hi
    assert covered >= 90, f"{covered} of 100 intervals cover {want:.4f}"
    assert abs(x.mean() - want) < 0.02 * want  # and the pooled mean is close

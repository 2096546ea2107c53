"""Closed forms of sim.analytic, and the simulation checked against them.

(a) The closed forms against direct numerical integration of their definitions and against
    an independent NumPy Monte Carlo of the renewal-reward model (no engine involved).
(b) The engine against the closed forms: R independent replications (seeds 0..R-1) of an
    exponential up/down consumer fleet, one per Session Expiry Interval; the closed form
    must lie in the 99 % t-interval over replications (simulation-practice C.2, C.6).
(c) The same with lognormal offline times (and Weibull connected times), against the
    numerical ``*_general`` versions.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from sim import analytic
from sim.protocol import UINT_MAX

# --------------------------------------------------------------------------- (a) closed forms


def _quad(f, a, b):
    val, _ = integrate.quad(f, a, b, limit=400, epsabs=1e-13, epsrel=1e-11)
    return val


def _exp_definitions(U, D, E, lam):
    """The renewal-reward quantities integrated straight from the exponential density."""
    pdf = stats.expon(scale=D).pdf
    cycle = U + D
    if math.isinf(E):
        lost_se = lost_ns = 0.0
        m1 = _quad(lambda x: x * pdf(x), 0, np.inf)
        m2 = _quad(lambda x: x * x * pdf(x), 0, np.inf)
    else:
        lost_se = _quad(lambda x: E * pdf(x), E, np.inf)                     # lam E per expired period
        lost_ns = _quad(lambda x: (x - E) * pdf(x), E, np.inf)               # lam (X - E) after expiry
        m1 = _quad(lambda x: x * pdf(x), 0, E) + E * _quad(pdf, E, np.inf)   # E[min(X, E)]
        m2 = _quad(lambda x: x * x * pdf(x), 0, E) + E * E * _quad(pdf, E, np.inf)
    return {
        "session_expired": lost_se / cycle,
        "no_session": lost_ns / cycle,
        "lost": (lost_se + lost_ns) / cycle,
        "queued": lam * m2 / 2 / cycle,
        "offline_sessions": m1 / cycle,
    }


@pytest.mark.parametrize("U, D", [(30.0, 20.0), (6 * 3600.0, 120.0), (1.0, 1000.0), (0.0, 5.0)])
@pytest.mark.parametrize("E_over_D", [0.0, 0.01, 0.5, 1.0, 3.0, 20.0])
def test_closed_forms_match_numerical_integration(U, D, E_over_D):
    E, lam = E_over_D * D, 0.7
    want = _exp_definitions(U, D, E, lam)
    got = analytic.loss_by_cause(U, D, E)
    for key in ("session_expired", "no_session", "lost"):
        assert got[key] == pytest.approx(want[key], rel=1e-8, abs=1e-15), key
    assert analytic.loss_ratio(U, D, E) == got["lost"]
    assert got["lost"] == pytest.approx((E + D) * math.exp(-E / D) / (U + D), rel=1e-12)
    assert analytic.mean_queued(U, D, E, lam) == pytest.approx(want["queued"], rel=1e-8, abs=1e-15)
    assert analytic.mean_offline_sessions(U, D, E) == pytest.approx(want["offline_sessions"], rel=1e-8, abs=1e-15)
    assert analytic.mean_sessions(U, D, E) == pytest.approx(U / (U + D) + want["offline_sessions"], rel=1e-8)


@pytest.mark.parametrize("E_over_D", [0.0, 0.3, 1.0, 4.0])
def test_general_version_agrees_with_exponential_closed_form(E_over_D):
    U, D, lam = 45.0, 15.0, 2.5
    E = E_over_D * D
    down = stats.expon(scale=D)
    assert analytic.loss_by_cause_general(U, down, E) == pytest.approx(analytic.loss_by_cause(U, D, E), rel=1e-8, abs=1e-14)
    assert analytic.mean_queued_general(U, down, E, lam) == pytest.approx(analytic.mean_queued(U, D, E, lam), rel=1e-8)
    assert analytic.mean_offline_sessions_general(U, down, E) == pytest.approx(
        analytic.mean_offline_sessions(U, D, E), rel=1e-8, abs=1e-14)
    assert analytic.mean_sessions_general(U, down, E) == pytest.approx(analytic.mean_sessions(U, D, E), rel=1e-8)
    # Only the mean of the connected period matters: a frozen distribution is accepted.
    up = stats.weibull_min(c=2.0, scale=U / math.gamma(1.5))
    assert analytic.loss_ratio_general(up, down, E) == pytest.approx(analytic.loss_ratio(U, D, E), rel=1e-8, abs=1e-14)


@pytest.mark.parametrize("down", [
    stats.lognorm(s=1.5, scale=120.0),            # median 2 min, heavy tail
    stats.weibull_min(c=0.6, scale=300.0),
    stats.uniform(loc=10.0, scale=20.0),          # support starts above 0
    stats.pareto(b=2.5, scale=30.0),              # classical Pareto, support >= 30
], ids=["lognormal", "weibull", "uniform", "pareto"])
@pytest.mark.parametrize("E", [0, 5, 60, 600, 36000])
def test_general_version_matches_direct_integration(down, E):
    U, lam = 3600.0, 0.25
    D = down.mean()
    lo = down.support()[0]
    got = analytic.loss_by_cause_general(U, down, E)
    pdf = down.pdf

    def q(f, a, b):  # piecewise over the pdf's kinks and the expiry point
        pts = [p for p in [*down.ppf([1e-6, 0.01, 0.5]), *down.isf(10.0 ** -np.arange(1, 300, 6))] if a < p < b]
        edges = [a, *pts, b]
        return sum(_quad(f, x0, x1) for x0, x1 in zip(edges[:-1], edges[1:]))

    p_tail = q(pdf, max(lo, E), np.inf)
    want_se = (E * p_tail if E > 0 else 0.0) / (U + D)
    want_ns = q(lambda x: (x - E) * pdf(x), max(lo, E), np.inf) / (U + D)
    assert got["session_expired"] == pytest.approx(want_se, rel=1e-6, abs=1e-12)
    assert got["no_session"] == pytest.approx(want_ns, rel=1e-6, abs=1e-12)
    assert got["lost"] == pytest.approx(q(lambda x: x * pdf(x), max(lo, E), np.inf) / (U + D), rel=1e-6, abs=1e-12)
    m2 = q(lambda x: x * x * pdf(x), lo, max(lo, E)) + E * E * p_tail
    assert analytic.mean_queued_general(U, down, E, lam) == pytest.approx(lam * m2 / 2 / (U + D), rel=1e-6, abs=1e-12)
    m1 = q(lambda x: x * pdf(x), lo, max(lo, E)) + E * p_tail
    assert analytic.mean_offline_sessions_general(U, down, E) == pytest.approx(m1 / (U + D), rel=1e-6, abs=1e-12)


def test_limits_zero_and_never():
    U, D, lam = 30.0, 20.0, 0.2
    # E = 0 (§3.1.2.11.2: the session ends when the network connection closes)
    assert analytic.loss_by_cause(U, D, 0) == {"session_expired": 0.0, "no_session": D / (U + D), "lost": D / (U + D)}
    assert analytic.mean_queued(U, D, 0, lam) == 0.0
    assert analytic.mean_offline_sessions(U, D, 0) == 0.0
    # E = UINT_MAX: never expires, exactly; the same for inf and None
    for never in (UINT_MAX, math.inf, None):
        assert analytic.loss_by_cause(U, D, never) == {"session_expired": 0.0, "no_session": 0.0, "lost": 0.0}
        assert analytic.mean_queued(U, D, never, lam) == pytest.approx(lam * D * D / (U + D), rel=1e-15)
        assert analytic.mean_offline_sessions(U, D, never) == D / (U + D)
        assert analytic.loss_ratio_general(U, stats.lognorm(s=1.0, scale=D), never) == 0.0
    ln = stats.lognorm(s=1.0, scale=D)
    assert analytic.mean_queued_general(U, ln, UINT_MAX, lam) == pytest.approx(
        lam * ln.moment(2) / 2 / (U + ln.mean()), rel=1e-12)
    # UINT_MAX read as ~136 years (vendor reading): finite, but indistinguishable here.
    assert analytic.expiry_seconds(UINT_MAX, uint_max_never_expires=False) == float(UINT_MAX)
    assert analytic.expiry_seconds(UINT_MAX) == math.inf
    assert analytic.loss_ratio(U, D, UINT_MAX, uint_max_never_expires=False) == 0.0  # exp underflow, exact
    long_d = 2.0 ** 31
    assert analytic.loss_ratio(U, long_d, UINT_MAX, uint_max_never_expires=False) == pytest.approx(
        (UINT_MAX + long_d) * math.exp(-UINT_MAX / long_d) / (U + long_d))
    assert analytic.loss_ratio(U, long_d, UINT_MAX) == 0.0


def test_monotone_in_expiry_and_vectorised():
    U, D = 30.0, 20.0
    E = np.array([0, 1, 5, 20, 60, 600, UINT_MAX], dtype=float)
    loss = analytic.loss_ratio(U, D, E)
    queued = analytic.mean_queued(U, D, E, 0.2)
    assert isinstance(loss, np.ndarray) and loss.shape == E.shape
    assert np.all(np.diff(loss) <= 0) and loss[-1] == 0.0
    assert np.all(np.diff(queued) >= 0) and queued[0] == 0.0
    for i, e in enumerate(E):
        assert loss[i] == analytic.loss_ratio(U, D, float(e))
    # session_expired rises then falls: maximal at E = D
    se = analytic.loss_by_cause(U, D, np.linspace(0, 10 * D, 1001))["session_expired"]
    assert np.argmax(se) == 100


def test_bad_arguments_refused():
    with pytest.raises(ValueError):
        analytic.loss_ratio(30.0, 0.0, 5)
    with pytest.raises(ValueError):
        analytic.loss_ratio(30.0, 20.0, -1)
    with pytest.raises(ValueError):
        analytic.loss_ratio_general(30.0, stats.pareto(b=0.9, scale=1.0), 5)  # infinite mean


def test_renewal_reward_against_numpy_monte_carlo():
    """The derivation itself, simulated without the engine: cycles of (up, down, Poisson arrivals)."""
    rng = np.random.default_rng(12345)
    U, D, E, lam, n = 30.0, 20.0, 20.0, 0.2, 400_000
    up = rng.exponential(U, n)
    down = rng.exponential(D, n)
    held = np.minimum(down, E)                      # time the session exists while offline
    arrivals_held = rng.poisson(lam * held)         # queued while the session exists
    arrivals_after = rng.poisson(lam * np.maximum(down - E, 0.0))
    expired = down > E
    routed = rng.poisson(lam * up).sum() + arrivals_held.sum() + arrivals_after.sum()
    lost_se = arrivals_held[expired].sum()
    lost_ns = arrivals_after.sum()
    # queue area: a message arriving at u in [0, held) waits held - u; the u are uniform given the count
    total = arrivals_held.sum()
    owner = np.repeat(np.arange(n), arrivals_held)
    area = (held[owner] * (1.0 - rng.random(total))).sum()
    horizon = (up + down).sum()
    want = analytic.loss_by_cause(U, D, E)
    # per-cycle sums are i.i.d.: ratio estimators with a few-standard-error tolerance
    assert lost_se / routed == pytest.approx(want["session_expired"], rel=0.03)
    assert lost_ns / routed == pytest.approx(want["no_session"], rel=0.03)
    assert area / horizon == pytest.approx(analytic.mean_queued(U, D, E, lam), rel=0.03)
    assert held.sum() / horizon == pytest.approx(analytic.mean_offline_sessions(U, D, E), rel=0.01)


# --------------------------------------------------------------------------- (b), (c) simulation

# Time unit: seconds. Mean connected U = 30 s, mean offline D = 20 s, so a cycle is 50 s.
U_MEAN, D_MEAN = 30.0, 20.0
LAM = 0.2                 # messages/s: lam * D = 4 messages per offline period
CONSUMERS = 8             # independent consumers per run (same message stream)
REPLICATIONS = 12         # seeds 0..R-1
HORIZON = 1000 * (U_MEAN + D_MEAN)  # 50,000 s: 1,000 cycles per consumer, 8,000 per run
# Finite-horizon bias (the closed forms are long-run limits):
# (i) messages still queued at the horizon are `pending`, neither lost nor delivered. At
#     most the one offline period straddling the horizon is affected, so per consumer the
#     pending count is about the stationary queue, <= lam D^2/(U+D) = 1.6 messages, against
#     lam T = 10,000 routed: a shift of any ratio to routed of at most 1.6e-4 absolute (the
#     test below checks pending/routed directly).
# (ii) every client starts connected: for the exponential on/off chain the expected offline
#     time in [0, T] falls short of T D/(U+D) = 20,000 s by U D^2/(U+D)^2 = 4.8 s (2.4e-4
#     relative); the queue's own warm-up lasts about one cycle, so every time average or
#     ratio moves by O((U+D)/T) = 1e-3 relative at most.
# The 99 % t half-widths over 12 replications are about 0.9 % (loss at E = 0) to 6 %
# (no_session at E = 3D) of the values, measured: ~10x the bias or more, which therefore
# cannot decide a test. (Per replication the ratios are Sigma lost / Sigma routed, then
# i.i.d. across seeds: simulation-practice C.6.) Seeds are fixed, so the test is
# deterministic; with ~20 interval checks at 99 %, a change of the engine's random streams
# can push one outside by chance (about 1 in 6): look at the other seeds before blaming it.
EXPIRIES = [0, 20, 60, UINT_MAX]  # 0, = D, 3 D, never


def _scenario(E, down=None, up=None, consumers=CONSUMERS, horizon=HORIZON, leave=0.0):
    import sim

    outages = {"up": up or {"distribution": "exponential", "mean": U_MEAN},
               "down": down or {"distribution": "exponential", "mean": D_MEAN}}
    if leave:
        outages.update({"leave probability": leave, "replace departed": True})
    return sim.load_scenario({
        "name": f"analytic-E{E}",
        "horizon": horizon,
        "broker": {"max queued messages": 0, "max queued bytes": 0},
        "mqttConsumer": {
            "clients": consumers,
            "session expiry interval": E,
            "clean start": False,
            "qos": 1,
            "outages": outages,
        },
        "mqttPublisher": {"clients": 1, "qos": 1, "rate": LAM},
    })


def _replicate(scn, consumers=CONSUMERS, replications=REPLICATIONS):
    import sim

    rows = []
    for seed in range(replications):
        res = sim.run(scn, seed=seed, record_messages=False, record_events=False)
        s, m = res.summary, res.memory
        routed = float(s["routed"] - s["departed_pairs"])  # pairs of consumers that come back
        # time-average number of consumer sessions: the publisher's (it never disconnects)
        # are those present at t = 0 beyond the consumers, all connected then.
        held = np.diff(np.append(m["time"].to_numpy(), scn.horizon))
        publisher_sessions = int(m["sessions"].iloc[0]) - consumers
        departed = float(s["departed_pairs"]) / float(s["routed"])
        rows.append({
            "loss_ratio": float(s["loss_ratio"]),
            "session_expired": s["lost_session_expired"] / routed,
            "no_session": s["lost_no_session"] / routed,
            "other_lost": (s["lost"] - s["lost_session_expired"] - s["lost_no_session"]) / routed,
            "pending": s["pending"] / routed,
            "departed": departed,
            "queued": s["queued_messages_mean"] / consumers,
            "sessions": ((m["sessions"].to_numpy() * held).sum() / scn.horizon - publisher_sessions) / consumers,
        })
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def _t_interval(x, level=0.99):
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return m, m
    return stats.t.interval(level, len(x) - 1, loc=m, scale=sd / math.sqrt(len(x)))


def _assert_inside(name, sample, value):
    lo, hi = _t_interval(sample)
    slack = 1e-12 * max(abs(value), 1e-300)  # rounding, for a degenerate (zero-width) interval
    assert lo - slack <= value <= hi + slack, (
        f"{name}: closed form {value:.6g} outside the simulation's 99% t-interval [{lo:.6g}, {hi:.6g}] "
        f"(replications {np.round(sample, 6).tolist()})")


@pytest.mark.slow
@pytest.mark.parametrize("E", EXPIRIES, ids=["E0", "E=D", "E=3D", "E=UINT_MAX"])
def test_simulation_matches_closed_form_exponential(E):
    r = _replicate(_scenario(E))
    want = analytic.loss_by_cause(U_MEAN, D_MEAN, E)
    # Only the two session causes can occur: no limits, no message expiry, publisher always up.
    assert np.all(r["other_lost"] == 0)
    # The horizon bias argued above: pending is far below the interval's width.
    assert r["pending"].mean() < 5e-4
    if E == UINT_MAX:
        # Never expires: nothing can be lost, exactly (§3.1.2.11.2).
        assert np.all(r["loss_ratio"] == 0.0)
    else:
        _assert_inside("loss_ratio", r["loss_ratio"], want["lost"])
        _assert_inside("lost_no_session/routed", r["no_session"], want["no_session"])
    if E == 0:
        assert np.all(r["session_expired"] == 0) and np.all(r["queued"] == 0)  # nothing is ever queued
    else:
        if E != UINT_MAX:
            _assert_inside("lost_session_expired/routed", r["session_expired"], want["session_expired"])
        _assert_inside("queued_messages_mean per consumer", r["queued"],
                       analytic.mean_queued(U_MEAN, D_MEAN, E, LAM))
    _assert_inside("time-average sessions per consumer", r["sessions"], analytic.mean_sessions(U_MEAN, D_MEAN, E))


@pytest.mark.slow
def test_simulation_matches_general_form_lognormal():
    # Offline ~ lognormal(median 12 s, sigma 1) (mean 19.8 s); connected ~ Weibull(shape 2, scale 30 s)
    # (mean 26.6 s): only its mean enters the closed form. E = 20 s, near the mean offline time.
    median, sigma, shape, scale, E = 12.0, 1.0, 2.0, 30.0, 20
    down = stats.lognorm(s=sigma, scale=median)
    up = stats.weibull_min(c=shape, scale=scale)
    scn = _scenario(E, down={"distribution": "lognormal", "median": median, "sigma": sigma},
                    up={"distribution": "weibull", "shape": shape, "scale": scale})
    r = _replicate(scn)
    want = analytic.loss_by_cause_general(up, down, E)
    assert np.all(r["other_lost"] == 0)
    _assert_inside("loss_ratio", r["loss_ratio"], want["lost"])
    _assert_inside("lost_session_expired/routed", r["session_expired"], want["session_expired"])
    _assert_inside("lost_no_session/routed", r["no_session"], want["no_session"])
    _assert_inside("queued_messages_mean per consumer", r["queued"], analytic.mean_queued_general(up, down, E, LAM))
    _assert_inside("time-average sessions per consumer", r["sessions"], analytic.mean_sessions_general(up, down, E))


@pytest.mark.slow
@pytest.mark.parametrize("E", [0, 20, UINT_MAX], ids=["E0", "E=D", "E=UINT_MAX"])
def test_simulation_matches_closed_form_with_departures(E):
    """10 % of disconnects are for good, each client replaced at once: traffic to the
    departed clients is reported apart, and the loss of the consumers that come back
    matches ``(1-p) E[X 1{X>E}] / (U + (1-p) D)`` (analytic.loss_by_cause)."""
    p = 0.1
    # UINT_MAX keeps every departed client's session, and its whole queue, to the horizon (no
    # queue limit): a shorter horizon keeps that run cheap; its loss is exactly 0 anyway.
    r = _replicate(_scenario(E, leave=p, horizon=HORIZON if E != UINT_MAX else HORIZON / 50))
    want = analytic.loss_by_cause(U_MEAN, D_MEAN, E, leave_probability=p)
    assert np.all(r["other_lost"] == 0)
    if E == 0:
        assert np.all(r["departed"] == 0)  # the session ends at the last close: nothing is routed to it after
    else:
        assert np.all(r["departed"] > 0)
    if E == UINT_MAX:
        assert np.all(r["loss_ratio"] == 0.0)  # departed traffic is not loss: nothing else can be lost
    else:
        _assert_inside("loss_ratio", r["loss_ratio"], want["lost"])
        _assert_inside("lost_no_session/returning", r["no_session"], want["no_session"])
        if E:
            _assert_inside("lost_session_expired/returning", r["session_expired"], want["session_expired"])
    # and it differs from the no-departure value by more than the interval: the test can tell
    if E == 20:
        lo, hi = _t_interval(r["loss_ratio"])
        assert not lo <= analytic.loss_ratio(U_MEAN, D_MEAN, E) <= hi

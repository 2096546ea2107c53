"""Closed forms for one churning consumer, used to cross-check the simulation.

The model
---------
One consumer subscribes with QoS 1, Clean Start = 0 and Session Expiry Interval ``E``. It
alternates *connected* periods (mean ``U``) and *offline* periods ``X`` (mean ``D``), all
independent, and never leaves for good (departures, replaced at once, are covered by the
``leave_probability`` argument: see :func:`loss_by_cause`). Messages matching its subscription are published
as a Poisson process of rate ``lam``, network latency is 0 (nothing is ever in flight) and
the broker has no queue limits and no message expiry.

MQTT 5.0 §3.1.2.11.2 (Session Expiry Interval): the session survives the close of the
network connection for ``E`` seconds; 0 ends it at the close; 4,294,967,295 (UINT_MAX)
means it never expires. [MQTT-4.1.0-2]: the server discards the session when the interval
has passed. Hence, in an offline period of length ``X``:

* ``X <= E``: every message published during the period is queued and delivered at the
  reconnect (§4.1, QoS 1 messages are stored for an offline session): nothing is lost.
* ``X > E``: the session is deleted ``E`` seconds into the period. The messages queued so
  far (Poisson, mean ``lam*E``) are lost with cause ``session_expired``; the messages of
  the remaining ``X - E`` seconds find no session at all (cause ``no_session``). The
  reconnect with Clean Start = 0 then creates a new session ([MQTT-3.1.2-6]) and nothing
  further is lost.

Renewal-reward argument
-----------------------
A cycle = one connected period followed by one offline period; cycles are i.i.d. with mean
length ``U + D``. By the renewal-reward theorem the long-run rate of a cumulative reward is
``E[reward per cycle] / E[cycle length]``, and a time average is
``E[integral over a cycle] / E[cycle length]``. Every published message is routed to the
consumer (matching consumers include those without a session, whose copies are lost as
``no_session``), so routed pairs accrue at rate ``lam`` and

* ``session_expired`` rate = ``lam * E * P(X > E)``  /  ``(U + D)``
* ``no_session``      rate = ``lam * E[(X - E)+]``  /  ``(U + D)``
* loss ratio = (sum) / ``lam`` = ``E[X 1{X > E}] / (U + D)`` (because
  ``E*1{X>E} + (X-E)+ = X 1{X>E}``);
* time-average number of queued messages: during an offline period the queue holds
  ``N(t)`` (Poisson count since the disconnect) while ``t < min(X, E)``, then 0, so the
  area per cycle has mean ``lam * E[min(X, E)^2] / 2`` (condition on X, use
  ``E[N(t)] = lam t``; ``X`` is independent of the arrivals);
* fraction of time an offline session exists: ``E[min(X, E)] / (U + D)``.

Only the *mean* of the connected period enters, so the up-time distribution is free.

For exponential ``X`` with mean ``D`` (``P(X > x) = exp(-x/D)``):

* ``P(X > E) = exp(-E/D)``, ``E[(X-E)+] = D exp(-E/D)``,
  ``E[X 1{X>E}] = (E + D) exp(-E/D)``,
* ``E[min(X,E)] = D (1 - exp(-E/D))``,
* ``E[min(X,E)^2] = int_0^E 2x exp(-x/D) dx = 2 (D^2 - D (E + D) exp(-E/D))``,

giving

* loss ratio ``(E + D) exp(-E/D) / (U + D)``, split ``E exp(-E/D) / (U + D)``
  (``session_expired``) and ``D exp(-E/D) / (U + D)`` (``no_session``);
* mean queued ``lam (D^2 - D (E + D) exp(-E/D)) / (U + D)``;
* offline-session fraction ``D (1 - exp(-E/D)) / (U + D)``.

Limits, handled exactly: ``E = 0`` -> loss ``D/(U+D)``, all ``no_session``, nothing queued;
``E = UINT_MAX`` (read as "never expires", the spec) or ``math.inf`` -> loss 0, mean queued
``lam D^2/(U+D)`` (``lam E[X^2] / (2 (U+D))`` in general). With
``uint_max_never_expires=False``, UINT_MAX is read as a plain 4,294,967,295 s, as some
vendor documentation does.

A finite simulation horizon ``T`` differs from these long-run values by O(1/T): messages
still queued at the horizon are ``pending`` rather than lost or delivered, and every client
starts connected at t = 0. Both effects are bounded by quantities of order
``(U + D) / T`` relative to the values above.

Every function accepts scalars or NumPy arrays (broadcast) for the closed forms; the
``*_general`` versions take a frozen ``scipy.stats`` distribution for the offline time and
integrate numerically.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .protocol import UINT_MAX

__all__ = [
    "expiry_seconds",
    "loss_ratio",
    "loss_by_cause",
    "mean_queued",
    "mean_offline_sessions",
    "mean_sessions",
    "offline_moments",
    "loss_ratio_general",
    "loss_by_cause_general",
    "mean_queued_general",
    "mean_offline_sessions_general",
    "mean_sessions_general",
    "resident_sessions",
    "expiry_for_resident",
]


# --------------------------------------------------------------------------- helpers


def expiry_seconds(E: Any, uint_max_never_expires: bool = True) -> Any:
    """The Session Expiry Interval as a length of time, with "never" as ``inf``.

    §3.1.2.11.2: UINT_MAX (4,294,967,295) means the session does not expire; it maps to
    ``math.inf`` unless ``uint_max_never_expires`` is False. ``None`` and ``inf`` also mean
    never. Negative values are refused.
    """
    if E is None:
        return math.inf
    arr = np.asarray(E, dtype=float)
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"session expiry interval must be >= 0, got {E!r}")
    if uint_max_never_expires:
        arr = np.where(arr >= UINT_MAX, np.inf, arr)
    return float(arr) if arr.ndim == 0 else arr


def _check_means(U: Any, D: Any) -> tuple[np.ndarray, np.ndarray]:
    U = np.asarray(U, dtype=float)
    D = np.asarray(D, dtype=float)
    if np.any(~(U >= 0)) or np.any(~(D > 0)):
        raise ValueError(f"need mean connected time U >= 0 and mean offline time D > 0, got U={U}, D={D}")
    return U, D


def _out(x: np.ndarray) -> Any:
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _exp_terms(D: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp(-E/D)`` and ``E exp(-E/D)``, both exactly 0 when ``E`` is infinite."""
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.exp(-E / D)  # exp(-inf) = 0 exactly
        e_tail = np.where(np.isinf(E), 0.0, np.where(E == 0, 0.0, E * tail))
    return tail, e_tail


# --------------------------------------------------------------------------- exponential offline time


def _check_leave(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"leave_probability must be in [0, 1), got {p!r}")
    return p


def loss_by_cause(U: Any, D: Any, E: Any, uint_max_never_expires: bool = True,
                  leave_probability: float = 0.0) -> dict[str, Any]:
    """Long-run loss ratio by cause for exponential offline periods (mean ``D``).

    Returns ``{"session_expired": E exp(-E/D)/(U+D), "no_session": D exp(-E/D)/(U+D),
    "lost": their sum}``, each a fraction of routed (message, consumer) pairs; see the
    module docstring for the renewal-reward derivation (MQTT 5.0 §3.1.2.11.2).
    ``E = 0`` gives ``{0, D/(U+D)}``; ``E = UINT_MAX`` (never expires) gives zeros.

    ``leave_probability`` ``p``: each disconnect is for good with probability ``p`` and the
    departed client is replaced at once by a new one (``replace departed``). Traffic to the
    departed client is not loss, and the slot's new client is connected, so per cycle only
    a non-final outage (probability ``1 - p``) adds offline time and loss: every term is
    multiplied by ``1 - p`` and the cycle is ``U + (1 - p) D``, as a fraction of the pairs of
    consumers that come back (``routed - departed_pairs``).
    """
    U, D = _check_means(U, D)
    q = 1.0 - _check_leave(leave_probability)
    E = np.asarray(expiry_seconds(E, uint_max_never_expires), dtype=float)
    tail, e_tail = _exp_terms(D, E)
    cycle = U + q * D
    expired = q * e_tail / cycle
    no_session = q * D * tail / cycle
    return {"session_expired": _out(expired), "no_session": _out(no_session), "lost": _out(expired + no_session)}


def loss_ratio(U: Any, D: Any, E: Any, uint_max_never_expires: bool = True, leave_probability: float = 0.0) -> Any:
    """Long-run ``lost / (routed - departed_pairs)`` for exponential offline periods:
    ``(E + D) exp(-E/D) / (U + D)``; with departures (``leave_probability`` p, replaced),
    ``(1 - p)(E + D) exp(-E/D) / (U + (1 - p) D)``.

    Renewal reward: a cycle loses ``lam E[X 1{X>E}]`` pairs out of ``lam (U + D)`` routed
    (MQTT 5.0 §3.1.2.11.2: the session is deleted ``E`` s after the connection closes).
    """
    return loss_by_cause(U, D, E, uint_max_never_expires, leave_probability)["lost"]


def mean_queued(U: Any, D: Any, E: Any, lam: Any, uint_max_never_expires: bool = True) -> Any:
    """Time-average number of messages queued for the consumer's session.

    ``lam (D^2 - D (E + D) exp(-E/D)) / (U + D)`` = ``lam E[min(X,E)^2] / (2 (U + D))``;
    ``lam D^2 / (U + D)`` when the session never expires (E = UINT_MAX, §3.1.2.11.2).
    """
    U, D = _check_means(U, D)
    lam = np.asarray(lam, dtype=float)
    E = np.asarray(expiry_seconds(E, uint_max_never_expires), dtype=float)
    tail, e_tail = _exp_terms(D, E)
    # D^2 - D (E + D) exp(-E/D); written with -expm1 for accuracy at small E/D.
    with np.errstate(invalid="ignore", over="ignore"):
        half_m2 = D * D * (-np.expm1(-E / D)) - D * e_tail
    return _out(lam * half_m2 / (U + D))


def mean_offline_sessions(U: Any, D: Any, E: Any, uint_max_never_expires: bool = True) -> Any:
    """Fraction of time the consumer is offline *and* its session still exists.

    ``E[min(X, E)] / (U + D) = D (1 - exp(-E/D)) / (U + D)``; ``D / (U + D)`` when it never
    expires, 0 for ``E = 0`` (§3.1.2.11.2).
    """
    U, D = _check_means(U, D)
    E = np.asarray(expiry_seconds(E, uint_max_never_expires), dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        m1 = D * (-np.expm1(-E / D))
    return _out(m1 / (U + D))


def mean_sessions(U: Any, D: Any, E: Any, uint_max_never_expires: bool = True) -> Any:
    """Fraction of time a session exists at all (connected, or offline and unexpired).

    ``(U + E[min(X, E)]) / (U + D)``.
    """
    U, D = _check_means(U, D)
    return _out(U / (U + D) + np.asarray(mean_offline_sessions(U, D, E, uint_max_never_expires)))


# --------------------------------------------------------------------------- any offline-time distribution

_BREAK_CDF = (1e-9, 1e-6, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75)
_BREAK_SF = tuple(10.0 ** -k for k in range(1, 301, 4)) + (0.25,)  # deep into heavy (power-law) tails


def _quad_pieces(func, edges) -> float:
    """Sum of ``scipy.integrate.quad`` over consecutive pieces ``[edges[i], edges[i+1]]``."""
    from scipy import integrate

    def scalar(x: float) -> float:
        return float(func(np.asarray(x, dtype=float)))

    return float(sum(integrate.quad(scalar, lo, hi, epsabs=1e-13, epsrel=1e-9, limit=200)[0]
                     for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo))


def _integrate(f, a: float, b: float, dist) -> float:
    """``int_a^b f(x) dx`` for a vectorised ``f``, split at quantiles of ``dist``.

    Splitting keeps the quadrature from stepping over the mass of a narrow or heavy-tailed
    density when the interval is long (e.g. ``b`` = 136 years with a median of minutes);
    the survival-side points (down to P(X > x) = 1e-297) make the integral to infinity of a
    power-law tail (Pareto) accurate too. The last piece ``[c, inf)`` is mapped to
    ``(0, 1]`` by ``x = c / t``.
    """
    top = float(dist.support()[1])
    if math.isfinite(top):  # every integrand here is a multiple of P(X > x), which is 0 past the support
        b = min(b, top)
    if b <= a:
        return 0.0
    quantiles = np.concatenate([np.asarray(dist.ppf(_BREAK_CDF), dtype=float),
                                np.asarray(dist.isf(_BREAK_SF), dtype=float)])
    pts = sorted({float(q) for q in quantiles if np.isfinite(q) and q > 0 and a < q < b})
    if math.isinf(b):
        c = pts[-1] if pts else max(a, 1.0) * 2 if a > 0 else 1.0
        if not pts:
            pts = [c]
        finite = _quad_pieces(f, [a, *pts])
        tail = _quad_pieces(lambda t: f(c / t) * c / (t * t) if t > 0 else 0.0, [0.0, 1.0])
        return finite + tail
    return _quad_pieces(f, [a, *pts, b])


def offline_moments(down, E: Any, uint_max_never_expires: bool = True) -> dict[str, float]:
    """The offline-period quantities that the closed forms need, for any distribution.

    ``down`` is a frozen ``scipy.stats`` distribution of the offline time ``X`` (support in
    ``[0, inf)``, finite mean). Returns ``mean`` (E[X]), ``p_expire`` (P(X > E)),
    ``excess`` (E[(X - E)+] = int_E^inf P(X > x) dx), ``min1`` (E[min(X, E)] =
    int_0^E P(X > x) dx) and ``min2`` (E[min(X, E)^2] = int_0^E 2x P(X > x) dx). For a
    session that never expires ``min2`` is E[X^2] (may be ``inf``).
    """
    E = float(expiry_seconds(E, uint_max_never_expires))
    mean = float(down.mean())
    if not np.isfinite(mean):
        raise ValueError("the offline-time distribution must have a finite mean")
    lo = float(down.support()[0])
    if lo < 0:
        raise ValueError("the offline-time distribution must be supported on [0, inf)")
    if math.isinf(E):
        return {"mean": mean, "p_expire": 0.0, "excess": 0.0, "min1": mean, "min2": float(down.moment(2))}
    p_expire = float(down.sf(E))
    # P(X > x) = 1 below the support's lower end lo
    min1 = min(lo, E) + _integrate(down.sf, lo, E, down)
    excess = _integrate(down.sf, max(E, lo), math.inf, down) + max(lo - E, 0.0)
    min2 = _integrate(lambda x: 2.0 * x * down.sf(x), lo, E, down) + min(lo, E) ** 2
    return {"mean": mean, "p_expire": p_expire, "excess": excess, "min1": min1, "min2": min2}


def _up_mean(U) -> float:
    m = float(U.mean()) if hasattr(U, "mean") and callable(U.mean) else float(U)
    if not m >= 0 or not np.isfinite(m):
        raise ValueError(f"the mean connected time must be finite and >= 0, got {U!r}")
    return m


def loss_by_cause_general(U, down, E: Any, uint_max_never_expires: bool = True,
                          leave_probability: float = 0.0) -> dict[str, float]:
    """Long-run loss ratio by cause for any offline-time distribution (numerical).

    ``U``: mean connected time (a number, or a frozen distribution whose mean is used);
    ``down``: frozen ``scipy.stats`` distribution of the offline time. Returns
    ``session_expired = E P(X>E) / (U+D)``, ``no_session = E[(X-E)+] / (U+D)`` and ``lost``;
    ``leave_probability`` as in :func:`loss_by_cause` (terms times ``1 - p``, cycle
    ``U + (1 - p) D``).
    """
    u = _up_mean(U)
    q = 1.0 - _check_leave(leave_probability)
    m = offline_moments(down, E, uint_max_never_expires)
    Es = float(expiry_seconds(E, uint_max_never_expires))
    cycle = u + q * m["mean"]
    expired = 0.0 if (math.isinf(Es) or Es == 0) else q * Es * m["p_expire"] / cycle
    no_session = q * m["excess"] / cycle
    return {"session_expired": expired, "no_session": no_session, "lost": expired + no_session}


def loss_ratio_general(U, down, E: Any, uint_max_never_expires: bool = True, leave_probability: float = 0.0) -> float:
    """Long-run ``lost / (routed - departed_pairs)`` = ``E[X 1{X > E}] / (U + D)`` for any
    offline-time distribution (times ``1 - p`` over ``U + (1 - p) D`` with departures)."""
    return loss_by_cause_general(U, down, E, uint_max_never_expires, leave_probability)["lost"]


def mean_queued_general(U, down, E: Any, lam: float, uint_max_never_expires: bool = True) -> float:
    """Time-average queued messages = ``lam E[min(X, E)^2] / (2 (U + D))`` for any distribution."""
    u = _up_mean(U)
    m = offline_moments(down, E, uint_max_never_expires)
    return float(lam) * m["min2"] / (2.0 * (u + m["mean"]))


def mean_offline_sessions_general(U, down, E: Any, uint_max_never_expires: bool = True) -> float:
    """Fraction of time an offline session exists = ``E[min(X, E)] / (U + D)`` for any distribution."""
    u = _up_mean(U)
    m = offline_moments(down, E, uint_max_never_expires)
    return m["min1"] / (u + m["mean"])


def mean_sessions_general(U, down, E: Any, uint_max_never_expires: bool = True) -> float:
    """Fraction of time a session exists = ``(U + E[min(X, E)]) / (U + D)`` for any distribution."""
    u = _up_mean(U)
    m = offline_moments(down, E, uint_max_never_expires)
    return (u + m["min1"]) / (u + m["mean"])


# --------------------------------------------------------------------------- sessions left behind (Little's law)


def resident_sessions(disconnect_rate: Any, E: Any, elapsed: Any = None, uint_max_never_expires: bool = True) -> Any:
    """Disconnected sessions the broker holds, by Little's law ``L = lambda * W``.

    Sessions are left behind at ``disconnect_rate`` per second by clients that do not come
    back to them (a new random client id at every connection, as in Mosquitto issue 3273, or
    devices gone for good), and each is held for exactly the Session Expiry Interval ``E``
    (§3.1.2.11.2). In steady state the broker therefore holds on average
    ``disconnect_rate * E`` of them (the relation EMQX's documentation gives for the memory
    cost of ``session_expiry_interval``, from EMQX issue 14482). Starting empty, after
    ``elapsed`` seconds it holds ``disconnect_rate * min(E, elapsed)`` on average, which is
    also the count for sessions that never expire (UINT_MAX): they pile up without bound, and
    without ``elapsed`` the answer is ``inf``. Clients that do come back end their session's
    wait early, so for them this is an upper bound (:func:`mean_offline_sessions` is exact).
    """
    rate = np.asarray(disconnect_rate, dtype=float)
    if np.any(~(rate >= 0)):
        raise ValueError(f"disconnect_rate must be >= 0 per second, got {disconnect_rate!r}")
    W = np.asarray(expiry_seconds(E, uint_max_never_expires), dtype=float)
    if elapsed is not None:
        t = np.asarray(elapsed, dtype=float)
        if np.any(~(t >= 0)):
            raise ValueError(f"elapsed must be >= 0 seconds, got {elapsed!r}")
        W = np.minimum(W, t)
    with np.errstate(invalid="ignore"):
        out = np.where(rate == 0, 0.0, rate * W)
    return _out(out)


def expiry_for_resident(disconnect_rate: Any, max_resident: Any) -> Any:
    """The longest Session Expiry Interval (s) that keeps the sessions left behind at
    ``disconnect_rate`` per second down to ``max_resident`` on average: Little's law
    :func:`resident_sessions` solved for ``E`` (``inf`` for a rate of 0)."""
    rate = np.asarray(disconnect_rate, dtype=float)
    limit = np.asarray(max_resident, dtype=float)
    if np.any(~(rate >= 0)) or np.any(~(limit >= 0)):
        raise ValueError(f"disconnect_rate and max_resident must be >= 0, got {disconnect_rate!r}, {max_resident!r}")
    with np.errstate(divide="ignore"):
        out = np.where(rate == 0, np.inf, limit / np.where(rate == 0, 1.0, rate))
    return _out(out)

"""Compiled loops for the counts engine (:mod:`sim.counts`), when numba is installed.

The counts engine is vectorised numpy throughout; a few of its steps are sequential scans
that numpy can only do in many passes (the shared store's nearest holders are found by
pointer jumping, for instance). With the optional ``fast`` extra (``pip install
'mqtt-session-sim[fast]'``, which brings numba; ``make`` installs it) those steps run as
the single loops below instead. Each returns exactly what its numpy twin in
:mod:`sim.counts` returns (the same integers; floats computed element by element with the
same operations in the same order, every sum left to numpy: a run's output does not depend
on whether numba is there), and tests/test_kernels.py checks both on random inputs and on
whole runs.

Which one runs: the environment variable ``MQTT_SIM_KERNELS`` set to ``numpy`` turns the
compiled loops off, ``numba`` asks for them on every run (an error if numba cannot be
imported); unset (``auto``), :class:`sim.counts.CountsEngine` uses them when numba imports
and the run is long enough to repay loading them (``sim.counts.KERNELS_FROM_CUTS``).
Compiled code is cached beside this module (numba's ``cache=True``), so only the first run
after an install pays for compiling (a few seconds).
"""
from __future__ import annotations

import os

ENV = "MQTT_SIM_KERNELS"
CHOICES = ("auto", "numba", "numpy")

_compiled = None  # the compiled functions, once built (a namespace), or False: numba unavailable


def choice() -> str:
    """``MQTT_SIM_KERNELS`` as given (``auto`` when unset); an error naming the allowed values."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: allowed values are {', '.join(CHOICES)}")
    return value


def enabled() -> bool:
    """Whether the compiled loops run (numba importable, and not turned off by ``MQTT_SIM_KERNELS``)."""
    value = choice()
    if value == "numpy":
        return False
    ok = _build() is not False
    if value == "numba" and not ok:
        raise ImportError(f"{ENV}=numba, but numba cannot be imported (install the 'fast' extra)")
    return ok


def compiled():
    """The compiled functions (call :func:`enabled` first)."""
    k = _build()
    if k is False:
        raise ImportError("numba is not installed (the 'fast' extra)")
    return k


def _build():
    global _compiled
    if _compiled is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _compiled = False
        else:
            _compiled = _define()
    return _compiled


def _define():
    from types import SimpleNamespace

    import numba
    import numpy as np

    from .entities import CONNECTED, OFFLINE, STRANDED

    jit = numba.njit(cache=True, nogil=True)

    @jit
    def _store_changes(a, top, jo, jr, N, c, K, left, pge, succ, stack, dropped, lo, grow, freed_at):
        # see sim.counts._store_changes (the numpy twin) for the model; the arrays from pge on are
        # scratch and outputs, allocated by numpy (its large allocations fault in fewer pages)
        n = len(a)
        # pge: nearest earlier session released later (strictly), -1: none
        h = 0
        for i in range(n):
            while h > 0 and jr[stack[h - 1]] <= jr[i]:
                h -= 1
            pge[i] = stack[h - 1] if h > 0 else -1
            stack[h] = i
            h += 1
        # succ: nearest later session released at the same cut or later, n: none
        h = 0
        for i in range(n - 1, -1, -1):
            while h > 0 and jr[stack[h - 1]] < jr[i]:
                h -= 1
            succ[i] = stack[h - 1] if h > 0 else n
            stack[h] = i
            h += 1
        dropped[:] = 0  # sessions dropped at or before each cut
        for i in range(n):
            dropped[jo[i]] += 1
        lo[:] = 0  # sessions whose reach is at most N[k] (left: 0..K+1)
        for i in range(n):
            lo[left[i]] += 1
        for k in range(1, K + 1):
            dropped[k] += dropped[k - 1]
        for k in range(1, K):
            lo[k] += lo[k - 1]
        grow[:] = 0
        for k in range(K):
            r = dropped[k] - 1
            while r >= lo[k]:
                if jr[r] > k:
                    g = top[r] - N[k]
                    grow[k] = 0 if g < 0 else (c[k] if g > c[k] else g)
                    break
                r = pge[r]
        freed_at[:] = 0
        for s in range(n):
            j = jr[s]
            if j >= K:
                continue
            Nj = N[j]
            e_s = Nj if Nj < top[s] else top[s]
            p = pge[s]
            b = a[s]
            if p >= 0:
                b = Nj if Nj < top[p] else top[p]
                if b < a[s]:
                    b = a[s]
            u = succ[s]
            hi = e_s
            if u < dropped[j] and u < n and a[u] < e_s:
                hi = a[u]
            if hi > b:
                freed_at[j] += hi - b

    def store_changes(a, top, jo, jr, N, c, K, left):
        n = len(a)
        e = np.empty
        grow, freed_at = e(K, np.int64), e(K + 1, np.int64)
        _store_changes(a, top, jo, jr, N, c, K, left, e(n, np.int64), e(n, np.int64), e(n, np.int64),
                       e(K + 1, np.int64), e(K + 2, np.int64), grow, freed_at)
        return grow, freed_at

    @jit
    def _session_state(state, state0, extra, n_old, p_off, has, nb, cat, px, expired, pon, back, resumed,
                       discard):  # pragma: no cover (compiled)
        # see sim.counts._session_state (the numpy twin); rows: bytes by category (0-3: sim.entities
        # CONNECTED, OFFLINE, STRANDED; the store's row gets no session bytes), 4: the session count
        K = state.shape[1] - 1
        state[:] = 0
        ep, ec, eb, es = extra
        for i in range(len(ep)):
            state[ec[i], ep[i]] += eb[i]
            state[4, ep[i]] += es[i]
        for i in range(n_old, len(has)):
            p = p_off[i - n_old]
            state[CONNECTED, p] -= nb[i]
            if has[i]:
                state[cat[i], p] += nb[i]
            else:
                state[4, p] -= 1
        for i in range(len(has)):
            if expired[i]:
                state[cat[i], px[i]] -= nb[i]
                state[4, px[i]] -= 1
            if back[i]:
                p = pon[i]
                if discard[i] or not resumed[i]:
                    state[CONNECTED, p] += nb[i]
                    state[4, p] += 1
                if discard[i]:
                    state[OFFLINE, p] -= nb[i]
                    state[4, p] -= 1
                elif resumed[i]:
                    state[OFFLINE, p] -= nb[i]
                    state[CONNECTED, p] += nb[i]
        for r in range(5):
            acc = state0[r]
            for k in range(K + 1):
                acc += state[r, k]
                state[r, k] = acc

    def session_state(K, *args):
        state = np.empty((5, K + 1), np.int64)
        _session_state(state, *args)
        return state

    @jit
    def _queue_cuts(N, a, top, jo, jr, K, left, ks, ke, kt, held, g_end, s_end):  # pragma: no cover (compiled)
        # see sim.counts._queue_cuts (the numpy twin)
        n = len(a)
        held[:] = 0
        g_end[:] = 0
        s_end[:] = 0
        lo = 0
        hi = 0
        for i in range(n):
            t = top[i]
            if i == 0 or t < top[i - 1]:  # (queues come in drop order, so reaches never decrease: a walk)
                lo = np.searchsorted(N, t, "left")
                hi = lo
            while lo <= K and N[lo] < t:
                lo += 1
            if hi < lo:
                hi = lo
            while hi <= K and N[hi] <= t:
                hi += 1
            left[i] = lo
            o, r = jo[i], jr[i]
            x = lo if lo < K else K
            ks[i] = o if x < o else (r if x > r else x)
            x = lo - 1 if N[0] < top[i] else lo
            ke[i] = o if x < o else (r if x > r else x)
            x = hi - 1 if N[0] <= top[i] else hi
            kt[i] = o if x < o else (r if x > r else x)
            # difference arrays: held on [jo, jr), not full at the end on [jo, ke)
            held[o] += 1
            held[r] -= 1
            g_end[o] += 1
            g_end[ke[i]] -= 1
            s_end[o] += a[i]
            s_end[ke[i]] -= a[i]
        for k in range(1, K):
            held[k] += held[k - 1]
            g_end[k] += g_end[k - 1]
            s_end[k] += s_end[k - 1]

    def queue_cuts(N, a, top, jo, jr, K):
        n = len(a)
        e = np.empty
        out = (e(n, np.int64), e(n, np.int64), e(n, np.int64), e(n, np.int64),
               e(K + 1, np.int64), e(K + 1, np.int64), e(K + 1, np.int64))
        _queue_cuts(N, a, top, jo, jr, K, *out)
        left, ks, ke, kt, held, g_end, s_end = out
        return left, ks, ke, kt, held[:K], g_end[:K], s_end[:K]

    @jit
    def settle(F, dc, done, has, queued, expires, resumed, discard, f, on, H, a, h, e, ids, L,
               columns):  # pragma: no cover (compiled)
        # see sim.counts._settle (the numpy twin); columns: sim.counts._SETTLE_COLUMNS, per fate
        # (session_expired, clean_start, delivered, pending, queue_full, qos0_offline, no_session)
        # the fate's column and its column once the client has left for good
        for i in range(len(done)):
            if not done[i]:
                continue
            j = ids[i]
            d = 1 if f[i] else 0
            if has[i]:
                n_held = h[i] - a[i]
                if queued[i]:
                    kept = n_held if n_held < L else L
                    if expires[i]:
                        F[j, columns[0, d]] += kept
                    if discard[i]:
                        F[j, columns[1, d]] += kept
                    elif resumed[i]:
                        F[j, columns[2, d]] += kept
                    if not expires[i] and on[i] >= H:
                        F[j, columns[3, d]] += kept
                    F[j, columns[4, d]] += n_held - kept
                else:
                    F[j, columns[5, d]] += n_held
            if (not has[i] or expires[i]) and not f[i]:
                F[j, columns[6, d]] += e[i] - h[i]
            if not f[i]:
                dc[j] -= e[i] - a[i]

    # the two below compute each element with the same float operations, in the same order, as
    # their numpy twins (no fastmath): the same values to the last bit; sums stay with numpy
    @jit
    def _stretch_terms(g, c, N, held, g_end, s_end, L, fixed, grow, freed_at, D0, sess, per, body,
                       Pg, PNg, Pf, Q_end, D_start, D_end, D_int, total_end, sess_secs):  # pragma: no cover (compiled)
        # see sim.counts._stretch_terms (the numpy twin)
        K = len(g)
        n0 = N[0]
        Pg[0] = 0.0
        PNg[0] = 0.0
        Pf[0] = 0.0
        freed = 0
        grown = 0
        for k in range(K):
            gk = g[k]
            Q_end[k] = float(g_end[k] * N[k + 1] - s_end[k]) + L * float(held[k] - g_end[k]) + fixed
            Pg[k + 1] = Pg[k] + gk
            PNg[k + 1] = PNg[k] + float(N[k] - n0) * gk
            Pf[k + 1] = Pf[k] + 0.5 * gk * float(c[k])
            freed += freed_at[k]
            d = D0 - freed + grown
            grown += grow[k]
            D_start[k] = d
            D_end[k] = d + grow[k]
            r = float(grow[k])
            D_int[k] = float(d) * gk + (r * gk - gk * r * (r + 1.0) / (2.0 * float(c[k] + 1)))
            st = sess[0, k] + sess[1, k] + sess[2, k] + sess[3, k]
            total_end[k] = (float(st) + float(per) * Q_end[k]) + float(body * D_end[k])
            for i in range(4):
                sess_secs[i, k] = float(sess[i, k]) * gk

    def stretch_terms(g, c, N, held, g_end, s_end, L, fixed, grow, freed_at, D0, sess, per, body):
        K = len(g)
        e = np.empty
        out = (e(K + 1), e(K + 1), e(K + 1), e(K), e(K, np.int64), e(K, np.int64), e(K), e(K), e((4, K)))
        _stretch_terms(g, c, N, held, g_end, s_end, float(L), float(fixed), grow, freed_at, int(D0), sess, int(per),
                       int(body), *out)
        return out

    @jit
    def _queue_seconds(Pg, PNg, Pf, g, c, N, a, top, jo, jr, ks, kt, full_rate, tail,
                       secs):  # pragma: no cover (compiled)
        # see sim.counts._queue_seconds (the numpy twin)
        K = len(g)
        n0 = N[0]
        for i in range(len(a)):
            t = kt[i]
            room = float(top[i] - N[t if t < K else K])
            kc = t if t < K - 1 else K - 1
            x = 0.0
            if t < jr[i] and room > 0:
                gk = g[kc]
                x = room * gk - gk * room * (room + 1.0) / (2.0 * float(c[kc] + 1))
            tail[i] = x
            al = float(a[i] - n0)
            o, r, s = jo[i], jr[i], ks[i]
            v = (PNg[s] - PNg[o]) - al * (Pg[s] - Pg[o]) + full_rate * (Pg[r] - Pg[s]) + (Pf[t] - Pf[o])
            secs[i] = v + (x if t < r else 0.0)

    def queue_seconds(Pg, PNg, Pf, g, c, N, a, top, jo, jr, ks, kt, full_rate):
        n = len(a)
        tail, secs = np.empty(n), np.empty(n)
        _queue_seconds(Pg, PNg, Pf, g, c, N, a, top, jo, jr, ks, kt, float(full_rate), tail, secs)
        return tail, secs

    @jit
    def _epoch_records(N, n_old, p_off, mx, p_x, mo, p_on, last, H, K, x, end, on, blk, ids, final, a, e, h, delay,
                       again, nb_id, has, expires, resumed, discard, nb, cat, px, pon, expired, pos_off,
                       pos_rel):  # pragma: no cover (compiled)
        # see sim.counts._epoch_records (the numpy twin)
        jx = 0
        jn = 0
        horizon = N[len(N) - 1]
        for i in range(len(x)):
            if i >= n_old:
                pos_off[i] = p_off[i - n_old]
                a[i] = N[pos_off[i]]
            else:
                pos_off[i] = 0
            nx = -1
            px[i] = -1
            if mx[i]:
                px[i] = p_x[jx]
                nx = N[px[i]]
                jx += 1
            non = -1
            pon[i] = -1
            if mo[i]:
                pon[i] = p_on[jn]
                non = N[pon[i]]
                jn += 1
            if last and e[i] < 0 and on[i] >= H:
                non = horizon
            hs = delay[blk[i]] != 0
            ex = x[i] <= end[i]
            if e[i] < 0 and non >= 0:
                e[i] = non
            if h[i] < 0 and ex and nx >= 0:
                h[i] = nx
            if h[i] < 0 and not ex and e[i] >= 0:
                h[i] = e[i] if hs else a[i]
            rs = hs and not ex and on[i] < H
            has[i] = hs
            expires[i] = ex
            resumed[i] = rs
            discard[i] = rs and again[blk[i]]
            nb[i] = nb_id[ids[i]]
            cat[i] = STRANDED if final[i] else OFFLINE
            expired[i] = mx[i] and ex
            r = px[i] if ex else (pon[i] if on[i] < H else -1)
            pos_rel[i] = r if r >= 0 else K

    def epoch_records(N, n_old, p_off, mx, p_x, mo, p_on, last, H, K, x, end, on, blk, ids, final, a, e, h, delay,
                      again, nb_id):
        n = len(x)
        # has, expires, resumed, discard; nb, cat, px, pon; expired; pos_off, pos_rel
        out = tuple(np.empty(n, t) for t in [np.bool_] * 4 + [np.int64] * 4 + [np.bool_] + [np.int64] * 2)
        _epoch_records(N, int(n_old), p_off, mx, p_x, mo, p_on, bool(last), float(H), int(K), x, end, on, blk, ids,
                       final, a, e, h, delay, again, nb_id, *out)
        return out

    @jit
    def _unique_inverse(x, perm, values, inv):  # pragma: no cover (compiled)
        # see sim.counts._unique_cuts (np.unique, the numpy twin): the sorted distinct values, and
        # where each of x's values is among them (x has no NaN)
        k = -1
        prev = 0.0
        for r in range(len(perm)):
            i = perm[r]
            v = x[i]
            if k < 0 or v != prev:
                k += 1
                values[k] = v
                prev = v
            inv[i] = k
        return k + 1

    def unique_inverse(x):
        perm = x.argsort()  # numpy's sort (vectorised), then one pass for what np.unique adds
        values = np.empty(len(x), x.dtype)
        inv = np.empty(len(x), np.intp)
        return values[:_unique_inverse(x, perm, values, inv)], inv

    return SimpleNamespace(store_changes=store_changes, session_state=session_state, queue_cuts=queue_cuts,
                           settle=settle, stretch_terms=stretch_terms, queue_seconds=queue_seconds,
                           epoch_records=epoch_records, unique_inverse=unique_inverse)

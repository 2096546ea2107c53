"""The counts engine's compiled loops (sim.kernels, numba) against their numpy twins.

A run's output must not depend on whether numba is installed: with the compiled loops and
with ``MQTT_SIM_KERNELS=numpy`` the counts engine gives identical fates, event counters,
memory frames and summary statistics (the same floats, not merely close ones), on every
broker setting the counts path supports and with epochs short enough that sessions,
queues and the shared store cross many epoch boundaries. The rest of the suite runs the
compiled loops wherever numba is there (``make`` installs it: the ``fast`` extra).
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sim
from sim import kernels
from sim.counts import CountsEngine, unsupported

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_counts import counts_scenarios  # noqa: E402

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba (the 'fast' extra) is not installed")


def run_with(choice: str, scn, seed: int, epoch_cuts: int, monkeypatch):
    monkeypatch.setenv(kernels.ENV, choice)
    assert kernels.enabled() == (choice == "numba")
    eng = CountsEngine(scn, seed, epoch_cuts=epoch_cuts).run()
    assert eng.compiled_loops == (choice == "numba")
    eng.fates.check_conservation()
    return eng


def assert_identical(scn, seed: int, epoch_cuts: int, monkeypatch) -> None:
    a = run_with("numba", scn, seed, epoch_cuts, monkeypatch)
    b = run_with("numpy", scn, seed, epoch_cuts, monkeypatch)
    pd.testing.assert_frame_equal(a.fates.fates_frame(), b.fates.fates_frame())
    assert a.log.counters == b.log.counters
    assert a.sessions_final == b.sessions_final
    sa, fa = a.memory_result()
    sb, fb = b.memory_result()
    assert sa.keys() == sb.keys()
    for k in sa:  # the same floats: every sum is taken by numpy, in the same order, on both paths
        assert sa[k] == sb[k] or (math.isnan(sa[k]) and math.isnan(sb[k])), (k, sa[k], sb[k])
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)


@needs_numba
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                                  HealthCheck.function_scoped_fixture])
@given(d=counts_scenarios(), seed=st.integers(0, 2**32 - 1), epoch_cuts=st.sampled_from([3, 40, 1_000_000]))
def test_compiled_loops_give_the_numpy_results(d, seed, epoch_cuts, monkeypatch):
    scn = sim.load_scenario(d)
    assume(unsupported(scn) == [])
    assert_identical(scn, seed, epoch_cuts, monkeypatch)


@needs_numba
@pytest.mark.parametrize("path, horizon, clients", [
    ("benchmarks/fleet_uint_max.yaml", "60d", 200),  # never-expiring sessions pile up: the store, frozen queues
    ("data/scenarios/uint_max_fleet.yaml", None, None),
])
def test_compiled_loops_on_the_uint_max_fleets(path, horizon, clients, monkeypatch):
    scn = sim.load_scenario(path)
    if horizon:
        scn = scn.updated({"horizon": horizon, "mqttConsumer.clients": clients})
    assert_identical(scn, 3, 2_000, monkeypatch)


@needs_numba
def test_auto_compiles_only_for_long_runs(monkeypatch):
    """Unset, the compiled loops run when the run has enough connection changes to repay
    loading them (sim.counts.KERNELS_FROM_CUTS); the output is the same either way."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    scn = sim.load_scenario("benchmarks/fleet_uint_max.yaml")
    short = CountsEngine(scn.updated({"horizon": "1d", "mqttConsumer.clients": 100}), 1).run()
    assert not short.compiled_loops
    monkeypatch.setattr("sim.counts.KERNELS_FROM_CUTS", 100)
    assert CountsEngine(scn.updated({"horizon": "1d", "mqttConsumer.clients": 100}), 1).run().compiled_loops


def test_the_switch_is_checked(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "fortran")
    with pytest.raises(ValueError, match=r"MQTT_SIM_KERNELS='fortran': allowed values are auto, numba, numpy"):
        kernels.enabled()
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert kernels.enabled() is False
    monkeypatch.delenv(kernels.ENV)
    assert kernels.enabled() is HAVE_NUMBA


def test_asking_for_numba_without_it_is_an_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "numba")
    monkeypatch.setattr(kernels, "_compiled", False)  # as if numba could not be imported
    with pytest.raises(ImportError, match="MQTT_SIM_KERNELS=numba, but numba cannot be imported"):
        kernels.enabled()


@pytest.mark.skipif(not os.environ.get("CI"), reason="checks what `make` installs, in CI")
def test_make_installs_the_fast_extra():
    assert HAVE_NUMBA, "numba (the 'fast' extra) should be installed by make (pyproject dev extra, constraints.txt)"
    assert kernels.enabled()


@needs_numba
def test_store_changes_on_random_queues(monkeypatch):
    """The shared store's growth and frees, compiled and numpy, on drawn sessions: ranges
    [a, a + L) in drop order (a never decreasing), dropped at cut jo, released at cut jr."""
    from sim.counts import _store_changes

    rng = np.random.default_rng(11)
    for _ in range(300):
        K = int(rng.integers(1, 40))
        c = rng.integers(0, 4, K)
        N = np.r_[0, np.cumsum(c)].astype(np.int64) + int(rng.integers(0, 5))
        n = int(rng.integers(1, 30))
        jo = np.sort(rng.integers(0, K, n))
        jr = np.minimum(jo + rng.integers(0, K + 1, n), K)
        a = N[jo] - rng.integers(0, 3, n) * (jo == 0)  # sessions carried in (cut 0) may start earlier
        a = np.maximum.accumulate(np.maximum(a, 0))
        top = a + int(rng.integers(1, 8))
        left = np.searchsorted(N, top, "left")
        monkeypatch.setenv(kernels.ENV, "numba")
        got = _store_changes(a, top, jo, jr, N, c, K, left)
        monkeypatch.setenv(kernels.ENV, "numpy")
        want = _store_changes(a, top, jo, jr, N, c, K, left)
        assert [x.tolist() for x in got] == [x.tolist() for x in want]


@needs_numba
def test_unique_inverse_is_numpy_unique():
    """The cut instants' distinct values and each instant's place among them, as np.unique gives
    them (ties, repeated epoch ends and single values included)."""
    k = kernels.compiled()
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        x = rng.choice(rng.uniform(0, 1e9, int(rng.integers(1, n + 1))), n)  # values repeat
        if rng.random() < 0.3:
            x = np.round(x, -7)
        got = k.unique_inverse(x)
        want = np.unique(x, return_inverse=True)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_row_sums_of_a_2d_array_are_each_rows_own_sum():
    """The sessions' byte-seconds are summed as ``prod.sum(axis=1)`` over a (4, K) array, which
    must give each row's own pairwise sum (the numbers the counts engine reported before)."""
    rng = np.random.default_rng(2)
    for n in [1, 7, 8, 9, 127, 128, 129, 1000, 4099, 125_000, 262_147]:
        a = rng.standard_normal((4, n)) * rng.lognormal(0, 6, (4, n))
        assert a.sum(axis=1).tolist() == [float(a[i].sum()) for i in range(4)]

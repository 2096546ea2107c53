"""sim.streams.spawned gives the streams numpy's Generator.spawn gives: same states, same draws."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import streams

entropies = st.one_of(st.integers(0, 2**130), st.lists(st.integers(0, 2**70), min_size=1, max_size=6))
keys = st.lists(st.integers(0, 2**40), max_size=6).map(tuple)


def _gen(entropy, key, spawned_before=0):
    g = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))
    if spawned_before:
        g.spawn(spawned_before)
    return g


@settings(max_examples=60, deadline=None)
@given(entropies, keys, st.integers(1, 4), st.integers(0, 5))
def test_spawned_matches_numpy_spawn(entropy, key, k, before):
    ref, mine = _gen(entropy, key, before), _gen(entropy, key, before)
    it = streams.spawned(mine, k)
    for n in range(30):  # crosses the batches of 1, 4 and 16 spawns
        want, got = ref.spawn(k), next(it)
        assert len(got) == k
        for a, b in zip(want, got):
            assert a.bit_generator.state == b.bit_generator.state, (n, entropy, key)


def test_draws_match_after_many_spawns():
    ref, it = _gen(1, (0, 0, 7, 0)), streams.spawned(_gen(1, (0, 0, 7, 0)), 3)
    for n in range(200):  # several full batches
        want, got = ref.spawn(3), next(it)
        if n % 37 == 0 or n == 199:
            for a, b in zip(want, got):
                assert np.array_equal(a.lognormal(0, 1, 300), b.lognormal(0, 1, 300))
                assert np.array_equal(a.random(7), b.random(7))
                assert np.array_equal(a.integers(0, 2**31, 5), b.integers(0, 2**31, 5))


def test_child_states_match_pcg64_of_child_seed_sequences():
    key = (3, 1, 4)
    states = streams.child_states(2**64 + 17, key, 5, 6)
    for i, (s, inc) in enumerate(states):
        bg = np.random.PCG64(np.random.SeedSequence(2**64 + 17, spawn_key=(*key, 5 + i)))
        assert bg.state["state"] == {"state": s, "inc": inc}


def test_root_seed_sequence_children():
    """An unspawned seed sequence's children pad its run entropy (numpy >= 1.19): same states."""
    for entropy in (0, 1, 2**32, [1, 2, 3, 4, 5]):
        ref, it = _gen(entropy, ()), streams.spawned(_gen(entropy, ()), 2)
        for _ in range(8):
            assert [g.bit_generator.state for g in ref.spawn(2)] == [g.bit_generator.state for g in next(it)]


def test_other_bit_generators_use_numpy_spawn():
    ref = np.random.Generator(np.random.MT19937(np.random.SeedSequence(9)))
    mine = np.random.Generator(np.random.MT19937(np.random.SeedSequence(9)))
    it = streams.spawned(mine, 2)
    for _ in range(6):
        for a, b in zip(ref.spawn(2), next(it)):
            assert np.array_equal(a.random(4), b.random(4))


def test_child_index_out_of_range():
    with pytest.raises(ValueError, match=r"child indices must lie in \[0, 2\*\*32\)"):
        streams.child_states(1, (0,), 2**32 - 1, 2)
    with pytest.raises(ValueError, match="entropy must be non-negative"):
        streams.child_states(-1, (0,), 0, 1)


"""Spawned random streams, many at a time.

A client slot's lives each draw from three streams of their own (up-times, down-times, leave
draws), spawned from the slot's outage stream: ``up, down, leave = outage_rng.spawn(3)``, as
:class:`sim.outage_plan.OutagePlan` does for each client identifier. On a 136-year horizon a
thousand-client fleet has about 50,000 lives, and numpy's ``Generator.spawn(3)`` costs about
90 µs (three ``SeedSequence`` objects, each hashing its entropy, and three ``PCG64`` seedings):
about a third of drawing a life.

:func:`spawned` gives the same streams without building them one by one: it computes the
children's seeds the way ``numpy.random.SeedSequence`` does (the entropy and spawn key hashed
into a pool of four 32-bit words, then one more word per child: the child's index;
``generate_state`` for the ``PCG64`` seed and increment; PCG64's ``srandom`` on them), for a
batch of children at once in numpy, and reseeds a few reused ``Generator`` objects in place
through ``bit_generator.state``. The draws are identical to those of ``rng.spawn(k)`` — numpy
keeps ``SeedSequence`` and ``PCG64`` stream-compatible across versions (NEP 19), and
``tests/test_streams.py`` compares states and draws with numpy's own for many entropies and
spawn keys. A generator that is not a ``PCG64`` seeded from a ``SeedSequence`` with the
default pool falls back to ``rng.spawn(k)``.

The first spawn is numpy's own ``rng.spawn(k)`` (most client slots have only one life); later
ones reseed its generators. Two differences from calling ``rng.spawn`` each time, both harmless
for how the engines use it: the parent's ``SeedSequence`` counts only the first spawn's
children in ``n_children_spawned``, and the ``Generator`` objects of one spawn are reseeded for
the next, so each spawn's streams must be finished with before the next is asked for.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# numpy.random.SeedSequence's hashing constants (bit_generator.pyx; after M.E. O'Neill's seed_seq)
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_MASK = 0xFFFFFFFF
_POOL = 4  # SeedSequence's default pool size
# PCG64's 128-bit multiplier (pcg64.h, PCG_DEFAULT_MULTIPLIER_128)
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341
_M128 = (1 << 128) - 1
BATCH = 64  # spawns computed at a time


def _words(x) -> list[int]:
    """An entropy value as SeedSequence reads it: an int as little-endian 32-bit words (0 as one
    word), a sequence as its elements' words in turn."""
    if isinstance(x, (int, np.integer)):
        x = int(x)
        if x < 0:
            raise ValueError(f"entropy must be non-negative, got {x}")
        out = []
        while True:
            out.append(x & _MASK)
            x >>= 32
            if not x:
                return out
    return [w for v in x for w in _words(v)]


def _hashmix(value, h):
    value = value ^ h
    h = (h * _MULT_A) & _MASK
    value = (value * h) & _MASK
    return value ^ (value >> 16), h


def _mix(x, y):
    r = (_MIX_L * x - _MIX_R * y) & _MASK
    return r ^ (r >> 16)


def _parent(entropy, spawn_key) -> tuple[np.ndarray, ...]:
    """What the children of ``(entropy, spawn_key)`` share: ``SeedSequence.mix_entropy``'s pool
    after every word of a child's entropy but its own index (times the mixing multiplier), and
    the hash constants each step after it uses (the children append one word each)."""
    run = _words(entropy)
    run += [0] * (_POOL - len(run))  # a child always has a spawn key: its run entropy is padded
    words = run + _words(spawn_key)
    h, pool = _INIT_A, []
    for w in words[:_POOL]:
        v, h = _hashmix(w, h)
        pool.append(v)
    for s in range(_POOL):
        for d in range(_POOL):
            if s != d:
                v, h = _hashmix(pool[s], h)
                pool[d] = _mix(pool[d], v)
    for w in words[_POOL:]:
        for d in range(_POOL):
            v, h = _hashmix(w, h)
            pool[d] = _mix(pool[d], v)
    xa, ya = [], []  # hashmix(index, h) for each pool word: ((index ^ xa) * ya) mod 2**32
    for _ in range(_POOL):
        xa.append(h)
        h = (h * _MULT_A) & _MASK
        ya.append(h)
    xb, yb, hb = [], [], _INIT_B  # generate_state's eight words: ((pool[i % 4] ^ xb) * yb) mod 2**32
    for _ in range(8):
        xb.append(hb)
        hb = (hb * _MULT_B) & _MASK
        yb.append(hb)
    col = lambda v: np.array(v, np.uint64)[:, None]  # noqa: E731
    return col([_MIX_L * p & _MASK for p in pool]), col(xa), col(ya), col(xb), col(yb)


def child_states(entropy, spawn_key, first: int, n: int, parent=None) -> list[tuple[int, int]]:
    """PCG64 (state, inc) of the children ``first .. first + n - 1`` of the SeedSequence
    ``(entropy, spawn_key)``, as ``PCG64(SeedSequence(entropy, spawn_key=(*spawn_key, i)))``
    leaves them (``parent``: ``_parent(entropy, spawn_key)``, when already known)."""
    if first < 0 or first + n > _MASK + 1:
        raise ValueError(f"child indices must lie in [0, 2**32), got {first}..{first + n - 1}")
    lp, xa, ya, xb, yb = parent or _parent(entropy, spawn_key)
    m = np.uint64(_MASK)
    # the child's own word (its index) mixed into each pool word: mix(pool, hashmix(index)),
    # mix(x, y) = (x * MIX_L - y * MIX_R) mod 2**32, the subtraction as adding 2**32 - MIX_R
    v = ((np.arange(first, first + n, dtype=np.uint64) ^ xa) * ya) & m  # (4, n)
    v ^= v >> np.uint64(16)
    r = (lp + v * np.uint64((1 << 32) - _MIX_R)) & m
    pool = r ^ (r >> np.uint64(16))
    w = ((pool[[0, 1, 2, 3, 0, 1, 2, 3]] ^ xb) * yb) & m  # generate_state(4, uint64), in 32-bit words
    w ^= w >> np.uint64(16)
    w64 = w[0::2] | (w[1::2] << np.uint64(32))  # little-endian pairs: seed high, seed low, inc high, inc low
    states = []
    for s_hi, s_lo, i_hi, i_lo in zip(*w64.tolist()):
        seed = s_hi << 64 | s_lo
        inc = ((i_hi << 64 | i_lo) << 1 | 1) & _M128
        states.append((((inc + seed) * _PCG_MULT + inc) & _M128, inc))  # pcg_setseq_128_srandom_r
    return states


def _fast(rng: np.random.Generator) -> bool:
    bg = rng.bit_generator
    ss = getattr(bg, "seed_seq", None)
    return (type(bg) is np.random.PCG64 and isinstance(ss, np.random.SeedSequence)
            and ss.pool_size == _POOL and ss.entropy is not None)


def spawned(rng: np.random.Generator, k: int) -> Iterator[tuple[np.random.Generator, ...]]:
    """The results of ``rng.spawn(k)``, ``rng.spawn(k)``, ... in turn (see the module docstring:
    the same draws; each spawn's generators are reseeded for the next)."""
    if not _fast(rng):
        while True:
            yield tuple(rng.spawn(k))
    gens = tuple(rng.spawn(k))  # the first spawn as numpy makes it (most slots have one life)
    yield gens
    ss = rng.bit_generator.seed_seq
    nxt, batch, parent = ss.n_children_spawned, 4, _parent(ss.entropy, ss.spawn_key)
    while True:  # then batches of 4, 16 and BATCH spawns, reseeding the first spawn's generators
        states = child_states(ss.entropy, ss.spawn_key, nxt, batch * k, parent)
        nxt += batch * k
        batch = min(4 * batch, BATCH)
        for j in range(0, len(states), k):
            for g, (s, inc) in zip(gens, states[j:j + k]):
                g.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": s, "inc": inc},
                                         "has_uint32": 0, "uinteger": 0}
            yield gens

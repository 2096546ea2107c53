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


def _prefix(entropy, spawn_key) -> tuple[list[int], int]:
    """The pool and hash constant of ``SeedSequence.mix_entropy`` after every word of a child's
    entropy but its own index (the children of ``spawn_key`` append one word each)."""
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
    return pool, h


def child_states(entropy, spawn_key, first: int, n: int, prefix=None) -> list[tuple[int, int]]:
    """PCG64 (state, inc) of the children ``first .. first + n - 1`` of the SeedSequence
    ``(entropy, spawn_key)``, as ``PCG64(SeedSequence(entropy, spawn_key=(*spawn_key, i)))``
    leaves them (``prefix``: ``_prefix(entropy, spawn_key)``, when already known)."""
    if first < 0 or first + n > _MASK + 1:
        raise ValueError(f"child indices must lie in [0, 2**32), got {first}..{first + n - 1}")
    pool0, h0 = prefix or _prefix(entropy, spawn_key)
    idx = np.arange(first, first + n, dtype=np.uint64)
    m = np.uint64(_MASK)
    pool = [np.full(n, p, np.uint64) for p in pool0]
    h = h0
    for d in range(_POOL):  # the child's own word, mixed into each pool word
        v = idx ^ np.uint64(h)
        h = (h * _MULT_A) & _MASK
        v = (v * np.uint64(h)) & m
        v ^= v >> np.uint64(16)
        r = (np.uint64(_MIX_L) * pool[d] + np.uint64((1 << 32) - _MIX_R) * v) & m  # x*L - y*R, mod 2**32
        pool[d] = r ^ (r >> np.uint64(16))
    hb, out = _INIT_B, []
    for i in range(8):  # generate_state(4, uint64): eight 32-bit words from the pool, in cycle
        v = pool[i % _POOL] ^ np.uint64(hb)
        hb = (hb * _MULT_B) & _MASK
        v = (v * np.uint64(hb)) & m
        out.append((v ^ (v >> np.uint64(16))).tolist())
    states = []
    for w in zip(*out):
        seed = ((w[0] | w[1] << 32) << 64) | (w[2] | w[3] << 32)
        inc = ((((w[4] | w[5] << 32) << 64) | (w[6] | w[7] << 32)) << 1 | 1) & _M128
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
    nxt, batch, prefix = ss.n_children_spawned, 4, _prefix(ss.entropy, ss.spawn_key)
    while True:  # then batches of 4, 16 and BATCH spawns, reseeding the first spawn's generators
        states = child_states(ss.entropy, ss.spawn_key, nxt, batch * k, prefix)
        nxt += batch * k
        batch = min(4 * batch, BATCH)
        for j in range(0, len(states), k):
            for g, (s, inc) in zip(gens, states[j:j + k]):
                g.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": s, "inc": inc},
                                         "has_uint32": 0, "uinteger": 0}
            yield gens

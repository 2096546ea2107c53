"""Broker restart settings: when the broker process stops and starts again, and how it stops.

``broker: {restarts: {trace: [[20, 22]], kind: graceful}}`` or, drawn at random with the
same keys as client outages, ``restarts: {up: {...}, down: {...}, kind: crash}``. What a
restart does to sessions (persistence, Clean Start, the profile's ``restored session
expiry``) is :mod:`sim.protocol`'s restart rules; the broker applies them at run time
(:mod:`sim.broker`, :mod:`sim.downtime`). Built directly, a bad field is named
``restarts.<key>``; inside a scenario, ``broker.restarts.<key>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .outages import Distribution, parse_distribution
from .units import Checked, ScenarioError, build, parse_choice, parse_duration, spec, subfield

#: How the broker stops: SIGTERM (the state is saved at the stop) or SIGKILL (what changed
#: since the last save is lost).
KINDS = ("graceful", "crash")


def _kind(value: object, field: str) -> str:
    return parse_choice(value, field, KINDS)


def _trace(value: object, field: str) -> tuple[tuple[float, float], ...]:
    """``[[stop at, back at], ...]`` in seconds, in time order, not overlapping."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ScenarioError(field, value, "must be a non-empty list of [stop at, back at] pairs (seconds)")
    pairs: list[tuple[float, float]] = []
    last = 0.0
    for i, pair in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ScenarioError(where, pair, "must be a pair [stop at, back at] in seconds")
        stop = parse_duration(pair[0], f"{where}[0]")  # > 0: the broker is up when the run starts
        if pair[1] is None:
            raise ScenarioError(f"{where}[1]", None, "must be a time: the broker comes back (a back time "
                                "at or after the horizon keeps it down until the end)")
        back = parse_duration(pair[1], f"{where}[1]")
        if back <= stop:
            raise ScenarioError(where, list(pair), "is back before (or when) it stops: back at must be > stop at")
        if stop <= last and pairs:
            raise ScenarioError(where, list(pair), f"stops at {stop:g} s, not after the previous back at {last:g} s "
                                "(pairs must be in time order, not overlapping)")
        pairs.append((stop, back))
        last = back
    return tuple(pairs)


@dataclass(frozen=True)
class Restarts(Checked):
    """When the broker restarts: a ``trace`` of ``(stop at, back at)`` pairs, or ``up`` and
    ``down`` distributions (time the broker runs before it stops, time it stays down, drawn
    from the run's own random stream); ``kind`` graceful (default) or crash.
    """

    KEY = "restarts"
    trace: tuple[tuple[float, float], ...] | None = spec(_trace, None)
    up: Distribution | None = spec(parse_distribution, None)
    down: Distribution | None = spec(parse_distribution, None)
    kind: str = spec(_kind, "graceful")

    def _precheck(self, where: str, raw: dict[str, Any]) -> None:
        if raw["trace"] is not None:
            for k in ("up", "down"):
                if raw[k] is not None:
                    raise ScenarioError(subfield(where, k), raw[k], "cannot be combined with a trace (the trace gives "
                                        "every stop and start)")
        elif raw["up"] is None and raw["down"] is None:
            raise ScenarioError(subfield(where, "trace"), None, "is missing: give a trace [[stop at, back at], ...] "
                                "or up and down distributions")
        else:
            for k in ("up", "down"):
                if raw[k] is None:
                    raise ScenarioError(subfield(where, k), None, "is missing: give both up and down distributions "
                                        "(or a trace)")


def parse_restarts(value: object, field: str = "restarts") -> Restarts | None:
    """``{trace: [[20, 22]], kind: graceful}`` or ``{up: {...}, down: {...}, kind: crash}``;
    null: no restarts."""
    return None if value is None else build(Restarts, value, field)

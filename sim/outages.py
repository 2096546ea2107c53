"""Connection-failure settings: up/down-time distributions, departures, traces, back-off.

The settings and their validation (the scenario's ``outages`` blocks); what a client slot
does with them at run time is :mod:`sim.outage_plan`.

A client's connection alternates between *up* (connected) and *down* (no network). Each
client draws from its own random stream (see :mod:`sim.run`), so the outage history of a
client slot is the same whatever session policy is simulated: common random numbers.

:class:`Distribution`, :class:`Backoff` and :class:`Outages` validate themselves when built
(see :class:`sim.units.Checked`); built directly, they name a bad field ``outages.<key>``,
``reconnect.<key>`` and, for a distribution (which can be ``up`` or ``down``), by its bare key
(``distribution``, ``mean``, ``sigma``).
"""
from __future__ import annotations

import copy
import csv
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .units import (Checked, ScenarioError, base_dir, build, in_folder, located, normalize_key, parse_bool, parse_choice,
                    parse_duration, parse_interval, parse_int, parse_number, spec, subfield)

DISTRIBUTIONS = {
    # kind: (duration parameters, shape parameters)
    "exponential": (("mean",), ()),
    "lognormal": (("median", "mean"), ("sigma",)),
    "weibull": (("scale",), ("shape",)),
    "pareto": (("scale",), ("shape",)),
    "fixed": (("value",), ()),
}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _param_key(key: object) -> str:
    return str(key).strip().lower().replace(" ", "_")


def _parse_kind(value: object, field: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in DISTRIBUTIONS:
        raise ScenarioError(field, value, f"is not a known distribution: use one of {', '.join(DISTRIBUTIONS)}")
    return value.strip().lower()


def _parse_params(value: object, field: str) -> dict[str, Any]:
    """The parameters as a dict (names normalized); their values are checked with the kind."""
    if isinstance(value, Mapping):
        return {_param_key(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        return {_param_key(k): v for k, v in value}
    raise ScenarioError(field, value, "must be a mapping of parameter names to values, like {mean: 6h}")


@dataclass(frozen=True)
class Distribution(Checked):
    """A positive duration distribution, in seconds.

    - ``exponential(mean)``
    - ``lognormal(median, sigma)`` or ``lognormal(mean, sigma)``: log-duration ~ Normal(mu, sigma)
    - ``weibull(shape, scale)``
    - ``pareto(shape, scale)``: classical Pareto, support >= scale, P(X > x) = (scale/x)^shape
    - ``fixed(value)``

    ``Distribution("lognormal", {"median": "2m", "sigma": 1.5})``: ``params`` may be a mapping
    or (name, value) pairs, durations in any accepted spelling; they are stored as pairs in
    seconds. Built directly, a bad value is named by its bare key (``distribution``, ``mean``).
    """

    KEY = ""
    kind: str = spec(_parse_kind, key="distribution")
    params: tuple[tuple[str, float], ...] = spec(_parse_params)

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        kind, d = self.kind, dict(self.params)
        durations, shapes = DISTRIBUTIONS[kind]
        for key in d:
            if key not in durations + shapes:
                raise ScenarioError(_join(where, key), d[key], f"is not a parameter of {kind}: use {', '.join(durations + shapes)}")
        params: list[tuple[str, float]] = []
        given = [k for k in durations if k in d]
        if kind == "lognormal":
            if len(given) != 1:
                raise ScenarioError(_join(where, "median"), d.get("median"), "lognormal needs exactly one of median or mean, and sigma")
        elif not given:
            raise ScenarioError(_join(where, durations[0]), None, f"is missing: {kind} needs {', '.join(durations + shapes)}")
        for key in given:
            params.append((key, parse_duration(d[key], _join(where, key))))
        for key in shapes:
            if key not in d:
                raise ScenarioError(_join(where, key), None, f"is missing: {kind} needs {', '.join(given + list(shapes))}")
            params.append((key, parse_number(d[key], _join(where, key), lo=0.0)))
        object.__setattr__(self, "params", tuple(params))

    def p(self, name: str) -> float:
        return dict(self.params)[name]

    @property
    def mu(self) -> float:
        """Lognormal location (mean of the log-duration)."""
        d = dict(self.params)
        if "median" in d:
            return math.log(d["median"])
        return math.log(d["mean"]) - d["sigma"] ** 2 / 2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (seconds)."""
        k = self.kind
        if k == "exponential":
            return rng.exponential(self.p("mean"), size)
        if k == "lognormal":
            return rng.lognormal(self.mu, self.p("sigma"), size)
        if k == "weibull":
            return self.p("scale") * rng.weibull(self.p("shape"), size)
        if k == "pareto":
            return self.p("scale") * (1.0 + rng.pareto(self.p("shape"), size))
        return np.full(size, self.p("value"))

    @property
    def mean(self) -> float:
        """The distribution's mean in seconds (inf for a Pareto with shape <= 1)."""
        k = self.kind
        if k == "exponential":
            return self.p("mean")
        if k == "lognormal":
            return math.exp(self.mu + self.p("sigma") ** 2 / 2)
        if k == "weibull":
            return self.p("scale") * math.gamma(1 + 1 / self.p("shape"))
        if k == "pareto":
            a = self.p("shape")
            return math.inf if a <= 1 else a * self.p("scale") / (a - 1)
        return self.p("value")

    def scipy(self):
        """The equivalent frozen ``scipy.stats`` distribution (for closed-form cross-checks)."""
        from scipy import stats

        k = self.kind
        if k == "exponential":
            return stats.expon(scale=self.p("mean"))
        if k == "lognormal":
            return stats.lognorm(s=self.p("sigma"), scale=math.exp(self.mu))
        if k == "weibull":
            return stats.weibull_min(self.p("shape"), scale=self.p("scale"))
        if k == "pareto":
            return stats.pareto(self.p("shape"), scale=self.p("scale"))
        raise ValueError("a fixed duration has no scipy distribution")

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.kind, **dict(self.params)}


def parse_distribution(value: object, field: str) -> Distribution:
    """``{distribution: exponential, mean: 6h}`` and friends (or a :class:`Distribution`)."""
    if isinstance(value, Distribution):
        return value
    if not isinstance(value, Mapping):
        raise ScenarioError(field, value, "must be a mapping like {distribution: exponential, mean: 6h}")
    d = {_param_key(k): v for k, v in value.items()}
    kind = d.pop("distribution", None)
    with located(Distribution, field):
        return Distribution(kind, d)


# --------------------------------------------------------------------------- outage settings


def _multiplier(value: object, field: str) -> float:
    return parse_number(value, field, lo=1.0, lo_open=False)


def _jitter(value: object, field: str) -> float:
    return parse_number(value, field, lo=0.0, lo_open=False, hi=1.0, hi_open=True)


@dataclass(frozen=True)
class Backoff(Checked):
    """Exponential reconnect back-off with jitter: attempts at growing delays after the drop.

    Durations in seconds (or ``"2s"``, ``"1m"``); ``max_delay >= initial_delay``,
    ``multiplier >= 1``, ``0 <= jitter < 1``. Built directly, a bad field is named
    ``reconnect.<key>`` (``reconnect.jitter``).
    """

    KEY = "reconnect"
    initial_delay: float = spec(parse_duration, 1.0)
    max_delay: float = spec(parse_duration, 120.0)
    multiplier: float = spec(_multiplier, 2.0)
    jitter: float = spec(_jitter, 0.0)

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        if self.max_delay < self.initial_delay:
            raise ScenarioError(subfield(where, "max_delay"), raw["max_delay"],
                                f"must be >= initial delay ({self.initial_delay:g} s)")


def parse_backoff(value: object, field: str) -> Backoff:
    """``{initial delay: 1s, max delay: 2m, multiplier: 2, jitter: 0.5}`` (null or {}: the defaults)."""
    return build(Backoff, value, field)


def _probability(value: object, field: str) -> float:
    return parse_number(value, field, lo=0.0, lo_open=False, hi=1.0)


def _parse_trace(value: object, field: str) -> Any:
    """A CSV path (resolved against the scenario's folder; stored absolute) or inline pairs
    (stored as a tuple of pairs, a leading ``(None, t)`` first-connect pair included)."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        folder = base_dir()
        if not path.is_absolute() and folder is not None:  # relative to the scenario file's folder
            path = folder / path
        if not path.is_file():
            raise ScenarioError(field, str(path), "is not an existing CSV file (columns client,disconnect,reconnect)")
        return str(path.resolve())
    first, pairs = _parse_pairs(value, field)
    return (((None, first),) if first is not None else ()) + pairs


def _choice_disconnect(value: object, field: str) -> str:
    return parse_choice(value, field, ("network", "clean"))


@dataclass(frozen=True)
class Outages(Checked):
    """How a block's connections fail: distributions or a trace, and how clients reconnect.

    Give ``up`` and ``down`` (each a :class:`Distribution` or its mapping), with an optional
    ``leave_probability`` (None unless up/down are given; then 0.0 by default), or a ``trace``
    (inline ``[[disconnect, reconnect], ...]`` pairs or a CSV path), or neither (never
    disconnects). ``traces``, ``trace_options`` and ``first_connect`` are derived from the
    trace for the block's number of clients when the block is built (:meth:`resolved`).
    Built directly, a bad field is named ``outages.<key>`` (``outages.leave probability``).
    """

    KEY = "outages"
    up: Distribution | None = spec(parse_distribution, None)
    down: Distribution | None = spec(parse_distribution, None)
    leave_probability: float | None = spec(_probability, None)
    replace_departed: bool = spec(parse_bool, False)
    trace: Any = spec(_parse_trace, None)  #: inline (disconnect, reconnect|None) pairs, or a CSV path
    traces: tuple | None = field(default=None, init=False)  #: per client slot: (disconnect, reconnect) pairs
    trace_options: tuple | None = field(default=None, init=False)  #: per slot, per pair: (disconnect kind | None, reconnect clean start | None)
    first_connect: tuple | None = field(default=None, init=False)  #: per slot: time of the first CONNECT when later than 0 (else None)
    disconnect: str = spec(_choice_disconnect, "network")
    # sent only in a DISCONNECT packet: used by the outages whose disconnect is clean (the
    # block's `disconnect`, or a trace CSV's per-outage disconnect_kind)
    disconnect_session_expiry_interval: int | None = spec(parse_interval, None)
    reconnect_clean_start: bool | None = spec(parse_bool, None)
    reconnect: Backoff | None = spec(parse_backoff, None)

    @property
    def never(self) -> bool:
        """True when the clients never disconnect."""
        return self.up is None and self.trace is None

    def _precheck(self, where: str, raw: dict[str, Any]) -> None:
        if raw["trace"] is not None:
            for k in ("up", "down", "leave_probability"):
                if raw[k] is not None:
                    raise ScenarioError(subfield(where, k), raw[k], "cannot be combined with a trace (the trace gives every disconnect and reconnect)")
        elif raw["up"] is not None or raw["down"] is not None:
            for k in ("up", "down"):
                if raw[k] is None:
                    raise ScenarioError(subfield(where, k), None, "is missing: give both up and down distributions (or a trace)")
        elif raw["leave_probability"] is not None:
            raise ScenarioError(subfield(where, "leave_probability"), raw["leave_probability"], "needs up and down distributions")

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        if self.up is not None and self.leave_probability is None:
            object.__setattr__(self, "leave_probability", 0.0)

    def resolved(self, clients: int, where: str = KEY) -> "Outages":
        """These outages with the trace resolved per client slot for a block of ``clients``
        (``traces``, ``trace_options``, ``first_connect``); ``self`` when nothing changes."""
        if self.trace is None or (self.traces is not None and len(self.traces) == clients):
            return self
        name = subfield(where, "trace")
        if isinstance(self.trace, str):
            first, traces, options = _read_trace_csv(Path(self.trace), name, clients)
            first_connect = first if any(f is not None for f in first) else None
        else:
            start, pairs = _parse_pairs(self.trace, name)
            traces, options = tuple(pairs for _ in range(clients)), None
            first_connect = tuple(start for _ in range(clients)) if start is not None else None
        new = copy.copy(self)
        object.__setattr__(new, "traces", traces)
        object.__setattr__(new, "trace_options", options)
        object.__setattr__(new, "first_connect", first_connect)
        return new


def parse_outages(value: object, field: str = "outages", clients: int | None = None,
                  base_dir: Path | None = None) -> Outages:
    """Outages from a mapping (or an :class:`Outages`); resolved for ``clients`` when given."""
    with in_folder(base_dir) if base_dir is not None else nullcontext():
        out = build(Outages, value, field)
    return out if clients is None else out.resolved(clients, field)


def _parse_pairs(raw: object, field: str) -> tuple[float | None, tuple[tuple[float, float | None], ...]]:
    """(first connect time or None, the (disconnect, reconnect) pairs) of one client's trace.

    A leading ``[null, t]`` pair means the client first connects at ``t`` (before that it is
    not part of the fleet); a ``null`` reconnect means it leaves for good and must be last.
    """
    if not isinstance(raw, (list, tuple)):
        raise ScenarioError(field, raw, "must be a list of [disconnect at, reconnect at] pairs, or a CSV path")
    pairs: list[tuple[float, float | None]] = []
    first: float | None = None
    last = 0.0
    for i, pair in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ScenarioError(where, pair, "must be a pair [disconnect at, reconnect at] (reconnect null = leaves for good)")
        if pairs and pairs[-1][1] is None:
            raise ScenarioError(where, list(pair), "follows a pair with a null reconnect (the client had left for good)")
        if pair[0] is None:
            if i != 0 or pair[1] is None:
                raise ScenarioError(where, list(pair), "a null disconnect is only allowed in the first pair, "
                                    "[null, t] = the client first connects at t")
            first = last = parse_duration(pair[1], f"{where}[1]", allow_zero=True)
            continue
        off = parse_duration(pair[0], f"{where}[0]", allow_zero=True)
        on = None if pair[1] is None else parse_duration(pair[1], f"{where}[1]", allow_zero=True)
        if off < last:
            raise ScenarioError(where, list(pair), f"disconnects at {off:g} s, before the previous reconnect at {last:g} s (pairs must be in time order, not overlapping)")
        if on is not None and on <= off:
            raise ScenarioError(where, list(pair), "reconnects before (or when) it disconnects: reconnect must be > disconnect")
        pairs.append((off, on))
        last = off if on is None else on
    return (first or None), tuple(pairs)


def _read_trace_csv(path: Path, field: str, clients: int) -> tuple[tuple, tuple, tuple]:
    """Per-client (first connect, pairs, options) from a CSV trace.

    Columns ``client,disconnect,reconnect``; optional ``disconnect_kind`` (network | clean) and
    ``clean_start`` (of the reconnect: true/false/1/0) override the block's settings per row
    (empty = the block's). A row with an empty disconnect (first for its client) gives the
    client's first CONNECT time.
    """
    if not path.is_file():
        raise ScenarioError(field, str(path), "is not an existing CSV file (columns client,disconnect,reconnect)")
    rows: dict[int, list] = {i: [] for i in range(clients)}
    opts: dict[int, list] = {i: [] for i in range(clients)}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        if not {"client", "disconnect", "reconnect"} <= cols:
            raise ScenarioError(field, str(path), f"has columns {sorted(cols)}; needs client,disconnect,reconnect")
        for n, row in enumerate(reader, start=2):
            where = f"{field} (line {n})"
            c = parse_int(_num(row["client"]), f"{where} client", 0, clients - 1, "a client index of the block")
            off, on = row["disconnect"].strip(), row["reconnect"].strip()
            rows[c].append([None if off == "" else _num(off), None if on == "" else _num(on)])
            kind = (row.get("disconnect_kind") or "").strip()
            cs = (row.get("clean_start") or "").strip().lower()
            if cs not in ("", "true", "false", "1", "0"):
                raise ScenarioError(f"{where} clean_start", row["clean_start"], "is not one of: true, false, 1, 0, or empty")
            if off != "":
                opts[c].append((parse_choice(kind, f"{where} disconnect_kind", ("network", "clean")) if kind else None,
                                None if cs == "" else cs in ("true", "1")))
    parsed = [_parse_pairs(rows[i], f"{field} client {i}") for i in range(clients)]
    return (tuple(p[0] for p in parsed), tuple(p[1] for p in parsed), tuple(tuple(opts[i]) for i in range(clients)))


def _num(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text




# --------------------------------------------------------------------------- network outages


def _parse_windows(value: object, field: str) -> tuple[tuple[float, float], ...]:
    """``[[start, end], ...]``: absolute seconds, start < end, sorted and not overlapping."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ScenarioError(field, value, "must be a non-empty list of [start, end] pairs (seconds, in time order)")
    out: list[tuple[float, float]] = []
    for i, pair in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ScenarioError(where, pair, "must be a pair [start, end] of the network outage (seconds)")
        start = parse_duration(pair[0], f"{where}[0]", allow_zero=True)
        end = parse_duration(pair[1], f"{where}[1]")
        if end <= start:
            raise ScenarioError(where, list(pair), "ends before (or when) it starts: end must be > start")
        if out and start < out[-1][1]:
            raise ScenarioError(where, list(pair), f"starts at {start:g} s, before the previous network outage ends "
                                f"({out[-1][1]:g} s): outages must be in time order and not overlap")
        out.append((start, end))
    return tuple(out)


def _fraction(value: object, field: str) -> float:
    return parse_number(value, field, lo=0.0, lo_open=True, hi=1.0)


def _block_names(value: object, field: str) -> tuple[str, ...]:
    """A list of block names (or one name); which names exist is checked by the scenario."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ScenarioError(field, value, "must be a non-empty list of block names, like [mqttConsumer]")
    return tuple(n.strip() for n in names)


@dataclass(frozen=True)
class NetworkOutages(Checked):
    """Outages shared by many clients (a cell network or a data-centre link fails).

    Give a ``trace`` (``[[start, end], ...]`` absolute seconds, sorted, not overlapping) or
    ``up`` and ``down`` distributions (the network is up for an ``up`` draw from t = 0, then
    down for a ``down`` draw, and so on). ``fraction`` in (0, 1] is the expected share of the
    affected blocks' client slots that each outage takes down (drawn per outage, see
    :mod:`sim.network`); ``blocks`` names the affected blocks (None: every block); the names
    a scenario allows are checked by :meth:`resolved`. ``targets`` (derived) holds the
    affected blocks' positions, consumers first, then publishers. Built directly, a bad field
    is named ``network outages.<key>``.
    """

    KEY = "network outages"
    trace: tuple | None = spec(_parse_windows, None)
    up: Distribution | None = spec(parse_distribution, None)
    down: Distribution | None = spec(parse_distribution, None)
    fraction: float = spec(_fraction, 1.0)
    blocks: tuple[str, ...] | None = spec(_block_names, None)
    targets: tuple[int, ...] | None = field(default=None, init=False)  #: affected block positions (see resolved)

    def _precheck(self, where: str, raw: dict[str, Any]) -> None:
        if raw["trace"] is not None:
            for k in ("up", "down"):
                if raw[k] is not None:
                    raise ScenarioError(subfield(where, k), raw[k], "cannot be combined with a trace (the trace gives every network outage)")
        elif raw["up"] is None or raw["down"] is None:
            missing = "up" if raw["up"] is None else "down"
            raise ScenarioError(subfield(where, missing), None, "is missing: give a trace of [start, end] pairs, or both up and down distributions")

    def resolved(self, names: list[tuple[str, ...]], where: str = KEY) -> "NetworkOutages":
        """These settings with ``targets`` set, for a scenario whose blocks (consumers first,
        then publishers) answer to ``names`` (one tuple of accepted names per block). A name in
        ``blocks`` that no block answers to raises :class:`ScenarioError` listing the allowed ones."""
        if self.blocks is None:
            targets = tuple(range(len(names)))
        else:
            keyed = [{normalize_key(n) for n in block} for block in names]
            targets_set: set[int] = set()
            for i, name in enumerate(self.blocks):
                hit = [b for b, ks in enumerate(keyed) if normalize_key(name) in ks]
                if not hit:
                    allowed = list(dict.fromkeys(n for block in names for n in block))
                    raise ScenarioError(f"{subfield(where, 'blocks')}[{i}]", name,
                                        f"is not a block of this scenario: use one of {', '.join(allowed)}")
                targets_set.update(hit)
            targets = tuple(sorted(targets_set))
        new = copy.copy(self)
        object.__setattr__(new, "targets", targets)
        return new


def parse_network_outages(value: object, field: str = "network outages") -> NetworkOutages:
    """``{trace: [[3600, 5400]], fraction: 0.5, blocks: [mqttConsumer]}`` (or a :class:`NetworkOutages`)."""
    return build(NetworkOutages, value, field)

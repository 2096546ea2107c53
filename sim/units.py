"""Parsing of scenario values: durations, MQTT intervals, rates, and the error they raise.

Every parser takes the value and the field's name in the transport spelling (for example
``mqttConsumer.session expiry interval``) and either returns the value in base units
(seconds, messages per second) or raises :class:`ScenarioError` naming the field, the value
and what is allowed. Nothing is clamped.

The scenario types (:mod:`sim.config`, :mod:`sim.outages`) are :class:`Checked` frozen
dataclasses: each field names its parser (:func:`spec`), and ``__post_init__`` applies it, so
a type built in Python is validated exactly as the loader validates a scenario file; the
loader (:func:`build`) only maps keys to fields and constructs the types.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

from .protocol import UINT_MAX


class ScenarioError(ValueError):
    """An invalid scenario value, refused before any simulation starts."""

    def __init__(self, field: str, value: object, problem: str):
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86_400,
    "w": 7 * 86_400,
    "y": 365 * 86_400,
}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|min|m|h|d|w|y)\s*$")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)\s*/\s*([0-9]*)\s*(s|min|m|h|d|w|y)\s*$")
DURATION_HELP = "a number of seconds or a string like 15s, 10m, 2h, 30d, 2w, 1y, or uint_max"
INTERVAL_HELP = f"a whole number of seconds from 0 to UINT_MAX ({UINT_MAX}), e.g. 15, '15s', '1h' or 'uint_max'"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_duration(value: object, field: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a ``15s``/``10m``/``2h``/``30d``/``2w``/``1y``/``uint_max`` string."""
    seconds: float
    if _is_number(value):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ("uint_max", "uint-max"):
            seconds = float(UINT_MAX)
        else:
            m = _DURATION.match(text)
            if m:
                seconds = float(m.group(1)) * UNIT_SECONDS[m.group(2)]
            else:
                try:
                    seconds = float(text)
                except ValueError:
                    raise ScenarioError(field, value, f"is not a duration: use {DURATION_HELP}") from None
    else:
        raise ScenarioError(field, value, f"is not a duration: use {DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ScenarioError(field, value, "must be a finite duration")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ScenarioError(field, value, f"must be {bound} seconds")
    return seconds


def parse_interval(value: object, field: str) -> int:
    """An MQTT Four Byte Integer interval in whole seconds, 0..UINT_MAX (§1.5.5, §3.1.2.11.2)."""
    if isinstance(value, bool) or value is None:
        raise ScenarioError(field, value, f"is not an interval: use {INTERVAL_HELP}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("uint_max", "uint-max", "never"):
            return UINT_MAX
        m = _DURATION.match(text)
        if m:
            seconds = float(m.group(1)) * UNIT_SECONDS[m.group(2)]
        elif re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
            seconds = float(text)
        else:
            raise ScenarioError(field, value, f"is not an interval: use {INTERVAL_HELP}")
    elif _is_number(value):
        seconds = float(value) if isinstance(value, float) else value
    else:
        raise ScenarioError(field, value, f"is not an interval: use {INTERVAL_HELP}")
    if isinstance(seconds, float):
        if not math.isfinite(seconds) or seconds != int(seconds):
            raise ScenarioError(field, value, f"is not a whole number of seconds: use {INTERVAL_HELP}")
        seconds = int(seconds)
    if seconds < 0:
        raise ScenarioError(field, value, f"is negative: allowed 0 to UINT_MAX ({UINT_MAX})")
    if seconds > UINT_MAX:
        raise ScenarioError(field, value, f"is above UINT_MAX ({UINT_MAX})")
    return seconds


def parse_rate(value: object, field: str) -> float:
    """Messages per second from a number (per second) or ``N/s``, ``N/m``, ``N/h``, ``N/10s``."""
    rate: float
    if _is_number(value):
        rate = float(value)
    elif isinstance(value, str):
        m = _RATE.match(value.strip().lower())
        if m:
            per = float(m.group(2) or 1) * UNIT_SECONDS[m.group(3)]
            rate = float(m.group(1)) / per if per > 0 else math.inf
        else:
            try:
                rate = float(value)
            except ValueError:
                raise ScenarioError(field, value, "is not a rate: use messages per second or '1/s', '10/m', '5/h', '1/10s'") from None
    else:
        raise ScenarioError(field, value, "is not a rate: use messages per second or '1/s', '10/m', '5/h'")
    if not math.isfinite(rate) or rate <= 0:
        raise ScenarioError(field, value, "must be a rate > 0 messages per second")
    return rate


def parse_int(value: object, field: str, lo: int, hi: int | None = None, what: str = "") -> int:
    """An integer in [lo, hi] (hi None = no upper bound); floats with a fraction are refused."""
    allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
    if what:
        allowed += f" ({what})"
    if isinstance(value, bool) or not (_is_number(value) and math.isfinite(value) and float(value) == int(value)):
        raise ScenarioError(field, value, f"is not allowed: use {allowed}")
    n = int(value)
    if n < lo or (hi is not None and n > hi):
        raise ScenarioError(field, value, f"is out of range: use {allowed}")
    return n


def parse_number(value: object, field: str, *, lo: float = 0.0, lo_open: bool = True, hi: float | None = None,
                 hi_open: bool = False) -> float:
    """A finite real number within the given bounds."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    span = f"{left}{lo:g}, {hi:g}{right}" if hi is not None else f"{'>' if lo_open else '>='} {lo:g}"
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ScenarioError(field, value, f"is not a number: use a number {span}")
    x = float(value)
    bad = (x <= lo if lo_open else x < lo) or (hi is not None and (x >= hi if hi_open else x > hi))
    if bad:
        raise ScenarioError(field, value, f"is out of range: allowed {span}")
    return x


def parse_bool(value: object, field: str) -> bool:
    """A YAML boolean; strings and numbers are refused rather than guessed."""
    if not isinstance(value, bool):
        raise ScenarioError(field, value, "is not a boolean: use true or false")
    return value


def parse_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive; '_' and '-' are the same)."""
    if isinstance(value, str):
        norm = value.strip().lower().replace("_", "-")
        for c in choices:
            if norm == c.replace("_", "-"):
                return c
    raise ScenarioError(field, value, f"is not one of: {', '.join(choices)}")


# --------------------------------------------------------------------------- keys and mappings


def normalize_key(key: object) -> str:
    """'session expiry interval', 'sessionExpiryInterval', 'session-expiry_interval' -> snake_case."""
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(key).strip())
    return re.sub(r"[\s\-]+", "_", text).lower()


def display_key(key: str) -> str:
    """snake_case -> the transport docs' spelling used in error messages."""
    return {"mqtt_consumer": "mqttConsumer", "mqtt_publisher": "mqttPublisher"}.get(key, key.replace("_", " "))


def as_mapping(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScenarioError(field, value, "must be a mapping of keys to values")
    out: dict[str, Any] = {}
    for k, v in value.items():
        nk = normalize_key(k)
        if nk in out:
            raise ScenarioError(f"{field}.{display_key(nk)}" if field else display_key(nk), v, "is given twice (in two spellings)")
        out[nk] = v
    return out


def check_keys(d: Mapping[str, Any], allowed: set[str] | tuple[str, ...], field: str) -> None:
    for k in d:
        if k not in allowed:
            name = f"{field}.{display_key(k)}" if field else display_key(k)
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f"; did you mean '{display_key(close[0])}'?" if close else ""
            raise ScenarioError(name, d[k], f"is an unknown key; allowed keys: {', '.join(display_key(a) for a in sorted(allowed))}{hint}")


def subfield(field: str, key: str) -> str:
    return f"{field}.{display_key(key)}" if field else display_key(key)


# --------------------------------------------------------------------------- validated dataclasses

_WHERE: ContextVar[tuple[type | None, str]] = ContextVar("sim_scenario_where", default=(None, ""))
_BASE_DIR: ContextVar[Path | None] = ContextVar("sim_scenario_base_dir", default=None)
_KEEP: Any = object()


@contextmanager
def located(cls: type | None, where: str, base_dir: Any = _KEEP) -> Iterator[None]:
    """Within the block, an instance of ``cls`` names its fields under ``where`` (for example
    ``mqttConsumer[1]``) instead of its own key; ``base_dir`` (when given) is the folder that
    relative file paths (profiles, trace CSVs) are resolved against, for nested types too."""
    token = _WHERE.set((cls, where))
    base = _BASE_DIR.set(None if base_dir is None else Path(base_dir)) if base_dir is not _KEEP else None
    try:
        yield
    finally:
        if base is not None:
            _BASE_DIR.reset(base)
        _WHERE.reset(token)


@contextmanager
def in_folder(folder: str | Path | None) -> Iterator[None]:
    """Within the block, relative file paths are resolved against ``folder`` (None: the
    working directory)."""
    token = _BASE_DIR.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def base_dir() -> Path | None:
    """The folder relative file paths are resolved against (None: the working directory)."""
    return _BASE_DIR.get()


Parser = Callable[[Any, str], Any]


def spec(parse: Parser, default: Any = dataclasses.MISSING, *, key: str | None = None,
         default_factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A dataclass field checked, and normalized, by ``parse(value, field name)``.

    ``key``: the field's key in a scenario file (snake_case) when it is not the field's name.
    A field whose default is None is optional: None means "not given" and is not parsed.
    """
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"parse": parse, "key": key or None, **metadata})


class Checked:
    """Base of the scenario types: frozen dataclasses whose fields carry their parsers.

    ``__post_init__`` runs each field's parser on the given value and stores the parsed
    (normalized) value, then the type's cross-field rules; a bad value raises
    :class:`ScenarioError`. The error names the field by its path in the transport spelling:
    under the type's own key (``KEY``: ``mqttConsumer.qos``, ``broker.queue full policy``,
    ``outages.up``) for an instance built directly, and by its full path
    (``mqttPublisher[1].qos``, ``mqttConsumer.outages.up.mean``) when the loader, or a parent
    type given a mapping, builds it.
    """

    KEY: ClassVar[str] = ""
    _KEYS: ClassVar[dict[type, dict[str, dataclasses.Field]]] = {}

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field]:
        """The checked fields by their key in a scenario file (snake_case), in field order."""
        found = Checked._KEYS.get(cls)
        if found is None:
            found = {f.metadata.get("key") or f.name: f for f in dataclasses.fields(cls) if "parse" in f.metadata}
            Checked._KEYS[cls] = found
        return found

    def __post_init__(self) -> None:
        owner, where = _WHERE.get()
        if owner is not type(self):
            where = type(self).KEY
        keys = type(self).keys()
        raw = {f.name: getattr(self, f.name) for f in keys.values()}
        self._precheck(where, raw)
        for key, f in keys.items():
            value = raw[f.name]
            if value is None and f.default is None:
                continue  # an optional field that is not given
            object.__setattr__(self, f.name, f.metadata["parse"](value, subfield(where, key)))
        self._check(where, raw)

    def _precheck(self, where: str, raw: dict[str, Any]) -> None:
        """Rules on the values as given, before they are parsed."""

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        """Cross-field rules on the parsed values (may normalize with object.__setattr__)."""


def build(cls: type, value: object, where: str, **extra: Any) -> Any:
    """An instance of ``cls`` from a mapping in any key spelling (or ``value`` if it is one).

    Unknown keys are refused; an explicit null goes to the field's parser (most refuse it);
    everything else is checked by the type itself, with its fields named under ``where``.
    """
    if isinstance(value, cls):
        return value
    d = as_mapping(value, where)
    for alias, name in getattr(cls, "ALIASES", {}).items():  # the transport docs' names for fields
        if alias in d:
            if name in d:
                raise ScenarioError(subfield(where, alias), d[alias], f"and {display_key(name)} are the same setting: "
                                    "give one")
            d[name] = d.pop(alias)
    keys = cls.keys()
    check_keys(d, set(keys) | set(getattr(cls, "ALIASES", {})), where)
    kw = {}
    for k, v in d.items():
        f = keys[k]
        kw[f.name] = f.metadata["parse"](v, subfield(where, k)) if v is None else v
    with located(cls, where):
        return cls(**kw, **extra)

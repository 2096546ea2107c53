"""Scenario dataclasses, their validation, and loading from YAML or dicts.

Keys are accepted in the MQTT transport spelling (``session expiry interval``,
``mqttConsumer``), snake_case and camelCase; errors name fields in the transport spelling.
Every value is validated here, before any simulation, and nothing is clamped: see
docs/model.md for the keys, their defaults and allowed values.
"""
from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import protocol
from .outages import Distribution, parse_distribution
from .units import (ScenarioError, parse_bool, parse_choice, parse_duration, parse_int, parse_interval,
                    parse_number, parse_rate)

PROFILES_DIR = Path(__file__).resolve().parent.parent / "data" / "profiles"


def normalize_key(key: object) -> str:
    """'session expiry interval', 'sessionExpiryInterval', 'session-expiry_interval' -> snake_case."""
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(key).strip())
    return re.sub(r"[\s\-]+", "_", text).lower()


def display_key(key: str) -> str:
    """snake_case -> the transport docs' spelling used in error messages."""
    return {"mqtt_consumer": "mqttConsumer", "mqtt_publisher": "mqttPublisher"}.get(key, key.replace("_", " "))


def _mapping(value: object, field: str) -> dict[str, Any]:
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


def _check_keys(d: Mapping[str, Any], allowed: set[str] | tuple[str, ...], field: str) -> None:
    for k in d:
        if k not in allowed:
            name = f"{field}.{display_key(k)}" if field else display_key(k)
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f"; did you mean '{display_key(close[0])}'?" if close else ""
            raise ScenarioError(name, d[k], f"is an unknown key; allowed keys: {', '.join(display_key(a) for a in sorted(allowed))}{hint}")


def _sub(field: str, key: str) -> str:
    return f"{field}.{display_key(key)}"


# --------------------------------------------------------------------------- broker


@dataclass(frozen=True)
class BrokerConfig:
    """Broker limits and memory constants (a profile from data/profiles/ plus overrides)."""

    profile: str = "mosquitto"
    max_queued_messages: int = 1000
    max_queued_bytes: int = 0
    queue_full_policy: str = "drop-new"
    queue_bytes_check: str = "fits"
    queue_limits_count_qos0: bool = True
    queue_limits_count_inflight: bool = False
    queue_qos0_messages: bool = False
    max_session_expiry_interval: int = protocol.UINT_MAX
    uint_max_never_expires: bool = True
    message_expiry_check: str = "eager"
    shared_message_store: bool = True
    session_overhead_bytes: int = 0
    subscription_overhead_bytes: int = 0
    queue_entry_overhead_bytes: int = 0
    message_overhead_bytes: int = 0


_BROKER_KEYS = {f.name for f in fields(BrokerConfig)}
_BROKER_PARSERS = {
    "max_queued_messages": lambda v, f: parse_int(v, f, 0, what="0 = unlimited"),
    "max_queued_bytes": lambda v, f: parse_int(v, f, 0, what="0 = unlimited"),
    "queue_full_policy": lambda v, f: parse_choice(v, f, ("drop-new", "drop-oldest")),
    "queue_bytes_check": lambda v, f: parse_choice(v, f, ("fits", "below")),
    "queue_limits_count_qos0": parse_bool,
    "queue_limits_count_inflight": parse_bool,
    "queue_qos0_messages": parse_bool,
    "max_session_expiry_interval": parse_interval,
    "uint_max_never_expires": parse_bool,
    "message_expiry_check": lambda v, f: parse_choice(v, f, ("eager", "lazy")),
    "shared_message_store": parse_bool,
    "session_overhead_bytes": lambda v, f: parse_int(v, f, 0),
    "subscription_overhead_bytes": lambda v, f: parse_int(v, f, 0),
    "queue_entry_overhead_bytes": lambda v, f: parse_int(v, f, 0),
    "message_overhead_bytes": lambda v, f: parse_int(v, f, 0),
}


def profile_path(name: str) -> Path:
    """Path of a named profile in data/profiles/, or of a profile file given by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PROFILES_DIR / f"{name}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def parse_broker(value: object, field: str = "broker", base_dir: Path | None = None) -> BrokerConfig:
    d = _mapping(value, field)
    _check_keys(d, _BROKER_KEYS, field)
    profile = d.get("profile", "mosquitto")
    if not isinstance(profile, str):
        raise ScenarioError(_sub(field, "profile"), profile, f"must be a profile name ({', '.join(available_profiles())}) or a .yaml path")
    path = profile_path(profile)
    if not path.is_absolute() and base_dir is not None and path.suffix in (".yaml", ".yml"):
        path = base_dir / path  # a profile file given by path: relative to the scenario file's folder
    if not path.is_file():
        raise ScenarioError(_sub(field, "profile"), profile, f"is not a known profile: use one of {', '.join(available_profiles())} or a .yaml path")
    prof = _mapping(yaml.safe_load(path.read_text()), f"profile {profile}")
    settings = _mapping(prof.get("settings", {}), f"profile {profile}.settings")
    _check_keys(settings, _BROKER_KEYS - {"profile"}, f"profile {profile}.settings")
    merged = {**settings, **{k: v for k, v in d.items() if k != "profile"}}
    kwargs: dict[str, Any] = {"profile": profile}
    for key, parse in _BROKER_PARSERS.items():
        if key in merged:
            where = _sub(field, key) if key in d else f"profile {profile}.settings.{display_key(key)}"
            kwargs[key] = parse(merged[key], where)
    return BrokerConfig(**kwargs)


# --------------------------------------------------------------------------- outages


@dataclass(frozen=True)
class Backoff:
    """Exponential reconnect back-off with jitter: attempts at growing delays after the drop."""

    initial_delay: float = 1.0
    max_delay: float = 120.0
    multiplier: float = 2.0
    jitter: float = 0.0


@dataclass(frozen=True)
class Outages:
    """How a block's connections fail: distributions or a trace, and how clients reconnect."""

    up: Distribution | None = None
    down: Distribution | None = None
    leave_probability: float = 0.0
    replace_departed: bool = False
    trace: Any = None  #: raw trace: tuple of (disconnect, reconnect|None) pairs, or a CSV path
    traces: tuple | None = None  #: resolved per-client traces (index = client slot)
    disconnect: str = "network"
    disconnect_session_expiry_interval: int | None = None
    reconnect_clean_start: bool | None = None
    reconnect: Backoff | None = None

    @property
    def never(self) -> bool:
        """True when the clients never disconnect."""
        return self.up is None and self.traces is None


_OUTAGE_KEYS = {"up", "down", "leave_probability", "replace_departed", "trace", "disconnect",
                "disconnect_session_expiry_interval", "reconnect_clean_start", "reconnect"}


def _parse_pairs(raw: object, field: str) -> tuple[tuple[float, float | None], ...]:
    if not isinstance(raw, (list, tuple)):
        raise ScenarioError(field, raw, "must be a list of [disconnect at, reconnect at] pairs, or a CSV path")
    pairs: list[tuple[float, float | None]] = []
    last = 0.0
    for i, pair in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ScenarioError(where, pair, "must be a pair [disconnect at, reconnect at] (reconnect null = leaves for good)")
        if pairs and pairs[-1][1] is None:
            raise ScenarioError(where, list(pair), "follows a pair with a null reconnect (the client had left for good)")
        off = parse_duration(pair[0], f"{where}[0]", allow_zero=True)
        on = None if pair[1] is None else parse_duration(pair[1], f"{where}[1]", allow_zero=True)
        if off < last:
            raise ScenarioError(where, list(pair), f"disconnects at {off:g} s, before the previous reconnect at {last:g} s (pairs must be in time order, not overlapping)")
        if on is not None and on <= off:
            raise ScenarioError(where, list(pair), "reconnects before (or when) it disconnects: reconnect must be > disconnect")
        pairs.append((off, on))
        last = off if on is None else on
    return tuple(pairs)


def _read_trace_csv(path: Path, field: str, clients: int) -> tuple:
    if not path.is_file():
        raise ScenarioError(field, str(path), "is not an existing CSV file (columns client,disconnect,reconnect)")
    per_client: dict[int, list] = {i: [] for i in range(clients)}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        if not {"client", "disconnect", "reconnect"} <= cols:
            raise ScenarioError(field, str(path), f"has columns {sorted(cols)}; needs client,disconnect,reconnect")
        for n, row in enumerate(reader, start=2):
            where = f"{field} (line {n})"
            c = parse_int(_num(row["client"]), f"{where} client", 0, clients - 1, "a client index of the block")
            on = row["reconnect"].strip()
            per_client[c].append([_num(row["disconnect"]), None if on == "" else _num(on)])
    return tuple(_parse_pairs(per_client[i], f"{field} client {i}") for i in range(clients))


def _num(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def parse_backoff(value: object, field: str) -> Backoff:
    d = _mapping(value, field)
    _check_keys(d, {f.name for f in fields(Backoff)}, field)
    b = Backoff(
        initial_delay=parse_duration(d.get("initial_delay", 1.0), _sub(field, "initial_delay")),
        max_delay=parse_duration(d.get("max_delay", 120.0), _sub(field, "max_delay")),
        multiplier=parse_number(d.get("multiplier", 2.0), _sub(field, "multiplier"), lo=1.0, lo_open=False),
        jitter=parse_number(d.get("jitter", 0.0), _sub(field, "jitter"), lo=0.0, lo_open=False, hi=1.0, hi_open=True),
    )
    if b.max_delay < b.initial_delay:
        raise ScenarioError(_sub(field, "max_delay"), d.get("max_delay"), f"must be >= initial delay ({b.initial_delay:g} s)")
    return b


def parse_outages(value: object, field: str, clients: int, base_dir: Path | None) -> Outages:
    d = _mapping(value, field)
    _check_keys(d, _OUTAGE_KEYS, field)
    kw: dict[str, Any] = {}
    if "trace" in d:
        for k in ("up", "down", "leave_probability"):
            if k in d:
                raise ScenarioError(_sub(field, k), d[k], "cannot be combined with a trace (the trace gives every disconnect and reconnect)")
        raw = d["trace"]
        if isinstance(raw, (str, Path)):
            path = Path(raw)
            if not path.is_absolute() and base_dir is not None:  # relative to the scenario file's folder
                path = base_dir / path
            kw["traces"] = _read_trace_csv(path, _sub(field, "trace"), clients)
            kw["trace"] = str(path.resolve()) if path.exists() else str(path)
        else:
            pairs = _parse_pairs(raw, _sub(field, "trace"))
            kw["trace"] = tuple(tuple(p) for p in pairs)
            kw["traces"] = tuple(pairs for _ in range(clients))
    elif "up" in d or "down" in d:
        for k in ("up", "down"):
            if k not in d:
                raise ScenarioError(_sub(field, k), None, "is missing: give both up and down distributions (or a trace)")
        kw["up"] = parse_distribution(d["up"], _sub(field, "up"))
        kw["down"] = parse_distribution(d["down"], _sub(field, "down"))
        kw["leave_probability"] = parse_number(d.get("leave_probability", 0.0), _sub(field, "leave_probability"), lo=0.0, lo_open=False, hi=1.0)
    elif "leave_probability" in d:
        raise ScenarioError(_sub(field, "leave_probability"), d["leave_probability"], "needs up and down distributions")
    if "replace_departed" in d:
        kw["replace_departed"] = parse_bool(d["replace_departed"], _sub(field, "replace_departed"))
    if "disconnect" in d:
        kw["disconnect"] = parse_choice(d["disconnect"], _sub(field, "disconnect"), ("network", "clean"))
    if "disconnect_session_expiry_interval" in d:
        if kw.get("disconnect", "network") != "clean":
            raise ScenarioError(_sub(field, "disconnect_session_expiry_interval"), d["disconnect_session_expiry_interval"],
                                "needs 'disconnect: clean' (only a DISCONNECT packet carries an expiry interval)")
        kw["disconnect_session_expiry_interval"] = parse_interval(d["disconnect_session_expiry_interval"], _sub(field, "disconnect_session_expiry_interval"))
    if "reconnect_clean_start" in d:
        kw["reconnect_clean_start"] = parse_bool(d["reconnect_clean_start"], _sub(field, "reconnect_clean_start"))
    if "reconnect" in d:
        kw["reconnect"] = parse_backoff(d["reconnect"], _sub(field, "reconnect"))
    return Outages(**kw)


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class ConsumerBlock:
    """``mqttConsumer``: clients that subscribe to one topic filter."""

    clients: int = 1
    client_id: str = "consumer"
    session_expiry_interval: int = 0
    clean_start: bool = True
    qos: int = 0
    topic_filter: str = "#"
    receive_maximum: int = protocol.RECEIVE_MAXIMUM_MAX
    network_latency: float = 0.0
    outages: Outages = Outages()


@dataclass(frozen=True)
class PublisherBlock:
    """``mqttPublisher``: clients that publish at a Poisson rate or on a schedule."""

    clients: int = 1
    client_id: str = "publisher"
    session_expiry_interval: int = 0
    clean_start: bool = True
    qos: int = 0
    topic: str = "sensors/{id}"
    rate: float | None = None
    schedule: tuple[float, ...] | None = None
    payload_bytes: int = 100
    message_expiry_interval: int | None = None
    offline_buffer: int = 0
    network_latency: float = 0.0
    outages: Outages = Outages()

    def topic_of(self, index: int) -> str:
        """The topic name publisher ``index`` of this block publishes to."""
        return self.topic.replace("{id}", str(index))


_COMMON = {
    "clients": lambda v, f: parse_int(v, f, 1),
    "client_id": lambda v, f: _client_id(v, f),
    "session_expiry_interval": parse_interval,
    "clean_start": parse_bool,
    "qos": lambda v, f: parse_int(v, f, 0, 2, "MQTT QoS 0, 1 or 2"),
    "network_latency": lambda v, f: parse_duration(v, f, allow_zero=True),
}
_CONSUMER = {**_COMMON,
             "topic_filter": lambda v, f: _topic(v, f, protocol.validate_topic_filter),
             "receive_maximum": lambda v, f: parse_int(v, f, 1, protocol.RECEIVE_MAXIMUM_MAX, "MQTT Receive Maximum")}
_PUBLISHER = {**_COMMON,
              "topic": lambda v, f: _topic(v, f, protocol.validate_topic_name),
              "rate": parse_rate,
              "schedule": lambda v, f: _schedule(v, f),
              "payload_bytes": lambda v, f: parse_int(v, f, 0, 268_435_455, "MQTT maximum packet size"),
              "message_expiry_interval": lambda v, f: None if v is None else parse_interval(v, f),
              "offline_buffer": lambda v, f: parse_int(v, f, 0, what="messages; 0 = none")}


def _client_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > 65_535:
        raise ScenarioError(field, value, "must be a non-empty string (the client-id prefix)")
    return value


def _topic(value: object, field: str, check) -> str:
    if not isinstance(value, str):
        raise ScenarioError(field, value, "must be a string")
    problem = check(value.replace("{id}", "0"))
    if problem:
        raise ScenarioError(field, value, f"is not valid: {problem} (MQTT 5.0 §4.7)")
    return value


def _schedule(value: object, field: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ScenarioError(field, value, "must be a non-empty list of publish times in seconds")
    times = tuple(parse_duration(t, f"{field}[{i}]", allow_zero=True) for i, t in enumerate(value))
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ScenarioError(f"{field}[{i}]", value[i], f"is before the previous time {times[i - 1]:g} s: times must be in order")
    return times


def _parse_block(value: object, field: str, cls, parsers: dict, base_dir: Path | None):
    d = _mapping(value, field)
    _check_keys(d, set(parsers) | {"outages"}, field)
    kw = {k: parsers[k](v, _sub(field, k)) for k, v in d.items() if k != "outages"}
    clients = kw.get("clients", 1)
    kw["outages"] = parse_outages(d.get("outages"), _sub(field, "outages"), clients, base_dir)
    if cls is PublisherBlock:
        has_rate, has_schedule = kw.get("rate") is not None, kw.get("schedule") is not None
        if has_rate == has_schedule:
            raise ScenarioError(_sub(field, "rate"), d.get("rate"), "give exactly one of 'rate' (Poisson) or 'schedule' (exact times)")
    return cls(**kw)


def _blocks(value: object, field: str, cls, parsers: dict, base_dir: Path | None) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if not value:
            raise ScenarioError(field, value, "must be a block (mapping) or a non-empty list of blocks")
        return tuple(_parse_block(v, f"{field}[{i}]", cls, parsers, base_dir) for i, v in enumerate(value))
    return (_parse_block(value, field, cls, parsers, base_dir),)


# --------------------------------------------------------------------------- scenario

_TOP_KEYS = {"name", "description", "horizon", "broker", "mqtt_consumer", "mqtt_publisher"}


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build it with :func:`load_scenario` or :meth:`from_dict`."""

    name: str
    horizon: float
    broker: BrokerConfig
    consumers: tuple[ConsumerBlock, ...]
    publishers: tuple[PublisherBlock, ...]
    description: str = ""
    raw: Any = None  #: the normalized input dict (snake_case), kept for :meth:`updated`
    base_dir: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None) -> "Scenario":
        """Validate a scenario dict in any accepted spelling; raises :class:`ScenarioError`."""
        d = _mapping(data, "")
        _check_keys(d, _TOP_KEYS, "")
        name = d.get("name", "scenario")
        if not isinstance(name, str) or not name:
            raise ScenarioError("name", name, "must be a non-empty string")
        if "horizon" not in d:
            raise ScenarioError("horizon", None, f"is missing: the simulated time span ({'e.g. 60s, 30d, 1y'}), > 0")
        horizon = parse_duration(d["horizon"], "horizon")
        bdir = Path(base_dir) if base_dir is not None else None
        consumers = _blocks(d.get("mqtt_consumer"), "mqttConsumer", ConsumerBlock, _CONSUMER, bdir)
        publishers = _blocks(d.get("mqtt_publisher"), "mqttPublisher", PublisherBlock, _PUBLISHER, bdir)
        description = d.get("description", "")
        if not isinstance(description, str):
            raise ScenarioError("description", description, "must be a string")
        return cls(name=name, horizon=horizon, broker=parse_broker(d.get("broker"), base_dir=bdir), consumers=consumers,
                   publishers=publishers, description=description, raw=_freeze(d),
                   base_dir=str(bdir) if bdir else None)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as given (snake_case keys), reloadable with :meth:`from_dict`."""
        return _thaw(self.raw)

    def updated(self, changes: Mapping[str, Any]) -> "Scenario":
        """A new, re-validated scenario with dotted-path changes applied.

        ``scn.updated({"mqttConsumer.session expiry interval": 15, "horizon": "1d"})``.
        For a list of blocks use ``mqttConsumer[1].qos``; without an index every block changes.
        """
        d = self.to_dict()
        for path, value in changes.items():
            _set_path(d, str(path), value)
        return Scenario.from_dict(d, base_dir=self.base_dir)


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    if not parts:
        raise ScenarioError(path, value, "is not a field path like 'mqttConsumer.session expiry interval'")
    m = re.fullmatch(r"(.+?)\[(\d+)\]", parts[0])
    head, index = (m.group(1), int(m.group(2))) if m else (parts[0], None)
    key = normalize_key(head)
    if len(parts) == 1:
        d[key] = value
        return
    target = d.get(key)
    if target is None:
        target = d[key] = {}
    if isinstance(target, list):
        chosen = [target[index]] if index is not None and index < len(target) else target if index is None else None
        if chosen is None:
            raise ScenarioError(path, value, f"has no block [{index}] ({len(target)} blocks)")
    else:
        chosen = [target]
    for block in chosen:
        if not isinstance(block, dict):
            raise ScenarioError(path, value, f"cannot be set: {display_key(key)} is not a mapping")
        _set_path(block, ".".join(parts[1:]), value)


def _normalize_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {normalize_key(k): (v if normalize_key(k) == "trace" and isinstance(v, str) else _normalize_tree(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize_tree(v) for v in value]
    return value


def _freeze(d: Mapping[str, Any]) -> Any:
    import copy
    return copy.deepcopy(_normalize_tree(d))


def _thaw(raw: Any) -> Any:
    import copy
    return copy.deepcopy(raw)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ScenarioError(str(key), f"line {key_node.start_mark.line + 1}",
                                    "repeats a key already given in the same mapping")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_scenario(source: str | Path | Mapping[str, Any]) -> Scenario:
    """Load and validate a scenario from a YAML file path or a dict."""
    if isinstance(source, Mapping):
        return Scenario.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise ScenarioError("scenario", str(source), "is not an existing YAML file")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ScenarioError("scenario", str(source), f"is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, Mapping):
        raise ScenarioError("scenario", str(source), "must hold a YAML mapping (name, horizon, broker, mqttConsumer, mqttPublisher)")
    return Scenario.from_dict(data, base_dir=path.resolve().parent)

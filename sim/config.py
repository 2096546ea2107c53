"""Scenario dataclasses, their validation, and loading from YAML or dicts.

Keys are accepted in the MQTT transport spelling (``session expiry interval``,
``mqttConsumer``), snake_case and camelCase; errors name fields in the transport spelling.
Every value is validated here, before any simulation, and nothing is clamped: see
docs/model.md for the keys, their defaults and allowed values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import protocol
from .outages import Outages, parse_outages
from .units import (ScenarioError, check_keys, as_mapping, subfield, display_key, normalize_key, parse_bool,
                    parse_choice, parse_duration, parse_int, parse_interval, parse_rate)

PROFILES_DIR = Path(__file__).resolve().parent.parent / "data" / "profiles"


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
    d = as_mapping(value, field)
    check_keys(d, _BROKER_KEYS, field)
    profile = d.get("profile", "mosquitto")
    if not isinstance(profile, str):
        raise ScenarioError(subfield(field, "profile"), profile, f"must be a profile name ({', '.join(available_profiles())}) or a .yaml path")
    path = profile_path(profile)
    if not path.is_absolute() and base_dir is not None and path.suffix in (".yaml", ".yml"):
        path = base_dir / path  # a profile file given by path: relative to the scenario file's folder
    if not path.is_file():
        raise ScenarioError(subfield(field, "profile"), profile, f"is not a known profile: use one of {', '.join(available_profiles())} or a .yaml path")
    prof = as_mapping(yaml.safe_load(path.read_text()), f"profile {profile}")
    settings = as_mapping(prof.get("settings", {}), f"profile {profile}.settings")
    check_keys(settings, _BROKER_KEYS - {"profile"}, f"profile {profile}.settings")
    merged = {**settings, **{k: v for k, v in d.items() if k != "profile"}}
    kwargs: dict[str, Any] = {"profile": profile}
    for key, parse in _BROKER_PARSERS.items():
        if key in merged:
            where = subfield(field, key) if key in d else f"profile {profile}.settings.{display_key(key)}"
            kwargs[key] = parse(merged[key], where)
    return BrokerConfig(**kwargs)


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
    d = as_mapping(value, field)
    check_keys(d, set(parsers) | {"outages"}, field)
    kw = {k: parsers[k](v, subfield(field, k)) for k, v in d.items() if k != "outages"}
    clients = kw.get("clients", 1)
    kw["outages"] = parse_outages(d.get("outages"), subfield(field, "outages"), clients, base_dir)
    if cls is PublisherBlock:
        has_rate, has_schedule = kw.get("rate") is not None, kw.get("schedule") is not None
        if has_rate == has_schedule:
            raise ScenarioError(subfield(field, "rate"), d.get("rate"), "give exactly one of 'rate' (Poisson) or 'schedule' (exact times)")
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
        d = as_mapping(data, "")
        check_keys(d, _TOP_KEYS, "")
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

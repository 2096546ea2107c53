"""Scenario dataclasses, their validation, and loading from YAML or dicts.

Keys are accepted in the MQTT transport spelling (``session expiry interval``,
``mqttConsumer``), snake_case and camelCase; errors name fields in the transport spelling.
Every value is validated before any simulation, and nothing is clamped: see docs/model.md
for the keys, their defaults and allowed values.

The types validate themselves (:class:`sim.units.Checked`): each field names its parser,
and ``__post_init__`` applies it, so ``sim.ConsumerBlock(qos=7)`` raises the same
:class:`~sim.units.ScenarioError` as a scenario file with ``qos: 7``; parsed values are
stored normalized (``session_expiry_interval="15s"`` -> ``15``). The loader only maps keys
to fields. A type built directly names a bad field under its own key in the transport
spelling: ``broker.<key>``, ``mqttConsumer.<key>`` / ``mqttPublisher.<key>`` (no block
index), ``outages.<key>``; a :class:`Scenario` names its own keys bare (``horizon``) and
whatever it builds from mappings by the full path (``mqttConsumer[1].qos``), as the loader does.

Broker profiles and example scenarios ship inside the package (``sim/profiles/``,
``sim/examples/``), read with :mod:`importlib.resources`.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import yaml

from . import protocol
from .outages import Distribution, NetworkOutages, Outages, parse_network_outages, parse_outages
from .restarts import Restarts, parse_restarts
from .units import (Checked, ScenarioError, as_mapping, base_dir, build, check_keys, display_key, in_folder,
                    normalize_key, parse_bool, parse_choice, parse_duration, parse_int, parse_interval, parse_rate,
                    spec, subfield)

PROFILES_DIR = importlib.resources.files("sim") / "profiles"  #: broker profiles shipped with the package
EXAMPLES_DIR = importlib.resources.files("sim") / "examples"  #: example scenarios shipped with the package


def _yaml_names(folder) -> list[str]:
    return sorted(e.name[:-len(".yaml")] for e in folder.iterdir() if e.name.endswith(".yaml") and e.is_file())


def profile_path(name: str):
    """The file of a named profile shipped in ``sim/profiles/``, or of a profile file given by
    path (a :class:`~pathlib.Path`, or a resource with ``read_text()`` when the package is not
    on a file system)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PROFILES_DIR / f"{name}.yaml"


def available_profiles() -> list[str]:
    """Names of the broker profiles shipped with the package."""
    return _yaml_names(PROFILES_DIR)


def available_examples() -> list[str]:
    """Names of the example scenarios shipped with the package (``transport_example``, ...)."""
    return _yaml_names(EXAMPLES_DIR)


_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def example_path(name: str) -> Path:
    """The file of a shipped example scenario: ``example_path("transport_example")`` (a
    trailing ``.yaml`` is allowed); load it with :func:`load_scenario`. When the package is
    not on a file system (a zip), the example is extracted to a temporary file that lives
    as long as the process."""
    stem = name[:-len(".yaml")] if name.endswith(".yaml") else name
    known = available_examples()
    if stem not in known:
        raise ScenarioError("example", name, f"is not a shipped example: use one of {', '.join(known)}")
    resource = EXAMPLES_DIR / f"{stem}.yaml"
    if isinstance(resource, Path):
        return resource
    return _EXTRACTED.enter_context(importlib.resources.as_file(resource))


# --------------------------------------------------------------------------- broker


def _parse_profile(value: object, field: str) -> str:
    """A shipped profile's name (kept as given) or a .yaml path (stored absolute; a relative
    path is resolved against the scenario file's folder)."""
    if not isinstance(value, str):
        raise ScenarioError(field, value, f"must be a profile name ({', '.join(available_profiles())}) or a .yaml path")
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        folder = base_dir()
        if not path.is_absolute() and folder is not None:  # a profile file given by path: relative to the scenario file's folder
            path = folder / path
        if path.is_file():
            return str(path.resolve())
    elif profile_path(value).is_file():
        return value
    raise ScenarioError(field, value, f"is not a known profile: use one of {', '.join(available_profiles())} or a .yaml path")


def _setting(parse, neutral: Any) -> Any:
    """A broker setting: None (the default) takes the profile's value, or ``neutral`` when the
    profile does not set it."""
    return spec(parse, None, neutral=neutral)


def _count(what: str = ""):
    return lambda v, f: parse_int(v, f, 0, what=what)


def _choice(*choices: str):
    return lambda v, f: parse_choice(v, f, choices)


def _restored_session_expiry(value: object, field: str) -> str:
    """``on reconnect`` | ``wall time`` (spaces, '_' and '-' alike)."""
    choices = (protocol.ON_RECONNECT, protocol.WALL_TIME)
    if isinstance(value, str):
        norm = " ".join(value.strip().lower().replace("_", " ").replace("-", " ").split())
        if norm in choices:
            return norm
    raise ScenarioError(field, value, f"is not one of: {', '.join(choices)}")


def _autosave_interval(value: object, field: str) -> float:
    return parse_duration(value, field, allow_zero=True)


@dataclass(frozen=True)
class BrokerConfig(Checked):
    """Broker limits and memory constants: a profile (shipped in ``sim/profiles/``, or a
    .yaml path) plus overrides.

    A setting left None (the default) takes the profile's value, or the engine's neutral
    default when the profile does not set it; so ``BrokerConfig()`` is the ``mosquitto``
    profile and ``BrokerConfig(profile="emqx", max_queued_messages=5)`` is EMQX with one
    override, exactly as ``broker: {profile: emqx, max queued messages: 5}`` loads. Bad values
    raise :class:`~sim.units.ScenarioError` naming ``broker.<key>`` (transport spelling), or
    ``profile <name>.settings.<key>`` for a bad value in the profile file.
    """

    KEY = "broker"
    profile: str = spec(_parse_profile, "mosquitto")
    max_queued_messages: int = _setting(_count("0 = unlimited"), 1000)
    max_queued_bytes: int = _setting(_count("0 = unlimited"), 0)
    queue_full_policy: str = _setting(_choice("drop-new", "drop-oldest"), "drop-new")
    queue_bytes_check: str = _setting(_choice("fits", "below"), "fits")
    queue_limits_count_qos0: bool = _setting(parse_bool, True)
    queue_limits_count_inflight: bool = _setting(parse_bool, False)
    queue_qos0_messages: bool = _setting(parse_bool, False)
    max_session_expiry_interval: int = _setting(parse_interval, protocol.UINT_MAX)
    uint_max_never_expires: bool = _setting(parse_bool, True)
    message_expiry_check: str = _setting(_choice("eager", "lazy"), "eager")
    shared_message_store: bool = _setting(parse_bool, True)
    session_overhead_bytes: int = _setting(_count(), 0)
    subscription_overhead_bytes: int = _setting(_count(), 0)
    queue_entry_overhead_bytes: int = _setting(_count(), 0)
    message_overhead_bytes: int = _setting(_count(), 0)
    #: broker restarts and persistence (docs/model.md, "Broker restarts")
    persistence: bool = _setting(parse_bool, False)
    autosave_interval: float = _setting(_autosave_interval, 0.0)  #: s between saves while running; 0 = at shutdown only
    restored_session_expiry: str = _setting(_restored_session_expiry, protocol.WALL_TIME)
    restarts: Restarts | None = _setting(parse_restarts, None)

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        settings = _profile_settings(self.profile)
        for key, f in type(self).keys().items():
            if getattr(self, f.name) is not None:
                continue
            if key in settings:
                value = f.metadata["parse"](settings[key], f"profile {self.profile}.settings.{display_key(key)}")
            else:
                value = f.metadata["neutral"]
            object.__setattr__(self, f.name, value)


def _profile_settings(profile: str) -> dict[str, Any]:
    """The ``settings`` mapping of a profile file (keys normalized and checked, values as written)."""
    prof = as_mapping(yaml.safe_load(profile_path(profile).read_text()), f"profile {profile}")
    settings = as_mapping(prof.get("settings", {}), f"profile {profile}.settings")
    # a profile describes a broker, not when it restarts
    check_keys(settings, set(BrokerConfig.keys()) - {"profile", "restarts"}, f"profile {profile}.settings")
    return settings


def parse_broker(value: object, field: str = "broker", base_dir: Path | None = None) -> BrokerConfig:
    """A :class:`BrokerConfig` from a ``broker`` mapping (null: the mosquitto profile)."""
    with in_folder(base_dir) if base_dir is not None else contextlib.nullcontext():
        return build(BrokerConfig, value, field)


# --------------------------------------------------------------------------- clients


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


def _clients(v, f) -> int:
    return parse_int(v, f, 1)


def _qos(v, f) -> int:
    return parse_int(v, f, 0, 2, "MQTT QoS 0, 1 or 2")


def _latency(v, f) -> float:
    return parse_duration(v, f, allow_zero=True)


def _topic_filter(v, f) -> str:
    return _topic(v, f, protocol.validate_topic_filter)


def _topic_name(v, f) -> str:
    return _topic(v, f, protocol.validate_topic_name)


def _receive_maximum(v, f) -> int:
    return parse_int(v, f, 1, protocol.RECEIVE_MAXIMUM_MAX, "MQTT Receive Maximum")


def _payload_bytes(v, f) -> int:
    return parse_int(v, f, 0, 268_435_455, "MQTT maximum packet size")


def _message_expiry(v, f) -> int | None:
    return None if v is None else parse_interval(v, f)


def _offline_buffer(v, f) -> int:
    return parse_int(v, f, 0, what="messages; 0 = none")


def _accepted(v, f) -> Any:
    """A transport attribute the model does not simulate (connection settings): accepted as given."""
    return v


#: The MQTT transport blocks' documented attributes that only shape the connection, not the
#: session (the stream-processing platform's mqttConsumer / mqttPublisher): accepted, stored,
#: and listed as "not simulated" (``Scenario.not_simulated``).
CONNECTION_ONLY = ("name", "broker", "username", "password", "tenant", "keepalive_interval", "connection_timeout",
                   "registration_message", "user_properties", "serializer", "deserializer", "security")


@dataclass(frozen=True, kw_only=True)
class _TransportBlock(Checked):
    """What consumer and publisher blocks share: the transport's spellings and attributes
    (keyword-only, so the blocks' own fields keep their positions)."""

    #: the transport docs' names for model fields (``clean restart`` is Clean Start)
    ALIASES: ClassVar[dict[str, str]] = {"clean_restart": "clean_start"}

    auto_reconnect: bool = spec(parse_bool, True)  #: False: a client that drops does not come back
    name: Any = spec(_accepted, None)
    broker: Any = spec(_accepted, None)
    username: Any = spec(_accepted, None)
    password: Any = spec(_accepted, None)
    tenant: Any = spec(_accepted, None)
    keepalive_interval: Any = spec(_accepted, None)
    connection_timeout: Any = spec(_accepted, None)
    registration_message: Any = spec(_accepted, None)
    user_properties: Any = spec(_accepted, None)
    serializer: Any = spec(_accepted, None)
    deserializer: Any = spec(_accepted, None)
    security: Any = spec(_accepted, None)

    @property
    def not_simulated(self) -> tuple[str, ...]:
        """The connection-only attributes this block gives (keys in snake_case)."""
        return tuple(k for k in CONNECTION_ONLY if getattr(self, k) is not None)


@dataclass(frozen=True)
class ConsumerBlock(_TransportBlock):
    """``mqttConsumer``: clients that subscribe to one topic filter.

    Every field is validated on construction (bad values raise
    :class:`~sim.units.ScenarioError` naming ``mqttConsumer.<key>`` in the transport spelling,
    e.g. ``mqttConsumer.qos: 7 is out of range: ...``) and stored normalized
    (``session_expiry_interval="15s"`` -> ``15``). ``outages`` may be an
    :class:`~sim.outages.Outages` or its mapping; its trace is resolved for ``clients``.
    """

    KEY = "mqttConsumer"
    clients: int = spec(_clients, 1)
    client_id: str = spec(_client_id, "consumer")
    session_expiry_interval: int = spec(parse_interval, 0)
    clean_start: bool = spec(parse_bool, True)
    qos: int = spec(_qos, 0)
    topic_filter: str = spec(_topic_filter, "#")
    receive_maximum: int = spec(_receive_maximum, protocol.RECEIVE_MAXIMUM_MAX)
    network_latency: float = spec(_latency, 0.0)
    outages: Outages = spec(parse_outages, Outages())

    #: a consumer's ``topic`` (the transport's word) is its topic filter
    ALIASES: ClassVar[dict[str, str]] = {"clean_restart": "clean_start", "topic": "topic_filter"}

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        object.__setattr__(self, "outages", self.outages.resolved(self.clients, subfield(where, "outages")))


@dataclass(frozen=True)
class PublisherBlock(_TransportBlock):
    """``mqttPublisher``: clients that publish at a Poisson rate or on a schedule.

    Give exactly one of ``rate`` (messages per second, or ``"10/m"``) and ``schedule`` (publish
    times). Validated and normalized on construction like :class:`ConsumerBlock`; bad values
    are named ``mqttPublisher.<key>``.
    """

    KEY = "mqttPublisher"
    clients: int = spec(_clients, 1)
    client_id: str = spec(_client_id, "publisher")
    session_expiry_interval: int = spec(parse_interval, 0)
    clean_start: bool = spec(parse_bool, True)
    qos: int = spec(_qos, 0)
    topic: str = spec(_topic_name, "sensors/{id}")
    rate: float | None = spec(parse_rate, None)
    schedule: tuple[float, ...] | None = spec(_schedule, None)
    payload_bytes: int = spec(_payload_bytes, 100)
    message_expiry_interval: int | None = spec(_message_expiry, None)
    offline_buffer: int = spec(_offline_buffer, 0)
    network_latency: float = spec(_latency, 0.0)
    outages: Outages = spec(parse_outages, Outages())

    def topic_of(self, index: int) -> str:
        """The topic name publisher ``index`` of this block publishes to."""
        return self.topic.replace("{id}", str(index))

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        object.__setattr__(self, "outages", self.outages.resolved(self.clients, subfield(where, "outages")))
        if (self.rate is None) == (self.schedule is None):
            raise ScenarioError(subfield(where, "rate"), raw["rate"], "give exactly one of 'rate' (Poisson) or 'schedule' (exact times)")


def _blocks(cls):
    def parse(value: object, field: str) -> tuple:
        """A tuple of blocks (empty: none), one block, or as in a scenario file a block
        mapping or a non-empty list of blocks (``<field>[i]`` in errors)."""
        if value is None or value == ():
            return ()
        if isinstance(value, (list, tuple)):
            if not value:
                raise ScenarioError(field, value, "must be a block (mapping) or a non-empty list of blocks")
            return tuple(build(cls, v, f"{field}[{i}]") for i, v in enumerate(value))
        return (build(cls, value, field),)
    return parse


# --------------------------------------------------------------------------- scenario


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(field, value, "must be a non-empty string")
    return value


def _description(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(field, value, "must be a string")
    return value


@dataclass(frozen=True)
class Scenario(Checked):
    """A validated scenario. Load it with :func:`load_scenario` or :meth:`from_dict`, or build it:

    ``Scenario(name="s", horizon="1h", consumers=[ConsumerBlock(session_expiry_interval=15)],
    publishers=[{"rate": "1/s"}])``. ``broker`` defaults to the mosquitto profile; blocks may
    be given as instances or mappings. A bad value raises :class:`~sim.units.ScenarioError`
    naming the field as the loader does (``horizon``, ``mqttConsumer[1].qos``).

    ``network_outages`` (a :class:`~sim.outages.NetworkOutages` or its mapping, key ``network
    outages``) takes many clients down at once; the blocks it names must be the scenario's
    (``network outages.blocks[0]`` names a bad one).

    ``raw`` is the input :meth:`from_dict` was given; it is None for a scenario built or
    changed (``dataclasses.replace``) in Python, whose :meth:`to_dict` is derived from the
    fields. ``raw`` and ``base_dir`` record how the scenario was written and take no part in
    ``==``.
    """

    KEY = ""
    name: str = spec(_name)
    horizon: float = spec(parse_duration)
    broker: BrokerConfig = spec(parse_broker, default_factory=BrokerConfig)
    consumers: tuple[ConsumerBlock, ...] = spec(_blocks(ConsumerBlock), (), key="mqtt_consumer")
    publishers: tuple[PublisherBlock, ...] = spec(_blocks(PublisherBlock), (), key="mqtt_publisher")
    description: str = spec(_description, "")
    network_outages: NetworkOutages | None = spec(parse_network_outages, None)  #: outages shared by many clients
    raw: Any = field(default=None, compare=False, repr=False)  #: the normalized input of from_dict (snake_case), for to_dict/updated
    base_dir: str | None = field(default=None, compare=False)  #: the folder relative paths were resolved against

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", None)  # from_dict sets it once the scenario is built
        if self.base_dir is not None:
            object.__setattr__(self, "base_dir", str(self.base_dir))
        with in_folder(self.base_dir):
            super().__post_init__()

    def _check(self, where: str, raw: dict[str, Any]) -> None:
        if self.network_outages is not None:  # which blocks a network outage takes down: by name
            object.__setattr__(self, "network_outages", self.network_outages.resolved(
                block_names(self.consumers, self.publishers), subfield(where, "network_outages")))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None) -> "Scenario":
        """Validate a scenario dict in any accepted spelling; raises :class:`ScenarioError`."""
        d = as_mapping(data, "")
        check_keys(d, set(cls.keys()) | {"transport"}, "")
        raw = d
        bdir0 = Path(base_dir) if base_dir is not None else None
        if "transport" in d:
            d = _with_transport(d, bdir0)
        if "horizon" not in d:
            raise ScenarioError("horizon", None, f"is missing: the simulated time span ({'e.g. 60s, 30d, 1y'}), > 0")
        bdir = Path(base_dir) if base_dir is not None else None
        scn = build(cls, {"name": "scenario", **d}, "", base_dir=str(bdir) if bdir else None)
        object.__setattr__(scn, "raw", _freeze(raw))
        return scn

    @property
    def not_simulated(self) -> list[str]:
        """The transport attributes the scenario gives that the model does not simulate
        (connection settings such as broker, username, keepalive interval), by field path."""
        out = []
        for key, blocks in (("mqttConsumer", self.consumers), ("mqttPublisher", self.publishers)):
            for i, b in enumerate(blocks):
                where = f"{key}[{i}]" if len(blocks) > 1 else key
                out += [f"{where}.{display_key(k)}" for k in b.not_simulated]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The scenario as a dict (snake_case keys) that :meth:`from_dict` reloads to an equal scenario.

        As given to :meth:`from_dict` when it was loaded; for a scenario built or changed in
        Python, its name and horizon, the values that differ from the defaults, and the
        broker settings that differ from its profile.
        """
        if self.raw is not None:
            return _thaw(self.raw)
        return _plain(self)

    def updated(self, changes: Mapping[str, Any]) -> "Scenario":
        """A new, re-validated scenario with dotted-path changes applied.

        ``scn.updated({"mqttConsumer.session expiry interval": 15, "horizon": "1d"})``.
        For a list of blocks use ``mqttConsumer[1].qos``; without an index every block changes.
        """
        d = self.to_dict()
        for path, value in changes.items():
            _set_path(d, str(path), value)
        return Scenario.from_dict(d, base_dir=self.base_dir)


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _plain(value: Any) -> Any:
    """A checked type as the plain data of a scenario file (snake_case keys; defaults left out)."""
    if isinstance(value, Distribution):
        return value.to_dict()
    if isinstance(value, BrokerConfig):
        profile = BrokerConfig(profile=value.profile)
        return {"profile": value.profile, **{k: _plain(getattr(value, f.name)) for k, f in BrokerConfig.keys().items()
                                             if getattr(value, f.name) != getattr(profile, f.name)}}
    if isinstance(value, Checked):
        out = {}
        for key, f in type(value).keys().items():
            v = getattr(value, f.name)
            if key in ("mqtt_consumer", "mqtt_publisher"):
                if v:
                    out[key] = _plain(v[0]) if len(v) == 1 else [_plain(b) for b in v]
            elif v != _default(f):
                out[key] = _plain(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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


def block_names(consumers, publishers) -> list[tuple[str, ...]]:
    """The names each block answers to in ``network outages.blocks`` (consumers first, then
    publishers): its kind (``mqttConsumer``: every block of the kind), its position
    (``mqttConsumer[1]``) and its transport ``name`` when it has one."""
    out = []
    for kind, blocks in (("mqttConsumer", consumers), ("mqttPublisher", publishers)):
        for i, b in enumerate(blocks):
            out.append((kind, f"{kind}[{i}]") + ((b.name,) if isinstance(b.name, str) and b.name else ()))
    return out


def client_id_prefixes(blocks) -> list[str]:
    """Client-id prefix of each block: its ``client id``, with the block index added when
    several blocks share one (clients are then ``<prefix>-<n>``)."""
    names = [b.client_id for b in blocks]
    return [f"{n}-{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


#: Defaults of the stream-processing platform's MQTT transport blocks (its documentation), used
#: for blocks read from a platform file with ``transport:`` when they leave a setting out.
TRANSPORT_DEFAULTS = {"session_expiry_interval": 300, "clean_start": True, "qos": 0}


def _with_transport(d: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """The scenario with the ``mqttConsumer`` / ``mqttPublisher`` blocks of the platform file
    ``transport`` names (found anywhere in it), each completed by the scenario's own block of
    that kind (its keys win: outages, clients, publish rate ...) and by the platform's defaults
    (:data:`TRANSPORT_DEFAULTS`) for what neither gives."""
    d = dict(d)
    path = d.pop("transport")
    if not isinstance(path, str) or not path:
        raise ScenarioError("transport", path, "must be the path of the platform's YAML file")
    p = Path(path)
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    if not p.is_file():
        raise ScenarioError("transport", path, "is not an existing YAML file")
    try:
        data = yaml.load(p.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ScenarioError("transport", path, f"is not valid YAML: {exc}".replace("\n", " ")) from None
    found: dict[str, list] = {"mqtt_consumer": [], "mqtt_publisher": []}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                nk = normalize_key(k)
                if nk in found and isinstance(v, Mapping):
                    found[nk].append(dict(v))
                else:
                    walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(data)
    if not found["mqtt_consumer"] and not found["mqtt_publisher"]:
        raise ScenarioError("transport", path, "holds no mqttConsumer or mqttPublisher block")
    for kind, blocks in found.items():
        if not blocks:
            continue
        own = d.get(kind)
        owns = own if isinstance(own, list) else [own] * len(blocks)
        if len(owns) != len(blocks):
            raise ScenarioError(display_key(kind), own, f"must be one block, or a list of {len(blocks)} (one per "
                                f"{display_key(kind)} block of the transport file)")
        aliases = (ConsumerBlock if kind == "mqtt_consumer" else PublisherBlock).ALIASES

        def canonical(m: Mapping[str, Any]) -> dict[str, Any]:
            out = {}
            for k, v in m.items():
                nk = normalize_key(k)
                out[aliases.get(nk, nk)] = v
            return out

        merged = []
        for base, extra in zip(blocks, owns):
            b = canonical(base)
            for k, v in TRANSPORT_DEFAULTS.items():
                b.setdefault(k, v)
            b.update(canonical(as_mapping(extra, display_key(kind)) or {}))
            merged.append(b)
        d[kind] = merged if len(merged) > 1 else merged[0]
    return d

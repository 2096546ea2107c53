"""MQTT 5.0 constants and session rules as pure functions.

Every rule the model follows lives here, with the section of the MQTT Version 5.0 OASIS
Standard (7 March 2019) it comes from. Nothing in this module knows about SimPy, time or
randomness: the broker and client processes call these functions to decide what a packet
does to a session.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Largest Four Byte Integer; as a Session Expiry Interval it means "never expires" (§3.1.2.11.2).
UINT_MAX = 4_294_967_295

#: Largest Receive Maximum (Two Byte Integer, §3.1.2.11.3); also its value when absent.
RECEIVE_MAXIMUM_MAX = 65_535

#: DISCONNECT reason codes used by the model (§3.14.2.1).
REASON_NORMAL_DISCONNECTION = 0x00
REASON_PROTOCOL_ERROR = 0x82

#: Every way a (message, consumer) pair can be lost; see docs/model.md "Fates".
LOSS_CAUSES = (
    "session_expired",
    "clean_start",
    "qos0_offline",
    "queue_full",
    "message_expired",
    "no_session",
    "publisher_inflight",
    "publisher_offline",
    "broker_restart",
)
#: Fates of pairs whose consumer left for good (it never connects again after the pair was
#: routed) and that it had not received: traffic to a departed device, reported apart from
#: loss. See docs/model.md "Fates".
DEPARTED_FATES = (
    "departed_expired",  # held in the session until the session ended (expiry, or interval 0)
    "departed_queue_full",  # dropped by a queue limit of the departed client's session
    "departed_message_expired",  # its Message Expiry Interval passed while held for the departed client
    "departed_not_queued",  # never held for it: QoS 0 not queued offline, or lost on the publisher's side
    "departed_held",  # still held at the horizon (the session has not ended yet)
)
FATES = ("delivered",) + LOSS_CAUSES + ("pending",) + DEPARTED_FATES

_DEPARTED_OF = {
    "session_expired": "departed_expired",
    "clean_start": "departed_expired",
    "queue_full": "departed_queue_full",
    "message_expired": "departed_message_expired",
    "qos0_offline": "departed_not_queued",
    "no_session": "departed_not_queued",
    "publisher_inflight": "departed_not_queued",
    "publisher_offline": "departed_not_queued",
    "broker_restart": "departed_expired",
    "pending": "departed_held",
}


def departed_fate(fate: str) -> str:
    """The fate of a pair decided after its consumer left for good.

    A client that has left never connects again, so nothing routed to it afterwards (nor
    anything it held undelivered when it left) can reach it: whatever would have been a loss
    cause, or ``pending`` at the horizon, becomes the matching departed fate. ``delivered``
    stays (it cannot happen after a departure; a receipt before it is already booked).
    """
    if fate == "delivered" or fate in DEPARTED_FATES:
        return fate
    return _DEPARTED_OF[fate]


def effective_expiry(requested: int, broker_max: int) -> int:
    """The Session Expiry Interval the server uses: the client's value capped by the broker.

    §3.2.2.3.2: the server may use a value other than the one the client sent, and then
    returns it in CONNACK. Absent in CONNECT means 0 (§3.1.2.11.2), which the scenario
    loader has already applied.
    """
    return min(requested, broker_max)


def expiry_delay(interval: int, uint_max_never_expires: bool = True) -> float | None:
    """Seconds from the close of the network connection to the end of the session.

    §3.1.2.11.2: 0 ends the session when the network connection closes; UINT_MAX means the
    session does not expire (returns ``None``). ``uint_max_never_expires=False`` reads
    UINT_MAX as a plain 4,294,967,295 s (about 136 years), as some vendor docs do.
    """
    if interval == UINT_MAX and uint_max_never_expires:
        return None
    return float(interval)


@dataclass(frozen=True)
class ConnectOutcome:
    """What a CONNECT does to an existing session (§3.1.2.4, §3.2.2.1.1)."""

    discard_existing: bool  #: Clean Start = 1 and a session existed: its state is discarded
    resume: bool  #: an existing session is resumed
    session_present: bool  #: the CONNACK Session Present flag


def connect_outcome(session_exists: bool, clean_start: bool) -> ConnectOutcome:
    """Apply Clean Start to the session store.

    [MQTT-3.1.2-4] Clean Start = 1: discard any existing session and start a new one;
    [MQTT-3.2.2-2] Session Present = 0.
    [MQTT-3.1.2-5] Clean Start = 0 with a session: resume it; [MQTT-3.2.2-3] Session Present = 1.
    [MQTT-3.1.2-6] Clean Start = 0 without a session: create one; Session Present = 0.
    """
    if clean_start:
        return ConnectOutcome(discard_existing=session_exists, resume=False, session_present=False)
    return ConnectOutcome(discard_existing=False, resume=session_exists, session_present=session_exists)


@dataclass(frozen=True)
class DisconnectOutcome:
    """The session expiry interval in force after a client's DISCONNECT (§3.14.2.2.2)."""

    interval: int  #: the interval that now governs the session's life after the close
    reason_code: int | None  #: the server's DISCONNECT reason code, or None when it sends none
    protocol_error: bool


def disconnect_expiry(connect_interval: int, granted_interval: int, disconnect_interval: int | None,
                      broker_max: int) -> DisconnectOutcome:
    """Apply a Session Expiry Interval carried in the client's DISCONNECT packet.

    §3.14.2.2.2: if absent, the interval in force (the CONNECT value as granted,
    §3.2.2.3.2) still applies; if present it replaces it. It is a Protocol Error to send a
    non-zero value "if the Session Expiry Interval in the CONNECT packet was zero" — the
    client's own CONNECT value, not the broker-capped one: the server answers DISCONNECT
    0x82 (§4.13) and the session ends as it would with 0. The broker cap applies to the new
    value as well.
    """
    if disconnect_interval is None:
        return DisconnectOutcome(granted_interval, None, False)
    if connect_interval == 0 and disconnect_interval != 0:
        return DisconnectOutcome(0, REASON_PROTOCOL_ERROR, True)
    return DisconnectOutcome(effective_expiry(disconnect_interval, broker_max), None, False)


def delivered_qos(published_qos: int, subscription_qos: int) -> int:
    """QoS of the copy sent to a subscriber: the minimum of the two (§3.8.4, [MQTT-3.8.4-8])."""
    return min(published_qos, subscription_qos)


def queued_while_offline(qos: int, queue_qos0: bool) -> bool:
    """Whether a message for an offline session is stored (§4.1: QoS 1/2 always, QoS 0 optionally)."""
    return qos > 0 or queue_qos0


def validate_topic_filter(topic_filter: str) -> str | None:
    """Return why ``topic_filter`` is not a valid Topic Filter, or None (§4.7.1, §4.7.3).

    '#' must be the last level and alone in it; '+' must occupy a whole level; a filter is
    at least one character.
    """
    if not topic_filter:
        return "a topic filter must not be empty"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def validate_topic_name(topic: str) -> str | None:
    """Return why ``topic`` is not a valid Topic Name, or None (§4.7.1: no wildcards)."""
    if not topic:
        return "a topic name must not be empty"
    if "+" in topic or "#" in topic:
        return "a topic name must not contain the wildcards '+' or '#'"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` (§4.7).

    '+' matches exactly one level, '#' any number of levels including the parent ('a/#'
    matches 'a'). Filters starting with a wildcard do not match topics starting with '$'
    ([MQTT-4.7.2-1]).
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


# --------------------------------------------------------------------------- broker restarts
#
# A broker restart is not an MQTT rule: the standard only says that the server keeps the
# Session State "until it is deleted" (§4.1) and that a server may lose it when it fails;
# what survives a restart is the broker's persistence (Mosquitto: ``persistence true``, the
# in-memory database written at shutdown and every ``autosave_interval`` seconds). The rules
# below are those measured on Mosquitto 2.0.11 (docs/model.md "Broker restarts",
# docs/conformance.md). Loss cause of whatever a restart destroys: ``broker_restart``.

#: What a restart restores: nothing; the state at the stop; the state of the last save.
RESTORE_NOTHING, RESTORE_AT_STOP, RESTORE_LAST_SAVE = "nothing", "at stop", "last save"


def restart_restores(persistence: bool, kind: str) -> str:
    """Which broker state the broker starts from after a restart.

    Without persistence nothing survives: every session, online or offline, ends with its
    queue and in-flight messages (``broker_restart``), and a reconnect gets Session Present 0.
    With persistence a ``graceful`` stop (SIGTERM) writes the state at the stop and the
    broker starts from it; a ``crash`` (SIGKILL) returns the broker to its last save (the last
    autosave, the last graceful stop, or an empty state when nothing was ever saved).
    """
    if kind not in ("graceful", "crash"):
        raise ValueError(f"restart kind {kind!r} is not graceful or crash")
    if not persistence:
        return RESTORE_NOTHING
    return RESTORE_AT_STOP if kind == "graceful" else RESTORE_LAST_SAVE


def session_saved(clean_start: bool, interval: int) -> bool:
    """Whether a session is part of a saved broker state (the persistence file).

    Only sessions whose last CONNECT had Clean Start 0 are saved (Mosquitto writes a client
    only when ``clean_start`` is false), and a session with Session Expiry Interval 0 does not
    outlive the closing of its connection at the stop (§3.1.2.11.2; measured: Clean Start 0 with
    interval 0, connected at a graceful restart, reconnects with Session Present 0). A Clean
    Start 1 session with a non-zero interval survives while the broker runs, not a restart.
    """
    return not clean_start and interval > 0


#: ``restored session expiry`` settings: when a session restored from the persistence file
#: can expire again.
ON_RECONNECT, WALL_TIME = "on reconnect", "wall time"


def restored_expiry_deadline(setting: str, closed_at: float, interval: int,
                             uint_max_never_expires: bool = True) -> float | None:
    """When a session restored from a saved state ends if its client does not come back.

    ``closed_at`` is when its network connection closed (the stop itself for a client that
    was connected). ``on reconnect`` (Mosquitto 2.0.11): a restored session is never put
    back on the expiry list, so it does not expire until its client has reconnected (after
    the next disconnect the interval applies as usual): returns None. ``wall time``: the
    interval counts from the close across the downtime (an absolute deadline, None for a
    session that never expires); a deadline already passed ends the session when the broker
    starts.
    """
    if setting == ON_RECONNECT:
        return None
    if setting != WALL_TIME:
        raise ValueError(f"restored session expiry {setting!r} is not {ON_RECONNECT!r} or {WALL_TIME!r}")
    delay = expiry_delay(interval, uint_max_never_expires)
    return None if delay is None else closed_at + delay


#: What becomes of a message a restored session held at the save (see :func:`restored_entry`).
ENTRY_HELD, ENTRY_REDELIVERED, ENTRY_REOPENED = "held", "redelivered", "reopened"


def restored_entry(decided: bool, received: bool) -> str:
    """A message in a saved session, when the broker starts from that save.

    The broker knows only the saved state: what happened to the message after the save is
    forgotten. Still undecided (``held``): it is simply held again. Received by the client
    after the save (its acknowledgement is lost with the crash): it is held again and sent
    again, a duplicate when it arrives (``redelivered``). Lost after the save (the session
    expired, a limit dropped it, ...): the loss is undone, the pair is open again
    (``reopened``) and gets the fate of the restored copy.
    """
    if not decided:
        return ENTRY_HELD
    return ENTRY_REDELIVERED if received else ENTRY_REOPENED

"""Connection traces from real broker logs: Mosquitto 2.0 log -> ``client,disconnect,reconnect``.

``from_mosquitto_log(path_or_text)`` reads the connection lines Mosquitto writes with
``log_type notice`` (or ``all``) and ``log_timestamp true`` and returns one row per outage::

    client       disconnect  reconnect  clean_start  reason
    keep-0             4.0       10.0        False   network
    keep-0            18.0        NaN         <NA>   network      # never came back

Times are seconds from ``start`` (default: the first timestamp in the log). ``clean_start`` is
the Clean Start flag of the reconnect (``c0``/``c1`` in "New client connected ... (p5, c1, k60)."),
``<NA>`` when the client did not reconnect. ``reason`` says how the connection ended:

==================  ===========================================================================
reason              Mosquitto 2.0 line (src/loop.c ``do_disconnect``, src/handle_connect.c)
==================  ===========================================================================
clean               ``Client <id> disconnected.`` (the client sent DISCONNECT)
network             ``Client <id> closed its connection.`` (TCP closed without DISCONNECT)
timeout             ``Client <id> has exceeded timeout, disconnecting.`` (keep-alive x 1.5)
protocol_error      ``Client <id> disconnected due to protocol error.``
error               ``Client <id> disconnected due to <malformed packet|oversize ...|...>.``,
                    ``Client <id> disconnected: <strerror>.``
not_authorised      ``Client <id> disconnected, not authorised.``
administrative      ``Client <id> been disconnected by administrative action.``
socket_error        ``Bad socket read/write on client <id>: <error>`` (2.0) and
                    ``Socket error on client <id>, disconnecting.`` (Mosquitto 1.x)
takeover            ``Client <id> already connected, closing old connection.`` followed by the
                    new connection: a zero-length outage (disconnect == reconnect)
==================  ===========================================================================

Timestamps: ``log_timestamp_format`` unset gives epoch seconds (``1732480000: ...``); ISO forms
such as ``%Y-%m-%dT%H:%M:%S`` (what :class:`sim.realbroker.Mosquitto` writes) or
``%Y-%m-%d %H:%M:%S`` are recognised too; any other strftime format can be passed as
``timestamp_format``. Mosquitto's timestamps have a resolution of one second.

``to_trace_csv(df, path)`` writes the rows as a scenario trace CSV (client = index 0..n-1 in order
of first appearance in the log) with each outage's disconnect kind and reconnect Clean Start,
and returns the id -> index mapping; one consumer block replays every client. Zero-length
outages (takeovers) cannot be replayed; see the warnings the functions raise.
"""
from __future__ import annotations

import math
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd

__all__ = ["from_mosquitto_log", "to_trace_csv", "TraceWarning"]


class TraceWarning(UserWarning):
    """The log holds something the scenario model cannot replay exactly."""


_EPOCH = re.compile(r"^(?P<ts>\d+(?:\.\d+)?): (?P<msg>.*)$")
_ISO = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?): (?P<msg>.*)$")

_CONNECT = re.compile(r"^New (?:client|bridge) connected from \S+ as (?P<id>.+) "
                      r"\(p(?P<p>\d+), c(?P<c>[01]), k(?P<k>\d+)(?:, u'.*')?\)\.$")
_TAKEOVER = re.compile(r"^Client (?P<id>.+) already connected, closing old connection\.$")
# (pattern, reason); order matters: the specific "disconnected due to protocol error." before the
# general "disconnected due to ...".
_DISCONNECTS = [
    (re.compile(r"^Client (?P<id>.+) closed its connection\.$"), "network"),
    (re.compile(r"^Client (?P<id>.+) has exceeded timeout, disconnecting\.$"), "timeout"),
    (re.compile(r"^Client (?P<id>.+) disconnected due to protocol error\.$"), "protocol_error"),
    (re.compile(r"^Client (?P<id>.+) disconnected due to .+\.$"), "error"),
    (re.compile(r"^Client (?P<id>.+) disconnected, not authorised\.$"), "not_authorised"),
    (re.compile(r"^Client (?P<id>.+) been disconnected by administrative action\.$"), "administrative"),
    (re.compile(r"^Client (?P<id>.+) disconnected\.$"), "clean"),
    (re.compile(r"^Client (?P<id>.+) disconnected: .+\.$"), "error"),
    (re.compile(r"^Bad socket read/write on client (?P<id>.+): .*$"), "socket_error"),
    (re.compile(r"^Socket error on client (?P<id>.+), disconnecting\.$"), "socket_error"),
]
_UNKNOWN = "<unknown>"  # a connection closed before its CONNECT named a client id

COLUMNS = ["client", "disconnect", "reconnect", "clean_start", "reason"]


def _as_seconds(dt: datetime) -> float:
    if dt.tzinfo is None:  # naive log times: only differences matter; read them as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _parse_iso(text: str) -> float:
    text = text.replace(",", ".").replace("Z", "+00:00")
    return _as_seconds(datetime.fromisoformat(text))


def _split(line: str, timestamp_format: str | None) -> tuple[float, str] | None:
    """(seconds, message) of one log line, or None for a line without a recognised timestamp."""
    if timestamp_format is not None:
        head, sep, msg = line.partition(": ")
        while sep:
            try:
                return _as_seconds(datetime.strptime(head, timestamp_format)), msg
            except ValueError:  # the format itself may contain ": "
                more, sep, msg = msg.partition(": ")
                head = f"{head}: {more}"
        return None
    m = _EPOCH.match(line)
    if m:
        return float(m.group("ts")), m.group("msg")
    m = _ISO.match(line)
    if m:
        return _parse_iso(m.group("ts")), m.group("msg")
    return None


def _read(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        return path_or_text.read_text()
    if "\n" not in path_or_text and len(path_or_text) < 4096:
        p = Path(path_or_text)
        try:
            if p.is_file():
                return p.read_text()
        except OSError:
            pass
    return path_or_text


def _start_seconds(start, timestamp_format: str | None) -> float:
    if isinstance(start, datetime):
        return _as_seconds(start)
    if isinstance(start, (int, float)):
        return float(start)
    if isinstance(start, str):
        got = _split(f"{start}: x", timestamp_format)
        if got is None:
            raise ValueError(f"start {start!r} is not a log timestamp (epoch seconds or ISO date-time)")
        return got[0]
    raise TypeError(f"start must be None, a number (epoch seconds), a datetime or a timestamp string, not {type(start).__name__}")


def from_mosquitto_log(path_or_text: str | Path, start=None, *, timestamp_format: str | None = None) -> pd.DataFrame:
    """Outages of every client in a Mosquitto 2.0 log, as a DataFrame (see the module docstring).

    ``path_or_text``: a log file path or the log text itself. ``start``: the time origin — None
    (the first timestamp in the log), epoch seconds, a ``datetime`` or a timestamp string in the
    log's format. Lines without a timestamp, and lines that are not about connections, are skipped.

    ``df.attrs`` holds ``start`` (the origin, epoch seconds for epoch logs), ``clients`` (client ids
    in order of first appearance), ``first_connect`` (id -> seconds of its first connection, absent
    for clients already connected when the log starts) and ``expired`` (id -> seconds of
    "Expiring client <id> due to timeout." lines, if any).
    """
    text = _read(path_or_text)
    lines = []
    for raw in text.splitlines():
        got = _split(raw.rstrip("\r"), timestamp_format)
        if got is not None:
            lines.append(got)
    if not lines:
        raise ValueError("no timestamped log lines found: log with 'log_timestamp true' "
                         "(or pass timestamp_format= for a custom log_timestamp_format)")
    origin = lines[0][0] if start is None else _start_seconds(start, timestamp_format)

    rows: list[dict] = []
    open_row: dict[str, dict] = {}   # client id -> its outage row still waiting for a reconnect
    connected: dict[str, bool] = {}
    order: list[str] = []
    first_connect: dict[str, float] = {}
    expired: dict[str, float] = {}

    def seen(cid: str) -> None:
        if cid not in connected:
            order.append(cid)
            connected[cid] = True  # a client first seen disconnecting was connected when the log began

    for ts, msg in lines:
        t = ts - origin
        m = _CONNECT.match(msg)
        if m:
            cid, clean = m.group("id"), m.group("c") == "1"
            if cid not in connected:
                order.append(cid)
                first_connect[cid] = t
            elif cid in open_row:  # reconnect after an outage (or the new side of a takeover)
                row = open_row.pop(cid)
                row["reconnect"], row["clean_start"] = t, clean
            elif connected[cid]:  # connected twice with no line in between: an unlogged takeover
                rows.append({"client": cid, "disconnect": t, "reconnect": t, "clean_start": clean, "reason": "takeover"})
            connected[cid] = True
            continue
        m = _TAKEOVER.match(msg)
        if m:
            cid = m.group("id")
            seen(cid)
            if cid not in open_row:
                row = {"client": cid, "disconnect": t, "reconnect": math.nan, "clean_start": pd.NA, "reason": "takeover"}
                rows.append(row)
                open_row[cid] = row
            connected[cid] = False
            continue
        for pattern, reason in _DISCONNECTS:
            m = pattern.match(msg)
            if m:
                cid = m.group("id")
                if cid == _UNKNOWN:
                    break
                seen(cid)
                if connected[cid]:
                    row = {"client": cid, "disconnect": t, "reconnect": math.nan, "clean_start": pd.NA, "reason": reason}
                    rows.append(row)
                    open_row[cid] = row
                    connected[cid] = False
                break
        else:
            m = re.match(r"^Expiring client (?P<id>.+) due to timeout\.$", msg)
            if m:
                expired[m.group("id")] = t

    df = pd.DataFrame(rows, columns=COLUMNS)
    df["disconnect"] = df["disconnect"].astype(float)
    df["reconnect"] = df["reconnect"].astype(float)
    df["clean_start"] = df["clean_start"].astype("boolean")
    df = df.sort_values(["disconnect"], kind="stable").reset_index(drop=True)
    df.attrs.update(start=origin, clients=list(order), first_connect=first_connect, expired=expired)
    return df


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def to_trace_csv(df: pd.DataFrame, path: str | Path, clients: Iterable[str] | None = None) -> dict[str, int]:
    """Write ``df`` (from :func:`from_mosquitto_log`) as a scenario trace CSV; return {client id: index}.

    Columns: ``client,disconnect,reconnect,disconnect_kind,clean_start,reason``. The scenario
    loader replays each outage with its own kind (``clean`` for a DISCONNECT packet, else
    ``network``) and its reconnect's Clean Start (1/0); an empty reconnect = left for good. A
    client whose first connection comes after t = 0 gets a leading row with an empty
    disconnect (it joins the fleet then). ``reason`` is kept for reference. ``clients``: the
    ids to write, in index order (default: every client, in order of first appearance in the
    log — ``df.attrs["clients"]``, which includes clients that never disconnected).
    Zero-length outages (a takeover) cannot be replayed and are skipped with a
    :class:`TraceWarning`.
    """
    if clients is None:
        ids = list(df.attrs.get("clients") or dict.fromkeys(df["client"]))
    else:
        ids = list(clients)
        if len(set(ids)) != len(ids):
            raise ValueError("clients: an id is given twice")
    mapping = {cid: i for i, cid in enumerate(ids)}
    late = {cid: t for cid, t in (df.attrs.get("first_connect") or {}).items() if cid in mapping and t > 0}
    lines = ["client,disconnect,reconnect,disconnect_kind,clean_start,reason"]
    for cid, t in late.items():
        lines.append(f"{mapping[cid]},,{_fmt(t)},,,first_connect")
    for row in df.itertuples(index=False):
        if row.client not in mapping:
            continue
        if not math.isnan(row.reconnect) and row.reconnect <= row.disconnect:
            warnings.warn(f"{row.client}: zero-length outage at {_fmt(row.disconnect)} s ({row.reason}) skipped "
                          "(a trace needs reconnect > disconnect)", TraceWarning, stacklevel=2)
            continue
        on = "" if math.isnan(row.reconnect) else _fmt(row.reconnect)
        cs = "" if pd.isna(row.clean_start) else str(int(bool(row.clean_start)))
        kind = "clean" if row.reason == "clean" else "network"
        lines.append(f"{mapping[row.client]},{_fmt(row.disconnect)},{on},{kind},{cs},{row.reason}")
    Path(path).write_text("\n".join(lines) + "\n")
    return mapping

"""The connection and session lifecycle log: one row per event, and counters of each kind.

The model modules report events (CONNECT with its CONNACK, disconnects, protocol errors,
session ends, departures); the log keeps them as tidy rows (``res.events``, see
docs/api-contract.md) when recording is on, and always counts them for the summary.
"""
from __future__ import annotations

import pandas as pd

COLUMNS = ["time", "client_id", "role", "event", "clean_start", "session_present", "session_expiry_interval",
           "reason_code", "detail"]

#: Which counter each event adds to (events not named here are only logged).
COUNTERS = {"session_expired": "sessions_expired", "session_discarded": "sessions_discarded",
            "session_ended": "sessions_ended", "connect": "connects", "disconnect": "disconnects",
            "departed": "departures", "protocol_error": "protocol_errors"}


class EventLog:
    def __init__(self, record: bool = True):
        self.record = record
        self.rows: list[tuple] = []
        self.counters = {name: 0 for name in COUNTERS.values()}

    def event(self, t, client_id, role, event, clean_start=None, session_present=None, interval=None,
              reason_code=None, detail=None) -> None:
        counter = COUNTERS.get(event)
        if counter is not None:
            self.counters[counter] += 1
        if self.record:
            self.rows.append((t, client_id, role, event, clean_start, session_present, interval, reason_code, detail))

    def tally(self, event: str, n: int) -> None:
        """``n`` events of one kind counted without rows (lives computed in arrays)."""
        counter = COUNTERS.get(event)
        if counter is not None:
            self.counters[counter] += int(n)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)

"""Scheduling on the SimPy clock: timers with a same-instant priority.

SimPy runs events that fall on the same instant by priority, then in scheduling order. The
model's same-instant order (docs/model.md): session and message expiry first, then
connection changes, then message events.
"""
from __future__ import annotations

import simpy
from simpy.events import Event

PRIORITY_EXPIRY, PRIORITY_CONNECTION, PRIORITY_MESSAGE = 0, 1, 2


class Alarm(Event):
    """An event that fires ``delay`` seconds from now with a chosen same-instant priority."""

    def __init__(self, env: simpy.Environment, delay: float, priority: int, callback=None):
        if delay < 0:
            raise ValueError(f"an event cannot be scheduled in the past (delay {delay})")
        super().__init__(env)
        self._ok = True
        self._value = None
        if callback is not None:
            self.callbacks.append(callback)
        env.schedule(self, priority, delay)

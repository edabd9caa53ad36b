"""A reusable timeout: one SimPy event scheduled again and again for one callback.

``env.timeout(d).callbacks.append(f)`` builds a new event per use; an :class:`Alarm` builds one on its
first use and afterwards hands the same event back to :meth:`simpy.Environment.schedule` with a fresh
callback list (SimPy's public API: ``Event.callbacks`` and ``Environment.schedule``). The schedule gets
the same priority, delay and event id as a new timeout would, so event order is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy
from simpy.events import NORMAL

__all__ = ["Alarm"]


class Alarm:
    """Calls ``callback(event)`` ``delay`` seconds after each :meth:`set`; at most one pending at a time
    (set it again only once it has fired, e.g. from the callback itself)."""

    __slots__ = ("_callbacks", "_env", "_event")

    def __init__(self, env: simpy.Environment, callback: Callable[[simpy.Event], None]) -> None:
        self._env = env
        self._callbacks = [callback]
        self._event: simpy.Event | None = None

    def set(self, delay: float) -> None:
        """Fire once, ``delay`` seconds from now."""
        event = self._event
        if event is None:  # the first use: a timeout (scheduled as it is built)
            event = self._event = self._env.timeout(delay)
            event.callbacks = self._callbacks
        else:  # the same event again (the environment looked up each time: the bench counts schedules)
            if delay < 0:
                raise ValueError(f"Negative delay {delay}")
            event.callbacks = self._callbacks
            self._env.schedule(event, NORMAL, delay)

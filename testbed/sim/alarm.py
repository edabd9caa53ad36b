"""A reusable timeout: one SimPy event scheduled again and again for one callback.

``env.timeout(d).callbacks.append(f)`` builds a new event per use; an :class:`Alarm` builds one on its
first use and afterwards hands the same event back to :meth:`simpy.Environment.schedule` with a fresh
callback list (SimPy's public API: ``Event.callbacks`` and ``Environment.schedule``). The schedule gets
the same priority, delay and event id as a new timeout would, so event order is unchanged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import NORMAL

__all__ = ["Alarm", "DelayLine"]


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


class DelayLine:
    """Calls ``callback(item)`` ``delay`` seconds (a constant) after each :meth:`push`, in push order; as
    ``env.timeout(delay, item)`` per push would, but on a pool of reused events (one per item in flight).

    Each push schedules one event with the priority and delay a new timeout would get (so event ids, and
    the order of same-instant events, are unchanged); with one delay, firings come in push order, so the
    items wait in a FIFO instead of riding on the events."""

    __slots__ = ("_callback", "_callbacks", "_delay", "_env", "_items", "_spare")

    def __init__(self, env: simpy.Environment, delay: float, callback: Callable[[int], None]) -> None:
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        self._env, self._delay, self._callback = env, delay, callback
        self._callbacks: list[Callable[[Any], None]] = [self._fire]  # as SimPy types Event.callbacks
        self._items: deque[int] = deque()
        self._spare: list[simpy.Event] = []  # events that fired, ready to be scheduled again

    def push(self, item: int) -> None:
        self._items.append(item)
        spare = self._spare
        if spare:
            event = spare.pop()
            event.callbacks = self._callbacks
            self._env.schedule(event, NORMAL, self._delay)
        else:
            self._env.timeout(self._delay).callbacks = self._callbacks

    def _fire(self, event: simpy.Event) -> None:
        self._spare.append(event)
        self._callback(self._items.popleft())

    def __len__(self) -> int:
        """Items in flight."""
        return len(self._items)

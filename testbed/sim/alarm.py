"""A reusable timeout: one SimPy event scheduled again and again for one callback.

``env.timeout(d).callbacks.append(f)`` builds a new event per use; an :class:`Alarm` builds one on its
first use and afterwards hands the same event back to :meth:`simpy.Environment.schedule` with a fresh
callback list (SimPy's public API: ``Event.callbacks`` and ``Environment.schedule``). The schedule gets
the same priority, delay and event id as a new timeout would, so event order is unchanged.

The same-instant rule at a server (every path; the README's "Speed"): its own timers and batch ends are
scheduled at :data:`LATE` priority (:class:`LateTimeout`), after ``NORMAL``, so at one instant every
request that reaches the server is queued there before they fire, however its arrival was scheduled.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import NORMAL, EventPriority

__all__ = ["LATE", "Alarm", "DelayLine", "LateTimeout", "delay_to"]


LATE = EventPriority(2)
"""A priority after SimPy's ``NORMAL``: the server's own timers and batch ends (:class:`LateTimeout`)."""


class LateTimeout(simpy.Timeout):
    """SimPy's :class:`~simpy.events.Timeout` at :data:`LATE` priority: at its instant it fires after every
    ``URGENT`` and ``NORMAL`` event, whatever their order of scheduling, so a server's timers and batch ends
    see every request that reaches it at that instant. (Timeout's own initialisation, with the priority
    changed.)"""

    def __init__(self, env: simpy.Environment, delay: float, value: Any = None) -> None:
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        self.env = env
        self.callbacks = []
        self._value = value
        self._delay = delay
        self._ok = True
        env.schedule(self, LATE, delay)


def delay_to(now: float, at: float) -> float:
    """A delay ``d >= 0`` to schedule at ``now`` for the instant ``at >= now``: SimPy's event time ``now + d``
    is exactly ``at`` where some delay gives it (``at - now``, moved by a unit in the last place where the
    sum would round away), else an earlier instant from which ``at - t`` lands exactly (``at`` with its
    last mantissa bits cleared: when ``now`` has a finer last bit than ``at``, sums that fall halfway
    round to even and miss an odd ``at``). A callback that finds ``env.now < at`` schedules again."""
    d = _landing(now, at)
    if d is not None:
        return d
    m, e = math.frexp(at)
    waypoint = math.ldexp(math.floor(m * 2.0**40) / 2.0**40, e)  # 40 bits: at - waypoint is exact
    d = _landing(now, waypoint) if waypoint >= now else None
    if d is None:  # pragma: no cover (not reachable: a coarse waypoint always lands)
        raise AssertionError(f"no delay from {now!r} lands on or before {at!r}")
    return d


def _landing(now: float, at: float) -> float | None:
    """The delay from ``now`` whose event time is exactly ``at``, or None."""
    d = at - now
    t = now + d
    if t == at:
        return d
    d += at - t  # the residual is exact: this lands on ``at`` or next to it
    for _ in range(8):
        t = now + d
        if t == at:
            return d
        d = math.nextafter(d, math.inf if t < at else -math.inf)
    return None


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

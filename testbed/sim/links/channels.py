"""The shared wireless channel: FIFO (one frame on the air) or fair sharing (processor sharing).

A channel is event-driven and knows nothing of nodes or servers: ``submit(rid, seconds)`` starts
or queues a transmission that takes ``seconds`` alone on the air, and ``on_done(rid)`` is called
when its last bit has been sent. Start and end times go into the given record columns.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque
from collections.abc import Callable

import simpy

from testbed.core.monitor import Level

__all__ = ["FifoChannel", "SharingChannel", "make_channel"]


class FifoChannel:
    """One transmission on the air at a time, at the sender's full rate, in arrival order."""

    def __init__(self, env: simpy.Environment, start_col: array, end_col: array,
                 on_done: Callable[[int], None], in_station: Level, busy: Level) -> None:
        self.env, self.start_col, self.end_col, self.on_done = env, start_col, end_col, on_done
        self.in_station, self.busy = in_station, busy
        self.queue: deque[tuple[int, float]] = deque()
        self.active = False

    def submit(self, rid: int, seconds: float) -> None:
        self.in_station.change(self.env.now, 1)
        if self.active:
            self.queue.append((rid, seconds))
        else:
            self.active = True
            self.busy.change(self.env.now, 1)
            self._start(rid, seconds)

    def _start(self, rid: int, seconds: float) -> None:
        self.start_col[rid] = self.env.now
        self.env.timeout(seconds, rid).callbacks.append(self._end)

    def _end(self, event: simpy.Event) -> None:
        rid, now = event._value, self.env.now
        self.end_col[rid] = now
        self.in_station.change(now, -1)
        if self.queue:
            self._start(*self.queue.popleft())
        else:
            self.active = False
            self.busy.change(now, -1)
        self.on_done(rid)


class SharingChannel:
    """Processor sharing: the n active transmissions each progress at 1/n of their solo rate.

    Kept in virtual time V with dV/dt = 1/n, so a transmission of solo length s started at
    virtual time v ends when V reaches v + s (one heap, O(log n) per event).
    """

    def __init__(self, env: simpy.Environment, start_col: array, end_col: array,
                 on_done: Callable[[int], None], in_station: Level, busy: Level) -> None:
        self.env, self.start_col, self.end_col, self.on_done = env, start_col, end_col, on_done
        self.in_station, self.busy = in_station, busy
        self.heap: list[tuple[float, int]] = []
        self.vtime = 0.0
        self.last = 0.0
        self.token = 0

    def _advance(self, now: float) -> None:
        n = len(self.heap)
        if n:
            self.vtime += (now - self.last) / n
        self.last = now

    def submit(self, rid: int, seconds: float) -> None:
        now = self.env.now
        self._advance(now)
        self.start_col[rid] = now
        if not self.heap:
            self.busy.change(now, 1)
        heapq.heappush(self.heap, (self.vtime + seconds, rid))
        self.in_station.change(now, 1)
        self._reschedule()

    def _reschedule(self) -> None:
        self.token += 1
        if self.heap:
            delay = (self.heap[0][0] - self.vtime) * len(self.heap)
            self.env.timeout(delay if delay > 0 else 0.0, self.token).callbacks.append(self._fire)

    def _fire(self, event: simpy.Event) -> None:
        if event._value != self.token:
            return  # superseded by a later arrival or departure
        now = self.env.now
        self._advance(now)
        done = []
        tol = 1e-9 * max(1.0, abs(self.vtime))
        while self.heap and self.heap[0][0] <= self.vtime + tol:
            _, rid = heapq.heappop(self.heap)
            self.end_col[rid] = now
            self.in_station.change(now, -1)
            done.append(rid)
        if not self.heap:
            self.busy.change(now, -1)
        self._reschedule()
        for rid in done:
            self.on_done(rid)


def make_channel(model: str, *args: object) -> FifoChannel | SharingChannel:
    """The channel for a link model name (``shared_fifo`` or ``fair_share``)."""
    if model == "shared_fifo":
        return FifoChannel(*args)  # type: ignore[arg-type]
    if model == "fair_share":
        return SharingChannel(*args)  # type: ignore[arg-type]
    raise ValueError(f"unknown link model {model!r}")

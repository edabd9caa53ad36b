"""``fair_share``: processor sharing, the n active transmissions each progress at 1/n of their solo rate."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable

import simpy

from testbed.core.monitor import Level
from testbed.sim.links.base import LINKS, Link, LinkContext, one_channel_per_direction

__all__ = ["SharingChannel", "build"]


class SharingChannel:
    """Processor sharing (Kleinrock 1967, "Time-shared systems: a theoretical treatment", JACM 14(2)).

    Kept in virtual time V with dV/dt = 1/n, so a transmission of solo length s started at virtual time
    v ends when V reaches v + s (one heap, O(log n) per event). Start and end times go into
    ``start_col`` and ``end_col``; ``on_done(rid)`` is called when a transmission ends.
    """

    def __init__(self, env: simpy.Environment, *, start_col: array[float], end_col: array[float],
                 on_done: Callable[[int], None], in_station: Level, busy: Level) -> None:
        self.env, self.start_col, self.end_col, self.on_done = env, start_col, end_col, on_done
        self.in_station, self.busy = in_station, busy
        self.heap: list[tuple[float, int]] = []
        self.vtime = 0.0
        self.last = 0.0
        self.pending: simpy.Event | None = None  # the one wake-up that is still current

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
        self.pending = None
        if self.heap:
            delay = (self.heap[0][0] - self.vtime) * len(self.heap)
            self.pending = self.env.timeout(delay if delay > 0 else 0.0)
            self.pending.callbacks.append(self._fire)

    def _fire(self, event: simpy.Event) -> None:
        if event is not self.pending:
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


@LINKS.register("fair_share")
def build(ctx: LinkContext) -> Link:
    """One processor-sharing channel per direction; every active transmission is in service."""
    return one_channel_per_direction(ctx, SharingChannel, one_on_air=False)

"""``fair_share``: processor sharing, the n active transmissions each progress at 1/n of their solo rate."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable
from typing import cast

import simpy

from testbed.core.monitor import Level
from testbed.sim.links.base import LINKS, Link, LinkContext, one_channel_per_direction

__all__ = ["ProcessorSharing", "SharingChannel", "build"]


class ProcessorSharing:
    """The arithmetic of processor sharing (Kleinrock 1967, "Time-shared systems: a theoretical
    treatment", JACM 14(2)), clock-free: the caller passes ``now``.

    Kept in virtual time V with dV/dt = 1/n, so a transmission of solo length s started at virtual time
    v ends when V reaches v + s (one heap, O(log n) per event). V starts again from 0 whenever the
    channel idles and is rebased (every tag shifted) once it passes :attr:`REBASE`, so tags stay
    small and a finish time is exact to ~1e-15 s however long the channel has been busy.
    """

    REBASE = 1.0
    """Virtual seconds after which every tag is shifted back to V = 0."""
    TIE = 1e-12
    """Virtual seconds within which two finish tags count as equal (finish together)."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int]] = []  # (finish tag, request number, rid)
        self.vtime = 0.0
        self.last = 0.0
        self.order: Callable[[int], int] | None = None  # rid -> request number (rows reused); None: rid

    def __len__(self) -> int:
        return len(self.heap)

    def advance(self, now: float) -> None:
        """Move V to ``now``."""
        n = len(self.heap)
        if n:
            self.vtime += (now - self.last) / n
        self.last = now

    def add(self, now: float, rid: int, seconds: float) -> bool:
        """Start a transmission of solo length ``seconds``; True when the channel was idle."""
        self.advance(now)
        idle = not self.heap
        if idle:
            self.vtime = 0.0
        elif self.vtime > self.REBASE:
            self._rebase()
        heapq.heappush(self.heap, (self.vtime + seconds, rid if self.order is None else self.order(rid), rid))
        return idle

    def next_delay(self) -> float | None:
        """Real seconds until the next transmission ends (None when idle)."""
        if not self.heap:
            return None
        return max(0.0, (self.heap[0][0] - self.vtime) * len(self.heap))

    def complete(self, now: float) -> list[int]:
        """The transmissions ending at ``now``, when the wake-up set by :meth:`next_delay` fires: the
        first in line (it is due by construction, whatever the rounding of ``now``) and any whose
        tag equals its own within :attr:`TIE`."""
        self.advance(now)
        if not self.heap:
            return []
        tag, _, rid = heapq.heappop(self.heap)
        done = [rid]
        self.vtime = max(self.vtime, tag)
        while self.heap and self.heap[0][0] <= tag + self.TIE:
            done.append(heapq.heappop(self.heap)[2])
        if not self.heap:
            self.vtime = 0.0
        elif self.vtime > self.REBASE:
            self._rebase()
        return done

    def _rebase(self) -> None:
        v = self.vtime
        self.heap = [(t - v, k, r) for t, k, r in self.heap]  # a uniform shift keeps the heap order
        heapq.heapify(self.heap)
        self.vtime = 0.0


class SharingChannel:
    """A processor-sharing channel driven by SimPy (the arithmetic is :class:`ProcessorSharing`).

    Start and end times go into ``start_col`` and ``end_col``; ``on_done(rid)`` is called when a
    transmission ends.
    """

    def __init__(self, env: simpy.Environment, *, start_col: array[float], end_col: array[float],
                 on_done: Callable[[int], None], in_station: Level, busy: Level) -> None:
        self.env, self.start_col, self.end_col, self.on_done = env, start_col, end_col, on_done
        self.in_station, self.busy = in_station, busy
        self.ps = ProcessorSharing()
        self.pending: simpy.Event | None = None  # the one wake-up that is still current

    def submit(self, rid: int, seconds: float) -> None:
        now = self.env.now
        self.start_col[rid] = now
        if self.ps.add(now, rid, seconds):
            self.busy.change(now, 1)
        self.in_station.change(now, 1)
        self._reschedule()

    def _reschedule(self) -> None:
        delay = self.ps.next_delay()
        self.pending = None if delay is None else self.env.timeout(delay)
        if self.pending is not None:
            self.pending.callbacks.append(self._fire)

    def _fire(self, event: simpy.Event) -> None:
        if event is not self.pending:
            return  # superseded by a later arrival or departure
        now = self.env.now
        done = self.ps.complete(now)
        for rid in done:
            self.end_col[rid] = now
            self.in_station.change(now, -1)
        if not len(self.ps):
            self.busy.change(now, -1)
        self._reschedule()
        for rid in done:
            self.on_done(rid)


@LINKS.register("fair_share")
def build(ctx: LinkContext) -> Link:
    """One processor-sharing channel per direction; every active transmission is in service (equal
    finish tags end in request order, also when streamed records reuse rows)."""
    link = one_channel_per_direction(ctx, SharingChannel, one_on_air=False)
    for channel in (link.uplink, link.downlink):
        cast(SharingChannel, channel).ps.order = ctx.rec.token
    return link

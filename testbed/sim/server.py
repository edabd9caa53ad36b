"""The edge server: a FIFO queue feeding one or more GPUs through a dynamic batcher.

Batching follows the rules of common GPU inference servers: a free GPU takes a full batch at
once; with ``max_delay == 0`` it takes whatever is queued (up to ``max_batch``); otherwise an
incomplete batch waits until it is full or its oldest request has waited ``max_delay``. An
optional queue bound drops arrivals (``dropped_at_server``) and an optional timeout removes
requests that waited too long for a GPU (``timed_out``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import simpy

from testbed.core.calc import batch_decision
from testbed.core.monitor import Level
from testbed.core.records import STATUS, Records

__all__ = ["Server"]

_IN_FLIGHT = STATUS.index("in_flight")
_DROPPED = STATUS.index("dropped_at_server")
_TIMED_OUT = STATUS.index("timed_out")


class Server:
    def __init__(self, env: simpy.Environment, rec: Records, gpus: int, max_batch: int,
                 max_delay: float, batch_time: Callable[[int], float], capacity: int | None,
                 timeout: float | None, on_done: Callable[[int], None],
                 in_station: Level, waiting: Level, busy: Level) -> None:
        self.env, self.rec = env, rec
        self.max_batch, self.max_delay, self.batch_time = max_batch, max_delay, batch_time
        self.capacity, self.timeout, self.on_done = capacity, timeout, on_done
        self.in_station, self.waiting, self.busy = in_station, waiting, busy
        self.free_gpus = list(range(gpus - 1, -1, -1))  # pop() gives GPU 0 first
        self.queue: deque[int] = deque()
        self.live = 0                   # queued and not timed out
        self.hold: float | None = None  # since when a free GPU has been waiting for a batch
        self.timer_at: float | None = None
        self.batches = 0

    def arrive(self, rid: int) -> None:
        now, rec = self.env.now, self.rec
        if self.capacity is not None and self.live >= self.capacity:
            rec.status[rid] = _DROPPED
            rec.finished_s[rid] = now
            return
        rec.queued_s[rid] = now
        self.queue.append(rid)
        self.live += 1
        self.in_station.change(now, 1)
        self.waiting.change(now, 1)
        if self.timeout is not None:
            self.env.timeout(self.timeout, rid).callbacks.append(self._expire)
        self._dispatch()

    def _expire(self, event: simpy.Event) -> None:
        rid, rec = event._value, self.rec
        if rec.status[rid] != _IN_FLIGHT or not math.isnan(rec.batch_start_s[rid]):
            return
        now = self.env.now
        rec.status[rid] = _TIMED_OUT
        rec.finished_s[rid] = now
        self.live -= 1
        self.in_station.change(now, -1)
        self.waiting.change(now, -1)

    def _head(self) -> int | None:
        """The oldest live request, discarding timed-out ones at the front."""
        queue, status = self.queue, self.rec.status
        while queue and status[queue[0]] != _IN_FLIGHT:
            queue.popleft()
        return queue[0] if queue else None

    def _dispatch(self) -> None:
        now = self.env.now
        while self.free_gpus:
            oldest = self._head()
            if oldest is None:
                self.hold = None
                return
            queued_at = self.rec.queued_s[oldest]
            take = batch_decision(self.live, self.max_batch, self.max_delay, now - queued_at)
            if take == 0:
                if self.hold is None:
                    self.hold = now
                deadline = queued_at + self.max_delay
                if self.timer_at is None or self.timer_at < now or deadline < self.timer_at:
                    self.timer_at = deadline
                    self.env.timeout(deadline - now).callbacks.append(self._on_timer)
                return
            self._start(self.free_gpus.pop(), take, now)

    def _on_timer(self, _event: simpy.Event) -> None:
        self.timer_at = None
        self._dispatch()

    def _start(self, gpu: int, take: int, now: float) -> None:
        rec, queue, status = self.rec, self.queue, self.rec.status
        ready = self.hold if self.hold is not None else now
        self.hold = None
        batch = []
        while len(batch) < take:
            rid = queue.popleft()
            if status[rid] == _IN_FLIGHT:
                batch.append(rid)
        for rid in batch:
            rec.batch_ready_s[rid] = ready
            rec.batch_start_s[rid] = now
            rec.batch_size[rid] = take
            rec.gpu[rid] = gpu
        self.live -= take
        self.waiting.change(now, -take)
        self.busy.change(now, 1)
        self.batches += 1
        self.env.timeout(self.batch_time(take), (gpu, batch)).callbacks.append(self._end)

    def _end(self, event: simpy.Event) -> None:
        gpu, batch = event._value
        now, rec = self.env.now, self.rec
        for rid in batch:
            rec.batch_end_s[rid] = now
        self.in_station.change(now, -len(batch))
        self.busy.change(now, -1)
        self.free_gpus.append(gpu)
        for rid in batch:
            self.on_done(rid)
        self._dispatch()

"""An IoT node: a local frame queue in front of one CPU that runs the head and the encoder."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import simpy

from testbed.core.monitor import Level
from testbed.core.workload import Frame
from testbed.core.records import STATUS, Records

__all__ = ["Node"]

_DROPPED = STATUS.index("dropped_at_node")


class Node:
    """Frames arrive, wait in a bounded queue, and are computed one at a time on the node's CPU.

    When the queue is full, ``drop_newest`` rejects the arriving frame and ``drop_oldest`` drops
    the oldest waiting frame to admit it. After head and encode the payload goes to ``send``.
    """

    def __init__(self, env: simpy.Environment, rec: Records, index: int, group: int,
                 arrivals: Iterator[float], stop_at: float, draw: Callable[[], Frame],
                 capacity: int | None, drop_oldest: bool, rate: float,
                 send: Callable[[int, "Node"], None], in_station: Level, waiting: Level,
                 busy: Level) -> None:
        self.env, self.rec, self.index, self.group = env, rec, index, group
        self.arrivals, self.stop_at, self.draw = arrivals, stop_at, draw
        self.capacity, self.drop_oldest, self.rate, self.send = capacity, drop_oldest, rate, send
        self.in_station, self.waiting, self.busy_cpus = in_station, waiting, busy
        self.queue: deque[int] = deque()
        self.busy = False
        self.frames = 0
        self.controller: Any = None  # a NestQuant ModeController, when the group switches heads

    def start(self) -> None:
        self._next_arrival()

    def _next_arrival(self) -> None:
        t = next(self.arrivals, None)
        if t is None or t >= self.stop_at:
            return
        now = self.env.now
        self.env.timeout(t - now if t > now else 0.0).callbacks.append(self._arrive)

    def _arrive(self, _event: simpy.Event) -> None:
        self._next_arrival()
        now, rec = self.env.now, self.rec
        rid = rec.new(self.index, self.group, self.frames, now)
        self.frames += 1
        if not self.busy:
            self.in_station.change(now, 1)
            self.busy_cpus.change(now, 1)
            self._serve(rid, now)
        elif self.capacity is None or len(self.queue) < self.capacity:
            self.queue.append(rid)
            self.in_station.change(now, 1)
            self.waiting.change(now, 1)
        elif self.drop_oldest and self.queue:
            self._drop(self.queue.popleft(), now)
            self.queue.append(rid)
        else:
            self._drop(rid, now)

    def _drop(self, rid: int, now: float) -> None:
        self.rec.status[rid] = _DROPPED
        self.rec.finished_s[rid] = now

    def _serve(self, rid: int, now: float) -> None:
        self.busy = True
        image, payload, head, encode = self.draw()
        rec = self.rec
        if self.controller is not None:
            head, rec.mode[rid] = self.controller.charge(now, len(self.queue), head, encode)
        rec.image[rid] = image
        rec.payload_bytes[rid] = payload
        rec.head_start_s[rid] = now
        rec.head_end_s[rid] = now + head
        self.env.timeout(head + encode, rid).callbacks.append(self._done)

    def _done(self, event: simpy.Event) -> None:
        rid, now = event._value, self.env.now
        self.rec.encode_end_s[rid] = now
        self.in_station.change(now, -1)
        if self.queue:
            self.waiting.change(now, -1)
            self._serve(self.queue.popleft(), now)
        else:
            self.busy = False
            self.busy_cpus.change(now, -1)
        self.send(rid, self)

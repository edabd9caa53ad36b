"""An IoT node: a SimPy driver of :class:`testbed.core.policy.NodePolicy` (one CPU that runs the
head and the encoder behind a bounded frame queue)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import simpy

from testbed.core.monitor import Level
from testbed.core.policy import Admission, NodePolicy
from testbed.core.records import STATUS, Records
from testbed.sim.alarm import Alarm

__all__ = ["Node", "NodeLevels"]

_DROPPED = STATUS.index("dropped_at_node")
_SERVE, _QUEUED, _REPLACED = Admission.SERVE, Admission.QUEUED, Admission.REPLACED


@dataclass(frozen=True)
class NodeLevels:
    """The node station's monitors: frames in the station, waiting, and busy CPUs."""

    in_station: Level
    waiting: Level
    busy: Level


class Node:
    """Frames arrive, the policy admits, queues or drops them, and the CPU computes one at a time.

    After head and encode the payload goes to ``send(rid, seconds)``, ``seconds`` being its time on
    the air alone at the node's uplink ``rate`` (bytes/s). ``cell`` is the node's cell (stamped on its
    rows). With ``local`` (the topology's local fallback), ``local(rid, now)`` is asked as the CPU starts
    a frame: a number of seconds means the node runs the whole model itself for that long (nothing is
    sent; ``send(rid, 0.0)`` is not called, ``answer(rid)`` is), None means it goes on as usual.
    """

    def __init__(self, env: simpy.Environment, rec: Records, *, index: int, group: int, policy: NodePolicy,
                 arrivals: Iterator[float], stop_at: float, rate: float,
                 send: Callable[[int, float], None], levels: NodeLevels, cell: int = 0,
                 local: Callable[[int, float], float | None] | None = None,
                 answer: Callable[[int], None] | None = None) -> None:
        self.env, self.rec, self.index, self.group = env, rec, index, group
        self.policy, self.arrivals, self.stop_at = policy, arrivals, stop_at
        self.rate, self.send = rate, send
        self.in_station, self.waiting, self.busy_cpus = levels.in_station, levels.waiting, levels.busy
        self.frames = 0
        self._serving = -1  # the frame on the CPU (one CPU: at most one completion pending)
        self.cell, self.local, self.answer = cell, local, answer
        self._local = False  # the frame on the CPU runs the whole model here (local fallback)
        self._next, self._cpu = Alarm(env, self._arrive), Alarm(env, self._done)  # one pending each

    @property
    def controller(self) -> object:
        """The NestQuant mode controller (None when the group does not switch heads)."""
        return self.policy.controller

    def start(self) -> None:
        self._next_arrival()

    def _next_arrival(self) -> None:
        t = next(self.arrivals, None)
        if t is None or t >= self.stop_at:
            return
        now = self.env.now
        self._next.set(t - now if t > now else 0.0)

    def _arrive(self, _event: simpy.Event) -> None:
        now = self.env.now
        t = next(self.arrivals, None)  # schedule the next arrival first (as _next_arrival does)
        if t is not None and t < self.stop_at:
            self._next.set(t - now if t > now else 0.0)
        rec = self.rec
        rid = rec.new(self.index, self.group, self.frames, now)
        if self.cell:
            rec.cell[rid] = self.cell
        self.frames += 1
        decision, dropped = self.policy.arrive(rid)
        if decision is _SERVE:
            self.in_station.change_with(self.busy_cpus, now, 1, 1)
            self._serve(rid, now)
        elif decision is _QUEUED:
            self.in_station.change_with(self.waiting, now, 1, 1)
        else:
            rec.status[dropped] = _DROPPED
            rec.finished_s[dropped] = now

    def _serve(self, rid: int, now: float) -> None:
        policy = self.policy
        image, payload, head, encode, mode = policy.charges(now)
        rec = self.rec
        rec.mode[rid] = mode
        if policy.split is not None:  # an adaptive group: the configuration chosen for this frame
            rec.config[rid] = policy.config
        rec.image[rid] = image
        if self.local is not None:
            seconds = self.local(rid, now)
            self._local = seconds is not None
            if seconds is not None:  # the whole model on this CPU; nothing to send
                payload, head, encode = 0.0, seconds, 0.0
        rec.payload_bytes[rid] = payload
        rec.head_start_s[rid] = now
        rec.head_end_s[rid] = now + head
        self._serving = rid
        self._cpu.set(head + encode)

    def _done(self, _event: simpy.Event) -> None:
        rid, now, local = self._serving, self.env.now, self._local  # (serving the next frame resets them)
        self.rec.encode_end_s[rid] = now
        nxt = self.policy.next()
        if nxt is not None:
            self.in_station.change_with(self.waiting, now, -1, -1)
            self._serve(nxt, now)
        else:
            self.in_station.change_with(self.busy_cpus, now, -1, -1)
        if local and self.answer is not None:
            self.answer(rid)
            return
        size = self.rec.payload_bytes[rid]
        split = self.policy.split
        if split is not None:
            split.sent(size)
        self.send(rid, size / self.rate)

"""The edge server: a SimPy driver of :class:`testbed.core.policy.Batcher` (a FIFO queue feeding
one or more GPUs through a dynamic batcher; an optional queue bound drops arrivals as
``dropped_at_server`` and an optional timeout removes requests that waited too long as
``timed_out``). :class:`FallibleServer` can also go down (``servers[].outages``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from testbed.core.monitor import Level
from testbed.core.policy import Batch, Batcher
from testbed.core.records import STATUS, Records
from testbed.sim.alarm import LateTimeout

__all__ = ["FallibleServer", "Server", "ServerLevels"]

_DROPPED = STATUS.index("dropped_at_server")
_TIMED_OUT = STATUS.index("timed_out")


@dataclass(frozen=True)
class ServerLevels:
    """The server station's monitors: requests in the station, waiting, and busy GPUs."""

    in_station: Level
    waiting: Level
    busy: Level


class Server:
    """Requests arrive after decode; batches run for ``batch_time(size)``; ``on_done(rid)`` per request;
    ``on_lost(rid)`` (optional) per request the queue bound or the timeout ends here. With a
    :class:`~testbed.core.policy.QueueBatcher` (a heterogeneous fleet), ``batch_times[q]`` is the
    service time of a batch of queue ``q`` (its model and split)."""

    def __init__(self, env: simpy.Environment, rec: Records, *, batcher: Batcher,
                 batch_time: Callable[[int], float], on_done: Callable[[int], None],
                 levels: ServerLevels, on_lost: Callable[[int], None] | None = None,
                 batch_times: Sequence[Callable[[int], float]] | None = None) -> None:
        self.env, self.rec, self.batcher = env, rec, batcher
        self.batch_time, self.on_done, self.on_lost = batch_time, on_done, on_lost
        self.batch_times = batch_times
        self.in_station, self.waiting, self.busy = levels.in_station, levels.waiting, levels.busy

    @property
    def batches(self) -> int:
        return self.batcher.batches

    def arrive(self, rid: int) -> None:
        now, rec = self.env.now, self.rec
        if not self.batcher.arrive(rid, now):
            rec.status[rid] = _DROPPED
            rec.finished_s[rid] = now
            if self.on_lost is not None:
                self.on_lost(rid)
            return
        rec.queued_s[rid] = now
        self.in_station.change_with(self.waiting, now, 1, 1)
        if self.batcher.timeout is not None:
            self._arm_timeout(rid, self.batcher.timeout)
        if self.batcher.free_gpus:  # every GPU busy: nothing starts, no timer is set (dispatch would say so)
            self._dispatch()

    def _later(self, delay: float, then: Callable[[], None]) -> None:
        """Call ``then()`` after ``delay`` seconds (every timer of the server: request timeouts, batch
        timers, batch ends; a :class:`FallibleServer` forgets the ones set before an outage), at
        :data:`~testbed.sim.alarm.LATE` priority: after whatever else happens at that instant."""
        LateTimeout(self.env, delay).callbacks.append(lambda _e: then())

    def _arm_timeout(self, rid: int, after: float) -> None:
        """Expire ``rid`` after ``after`` seconds unless it left the queue (streamed records reuse rows:
        the timeout is of this request only)."""
        token = self.rec.token(rid)
        self._later(after, lambda: self._expire(rid, token))

    def _expire(self, rid: int, token: int) -> None:
        if self.rec.token(rid) != token or not self.batcher.expire(rid):
            return
        now, rec = self.env.now, self.rec
        rec.status[rid] = _TIMED_OUT
        rec.finished_s[rid] = now
        self.in_station.change(now, -1)
        self.waiting.change(now, -1)
        if self.on_lost is not None:
            self.on_lost(rid)

    def _dispatch(self) -> None:
        now = self.env.now
        batches, at = self.batcher.dispatch(now)
        for batch in batches:
            self._start(batch, now)
        if at is not None:
            self._later(at - now, self._on_timer)

    def _on_timer(self) -> None:
        self.batcher.timer_fired()
        self._dispatch()

    def _start(self, batch: Batch, now: float) -> None:
        rec, take = self.rec, len(batch.rids)
        for rid in batch.rids:
            rec.batch_ready_s[rid] = batch.ready
            rec.batch_start_s[rid] = now
            rec.batch_size[rid] = take
            rec.gpu[rid] = batch.gpu
        self.waiting.change_with(self.busy, now, -take, 1)
        service = self.batch_time if self.batch_times is None else self.batch_times[batch.queue]
        self._later(service(take), lambda: self._end(batch))

    def _end(self, batch: Batch) -> None:
        now, rec = self.env.now, self.rec
        for rid in batch.rids:
            rec.batch_end_s[rid] = now
        self.in_station.change_with(self.busy, now, -len(batch.rids), -1)
        self.batcher.finish(batch.gpu)
        for rid in batch.rids:
            self.on_done(rid)
        self._dispatch()


class FallibleServer(Server):
    """A server that can go down: :meth:`fail` hands back its queued and running requests, stops its GPUs
    and forgets every event scheduled before (each carries the outage count it was scheduled in); it is
    empty when the driver sends it requests again."""

    def __init__(self, env: simpy.Environment, rec: Records, **kwargs: Any) -> None:
        super().__init__(env, rec, **kwargs)
        self.epoch = 0  # outages so far
        self.gpus = len(self.batcher.free_gpus)
        self.running: dict[int, Batch] = {}  # GPU -> its batch
        self._batches_before = 0  # batches of batchers replaced by an outage

    @property
    def batches(self) -> int:
        return self._batches_before + self.batcher.batches

    def fail(self) -> list[int]:
        """Go down now: the requests queued and on the GPUs, in that order (their rows untouched but for
        the levels); the batcher starts again empty."""
        now, b = self.env.now, self.batcher
        queued = b.waiting_rids()
        running = [rid for batch in self.running.values() for rid in batch.rids]
        self.in_station.change(now, -(len(queued) + len(running)))
        self.waiting.change(now, -len(queued))
        self.busy.change(now, -len(self.running))
        self.epoch += 1
        self.running = {}
        self._batches_before += b.batches
        self.batcher = b.fresh(self.gpus)
        return queued + running

    def _later(self, delay: float, then: Callable[[], None]) -> None:
        """As the base server's, but a timer set before an outage does nothing after it."""
        epoch = self.epoch
        LateTimeout(self.env, delay).callbacks.append(lambda _e: then() if epoch == self.epoch else None)

    def _start(self, batch: Batch, now: float) -> None:
        self.running[batch.gpu] = batch
        super()._start(batch, now)

    def _end(self, batch: Batch) -> None:
        del self.running[batch.gpu]
        super()._end(batch)

"""``shared_fifo``: one transmission on the air at a time, at the sender's full rate, in arrival order; or
following a rate trace (``link.rate_trace``), or a Mahimahi packet-delivery trace per direction
(``link.packet_trace``, ``link.downlink.packet_trace``)."""

from __future__ import annotations

import functools
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import simpy

from testbed.core.calc import DeliverySchedule, RateSchedule, fifo_start
from testbed.core.monitor import Level
from testbed.sim.alarm import Alarm
from testbed.sim.links.base import LINKS, Link, LinkContext, one_channel_per_direction

__all__ = ["AheadFifoChannel", "FifoChannel", "GatedFifoChannel", "build"]


class FifoChannel:
    """A FIFO queue in front of one transmitter (an M/G/1 station when arrivals are Poisson).

    ``submit(rid, seconds)`` starts or queues a transmission of ``seconds``; its start and end times go
    into ``start_col`` and ``end_col``, and ``on_done(rid)`` is called when its last bit is sent. With a
    ``delivery`` schedule (a Mahimahi trace) a transmission instead takes ``size_col[rid]`` bytes through
    the trace's delivery opportunities.
    """

    def __init__(self, env: simpy.Environment, *, start_col: array[float], end_col: array[float],
                 on_done: Callable[[int], None], in_station: Level, busy: Level,
                 schedule: RateSchedule | None = None, delivery: DeliverySchedule | None = None,
                 size_col: array[float] | None = None) -> None:
        self.env, self.start_col, self.end_col, self.on_done = env, start_col, end_col, on_done
        self.in_station, self.busy = in_station, busy
        self.schedule = schedule  # the cell's rate over time (None: the nominal rate throughout)
        self.delivery, self.size_col = delivery, size_col  # a packet-delivery trace and the bytes it carries
        self.queue: deque[tuple[int, float]] = deque()
        self.active = False
        self.current = -1  # the request on the air
        self._timeout, self._on_end = env.timeout, self._end  # bound once (hot path)
        self._air = Alarm(env, self._end)  # the end of the transmission on the air (one at a time)

    def submit(self, rid: int, seconds: float) -> None:
        now = self.env.now
        if self.active:
            self.in_station.change(now, 1)
            self.queue.append((rid, seconds))
        else:
            self.active = True
            self.in_station.change_with(self.busy, now, 1, 1)
            self.current = rid  # starts on the air now (inlined in _end too: the hot path)
            self.start_col[rid] = now
            if self.schedule is not None:
                seconds = self.schedule.duration(now, seconds)
            elif self.delivery is not None:
                seconds = self._delivered_in(rid, now)
            self._air.set(seconds)

    def _end(self, _event: simpy.Event) -> None:
        rid, now = self.current, self.env.now
        self.end_col[rid] = now
        if self.queue:
            self.in_station.change(now, -1)
            nxt, seconds = self.queue.popleft()
            self.current = nxt
            self.start_col[nxt] = now
            if self.schedule is not None:
                seconds = self.schedule.duration(now, seconds)
            elif self.delivery is not None:
                seconds = self._delivered_in(nxt, now)
            self._air.set(seconds)
        else:
            self.active = False
            self.in_station.change_with(self.busy, now, -1, -1)
        self.on_done(rid)

    def _delivered_in(self, rid: int, now: float) -> float:
        assert self.delivery is not None and self.size_col is not None
        return self.delivery.transmit(now, self.size_col[rid]) - now


class AheadFifoChannel:
    """A :class:`FifoChannel` at the nominal rate whose driver takes each end at once: a transmission's start
    (:func:`~testbed.core.calc.fifo_start`) and end are known when it is submitted, so both are stamped then
    and ``on_sent(rid, end)`` is called at once; no event marks the end. The levels' changes at each end are
    applied in time order at the next submission (an end at that very instant first) or by :meth:`settle`.
    A transmission ending at or after ``horizon`` (the end of the run) is stamped as :class:`FifoChannel`
    leaves it there (its start only if before the horizon) and not handed on."""

    def __init__(self, env: simpy.Environment, *, start_col: array[float], end_col: array[float],
                 on_sent: Callable[[int, float], None], in_station: Level, busy: Level, horizon: float) -> None:
        self.env, self.start_col, self.end_col, self.on_sent = env, start_col, end_col, on_sent
        self.in_station, self.busy, self.horizon = in_station, busy, horizon
        self.ends: deque[float] = deque()  # ends of the transmissions in the station, in order

    def submit(self, rid: int, seconds: float) -> None:
        now, ends = self.env.now, self.ends
        if ends and ends[0] <= now:
            self._leave(now, inclusive=True)
        if ends:
            self.in_station.change(now, 1)
        else:
            self.in_station.change_with(self.busy, now, 1, 1)
        start = fifo_start(now, ends[-1] if ends else None)
        end = start + seconds
        ends.append(end)
        if start < self.horizon:
            self.start_col[rid] = start
            if end < self.horizon:
                self.end_col[rid] = end
                self.on_sent(rid, end)

    def _leave(self, now: float, inclusive: bool) -> None:
        """The level changes of the transmissions that ended by ``now``."""
        ends, in_station, busy = self.ends, self.in_station, self.busy
        while ends and (ends[0] <= now if inclusive else ends[0] < now):
            end = ends.popleft()
            if ends:
                in_station.change(end, -1)
            else:
                in_station.change_with(busy, end, -1, -1)

    def settle(self, now: float) -> None:
        """Apply the level changes of transmissions that ended before ``now`` (the end of the run: an event
        at that very instant does not happen)."""
        self._leave(now, inclusive=False)


class GatedFifoChannel(FifoChannel):
    """A :class:`FifoChannel` that can be down (a cell outage): :meth:`halt` stops the transmission on the
    air (it starts again from its first bit after :meth:`resume`) and holds what is queued; while down,
    submissions wait, or with ``lose`` go to ``on_lost(rid)`` at once (as :meth:`drop_all` hands over what
    is held). With ``node_schedules`` (and ``node_col``, the records' node column) a transmission of a node
    that has a rate trace follows it (``fleet[].rate_trace``, the uplink)."""

    def __init__(self, env: simpy.Environment, *, node_schedules: Sequence[RateSchedule | None] = (),
                 node_col: array[int] | None = None, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.node_schedules, self.node_col = node_schedules, node_col  # per-node rate traces (uplink)
        self.down = False
        self.lose = False
        self.on_lost: Callable[[int], None] | None = None
        self._pending: simpy.Event | None = None
        self._seconds = 0.0  # the transmission on the air, at the nominal rate

    def submit(self, rid: int, seconds: float) -> None:
        now = self.env.now
        if self.down and self.lose and self.on_lost is not None:
            self.on_lost(rid)
            return
        self.in_station.change(now, 1)
        if self.active or self.down:
            self.queue.append((rid, seconds))
        else:
            self.active = True
            self.busy.change(now, 1)
            self._begin(rid, seconds, now)

    def _begin(self, rid: int, seconds: float, now: float) -> None:
        self.current, self._seconds = rid, seconds
        self.start_col[rid] = now
        node = self.node_schedules[self.node_col[rid]] if self.node_col is not None else None
        if node is not None:
            seconds = node.duration(now, seconds)
        elif self.schedule is not None:
            seconds = self.schedule.duration(now, seconds)
        elif self.delivery is not None:
            seconds = self._delivered_in(rid, now)
        self._pending = self._timeout(seconds)
        self._pending.callbacks.append(self._on_end)

    def _end(self, _event: simpy.Event) -> None:
        rid, now = self.current, self.env.now
        self._pending = None
        self.end_col[rid] = now
        self.in_station.change(now, -1)
        if self.queue:
            nxt, seconds = self.queue.popleft()
            self._begin(nxt, seconds, now)
        else:
            self.active = False
            self.busy.change(now, -1)
        self.on_done(rid)

    def halt(self) -> None:
        """Go down now: the transmission on the air is cut (it goes back to the head of the queue)."""
        self.down = True
        if self.active:
            assert self._pending is not None
            self._pending.callbacks.remove(self._on_end)
            self._pending = None
            self.queue.appendleft((self.current, self._seconds))
            self.active = False
            self.busy.change(self.env.now, -1)

    def drop_all(self) -> list[int]:
        """Empty the queue (the channel is down): the requests it held, in order."""
        rids = [rid for rid, _ in self.queue]
        self.queue.clear()
        self.in_station.change(self.env.now, -len(rids))
        return rids

    def resume(self) -> None:
        """Up again: the head of the queue goes on the air."""
        self.down = False
        if self.queue and not self.active:
            now = self.env.now
            self.active = True
            self.busy.change(now, 1)
            nxt, seconds = self.queue.popleft()
            self._begin(nxt, seconds, now)


@LINKS.register("shared_fifo")
def build(ctx: LinkContext) -> Link:
    """One FIFO channel per direction; with ``link.rate_trace`` both follow the cell's rate over time, with
    packet traces each direction delivers its trace's opportunities; a topology cell with ``outages`` gets
    channels that can go down (:class:`GatedFifoChannel`)."""
    trace = ctx.spec.rate_trace
    up_trace, down_trace = ctx.spec.packet_trace, ctx.spec.downlink.packet_trace
    per_node = any(s is not None for s in ctx.node_schedules)
    gated = getattr(ctx.spec, "outages", None) is not None or per_node
    if up_trace is not None or down_trace is not None or gated:
        rec, channel = ctx.rec, GatedFifoChannel if gated else FifoChannel
        nodes: dict[str, Any] = {"node_schedules": ctx.node_schedules, "node_col": rec.node} if per_node else {}
        schedule = (RateSchedule(trace.time_s, [r / ctx.spec.datarate for r in trace.rate])
                    if trace is not None else None)
        up = channel(ctx.env, schedule=schedule, start_col=rec.tx_start_s, end_col=rec.tx_end_s, **nodes,
                     on_done=ctx.on_delivered, in_station=ctx.up.in_station, busy=ctx.up.busy,
                     size_col=rec.payload_bytes,
                     delivery=DeliverySchedule(up_trace.ms, up_trace.mtu) if up_trace is not None else None)
        down = channel(ctx.env, schedule=schedule, start_col=rec.downlink_start_s, end_col=rec.downlink_end_s,
                       on_done=ctx.on_returned, in_station=ctx.down.in_station, busy=ctx.down.busy,
                       size_col=rec.result_bytes,
                       delivery=DeliverySchedule(down_trace.ms, down_trace.mtu) if down_trace is not None else None)
        return Link(up, down, one_on_air=True)
    if trace is None and ctx.on_sent_down is not None:  # answers' ends are known at once (nothing follows them)
        rec = ctx.rec
        up = FifoChannel(ctx.env, start_col=rec.tx_start_s, end_col=rec.tx_end_s, on_done=ctx.on_delivered,
                         in_station=ctx.up.in_station, busy=ctx.up.busy)
        ahead = AheadFifoChannel(ctx.env, start_col=rec.downlink_start_s, end_col=rec.downlink_end_s,
                                 on_sent=ctx.on_sent_down, in_station=ctx.down.in_station, busy=ctx.down.busy,
                                 horizon=ctx.horizon)
        return Link(up, ahead, one_on_air=True, settle=ahead.settle)
    if trace is None:
        return one_channel_per_direction(ctx, FifoChannel, one_on_air=True)
    schedule = RateSchedule(trace.time_s, [r / ctx.spec.datarate for r in trace.rate])
    return one_channel_per_direction(ctx, functools.partial(FifoChannel, schedule=schedule), one_on_air=True)

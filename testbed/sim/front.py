"""The front of a run computed ahead of the clock: private nodes and a shared FIFO uplink, in windows.

A node whose CPU serves its own frames first come, first served (an unbounded queue, no NestQuant
switching, no adaptive split) and an uplink that sends one payload at a time at a fixed rate
(``shared_fifo`` without traces or outages) need no events: what they do depends only on arrival times
and each node's own draws. Lindley's recursion gives every start and end (Lindley, "The theory of queues
with a single server", Proc. Cambridge Phil. Soc. 48, 1952): a frame's CPU starts at ``max(arrival, end
of the frame before)``, a payload goes on the air at ``max(hand-over, end of the payload before)``.

One event per window of simulated time (``window_s``) draws the arrivals due before the window's end in
vectorised blocks (every node's own stream, as the event-driven :class:`~testbed.sim.node.Node` draws
them), starts their rows in time order (ties in node order), runs each node's recursion, hands the
payloads whose CPU ends before the window's end to the uplink in time order (ties in capture order) and
queues their arrivals at the server, which stays event-driven: one ``URGENT`` event per arrival
(:mod:`testbed.sim.alarm`). Rows, draws and server-side events are those of the event-driven stations;
the stations' levels come from whole stays (:class:`~testbed.core.monitor.StayLevel`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy

from testbed.core.monitor import Level, StayLevel
from testbed.core.policy import NodePolicy
from testbed.core.records import Records
from testbed.sim.alarm import Alarm, UrgentTimeout, delay_to

__all__ = ["Front", "window_for"]

_INF = math.inf


def window_for(requests_per_s: float, nodes: int, horizon: float) -> float:
    """Window length: about 16 frames per node on average, at most 65,536 requests a window, at most the
    whole run (which is also the window when nothing arrives)."""
    if requests_per_s <= 0 or nodes <= 0:
        return horizon
    return min(horizon, 16.0 * nodes / requests_per_s, 65536.0 / requests_per_s)


class Front:
    """Nodes ``0 .. n-1`` (``groups[k]``, ``policies[k]``, ``arrivals[k]``, uplink ``rates[k]`` in bytes/s) and
    the uplink, driven one window at a time. ``deliver(rid, at)`` stamps a payload delivered at ``at`` and
    returns the delay until it queues at the server (``fixed_hop``: the same delay for every request, so
    arrivals keep the uplink's order); ``arrive(rid)`` queues it there. ``node_levels`` (in station,
    waiting, busy) and ``up_levels`` (in station, busy) receive the stations' levels at :meth:`settle`."""

    def __init__(self, env: simpy.Environment, rec: Records, *, groups: Sequence[int],
                 policies: Sequence[NodePolicy], arrivals: Sequence[Iterator[float]], stop_at: float,
                 horizon: float, rates: Sequence[float], window_s: float,
                 deliver: Callable[[int, float], float], arrive: Callable[[int], None], fixed_hop: bool,
                 node_levels: tuple[Level, Level, Level], up_levels: tuple[Level, Level],
                 window: tuple[float, float]) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, not {window_s}")
        self.env, self.rec = env, rec
        self.groups, self.policies, self.arrivals = list(groups), list(policies), list(arrivals)
        self.stop_at, self.horizon, self.rates, self.window_s = stop_at, horizon, list(rates), window_s
        self.deliver, self.arrive, self.fixed_hop = deliver, arrive, fixed_hop
        n = len(self.policies)
        self.frames = [0] * n
        self._next = [_INF] * n        # each node's next arrival not yet taken
        self._free = [-_INF] * n       # when each node's CPU is done with the frames taken so far
        self._held: list[tuple[float, int, int]] = []  # (CPU end, row, node): payloads for a later window
        self._up_free = -_INF          # when the uplink is done with the payloads sent so far
        self._k = 0                    # windows run
        self._at_server: deque[tuple[float, int]] = deque()  # (time, row) queued for the server, in order
        self._server_alarm = Alarm(env, self._reach, urgent=True)
        self._server_pending = False
        self._tick = Alarm(env, self._window, urgent=True)
        t0, t1 = window
        self.node_levels, self.up_levels = node_levels, up_levels
        self._node = [StayLevel(t0, t1) for _ in range(3)]  # in station, waiting, busy
        self._up = [StayLevel(t0, t1) for _ in range(2)]    # in station, busy

    def start(self) -> None:
        """Take each node's first arrival and run the first window now."""
        stop = self.stop_at
        for k, it in enumerate(self.arrivals):
            t = next(it, None)
            self._next[k] = t if t is not None and t < stop else _INF
        self._window(None)

    # -- one window ------------------------------------------------------------------------------
    def _window(self, _event: simpy.Event | None) -> None:
        now = self.env.now
        self._k += 1
        until = min(self._k * self.window_s, self.horizon)
        rows, nodes, times = self._arrivals(min(until, self.stop_at))
        sends = self._nodes(rows, nodes, times, until)
        self._uplink(sends, until)
        if until < self.horizon:
            self._tick.set(until - now if until > now else 0.0)  # (a window's start needs no exact instant)

    def _arrivals(self, until: float) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Rows for every arrival before ``until`` (in time order, ties in node order)."""
        stop, nxt, frames = self.stop_at, self._next, self.frames
        times: list[float] = []
        nodes: list[int] = []
        numbers: list[int] = []
        for k, it in enumerate(self.arrivals):
            t = nxt[k]
            if t >= until:
                continue
            f = frames[k]
            while t < until:
                times.append(t)
                nodes.append(k)
                numbers.append(f)
                f += 1
                nt = next(it, None)
                t = nt if nt is not None and nt < stop else _INF
            nxt[k], frames[k] = t, f
        t_arr = np.asarray(times, dtype=float)
        n_arr = np.asarray(nodes, dtype=np.int64)
        order = np.lexsort((n_arr, t_arr))
        t_arr, n_arr = t_arr[order], n_arr[order]
        groups = np.asarray(self.groups, dtype=np.int64)[n_arr]
        rows = self.rec.new_rows(n_arr, groups, np.asarray(numbers, dtype=np.int64)[order], t_arr)
        return rows, n_arr, t_arr

    def _nodes(self, rows: list[int], nodes: np.ndarray, times: np.ndarray, until: float) -> list[tuple[float, int, int]]:
        """Each node's CPU over its new frames (Lindley); the payloads handed over before ``until``."""
        rec, horizon, free, policies = self.rec, self.horizon, self._free, self.policies
        mode, image, payload_col = rec.mode, rec.image, rec.payload_bytes
        head_start, head_end, encode_end = rec.head_start_s, rec.head_end_s, rec.encode_end_s
        starts = [_INF] * len(rows)
        ends = [_INF] * len(rows)
        sends = [s for s in self._held if s[0] < until]
        self._held = [s for s in self._held if s[0] >= until]
        held = self._held
        for i, (rid, k, a) in enumerate(zip(rows, nodes.tolist(), times.tolist())):
            f = free[k]
            start = a if a >= f else f
            if start >= horizon:  # never starts: the CPU is busy beyond the end of the run
                continue
            img, size, head, encode, m = policies[k].charges(start)
            end = start + (head + encode)
            free[k] = end
            starts[i] = start
            if m:
                mode[rid] = m
            image[rid] = img
            payload_col[rid] = size
            head_start[rid] = start
            head_end[rid] = start + head
            if end < horizon:
                ends[i] = end
                encode_end[rid] = end
                (sends if end < until else held).append((end, rid, k))
        s_arr, e_arr = np.asarray(starts), np.asarray(ends)
        in_station, waiting, busy = self._node
        in_station.add(times, e_arr)
        in_station.count(times, e_arr, until)
        waiting.add(times, s_arr)
        busy.add(s_arr[np.isfinite(s_arr)], e_arr[np.isfinite(s_arr)])
        sends.sort()  # CPU ends in time order, ties in capture order (row order is capture order)
        return sends

    def _uplink(self, sends: list[tuple[float, int, int]], until: float) -> None:
        """The payloads handed over before ``until``, on the air one at a time, then on to the server."""
        rec, horizon, rates, deliver = self.rec, self.horizon, self.rates, self.deliver
        size, tx_start, tx_end = rec.payload_bytes, rec.tx_start_s, rec.tx_end_s
        queue = self._at_server
        free = self._up_free
        subs = [s[0] for s in sends]
        starts = [_INF] * len(sends)
        ends = [_INF] * len(sends)
        for i, (t, rid, k) in enumerate(sends):
            start = t if t >= free else free
            end = start + size[rid] / rates[k]
            free = end
            if start >= horizon:
                continue
            starts[i] = start
            tx_start[rid] = start
            if end < horizon:
                ends[i] = end
                tx_end[rid] = end
                delay = deliver(rid, end)
                if self.fixed_hop:
                    queue.append((end + delay, rid))
                else:
                    self._later(end + delay, rid)
        self._up_free = free
        s_arr, e_arr, t_arr = np.asarray(starts), np.asarray(ends), np.asarray(subs)
        in_station, busy = self._up
        in_station.add(t_arr, e_arr)
        in_station.count(t_arr, e_arr, until)
        on_air = np.isfinite(s_arr)
        busy.add(s_arr[on_air], e_arr[on_air])
        if queue and not self._server_pending:
            self._server_pending = True
            self._server_alarm.set(delay_to(self.env.now, queue[0][0]))

    # -- the server side (events) -------------------------------------------------------------
    def _later(self, at: float, rid: int) -> None:
        UrgentTimeout(self.env, delay_to(self.env.now, at), (at, rid)).callbacks.append(self._reach_one)

    def _reach_one(self, event: simpy.Event) -> None:
        at, rid = event.value  # type: ignore[misc]  # the timeout's value: its instant and request
        if self.env.now < at:  # a waypoint (delay_to)
            self._later(at, rid)
        else:
            self.arrive(rid)

    def _reach(self, _event: simpy.Event) -> None:
        queue = self._at_server
        now = self.env.now
        if now < queue[0][0]:  # a waypoint (delay_to)
            self._server_alarm.set(delay_to(now, queue[0][0]))
            return
        _, rid = queue.popleft()
        if queue:
            self._server_alarm.set(delay_to(self.env.now, queue[0][0]))
        else:
            self._server_pending = False
        self.arrive(rid)

    def settle(self, now: float) -> None:
        """Hand the stations' levels over as of ``now`` (the end of the run)."""
        for stay, level in zip(self._node + self._up, self.node_levels + self.up_levels):
            stay.into(level, now)

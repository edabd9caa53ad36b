"""The front of a run computed ahead of the clock: the nodes and a shared FIFO uplink, in windows.

A node's station is private: what its CPU and its frame queue do depends only on its own arrivals and
draws. A ``shared_fifo`` uplink at fixed rates (no traces, no outages) sends one payload at a time in
hand-over order, so a payload's start is ``max(hand-over, end of the payload before)`` (Lindley, "The
theory of queues with a single server", Proc. Cambridge Phil. Soc. 48, 1952). Neither needs SimPy
events: only the server, whose batches depend on the order of everything reaching it, does.

One event per window of simulated time (``window_s``) draws the arrivals due before the window's end
(every node's own stream, in blocks, as the event-driven :class:`~testbed.sim.node.Node` draws them),
starts their rows in SimPy's order (ties: the node whose arrival before fired first), and runs each node's arrivals and CPU ends through
the same :class:`~testbed.core.policy.NodePolicy` in the order SimPy would give them (a same-instant tie
between a node's arrival and its CPU end goes to the one scheduled first, as an event id would decide).
The payloads whose CPU ends before the window's end go on the air in time order (ties by CPU start, then
capture order), and their arrivals at the server are queued as events, one per request
(:mod:`testbed.sim.alarm`), at exactly the instants the event-driven stations give. Rows and draws are
those of the event-driven stations (``tests/sim/test_front.py``); the stations' levels come from whole
stays (:class:`~testbed.core.monitor.StayLevel`), equal to the event-driven ones to rounding.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy

from testbed.core.monitor import Level, StayLevel
from testbed.core.policy import Admission, NodePolicy
from testbed.core.records import STATUS, Records
from testbed.sim.alarm import Alarm, delay_to

__all__ = ["Front", "window_for"]

_INF = math.inf
_DROPPED = STATUS.index("dropped_at_node")
_SERVE, _QUEUED, _REPLACED = Admission.SERVE, Admission.QUEUED, Admission.REPLACED


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
        self._clock = [0.0] * n        # the instant of each node's last arrival taken (0: none yet)
        self._rank = [k - n for k in range(n)]  # its request number (before any: the start's node order)
        self._cpu_end = [_INF] * n     # each node's pending CPU end (inf: idle)
        self._serving = [-1] * n       # the frame on each CPU, and since when
        self._started = [0.0] * n
        # each node's events in the order SimPy would give them: a count of its schedules so far, the
        # count its pending arrival and its pending CPU end were scheduled at (same-instant order)
        self._seq = [1] * n
        self._arr_seq = [0] * n
        self._cpu_seq = [0] * n
        self._slot: dict[int, float] = {}   # frames in a node station: since when their place is held
        self._wslot: dict[int, float] = {}  # frames waiting for a CPU: since when their place is held
        self._up_free = -_INF          # when the uplink is done with the payloads sent so far
        self._k = 0                    # windows run
        self._at_server: deque[tuple[float, int]] = deque()  # (time, row) queued for the server, in order
        self._server_alarm = Alarm(env, self._reach)
        self._server_pending = False
        self._tick = Alarm(env, self._window)
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
        self._uplink(self._nodes(until), until)
        if until < self.horizon:
            self._tick.set(until - now if until > now else 0.0)  # (a window's start needs no exact instant)

    def _arrivals(self, until: float) -> tuple[list[int], np.ndarray, list[int], np.ndarray]:
        """Rows for every arrival before ``until`` (started in SimPy's order: :meth:`_untie`), with their
        times in node order (each node's arrivals together, from ``offsets[k]`` on) and the permutation
        that sorts them."""
        stop, nxt, frames, clock = self.stop_at, self._next, self.frames, self._clock
        times: list[float] = []
        nodes: list[int] = []
        numbers: list[int] = []
        offsets = [0]
        for k, it in enumerate(self.arrivals):
            t, c = nxt[k], clock[k]
            at = c + (t - c) if t > c else c  # the instant SimPy gives it: scheduled at the arrival before
            if at < until:
                f = frames[k]
                while at < until:
                    times.append(at)
                    nodes.append(k)
                    numbers.append(f)
                    f += 1
                    c = at
                    nt = next(it, None)
                    t = nt if nt is not None and nt < stop else _INF
                    at = c + (t - c) if t > c else c
                nxt[k], frames[k], clock[k] = t, f, c
            offsets.append(len(times))
        t_arr = np.asarray(times, dtype=float)
        n_arr = np.asarray(nodes, dtype=np.int64)
        order = np.lexsort((n_arr, t_arr))
        base = self.rec.n  # the request number of the first row started here
        ordered = t_arr[order]
        if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
            order = self._untie(order, ordered, nodes, offsets, base)
        ranks = np.empty(len(times), dtype=np.int64)
        ranks[order] = np.arange(base, base + len(times))
        last = np.asarray(offsets[1:]) - 1
        took = np.flatnonzero(np.diff(offsets) > 0)
        rank = self._rank
        for k, r in zip(took.tolist(), ranks[last[took]].tolist()):
            rank[k] = r
        groups = np.asarray(self.groups, dtype=np.int64)[n_arr[order]]
        sorted_rows = self.rec.new_rows(n_arr[order], groups, np.asarray(numbers, dtype=np.int64)[order], t_arr[order])
        rows = np.empty(len(times), dtype=np.int64)
        rows[order] = sorted_rows
        return rows.tolist(), t_arr, offsets, order

    def _untie(self, order: np.ndarray, ordered: np.ndarray, nodes: list[int], offsets: list[int], base: int
               ) -> np.ndarray:
        """Arrivals at one instant in SimPy's order: each node's next arrival is scheduled as its arrival
        before fires, so among arrivals due together the one whose predecessor fired first goes first (the
        first arrivals were scheduled at the start, in node order). ``order`` sorts them by time (ties in node
        order), ``ordered`` is their times so sorted; ranks are request numbers from ``base`` on."""
        out = order.tolist()
        pos = [0] * len(out)
        for p, i in enumerate(out):
            pos[i] = p
        rank, p, n = self._rank, 0, len(out)
        while p < n:
            q = p + 1
            while q < n and ordered[q] == ordered[p]:
                q += 1
            if q - p > 1:
                members: dict[int, deque[int]] = {}
                for i in out[p:q]:  # (node order, each node's own order within)
                    members.setdefault(nodes[i], deque()).append(i)
                heap = []
                for k, own in members.items():
                    before = own[0] - 1  # the node's arrival before, if it was taken in this window
                    heap.append((base + pos[before] if before >= offsets[k] else rank[k], k))
                heapq.heapify(heap)
                at = p
                while heap:
                    _, k = heapq.heappop(heap)
                    i = members[k].popleft()
                    out[at], pos[i] = i, at
                    if members[k]:
                        heapq.heappush(heap, (base + at, k))
                    at += 1
            p = q
        return np.asarray(out, dtype=np.int64)

    def _nodes(self, until: float) -> tuple[list[float], list[int], list[int]]:
        """Each node's arrivals and CPU ends before ``until``, in the order the event-driven node meets them
        (:class:`~testbed.sim.node.Node`, with the same :class:`~testbed.core.policy.NodePolicy`); the
        payloads handed over (:meth:`_handed_over`)."""
        rows, t_arr, offsets, order = self._arrivals(min(until, self.stop_at))
        times = t_arr.tolist()
        rec, policies = self.rec, self.policies
        status, finished, encode_end = rec.status, rec.finished_s, rec.encode_end_s
        cpu_end, cpu_seq, arr_seq, seqs = self._cpu_end, self._cpu_seq, self._arr_seq, self._seq
        serving, started = self._serving, self._started
        slot, wslot = self._slot, self._wslot
        serve = self._server_for()
        entered = [False] * len(rows)
        leaves: list[float] = []      # CPU ends: frames leaving the station and the CPU
        enters: list[float] = []      # ... since when they held their place in the station
        runs: list[float] = []        # ... since when they were on the CPU
        waited: list[float] = []      # frames leaving the wait for the CPU, since when
        waited_to: list[float] = []   # ... and until when
        done: list[int] = []          # ... which frames
        done_at: list[int] = []       # ... on which nodes
        for k in range(len(policies)):
            j, hi = offsets[k], offsets[k + 1]
            end = cpu_end[k]
            if j == hi and end >= until:
                continue
            policy, seq, eseq, aseq = policies[k], seqs[k], cpu_seq[k], arr_seq[k]
            while True:
                if j < hi and not (end < times[j] or (end == times[j] and eseq < aseq)):
                    a, rid = times[j], rows[j]  # an arrival (its successor is scheduled first, as Node does)
                    aseq, seq = seq, seq + 1
                    decision, dropped = policy.arrive(rid)
                    if decision is _SERVE:
                        entered[j] = True
                        slot[rid] = a
                        serving[k], started[k] = rid, a
                        end, eseq, seq = serve(policy, rid, a), seq, seq + 1
                    elif decision is _QUEUED:
                        entered[j] = True
                        slot[rid] = wslot[rid] = a
                    elif decision is _REPLACED:  # the new frame takes the dropped one's place (no level moves)
                        slot[rid], wslot[rid] = slot.pop(dropped), wslot.pop(dropped)
                        status[dropped], finished[dropped] = _DROPPED, a
                    else:
                        status[rid], finished[rid] = _DROPPED, a
                    j += 1
                elif end < until:  # the CPU finishes
                    rid, start = serving[k], started[k]
                    encode_end[rid] = end
                    leaves.append(end)
                    enters.append(slot.pop(rid))
                    runs.append(start)
                    done.append(rid)
                    done_at.append(k)
                    nxt = policy.next()
                    if nxt is None:
                        end = _INF
                    else:
                        waited.append(wslot.pop(nxt))
                        waited_to.append(end)
                        serving[k], started[k] = nxt, end
                        end, eseq, seq = serve(policy, nxt, end), seq, seq + 1
                else:
                    break
            cpu_end[k], cpu_seq[k], arr_seq[k], seqs[k] = end, eseq, aseq, seq
        in_station, waiting, busy = self._node
        left = np.asarray(leaves, dtype=float)
        since = np.asarray(enters, dtype=float)
        in_station.count(t_arr[order][np.asarray(entered, dtype=bool)[order]], left, until, since)
        in_station.add(since, left)
        ran = np.asarray(runs, dtype=float)
        busy.add(ran, left)
        waiting.add(np.asarray(waited, dtype=float), np.asarray(waited_to, dtype=float))
        return self._handed_over(left, ran, done, done_at)

    def _handed_over(self, ends: np.ndarray, starts: np.ndarray, rids: list[int], nodes: list[int]
                     ) -> tuple[list[float], list[int], list[int]]:
        """The payloads of the frames that left their CPUs at ``ends`` in time order, ties by CPU start,
        then capture order: their hand-over times, rows and nodes."""
        order = np.argsort(ends, kind="stable")
        ordered = ends[order]
        if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
            token = self.rec.token  # (the request number: a streamed run's rows are reused slots)
            order = np.lexsort((np.asarray([token(r) for r in rids]), starts, ends))
            ordered = ends[order]
        return ordered.tolist(), np.asarray(rids, dtype=np.int64)[order].tolist(), \
            np.asarray(nodes, dtype=np.int64)[order].tolist()

    def _server_for(self) -> Callable[[NodePolicy, int, float], float]:
        """``serve(policy, rid, now)``: the CPU starts frame ``rid`` at ``now``, its charges drawn and stamped as
        :meth:`Node._serve <testbed.sim.node.Node>` does; returns its end (the record's columns bound once)."""
        rec = self.rec
        mode_col, image_col, payload_col = rec.mode, rec.image, rec.payload_bytes
        head_start, head_end = rec.head_start_s, rec.head_end_s

        def serve(policy: NodePolicy, rid: int, now: float) -> float:
            image, payload, head, encode, mode = policy.charges(now)
            if mode:
                mode_col[rid] = mode
            image_col[rid] = image
            payload_col[rid] = payload
            head_start[rid] = now
            head_end[rid] = now + head
            return now + (head + encode)
        return serve

    def _uplink(self, sends: tuple[list[float], list[int], list[int]], until: float) -> None:
        """The payloads handed over before ``until``, on the air one at a time, then on to the server."""
        rec, horizon, rates, deliver, fixed_hop = self.rec, self.horizon, self.rates, self.deliver, self.fixed_hop
        size, tx_start, tx_end = rec.payload_bytes, rec.tx_start_s, rec.tx_end_s
        queue = self._at_server
        free = self._up_free
        subs, rids, nodes = sends
        starts = [_INF] * len(subs)
        ends = [_INF] * len(subs)
        for i, (t, rid, k) in enumerate(zip(subs, rids, nodes)):
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
                if fixed_hop:
                    queue.append((end + delay, rid))
                else:
                    self._later(end + delay, rid)
        self._up_free = free
        s_arr, e_arr, t_arr = np.asarray(starts), np.asarray(ends), np.asarray(subs)
        in_station, busy = self._up
        in_station.add(t_arr, e_arr)
        in_station.count(t_arr, e_arr, until, t_arr)
        on_air = np.isfinite(s_arr)
        busy.add(s_arr[on_air], e_arr[on_air])
        if queue and not self._server_pending:
            self._server_pending = True
            self._server_alarm.set(delay_to(self.env.now, queue[0][0]))

    # -- the server side (events) -------------------------------------------------------------
    def _later(self, at: float, rid: int) -> None:
        self.env.timeout(delay_to(self.env.now, at), (at, rid)).callbacks.append(self._reach_one)

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
            at = queue[0][0]
            d = at - now
            self._server_alarm.set(d if now + d == at else delay_to(now, at))  # (the common case inline)
        else:
            self._server_pending = False
        self.arrive(rid)

    def settle(self, now: float) -> None:
        """Hand the stations' levels over as of ``now`` (the end of the run): the stays still open count
        to the end."""
        in_station, waiting, busy = self._node
        for stays, enters in ((in_station, list(self._slot.values())), (waiting, list(self._wslot.values())),
                              (busy, [t for t, e in zip(self._started, self._cpu_end) if e < _INF])):
            stays.add(np.asarray(enters, dtype=float), np.full(len(enters), _INF))
        for stays, level in zip(self._node + self._up, self.node_levels + self.up_levels):
            stays.into(level, now)

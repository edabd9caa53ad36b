"""Several cells and several edge servers: the scenario's ``cells``, ``servers``, ``backhaul`` and
``assignment`` wired into one SimPy environment (:class:`Topology`; :mod:`testbed.sim.world` uses it when
``Scenario.topology`` is set and keeps its one-link, one-server path otherwise).

A node's frames go up its cell's link (any registered link model, its own rate, latency and stream).
When a payload has left the cell, the assignment policy (:data:`testbed.core.assign.ASSIGNMENTS`) picks a
server from the servers' loads (requests assigned and not yet served, per GPU); the payload then crosses
the cell's latency, the backhaul if there is one (a FIFO line per cell or per server, at its rate, then
its latency), the server's decode and its batching queue. The result goes back the same way: backhaul,
then the cell's downlink. Records carry ``cell`` and ``server`` (-1: never assigned, or answered on the
node by the local fallback).

Streams (:mod:`testbed.streams`): cell 0 and server 0 draw from the one-link, one-server streams, cells
and servers >= 1 from ``(4, 0, cell, ...)`` and ``(4, 1, server, ...)``, the policy from ``(4, 2)``, the
backhaul latencies from ``(4, 3, 0|1)``, the fallback's local compute times from ``(4, 4)``, server ``s``'s
random outages from ``(4, 5, s)``, group ``g``'s random placement from ``(4, 6, g)``, cell ``c``'s random
outages from ``(4, 7, c)``.

Nodes placed by position (``fleet[].placement`` with ``radio``) join the nearest cell at the rate the
radio table gives their distance (:mod:`testbed.core.radio`).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import simpy

from testbed.config.schema import CellOutageSpec, OutageSpec, Scenario
from testbed.core.assign import ASSIGNMENTS, AssignmentContext, RecentRtt, falls_back
from testbed.core.calc import RateSchedule
from testbed.core.monitor import Level
from testbed.core.policy import Batcher, QueueBatcher
from testbed.core.radio import Band, PathLoss, attach, place_uniform, rate_of
from testbed.core.records import STATUS, Records
from testbed.core.workload import Workload, configs_of
from testbed.errors import ConfigError
from testbed.sim.links import LINKS, Link, LinkContext, StationLevels
from testbed.sim.links.fifo import GatedFifoChannel
from testbed.sim.server import FallibleServer, Server, ServerLevels
from testbed.streams import cell_stream, topology_stream, unit_stream

__all__ = ["BackhaulLine", "Tee", "Topology", "check_topology", "node_schedules", "static_servers"]

_LOST = OutageSpec(at=((0.0, 1.0),))
"""The fate of a request sent to a server without outages that is down (never: such a server is always up)."""

_OK = STATUS.index("ok")
_FAILED = STATUS.index("server_failed")
_CELL_FAILED = STATUS.index("cell_failed")


class Tee(Level):
    """A level that also moves ``total`` (a station's level summed over cells or servers)."""

    __slots__ = ("total",)

    def __init__(self, t0: float, t1: float, total: Level) -> None:
        super().__init__(t0, t1)
        self.total = total

    def change(self, now: float, delta: int) -> None:
        Level.change(self, now, delta)
        self.total.change(now, delta)


class BackhaulLine:
    """One direction of a backhaul line: transmissions one at a time in arrival order, each ``seconds``
    long; ``then(rid)`` when its last bit is sent. ``busy_s``: time spent transmitting."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.queue: deque[tuple[int, float, Callable[[int], None]]] = deque()
        self.active = False
        self.busy_s = 0.0

    def submit(self, rid: int, seconds: float, then: Callable[[int], None]) -> None:
        if self.active:
            self.queue.append((rid, seconds, then))
        else:
            self.active = True
            self._start(rid, seconds, then)

    def _start(self, rid: int, seconds: float, then: Callable[[int], None]) -> None:
        self.busy_s += seconds
        self.env.timeout(seconds).callbacks.append(lambda _e: self._end(rid, then))

    def _end(self, rid: int, then: Callable[[int], None]) -> None:
        if self.queue:
            self._start(*self.queue.popleft())
        else:
            self.active = False
        then(rid)


@dataclass(frozen=True)
class _Station:
    """Per cell or server: its own levels (each a :class:`Tee` into the station's total)."""

    in_station: Tee
    busy: Tee
    waiting: Tee


def _station(t0: float, t1: float, total: dict[str, Level]) -> _Station:
    return _Station(Tee(t0, t1, total["in_station"]), Tee(t0, t1, total["busy"]), Tee(t0, t1, total["waiting"]))


def static_servers(sc: Scenario) -> list[int]:
    """Each fleet group's server under ``static`` (by group name, else by its cell's name; the only server
    when there is one; -1 when none is given)."""
    names = sc.server_names
    if len(names) == 1:
        return [0] * len(sc.fleet)
    table = sc.assignment.static if sc.assignment is not None else {}
    out = []
    for g, group in enumerate(sc.fleet):
        name = table.get(group.name) if group.name in table else table.get(sc.cell_names[sc.cell_of(g)])
        out.append(names.index(name) if name is not None else -1)
    return out


class Topology:
    """The cells, servers, backhaul and assignment of one run (see the module docstring).

    ``levels`` are the simulation's station levels (node, uplink, server, downlink), which every cell and
    server also feeds; ``answered(rid)`` marks a request answered on its node."""

    def __init__(self, env: simpy.Environment, rec: Records, sc: Scenario, workload: Workload,
                 levels: dict[str, dict[str, Level]], answered: Callable[[int], None]) -> None:
        self.env, self.rec, self.sc, self.workload, self.answered = env, rec, sc, workload, answered
        self.hetero = configs_of(workload)  # groups of different models, splits or codecs
        t0, t1 = sc.warmup, sc.duration
        seed, cells, servers = sc.seed, sc.cell_specs, sc.server_specs
        self.node_cell = [sc.cell_of(g) for g, group in enumerate(sc.fleet) for _ in range(group.count)]
        self.node_group = [g for g, group in enumerate(sc.fleet) for _ in range(group.count)]
        self.node_rates = [group.datarate or cells[sc.cell_of(g)].datarate
                           for g, group in enumerate(sc.fleet) for _ in range(group.count)]
        self.positions: list[tuple[float, float] | None] = [None] * len(self.node_cell)
        if any(group.placement is not None for group in sc.fleet):
            self._place()
        self.down_rates = [min(rate, cells[c].downlink_datarate) for rate, c in zip(self.node_rates, self.node_cell)]
        self.schedules = node_schedules(sc, self.node_rates)
        self.up_latency = [c.latency.sampler(cell_stream(seed, i)) for i, c in enumerate(cells)]
        self.down_latency = [c.downlink_latency.sampler(cell_stream(seed, i, 1)) for i, c in enumerate(cells)]
        self.cell_levels = [{d: _station(t0, t1, levels[d]) for d in ("uplink", "downlink")} for _ in cells]
        self.links: list[Link] = [self._link(c) for c in range(len(cells))]
        self.server_levels = [_station(t0, t1, levels["server"]) for _ in servers]
        self.servers = [self._server(s) for s in range(len(servers))]
        self.decode = [workload.server_decode(s).sampler(unit_stream(seed, s, 1)) for s in range(len(servers))]
        self.decodes: list[list[Callable[[], float]]] | None = None  # per server and configuration
        if self.hetero is not None:
            self.decodes = [[self.hetero.config_decode(s, k).sampler(unit_stream(seed, s, 1, *((k,) if k else ())))
                             for k in range(len(self.hetero.configs.labels))] for s in range(len(servers))]
        self.result_size = workload.result_drawer(unit_stream(seed, 0, 2))
        self.gpus = [srv.gpus for srv in servers]
        self.outstanding = [0] * len(servers)
        self.loads = [0.0] * len(servers)
        self.static = static_servers(sc)
        spec = sc.assignment
        self.policy = ASSIGNMENTS.get(spec.policy if spec is not None else "static", "assignment.policy")(
            AssignmentContext(len(servers), self.static, topology_stream(seed, 2)))
        bh = sc.backhaul
        self.backhaul_rate = bh.datarate if bh is not None else 0.0
        lines = (len(cells) if bh.shared == "per_cell" else len(servers)) if bh is not None else 0
        self.lines_up = [BackhaulLine(env) for _ in range(lines)]
        self.lines_down = [BackhaulLine(env) for _ in range(lines)]
        self.per_cell = bh is not None and bh.shared == "per_cell"
        self.bh_up = bh.latency.sampler(topology_stream(seed, 3, 0)) if bh is not None else None
        self.bh_down = bh.latency.sampler(topology_stream(seed, 3, 1)) if bh is not None else None
        fb = spec.fallback if spec is not None else None
        self.fallback = fb
        self.local_time = fb.local.sampler(topology_stream(seed, 4)) if fb is not None else None
        self.rtt = [RecentRtt(fb.rtt_window) for _ in self.node_cell] if fb is not None and fb.rtt is not None else None
        self.up = [True] * len(servers)
        self.outages = [getattr(srv, "outages", None) for srv in servers]
        self.down_s = [0.0] * len(servers)  # time each server was down inside the window
        self._down_since = [0.0] * len(servers)
        for s, spec_s in enumerate(self.outages):
            if spec_s is not None:
                env.process(self._outages(spec_s, (5, s), functools.partial(self._fail, s),
                                          functools.partial(self._recover, s)))
        self.cell_down_s = [0.0] * len(cells)
        self._cell_down_since: list[float | None] = [None] * len(cells)
        for c, cell in enumerate(cells):
            cspec = getattr(cell, "outages", None)
            if cspec is None:
                continue
            for ch in self._gates(c):
                ch.lose, ch.on_lost = cspec.fate == "lost", self._cell_lost
            env.process(self._outages(cspec, (7, c), functools.partial(self._cell_fail, c),
                                      functools.partial(self._cell_recover, c)))

    # -- construction ---------------------------------------------------------------------------
    def _place(self) -> None:
        """Placed groups' nodes: positions (given, or uniform in the area from stream (4, 6, group)), the
        cell each joins (the nearest; the group's cell if it names one) and the rate its distance gets."""
        sc, radio = self.sc, self.sc.radio
        assert radio is not None
        pl = radio.path_loss
        path_loss = PathLoss(pl.tx_power_dbm, pl.loss_at_1m_db, pl.exponent) if pl is not None else None
        bands = [Band(b.rate, b.min_rssi_dbm, b.max_distance_m) for b in radio.rates]
        aps = [c.position for c in sc.cells]
        k = 0
        for g, group in enumerate(sc.fleet):
            p = group.placement
            if p is None:
                k += group.count
                continue
            if p.area is not None:
                points = place_uniform(group.count, p.area[0], p.area[1], topology_stream(sc.seed, 6, g))
            else:
                points = [(float(x), float(y)) for x, y in p.positions]
            allowed = [sc.cell_of(g)] if group.cell is not None else None
            for i, xy in enumerate(points):
                c, d = attach(xy, [a for a in aps if a is not None], allowed)
                rate = rate_of(d, bands, path_loss)
                if rate is None:
                    heard = f", {path_loss.rssi_dbm(d):.1f} dBm" if path_loss is not None else ""
                    raise ConfigError(f"fleet.{g}.placement", f"node {i} at ({xy[0]:.1f}, {xy[1]:.1f}) m",
                                      f"a position some band of radio.rates covers (it is {d:.1f} m from cell "
                                      f"{sc.cells[c].name}{heard})")
                self.positions[k], self.node_cell[k], self.node_rates[k] = xy, c, rate
                k += 1

    def _link(self, c: int) -> Link:
        spec, lv = self.sc.cell_specs[c], self.cell_levels[c]
        ctx = LinkContext(env=self.env, rec=self.rec, spec=spec, rates=self.node_rates,
                          down_rate=spec.downlink_datarate, rng=cell_stream(self.sc.seed, c, 2),
                          on_delivered=self._delivered, on_returned=self._returned,
                          up=StationLevels(lv["uplink"].in_station, lv["uplink"].busy),
                          down=StationLevels(lv["downlink"].in_station, lv["downlink"].busy),
                          node_schedules=self.schedules)
        return LINKS.get(spec.model, f"cells.{c}.model" if self.sc.cells else "link.model")(ctx)

    def _server(self, s: int) -> Server:
        srv, lv = self.sc.server_specs[s], self.server_levels[s]
        kind = FallibleServer if getattr(srv, "outages", None) is not None else Server
        hetero, rec = self.hetero, self.rec
        if hetero is not None:  # one queue per model and split, each with its own batch times
            queue, n = hetero.configs.queue, hetero.configs.queues
            times = [hetero.queue_batch_time(s, q, unit_stream(self.sc.seed, s, *((3, q) if q else ())))
                     for q in range(n)]
            qb = QueueBatcher(lambda rid: queue[rec.config[rid]], n, gpus=srv.gpus, max_batch=srv.batching.max_batch,
                              max_delay=srv.batching.max_delay, capacity=srv.queue_capacity, timeout=srv.timeout)
            return kind(self.env, rec, batcher=qb, on_done=self._served, on_lost=self._lost, batch_time=times[0],
                        batch_times=times, levels=ServerLevels(lv.in_station, lv.waiting, lv.busy))
        batcher = Batcher(gpus=srv.gpus, max_batch=srv.batching.max_batch, max_delay=srv.batching.max_delay,
                          capacity=srv.queue_capacity, timeout=srv.timeout)
        return kind(self.env, self.rec, batcher=batcher, on_done=self._served, on_lost=self._lost,
                      batch_time=self.workload.server_batch_time(s, unit_stream(self.sc.seed, s)),
                      levels=ServerLevels(lv.in_station, lv.waiting, lv.busy))

    def uplinks(self) -> list[Callable[[int, float], None]]:
        """``send`` of each node: its cell's uplink."""
        return [self.links[c].uplink.submit for c in self.node_cell]

    # -- decisions ------------------------------------------------------------------------------
    def _candidates(self, group: int) -> Sequence[int]:
        s = self.static[group]
        return (s,) if self.sc.assignment is None or self.sc.assignment.policy == "static" else range(len(self.gpus))

    def local(self, rid: int, now: float) -> float | None:
        """The local fallback's decision as a node starts a frame: seconds of local compute, or None."""
        fb = self.fallback
        assert fb is not None and self.local_time is not None
        node = self.rec.node[rid]
        least = min((self.outstanding[s] for s in self._candidates(self.node_group[node]) if self.up[s]),
                    default=math.inf)
        rtt = self.rtt[node].mean(now) if self.rtt is not None else None
        return self.local_time() if falls_back(least, rtt, fb.queue, fb.rtt) else None

    def _assign(self, rid: int) -> int:
        """The server for ``rid`` (counted as outstanding there), or -1 when the one chosen is down."""
        s = self.policy.choose(self.rec.group[rid], self.loads)
        self.rec.server[rid] = s
        if not self.up[s]:
            self._unserved(rid)
            return -1
        n = self.outstanding[s] + 1
        self.outstanding[s] = n
        self.loads[s] = n / self.gpus[s]
        return s

    def _release(self, s: int) -> None:
        n = self.outstanding[s] - 1
        self.outstanding[s] = n
        self.loads[s] = n / self.gpus[s] if self.up[s] else math.inf  # a server that is down stays at inf

    # -- hand-offs --------------------------------------------------------------------------------
    def _delivered(self, rid: int) -> None:
        rec, now = self.rec, self.env.now
        s = self._assign(rid)
        latency = self.up_latency[rec.cell[rid]]()
        if s < 0:
            return
        if self.bh_up is not None:
            self.env.timeout(latency).callbacks.append(lambda _e: self._backhaul_up(rid))
            return
        self._arrive(rid, s, now + latency)

    def _backhaul_up(self, rid: int) -> None:
        rec, s = self.rec, self.rec.server[rid]
        line = self.lines_up[rec.cell[rid] if self.per_cell else s]
        line.submit(rid, rec.payload_bytes[rid] / self.backhaul_rate, self._backhaul_up_done)

    def _backhaul_up_done(self, rid: int) -> None:
        assert self.bh_up is not None
        self._arrive(rid, self.rec.server[rid], self.env.now + self.bh_up())

    def _arrive(self, rid: int, s: int, at: float) -> None:
        """The payload reaches server ``s`` at ``at`` (then decodes and queues)."""
        self.rec.server_arrival_s[rid] = at
        decodes = self.decodes
        delay = at - self.env.now + (self.decode[s]() if decodes is None else decodes[s][self.rec.config[rid]]())
        arrive = self.servers[s].arrive if self.outages[s] is None else lambda r: self._reach(r, s)
        if delay > 0.0:
            self.env.timeout(delay).callbacks.append(lambda _e: arrive(rid))
        else:
            arrive(rid)

    def _reach(self, rid: int, s: int) -> None:
        """``rid`` reaches server ``s``, which may have gone down meanwhile."""
        if self.up[s]:
            self.servers[s].arrive(rid)
        else:
            self._release(s)
            self._unserved(rid)

    # -- outages ----------------------------------------------------------------------------------
    def _outages(self, spec: OutageSpec | CellOutageSpec, key: tuple[int, int], fail: Callable[[], None],
                 recover: Callable[[], None]) -> Generator[simpy.Event, None, None]:
        """A server's or cell's outages: the scripted ``[down, up]`` times, or alternating exponential times
        to failure and to repair from its own stream (4, *key)."""
        env = self.env
        if spec.at:
            for down, up in spec.at:
                yield env.timeout(max(0.0, down - env.now))
                fail()
                yield env.timeout(up - env.now)
                recover()
            return
        assert spec.mttf is not None and spec.mttr is not None
        rng = topology_stream(self.sc.seed, *key)
        while True:
            yield env.timeout(float(rng.exponential(spec.mttf)))
            fail()
            yield env.timeout(float(rng.exponential(spec.mttr)))
            recover()

    def _gates(self, c: int) -> tuple[GatedFifoChannel, GatedFifoChannel]:
        link = self.links[c]
        up, down = link.uplink, link.downlink
        assert isinstance(up, GatedFifoChannel) and isinstance(down, GatedFifoChannel)
        return up, down

    def _cell_fail(self, c: int) -> None:
        self._cell_down_since[c] = self.env.now
        for ch in self._gates(c):
            ch.halt()
            if ch.lose:
                for rid in ch.drop_all():
                    self._cell_lost(rid)

    def _cell_recover(self, c: int) -> None:
        since = self._cell_down_since[c]
        assert since is not None
        self.cell_down_s[c] += self._window_overlap(since, self.env.now)
        self._cell_down_since[c] = None
        for ch in self._gates(c):
            ch.resume()

    def _cell_lost(self, rid: int) -> None:
        self.rec.status[rid] = _CELL_FAILED
        self.rec.finished_s[rid] = self.env.now

    def _window_overlap(self, t0: float, t1: float) -> float:
        return max(0.0, min(t1, self.sc.duration) - max(t0, self.sc.warmup))

    def _fail(self, s: int) -> None:
        now = self.env.now
        self.up[s] = False
        self._down_since[s] = now
        server = self.servers[s]
        assert isinstance(server, FallibleServer)
        victims = server.fail()
        self.outstanding[s] -= len(victims)
        self.loads[s] = math.inf
        for rid in victims:
            self._unserved(rid)

    def _recover(self, s: int) -> None:
        now, (t0, t1) = self.env.now, (self.sc.warmup, self.sc.duration)
        self.up[s] = True
        self.loads[s] = self.outstanding[s] / self.gpus[s]
        self.down_s[s] += max(0.0, min(now, t1) - max(self._down_since[s], t0))

    def _unserved(self, rid: int) -> None:
        """``rid`` was on a server that went down, reached one that is down, or was assigned to one that is
        down: lost, or sent again after ``retry_after`` (the outage spec of the server it was on)."""
        rec, now = self.rec, self.env.now
        spec = self.outages[rec.server[rid]] or _LOST
        if spec.fate == "retry" and rec.retries[rid] < spec.max_retries:
            rec.retries[rid] += 1
            token = rec.token(rid)
            self.env.timeout(spec.retry_after).callbacks.append(lambda _e: self._resend(rid, token))
            return
        rec.status[rid] = _FAILED
        rec.finished_s[rid] = now

    def _resend(self, rid: int, token: int) -> None:
        """Send ``rid`` again from its cell to a server chosen now (over the backhaul if there is one)."""
        if self.rec.token(rid) != token:
            return
        s = self._assign(rid)
        if s < 0:
            return
        if self.bh_up is not None:
            self._backhaul_up(rid)
        else:
            self._arrive(rid, s, self.env.now)

    def _lost(self, rid: int) -> None:
        self._release(self.rec.server[rid])

    def _served(self, rid: int) -> None:
        rec = self.rec
        s = rec.server[rid]
        self._release(s)
        size = self.result_size()
        rec.result_bytes[rid] = size
        if self.bh_down is not None:
            line = self.lines_down[rec.cell[rid] if self.per_cell else s]
            line.submit(rid, size / self.backhaul_rate, self._backhaul_down_done)
        else:
            self._down(rid)

    def _backhaul_down_done(self, rid: int) -> None:
        assert self.bh_down is not None
        self.env.timeout(self.bh_down()).callbacks.append(lambda _e: self._down(rid))

    def _down(self, rid: int) -> None:
        rec = self.rec
        size = rec.result_bytes[rid]
        node = rec.node[rid]
        self.links[rec.cell[rid]].downlink.submit(rid, size / self.down_rates[node] if size > 0 else 0.0)

    def _returned(self, rid: int) -> None:
        rec, now = self.rec, self.env.now
        rec.finished_s[rid] = now + self.down_latency[rec.cell[rid]]()
        rec.status[rid] = _OK
        if self.rtt is not None:
            self.rtt[rec.node[rid]].add(now, rec.finished_s[rid] - rec.encode_end_s[rid])

    # -- results ----------------------------------------------------------------------------------
    def unit_levels(self, now: float) -> dict[str, dict[str, dict[str, float]]]:
        """Per cell (uplink and downlink) and per server: time-weighted means over the window."""
        cells: dict[str, dict[str, float]] = {}
        for c, (name, link, lv) in enumerate(zip(self.sc.cell_names, self.links, self.cell_levels)):
            since = self._cell_down_since[c]
            down_c = self.cell_down_s[c] + (self._window_overlap(since, now) if since is not None else 0.0)
            d: dict[str, float] = {"down_share": down_c / (self.sc.duration - self.sc.warmup)}
            for direction in ("uplink", "downlink"):
                st = lv[direction]
                inside, busy = st.in_station.mean(now), st.busy.mean(now)
                d[f"{direction}_in_station"] = inside
                d[f"{direction}_busy"] = busy
                d[f"{direction}_waiting"] = link.waiting(inside, busy, st.waiting.mean(now))
            cells[name] = d
        servers: dict[str, dict[str, float]] = {}
        t0, t1 = self.sc.warmup, self.sc.duration
        for s, (name, srv, st, gpus) in enumerate(zip(self.sc.server_names, self.servers, self.server_levels,
                                                      self.gpus)):
            busy = st.busy.mean(now)
            down = self.down_s[s] + (0.0 if self.up[s] else max(0.0, min(now, t1) - max(self._down_since[s], t0)))
            servers[name] = {"in_station": st.in_station.mean(now), "waiting": st.waiting.mean(now),
                             "busy_gpus": busy, "gpus": float(gpus), "gpu_utilisation": busy / gpus,
                             "batches": float(srv.batches), "down_share": down / (t1 - t0)}
        return {"cells": cells, "servers": servers}

    def waiting(self, direction: str, now: float) -> float:
        """The mean number waiting in ``direction`` summed over the cells (each by its own link model)."""
        return sum(link.waiting(lv[direction].in_station.mean(now), lv[direction].busy.mean(now),
                                lv[direction].waiting.mean(now)) for link, lv in zip(self.links, self.cell_levels))


def node_schedules(sc: Scenario, rates: Sequence[float]) -> list[RateSchedule | None]:
    """Each node's uplink rate over time as a factor of its rate ``rates[i]`` (``fleet[].rate_trace``; None
    for a node without one, and an empty list when no group has one)."""
    if all(group.rate_trace is None for group in sc.fleet):
        return []
    out: list[RateSchedule | None] = []
    for group in sc.fleet:
        trace = group.rate_trace
        for _ in range(group.count):
            rate = rates[len(out)]
            out.append(RateSchedule(trace.time_s, [r / rate for r in trace.rate]) if trace is not None else None)
    return out


def check_topology(sc: Scenario) -> None:
    """What the schema cannot know about a topology: each cell's link model and the assignment policy
    are registered names, and a cell with a rate trace or a packet trace, or whose nodes have one, uses
    ``shared_fifo`` (:class:`ConfigError`)."""
    for g, group in enumerate(sc.fleet):
        if group.rate_trace is None:
            continue
        joins = range(len(sc.cell_specs)) if group.placement is not None and group.cell is None else [sc.cell_of(g)]
        for c in joins:
            link = sc.cell_specs[c]
            if link.model != "shared_fifo" or link.rate_trace is not None or link.packet_trace is not None:
                raise ConfigError(f"fleet.{g}.rate_trace", "a node rate trace",
                                  f"a shared_fifo cell without a rate or packet trace of its own (cell "
                                  f"{sc.cell_names[c]}: {link.model})")
    for c, link in enumerate(sc.cell_specs):
        where = f"cells.{c}" if sc.cells else "link"
        for name, trace in (("packet_trace", link.packet_trace), ("downlink.packet_trace", link.downlink.packet_trace)):
            if trace is not None and link.model != "shared_fifo":
                raise ConfigError(f"{where}.{name}", link.model, "model shared_fifo (the only link model that "
                                  "replays a packet-delivery trace so far)")
    if not sc.cells and sc.assignment is None:
        return
    for c, cell in enumerate(sc.cells):
        if cell.outages is not None and cell.model != "shared_fifo":
            raise ConfigError(f"cells.{c}.outages", cell.model, "model shared_fifo (the only link model that "
                              "can go down so far)")
        LINKS.get(cell.model, f"cells.{c}.model")
        if cell.rate_trace is not None and cell.model != "shared_fifo":
            raise ConfigError(f"cells.{c}.rate_trace", cell.model, "model shared_fifo (the only link model that "
                              "follows a rate trace so far)")
    if sc.assignment is not None:
        ASSIGNMENTS.get(sc.assignment.policy, "assignment.policy")

"""Wire nodes, the shared link and the server into one SimPy environment and run it.

Every node and station draws from its own named stream of the scenario's seed (:mod:`testbed.streams`:
node ``i`` of group ``g`` uses spawn key ``(0, g, i)``, the link ``(1,)``, the server ``(2,)``), so adding
a node leaves the other nodes' draws unchanged. The link is whatever model ``link.model`` names in the
link registry (:mod:`testbed.sim.links`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from testbed.config.resolve import Resolved, as_resolved
from testbed.config.schema import Scenario
from testbed.core.adaptive import SplitController, SplitPolicy
from testbed.core.arrivals import arrival_times
from testbed.core.monitor import Level
from testbed.core.nestquant import controller_for
from testbed.core.policy import Batcher, NodePolicy, QueueBatcher
from testbed.core.records import STATUS, Records, RowSink, StreamingRecords, expected_requests
from testbed.core.workload import SyntheticWorkload, Workload, configs_of
from testbed.dists import constant_of
from testbed.errors import ConfigError
from testbed.sim.alarm import DelayLine
from testbed.sim.front import Front, window_for
from testbed.sim.links import LINKS, Link, LinkContext, StationLevels
from testbed.sim.node import Node, NodeLevels
from testbed.sim.server import Server, ServerLevels
from testbed.sim.topology import Topology, check_topology, node_schedules
from testbed.streams import adaptive_stream, link_stream, node_stream, server_stream

__all__ = ["STATION_NAMES", "SimResult", "Simulation", "expected_requests", "simulate"]

_OK = STATUS.index("ok")
STATION_NAMES = ("node", "uplink", "server", "downlink")


def _station_levels(t0: float, t1: float) -> dict[str, dict[str, Level]]:
    """Per station, the time-weighted number inside, waiting, and busy over ``[t0, t1]``."""
    return {name: {"in_station": Level(t0, t1), "waiting": Level(t0, t1), "busy": Level(t0, t1)}
            for name in STATION_NAMES}


def _means(levels: dict[str, dict[str, Level]], now: float) -> dict[str, dict[str, float]]:
    """Time-weighted means of every level, with each station's peak and open count at ``now``."""
    out = {name: {key: lvl.mean(now) for key, lvl in d.items()} for name, d in levels.items()}
    for name, d in levels.items():
        out[name]["peak_in_station"] = float(d["in_station"].peak)
        out[name]["open_at_end"] = float(d["in_station"].value)
    return out


@dataclass
class SimResult:
    """Records and station monitors of one run (``streamed``: the records went to a sink, ``records``
    is empty)."""

    records: pd.DataFrame
    levels: dict[str, dict[str, float]]
    window: tuple[float, float]
    end_time: float
    gpus: int
    events: int = 0
    meta: dict[str, object] = field(default_factory=dict)
    frames: list[int] = field(default_factory=list)  # frames each node generated
    streamed: bool = False


class Simulation:
    """One run of a scenario. Build it, then :meth:`run` it once.

    With a ``sink``, finished rows are handed to it as the run goes on
    (:class:`~testbed.core.records.StreamingRecords`) and the result holds no records. Where the nodes
    and the uplink need no events (:meth:`_front_fits`) they are computed ahead of the clock
    (:mod:`testbed.sim.front`), with the same rows; ``ahead=False`` drives them with events instead
    (the reference the front is tested against, and the bench's second figure)."""

    def __init__(self, scenario: Scenario | Resolved, workload: Workload | None = None,
                 sink: RowSink | None = None, *, ahead: bool = True) -> None:
        self.resolved = res = as_resolved(scenario)
        self.sc = sc = res.scenario
        check_topology(sc)  # link models that must be shared_fifo, cells' models, the policy
        self.workload = workload or SyntheticWorkload(sc)
        self.offload = bool(getattr(self.workload, "offload", True))
        self.env = simpy.Environment()
        self._timeout = self.env.timeout  # bound once (hot path)
        self.rec: Records = Records(expected_requests(sc)) if sink is None else StreamingRecords(sink)
        self.hetero = hetero = configs_of(self.workload)  # groups of different models, splits or codecs
        self._decodes: list[Callable[[], float]] | None = None
        if hetero is not None:
            self.rec.group_config = list(hetero.configs.of_group)
        self.levels = _station_levels(sc.warmup, sc.duration)
        self._up_latency = sc.link.latency.sampler(link_stream(sc.seed))
        self._down_latency = sc.link.downlink_latency.sampler(link_stream(sc.seed, 1))
        decode = self.workload.decode()
        self._decode = decode.sampler(server_stream(sc.seed, 1))
        # constants are not sampled (they draw no random numbers, so the other draws are unchanged)
        up, dec, down = constant_of(sc.link.latency), constant_of(decode), constant_of(sc.link.downlink_latency)
        self._fixed_up = (up, dec) if up is not None and dec is not None else None
        if hetero is not None:  # decode per configuration (configuration 0 on the one-configuration stream)
            self._decodes = [hetero.config_decode(0, k).sampler(server_stream(sc.seed, 1, *((k,) if k else ())))
                             for k in range(len(hetero.configs.labels))]
            self._fixed_up = None
        self._fixed_down = down
        # a fixed hop to the server: arrivals come in delivery order, on a line of reused events
        self._hop: DelayLine | None = None
        if self._fixed_up is not None and self._fixed_up[0] + self._fixed_up[1] > 0.0:
            self._hop = DelayLine(self.env, self._fixed_up[0] + self._fixed_up[1], self._arrive_at_server)
        self._result_size = self.workload.result_drawer(server_stream(sc.seed, 2))
        self._down_rate = sc.link.downlink_datarate
        self.topology: Topology | None = None
        if sc.topology:  # several cells or servers (testbed.sim.topology); cell 0 and server 0 below
            self.topology = topo = Topology(self.env, self.rec, sc, self.workload, self.levels,
                                            lambda rid: self._answered_on_node(rid, 0.0))
            self.node_rates, self._down_rates = topo.node_rates, topo.down_rates
            self.link, self.server = topo.links[0], topo.servers[0]
        else:
            self.node_rates = [g.datarate or sc.link.datarate for g in sc.fleet for _ in range(g.count)]
            self._down_rates = [min(rate, self._down_rate) for rate in self.node_rates]  # results' rates
            self.link = self._build_link()
            self.server = self._build_server()
        self.uplink, self.downlink = self.link.uplink, self.link.downlink
        self._splits: list[SplitController | None] | None = None  # each node's, when any group adapts
        self.front: Front | None = None
        self.nodes: list[Node] = []
        if ahead and self._front_fits():
            self.front = self._build_front()
        else:
            self.nodes = self._build_nodes()

    def _build_link(self) -> Link:
        """The link model ``link.model`` names, with its own stream (1, 2). Unless a group adapts its split
        (it learns of answers as they come), the link may hand each answer's end over as soon as it knows it
        (``_sent_down``)."""
        sc, lv = self.sc, self.levels
        ahead = all(group.adaptive is None for group in sc.fleet)
        ctx = LinkContext(env=self.env, rec=self.rec, spec=sc.link, rates=self.node_rates,
                          down_rate=self._down_rate, rng=link_stream(sc.seed, 2),
                          on_delivered=self._delivered, on_returned=self._returned,
                          up=StationLevels(lv["uplink"]["in_station"], lv["uplink"]["busy"]),
                          down=StationLevels(lv["downlink"]["in_station"], lv["downlink"]["busy"]),
                          node_schedules=node_schedules(sc, self.node_rates),
                          on_sent_down=self._sent_down if ahead else None, horizon=sc.duration + sc.drain_s)
        return LINKS.get(sc.link.model, "link.model")(ctx)

    def _build_server(self) -> Server:
        """The batching server; batch times from the server's stream (2,)."""
        sc, env, rec, lv = self.sc, self.env, self.rec, self.levels
        server_rng = server_stream(sc.seed)
        srv = sc.server
        hetero = self.hetero
        if hetero is not None:  # one queue per model and split, each with its own batch times
            cfg = hetero.configs
            queue = cfg.queue
            times = [hetero.queue_batch_time(0, q, server_rng if q == 0 else server_stream(sc.seed, 3, q))
                     for q in range(cfg.queues)]
            batcher: Batcher = QueueBatcher(lambda rid: queue[rec.config[rid]], cfg.queues, gpus=srv.gpus,
                                            max_batch=srv.batching.max_batch, max_delay=srv.batching.max_delay,
                                            capacity=srv.queue_capacity, timeout=srv.timeout)
            return Server(env, rec, batcher=batcher, batch_time=times[0], batch_times=times, on_done=self._served,
                          levels=ServerLevels(**lv["server"]))
        return Server(env, rec, batcher=Batcher(gpus=srv.gpus, max_batch=srv.batching.max_batch,
                                                max_delay=srv.batching.max_delay,
                                                capacity=srv.queue_capacity, timeout=srv.timeout),
                      batch_time=self.workload.batch_time(server_rng), on_done=self._served,
                      levels=ServerLevels(**lv["server"]))

    def _policy(self, g: int, i: int, rng: np.random.Generator) -> NodePolicy:
        """Node ``i`` of group ``g``'s policy (a static group: no adaptive split)."""
        group, res = self.sc.fleet[g], self.resolved
        return NodePolicy(self.workload.frame_drawer(g, i, rng), capacity=group.queue.capacity,
                          drop_oldest=group.queue.policy == "drop_oldest",
                          controller=controller_for(group.nestquant, res.nestquant[g], res.node_profiles[g]))

    def _front_fits(self) -> bool:
        """Whether the nodes and the uplink can run ahead of the clock (:mod:`testbed.sim.front`): one link
        and one server, a ``shared_fifo`` uplink at fixed rates, every group offloading, no adaptive split and no
        NestQuant switching."""
        sc = self.sc
        link = sc.link
        return (self.topology is None and self.offload and link.model == "shared_fifo"
                and link.rate_trace is None and link.packet_trace is None and link.downlink.packet_trace is None
                and getattr(link, "outages", None) is None
                and all(s is None for s in node_schedules(sc, self.node_rates))
                and all(g.adaptive is None
                        and (g.nestquant is None or self.resolved.nestquant[k] is None) for k, g in enumerate(sc.fleet)))

    def _build_front(self) -> Front:
        """The nodes and the uplink computed ahead (:class:`~testbed.sim.front.Front`); the same streams
        and policies as :meth:`_build_nodes`."""
        sc, lv = self.sc, self.levels
        groups, policies, arrivals = [], [], []
        for g, group in enumerate(sc.fleet):
            for i in range(group.count):
                rng = node_stream(sc.seed, g, i)
                arrivals.append(arrival_times(group.arrivals, i, rng))
                policies.append(self._policy(g, i, rng))
                groups.append(g)
        horizon = sc.duration + sc.drain_s
        rate = expected_requests(sc) / sc.duration if sc.duration > 0 else 0.0
        return Front(self.env, self.rec, groups=groups, policies=policies, arrivals=arrivals, stop_at=sc.duration,
                     horizon=horizon, rates=self.node_rates, window_s=window_for(rate, len(groups), horizon),
                     deliver=self._server_entry, arrive=self.server.arrive, fixed_hop=self._fixed_up is not None,
                     node_levels=(lv["node"]["in_station"], lv["node"]["waiting"], lv["node"]["busy"]),
                     up_levels=(lv["uplink"]["in_station"], lv["uplink"]["busy"]), window=(sc.warmup, sc.duration))

    def _build_nodes(self) -> list[Node]:
        """One node per fleet member; arrivals and frame draws from its stream (0, g, i)."""
        sc, env, rec, lv = self.sc, self.env, self.rec, self.levels
        topo = self.topology
        sends = topo.uplinks() if topo is not None else None
        local = topo.local if topo is not None and topo.fallback is not None and self.offload else None
        answer = topo.answered if topo is not None else None
        nodes: list[Node] = []
        for g, group in enumerate(sc.fleet):
            for i in range(group.count):
                k = len(nodes)
                send = (sends[k] if sends is not None else self.uplink.submit) if self.offload else self._answered_on_node
                rng = node_stream(sc.seed, g, i)
                arrivals = arrival_times(group.arrivals, i, rng)
                if group.adaptive is not None:
                    policy = self._adaptive_policy(g, i, rng)
                else:
                    policy = self._policy(g, i, rng)
                node = Node(env, rec, index=k, group=g, policy=policy, arrivals=arrivals, stop_at=sc.duration,
                            rate=self.node_rates[k], send=send, levels=NodeLevels(**lv["node"]),
                            cell=topo.node_cell[k] if topo is not None else 0, local=local, answer=answer)
                nodes.append(node)
        if any(group.adaptive is not None for group in sc.fleet):
            self._splits = [node.policy.split for node in nodes]
        return nodes

    def _adaptive_policy(self, g: int, i: int, rng: np.random.Generator) -> NodePolicy:
        """Node ``i`` of adaptive group ``g``: a :class:`SplitController` over the group's configurations
        (the workload's ``adaptive_drawer`` draws a frame in any of them, ``variant_configs`` their ids)."""
        group, wl = self.sc.fleet[g], self.workload
        assert group.adaptive is not None
        drawer = getattr(wl, "adaptive_drawer", None)
        configs = getattr(wl, "variant_configs", None)
        if drawer is None or configs is None:
            raise ConfigError(f"fleet.{g}.adaptive", "an adaptive group", "the pipeline workload (a model section)")
        p = group.adaptive.policy
        split = SplitController(SplitPolicy(p.signal, p.up, p.down, p.hold_s, p.alpha, p.hold_jitter_s), len(configs[g]),
                                adaptive_stream(self.sc.seed, g, i) if p.hold_jitter_s > 0 else None)
        return NodePolicy(lambda: (-1, 0.0, 0.0, 0.0), capacity=group.queue.capacity,
                          drop_oldest=group.queue.policy == "drop_oldest", split=split,
                          draw_in=drawer(g, i, rng), configs=tuple(configs[g]))

    # -- hand-offs between stations (events are the only coupling) --------------------------
    def _answered_on_node(self, rid: int, _seconds: float) -> None:
        """Split ``none``: the answer is ready on the node, nothing is sent."""
        self.rec.finished_s[rid] = self.env.now
        self.rec.status[rid] = _OK

    def _delivered(self, rid: int) -> None:
        rec = self.rec
        splits = self._splits
        if splits is not None:  # adaptive nodes learn that their bytes were delivered
            split = splits[rec.node[rid]]
            if split is not None:
                split.delivered(rec.payload_bytes[rid])
        delay = self._server_entry(rid, self.env.now)
        hop = self._hop
        if hop is not None:
            hop.push(rid)
        elif delay > 0.0:  # the request rides on the timeout as its value (no closure per request)
            self._timeout(delay, rid).callbacks.append(self._at_server)
        else:
            self.server.arrive(rid)

    def _server_entry(self, rid: int, now: float) -> float:
        """Stamp ``rid``'s arrival at the server for a payload delivered at ``now``; the seconds until it
        queues there (latency and decode, drawn in delivery order unless fixed)."""
        rec = self.rec
        fixed = self._fixed_up
        if fixed is not None:
            latency, decode = fixed
        else:
            decodes = self._decodes
            latency = self._up_latency()
            decode = self._decode() if decodes is None else decodes[rec.config[rid]]()
        rec.server_arrival_s[rid] = now + latency
        rec.server[rid] = 0
        return latency + decode

    def _arrive_at_server(self, rid: int) -> None:
        self.server.arrive(rid)

    def _at_server(self, event: simpy.Event) -> None:
        self.server.arrive(event.value)  # type: ignore[arg-type]  # the timeout's value: its request

    def _sent_down(self, rid: int, end: float) -> None:
        """:meth:`_returned` for an answer whose last bit is sent at ``end`` (now or later)."""
        down = self._fixed_down
        rec = self.rec
        rec.finished_s[rid] = end + (down if down is not None else self._down_latency())
        rec.status[rid] = _OK

    def _served(self, rid: int) -> None:
        size = self._result_size()
        self.rec.result_bytes[rid] = size
        self.downlink.submit(rid, size / self._down_rates[self.rec.node[rid]] if size > 0 else 0.0)

    def _returned(self, rid: int) -> None:
        down = self._fixed_down
        rec = self.rec
        rec.finished_s[rid] = self.env.now + (down if down is not None else self._down_latency())
        rec.status[rid] = _OK
        splits = self._splits
        if splits is not None:  # adaptive nodes see the round trip when the answer arrives
            split = splits[rec.node[rid]]
            if split is not None:
                split.answered(rec.finished_s[rid] - rec.created_s[rid])

    # -- running ------------------------------------------------------------------------------
    def execute(self) -> None:
        """Start every node and run the events to the end of the drain (no results assembled)."""
        for node in self.nodes:
            node.start()
        if self.front is not None:
            self.front.start()
        self.env.run(until=self.sc.duration + self.sc.drain_s)

    def run(self) -> SimResult:
        self.execute()
        now = self.env.now
        self.link.settle(now)
        if self.front is not None:
            self.front.settle(now)
        levels = _means(self.levels, now)
        topo = self.topology
        for name in ("uplink", "downlink"):
            m = levels[name]
            m["waiting"] = (self.link.waiting(m["in_station"], m["busy"], m["waiting"]) if topo is None
                            else topo.waiting(name, now))
        meta: dict[str, object] = {"nodes": self.sc.node_count, "batches": self.server.batches}
        gpus = self.sc.server.gpus
        if topo is not None:
            meta.update(topo.unit_levels(now))
            meta["batches"] = sum(srv.batches for srv in topo.servers)
            gpus = sum(topo.gpus)
        names = tuple(g.name or f"group{i}" for i, g in enumerate(self.sc.fleet))
        window = (self.sc.warmup, self.sc.duration)
        if isinstance(self.rec, StreamingRecords):
            self.rec.close()
            records = pd.DataFrame()
        else:
            records = self.rec.to_frame(names, window)
        return SimResult(records, levels, window, now, gpus, meta=meta,
                         frames=self.front.frames if self.front is not None else [node.frames for node in self.nodes],
                         streamed=isinstance(self.rec, StreamingRecords))


def simulate(scenario: Scenario | Resolved, workload: Workload | None = None, *, ahead: bool = True) -> SimResult:
    """Run ``scenario`` once and return its records and station statistics (``ahead``: as
    :class:`Simulation`'s)."""
    return Simulation(scenario, workload, ahead=ahead).run()

"""Wire nodes, the shared link and the server into one SimPy environment and run it.

Every node and station draws from its own stream of one :class:`numpy.random.SeedSequence`
(node ``i`` of group ``g`` uses spawn key ``(0, g, i)``, the link ``(1,)``, the server ``(2,)``),
so adding a node leaves the other nodes' draws unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from testbed.config.resolve import Resolved, as_resolved
from testbed.config.schema import Scenario
from testbed.core.arrivals import arrival_times
from testbed.sim.links.channels import make_channel
from testbed.core.monitor import Level
from testbed.core.nestquant import controller_for
from testbed.core.policy import Batcher, NodePolicy
from testbed.sim.node import Node, NodeLevels
from testbed.core.records import STATUS, Records
from testbed.sim.server import Server, ServerLevels
from testbed.core.workload import SyntheticWorkload, Workload

__all__ = ["Simulation", "SimResult", "simulate", "STATION_NAMES"]

_OK = STATUS.index("ok")
STATION_NAMES = ("node", "uplink", "server", "downlink")


def expected_requests(sc: Scenario) -> int:
    """Frames the fleet will generate (mean), to size the record arrays once."""
    total = 0.0
    for g in sc.fleet:
        a = g.arrivals
        if a.kind == "trace":
            per_node = len(a.trace_times) if not a.trace_nodes else len(a.trace_times) / max(1, g.count)
        else:
            per_node = (a.rate or 0.0) * sc.duration
        total += g.count * per_node
    return int(total * 1.01 + 4 * math.sqrt(total) + 64)


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class SimResult:
    """Records and station monitors of one run."""

    records: pd.DataFrame
    levels: dict[str, dict[str, float]]
    window: tuple[float, float]
    end_time: float
    gpus: int
    events: int = 0
    meta: dict[str, object] = field(default_factory=dict)


class Simulation:
    """One run of a scenario. Build it, then :meth:`run` it once."""

    def __init__(self, scenario: Scenario | Resolved, workload: Workload | None = None) -> None:
        self.resolved = res = as_resolved(scenario)
        self.sc = sc = res.scenario
        self.workload = workload or SyntheticWorkload(scenario)
        self.offload = bool(getattr(self.workload, "offload", True))
        self.env = env = simpy.Environment()
        self.rec = rec = Records(expected_requests(sc))
        t0, t1 = sc.warmup, sc.duration
        self.levels = {name: {"in_station": Level(t0, t1), "waiting": Level(t0, t1), "busy": Level(t0, t1)}
                       for name in STATION_NAMES}
        link_rng, server_rng = _stream(sc.seed, 1), _stream(sc.seed, 2)
        self._up_latency = sc.link.latency.sampler(link_rng)
        self._down_latency = sc.link.downlink_latency.sampler(_stream(sc.seed, 1, 1))
        self._decode = self.workload.decode().sampler(_stream(sc.seed, 2, 1))
        self._result_size = self.workload.result_drawer(_stream(sc.seed, 2, 2))
        self._down_rate = sc.link.downlink_datarate
        lv = self.levels
        if sc.link.model == "csma":  # one 802.11 cell carries both directions (testbed/sim/wifi.py)
            from testbed.sim.links.wifi import CsmaCell, dcf_for

            phy = [g.datarate or sc.link.datarate for g in sc.fleet for _ in range(g.count)]
            self.cell = CsmaCell(env, rec, dcf_for(sc.link.csma), phy, self._down_rate, _stream(sc.seed, 1, 2),
                                 self._delivered, self._returned, lv["uplink"]["in_station"],
                                 lv["uplink"]["busy"], lv["downlink"]["in_station"], lv["downlink"]["busy"])
            self.uplink, self.downlink = self.cell.uplink, self.cell.downlink
        else:
            self.uplink = make_channel(sc.link.model, env, rec.tx_start_s, rec.tx_end_s, self._delivered,
                                       lv["uplink"]["in_station"], lv["uplink"]["busy"])
            self.downlink = make_channel(sc.link.model, env, rec.downlink_start_s, rec.downlink_end_s,
                                         self._returned, lv["downlink"]["in_station"], lv["downlink"]["busy"])
        srv = sc.server
        self.server = Server(env, rec, batcher=Batcher(gpus=srv.gpus, max_batch=srv.batching.max_batch,
                                                       max_delay=srv.batching.max_delay,
                                                       capacity=srv.queue_capacity, timeout=srv.timeout),
                             batch_time=self.workload.batch_time(server_rng), on_done=self._served,
                             levels=ServerLevels(**lv["server"]))
        self.nodes: list[Node] = []
        self.node_rates: list[float] = []
        for g, group in enumerate(sc.fleet):
            rate = group.datarate or sc.link.datarate
            for i in range(group.count):
                rng = _stream(sc.seed, 0, g, i)
                arrivals = arrival_times(group.arrivals, i, rng)
                policy = NodePolicy(self.workload.frame_drawer(g, i, rng), capacity=group.queue.capacity,
                                    drop_oldest=group.queue.policy == "drop_oldest",
                                    controller=controller_for(group.nestquant, res.nestquant[g],
                                                              res.node_profiles[g]))
                node = Node(env, rec, index=len(self.nodes), group=g, policy=policy, arrivals=arrivals,
                            stop_at=sc.duration, rate=rate, send=self._send, levels=NodeLevels(**lv["node"]))
                self.nodes.append(node)
                self.node_rates.append(rate)

    # -- hand-offs between stations (events are the only coupling) --------------------------
    def _send(self, rid: int, node: Node) -> None:
        if not self.offload:  # split 'none': the answer is ready on the node
            self.rec.finished_s[rid] = self.env.now
            self.rec.status[rid] = _OK
            return
        self.uplink.submit(rid, self.rec.payload_bytes[rid] / node.rate)

    def _delivered(self, rid: int) -> None:
        rec, now = self.rec, self.env.now
        latency, decode = self._up_latency(), self._decode()
        rec.server_arrival_s[rid] = now + latency
        if latency + decode > 0.0:
            self.env.timeout(latency + decode, rid).callbacks.append(self._decoded)
        else:
            self.server.arrive(rid)

    def _decoded(self, event: simpy.Event) -> None:
        self.server.arrive(event._value)

    def _served(self, rid: int) -> None:
        size = self._result_size()
        self.rec.result_bytes[rid] = size
        rate = self.node_rates[self.rec.node[rid]]
        self.downlink.submit(rid, size / min(rate, self._down_rate) if size > 0 else 0.0)

    def _returned(self, rid: int) -> None:
        self.rec.finished_s[rid] = self.env.now + self._down_latency()
        self.rec.status[rid] = _OK

    # -- running ------------------------------------------------------------------------------
    def execute(self) -> None:
        """Start every node and run the events to the end of the drain (no results assembled)."""
        for node in self.nodes:
            node.start()
        self.env.run(until=self.sc.duration + self.sc.drain_s)

    def run(self) -> SimResult:
        self.execute()
        now = self.env.now
        levels = {name: {key: lvl.mean(now) for key, lvl in d.items()} for name, d in self.levels.items()}
        for name, d in self.levels.items():
            levels[name]["peak_in_station"] = float(d["in_station"].peak)
            levels[name]["open_at_end"] = float(d["in_station"].value)
        if self.sc.link.model != "fair_share":  # one transmission on the air: the rest are waiting
            for name in ("uplink", "downlink"):
                levels[name]["waiting"] = max(0.0, levels[name]["in_station"] - levels[name]["busy"])
        names = tuple(g.name or f"group{i}" for i, g in enumerate(self.sc.fleet))
        return SimResult(self.rec.to_frame(names), levels, (self.sc.warmup, self.sc.duration), now,
                         self.sc.server.gpus, meta={"nodes": len(self.nodes), "batches": self.server.batches})


def simulate(scenario: Scenario | Resolved, workload: Workload | None = None) -> SimResult:
    """Run ``scenario`` once and return its records and station statistics."""
    return Simulation(scenario, workload).run()

"""The emulated fleet: each node makes the simulator's decisions on the nominal clock
(:mod:`testbed.emulate.nominal`), executes them on the wall clock (real head and codec when the
scenario has a model, padded to the charges), and sends its payload through the shared link to the
live server over its own TCP connection.

Node ``i`` of group ``g`` draws from the simulator's stream ``(0, g, i)`` in the same order
(arrival times, then the workload's frame drawer), the uplink latency from ``(1,)``, so both see the
same frames, images, payload sizes, charges and NestQuant modes. Times are taken from
``CLOCK_MONOTONIC`` (shared by the server process) and recorded relative to the run start, divided
by the time scale (scenario seconds).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from testbed.bridge.workload import make_workload
from testbed.config.resolve import Resolved
from testbed.core.arrivals import arrival_times
from testbed.core.nestquant import controller_for
from testbed.core.policy import Charge, NodePolicy
from testbed.core.records import STATUS, Records, expected_requests
from testbed.emulate.clock import sleep_until
from testbed.emulate.nominal import Kind, NodeEvent, node_events
from testbed.emulate.responses import ResponseReader
from testbed.emulate.shaper import LinkShaper
from testbed.emulate.wire import TOP_K, pack_request
from testbed.streams import EMULATION, link_stream, node_stream, stream

__all__ = ["Fleet", "FleetConfig"]

_DROPPED_AT_NODE = STATUS.index("dropped_at_node")


@dataclass
class FleetConfig:
    """Where the server is and how the fleet is emulated."""

    host: str = "127.0.0.1"
    port: int = 0
    time_scale: float = 1.0
    shape_uplink: bool = True        # False: the kernel shapes (tc path)
    uplink_latency: float | None = None  # tc path: the nominal latency, to place tx_end_s
    app_latency: bool = False        # tc path without netem: add the propagation delay here
    compute: bool = True             # run the real head and codec (model scenarios)
    drain_cap: float = 30.0          # scenario seconds to wait for requests in flight
    start_delay: float = 0.3         # wall seconds between connecting and the first arrival
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class _Node:
    index: int
    group: int
    events: Any                      # Iterator[NodeEvent] (decisions on the nominal clock)
    rate: float
    filler: np.random.Generator      # payload bytes of timing-only scenarios
    jobs: asyncio.Queue[tuple[int, Charge] | None] = field(default_factory=asyncio.Queue)
    rids: dict[int, int] = field(default_factory=dict)
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None


class Fleet:
    """The nodes of one resolved scenario, a shared uplink shaper and the records they fill."""

    def __init__(self, res: Resolved, cfg: FleetConfig) -> None:
        self.res, self.sc, self.cfg = res, res.scenario, cfg
        sc = self.sc
        self.k = cfg.time_scale
        self.workload = make_workload(res)
        self.rec = Records(expected_requests(res.scenario))  # the simulator's estimate
        self.nodes = [self._node(g, i) for g, group in enumerate(sc.fleet) for i in range(group.count)]
        self.up_latency = sc.link.latency.sampler(link_stream(sc.seed))
        self.compute = None
        if cfg.compute and sc.model is not None:
            from testbed.emulate.compute import NodeCompute

            self.compute = NodeCompute(res)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="node-cpu")
        self.stats: dict[str, Any] = {"head_overruns": 0, "encode_overruns": 0, "late_arrivals": 0,
                                      "max_arrival_lag_s": 0.0, "payload_size_mismatch": 0, "connection_errors": 0}
        self.t0 = 0.0
        self._sends: set[asyncio.Task[None]] = set()  # strong references until each send is done
        self.meta_end = 0.0
        self.shaper: LinkShaper | None = None
        kernel = None if cfg.shape_uplink else (cfg.uplink_latency or 0.0)
        self.responses = ResponseReader(self.rec, self.rel, self.stats, kernel)

    def _node(self, g: int, i: int) -> _Node:
        sc, res = self.sc, self.res
        group = sc.fleet[g]
        rng = node_stream(sc.seed, g, i)
        arrivals = arrival_times(group.arrivals, i, rng)
        policy = NodePolicy(self.workload.frame_drawer(g, i, rng), capacity=group.queue.capacity,
                            drop_oldest=group.queue.policy == "drop_oldest",
                            controller=controller_for(group.nestquant, res.nestquant[g], res.node_profiles[g]))
        index = sum(f.count for f in sc.fleet[:g]) + i
        return _Node(index, g, node_events(policy, arrivals, sc.duration), group.datarate or sc.link.datarate,
                     stream(sc.seed, EMULATION, g, i))

    # -- time ----------------------------------------------------------------------------------
    def rel(self, t: float) -> float:
        """Loop time ``t`` in scenario seconds since the run start."""
        return (t - self.t0) / self.k

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> pd.DataFrame:
        sc, k, loop = self.sc, self.k, asyncio.get_running_loop()
        app_latency = self.cfg.shape_uplink or self.cfg.app_latency
        self.shaper = LinkShaper(sc.link.datarate / k if self.cfg.shape_uplink else None, sc.link.model,
                                 (lambda: self.up_latency() * k) if app_latency else None)
        for node in self.nodes:
            node.reader, node.writer = await asyncio.open_connection(self.cfg.host, self.cfg.port, limit=1 << 16)
        self.t0 = loop.time() + self.cfg.start_delay
        deciders = [loop.create_task(self._decide(n)) for n in self.nodes]
        workers = [loop.create_task(self._work(n)) for n in self.nodes]
        readers = [loop.create_task(self.responses.read(n)) for n in self.nodes]
        await asyncio.gather(*deciders)
        await asyncio.gather(*workers)
        deadline = self.t0 + (sc.duration + min(sc.drain_s, self.cfg.drain_cap)) * k
        await self.responses.wait_all(max(0.0, deadline - loop.time()))
        self.meta_end = self.rel(loop.time())
        for t in readers:
            t.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for node in self.nodes:
            if node.writer is not None:
                node.writer.close()
        self.shaper.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        return self.records()

    async def _decide(self, node: _Node) -> None:
        """Carry out the node's nominal decisions at their wall times."""
        loop = asyncio.get_running_loop()
        for ev in node.events:
            if ev.kind is Kind.DONE:
                continue
            await sleep_until(self.t0 + ev.time * self.k)
            if ev.kind is Kind.ARRIVE:
                self._arrive(node, ev, self.rel(loop.time()) - ev.time)
            elif ev.kind is Kind.DROP:
                rid = node.rids[ev.frame]
                self.rec.status[rid] = _DROPPED_AT_NODE
                self.rec.finished_s[rid] = ev.time
                self.responses.finish_one()
            else:
                assert ev.charge is not None
                node.jobs.put_nowait((node.rids[ev.frame], ev.charge))
        node.jobs.put_nowait(None)

    def _arrive(self, node: _Node, ev: NodeEvent, lag: float) -> None:
        self.stats["max_arrival_lag_s"] = max(self.stats["max_arrival_lag_s"], lag)
        if lag > 0.005:
            self.stats["late_arrivals"] += 1
        rid = self.rec.new(node.index, node.group, ev.frame, ev.time)  # created at its nominal time
        node.rids[ev.frame] = rid
        self.responses.open_one(node.index, ev.frame, rid)

    async def _work(self, node: _Node) -> None:
        """The node's one CPU on the wall clock: head then encode, one frame at a time, padded."""
        while (job := await node.jobs.get()) is not None:
            rid, charge = job
            payload = await self._compute(node, rid, charge)
            task = asyncio.get_running_loop().create_task(self._send(node, rid, payload))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _compute(self, node: _Node, rid: int, c: Charge) -> bytes:
        loop, rec, k = asyncio.get_running_loop(), self.rec, self.k
        start = loop.time()
        rec.image[rid], rec.mode[rid] = c.image, c.mode
        rec.head_start_s[rid] = self.rel(start)
        features = None
        if self.compute is not None:
            features = await loop.run_in_executor(self.pool, self.compute.head_features, c.image)
        if loop.time() - start > c.head * k:
            self.stats["head_overruns"] += 1
        await sleep_until(start + c.head * k)
        head_end = loop.time()
        rec.head_end_s[rid] = self.rel(head_end)
        if self.compute is not None:
            payload = await loop.run_in_executor(self.pool, self.compute.encode, features)
            if len(payload) != int(c.payload):
                self.stats["payload_size_mismatch"] += 1
        else:
            payload = node.filler.bytes(round(c.payload))
        if loop.time() - head_end > c.encode * k:
            self.stats["encode_overruns"] += 1
        # chained on the nominal head end, so timer overshoots do not add up
        await sleep_until(max(start + c.head * k, head_end - 0.002) + c.encode * k)
        rec.encode_end_s[rid] = self.rel(loop.time())
        rec.payload_bytes[rid] = len(payload)
        return payload

    async def _send(self, node: _Node, rid: int, payload: bytes) -> None:
        assert self.shaper is not None and node.writer is not None
        data = pack_request(node.index, int(self.rec.frame[rid]), payload)
        rate = node.rate / self.k if self.cfg.shape_uplink else None
        start, end = await self.shaper.send(node.writer, data, rate)
        self.rec.tx_start_s[rid] = self.rel(start)
        self.rec.tx_end_s[rid] = self.rel(end)

    def records(self) -> pd.DataFrame:
        """The records as the simulator writes them, plus for model scenarios the live server's answers:
        ``prediction`` (top-1) and ``top5_0`` .. ``top5_4`` (its five best classes; -1 where none)."""
        names = tuple(g.name or f"group{i}" for i, g in enumerate(self.sc.fleet))
        df = self.rec.to_frame(names, (self.sc.warmup, self.sc.duration)).copy()
        if self.sc.model is not None:
            top5 = np.full((len(df), TOP_K), -1, dtype=np.int64)
            for rid, t in self.responses.top5.items():
                top5[rid] = t
            df["prediction"] = top5[:, 0]
            for j in range(TOP_K):
                df[f"top5_{j}"] = top5[:, j]
        return df

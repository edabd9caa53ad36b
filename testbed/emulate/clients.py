"""Node clients: each node follows its arrival process, computes (really, padded to its profile's
charge), and sends its payload through the shared link to the live server over its own TCP
connection.

Node ``i`` of group ``g`` draws from the simulator's stream ``(0, g, i)`` in the same order
(arrival times, then the workload's frame drawer), so both see the same frames, images, payload
sizes and charges. Times are taken from ``CLOCK_MONOTONIC`` (shared by the server process) and
recorded relative to the run start, divided by the time scale (scenario seconds).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.config.schema import Scenario
from testbed.core.arrivals import arrival_times
from testbed.core.records import STATUS, Records
from testbed.emulate.clock import sleep_until
from testbed.emulate.shaper import LinkShaper
from testbed.emulate.wire import (
    BAD_PAYLOAD,
    DROPPED,
    OK,
    TIMED_OUT,
    FrameError,
    pack_request,
    read_frame,
    unpack_response,
)

__all__ = ["make_workload", "FleetConfig", "Fleet", "run_fleet"]

_STATUS = {OK: STATUS.index("ok"), DROPPED: STATUS.index("dropped_at_server"),
           TIMED_OUT: STATUS.index("timed_out"), BAD_PAYLOAD: STATUS.index("dropped_at_server")}
_DROPPED_AT_NODE = STATUS.index("dropped_at_node")
_IN_FLIGHT = STATUS.index("in_flight")


def make_workload(sc: Scenario, base_dir: Path | None = None) -> Any:
    """The simulator's workload for ``sc`` (see :func:`testbed.bridge.workload.make_workload`)."""
    from testbed.bridge.workload import make_workload as bridge_workload
    from testbed.config.resolve import resolve

    return bridge_workload(resolve(sc, base_dir))


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


class _Node:
    def __init__(self, index: int, group: int, arrivals: Iterator[float], draw: Callable[[], tuple],
                 capacity: int | None, drop_oldest: bool, rate: float, bytes_rng: np.random.Generator) -> None:
        self.index, self.group, self.arrivals, self.draw = index, group, arrivals, draw
        self.capacity, self.drop_oldest, self.rate, self.bytes_rng = capacity, drop_oldest, rate, bytes_rng
        self.queue: deque[int] = deque()
        self.wake = asyncio.Event()
        self.frames = 0
        self.busy = False
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None


class Fleet:
    """The nodes of one scenario, a shared uplink shaper and the records they fill."""

    def __init__(self, sc: Scenario, cfg: FleetConfig, base_dir: Path | None = None) -> None:
        from testbed.sim.world import _stream, expected_requests

        self.sc, self.cfg = sc, cfg
        self.k = cfg.time_scale
        self.workload = make_workload(sc, base_dir)
        self.rec = Records(expected_requests(sc))
        self.prediction: dict[int, int] = {}
        self.nodes: list[_Node] = []
        for g, group in enumerate(sc.fleet):
            for i in range(group.count):
                rng = _stream(sc.seed, 0, g, i)
                arr = arrival_times(group.arrivals, i, rng)
                draw = self.workload.frame_drawer(g, i, rng)
                self.nodes.append(_Node(len(self.nodes), g, arr, draw, group.queue.capacity,
                                        group.queue.policy == "drop_oldest", group.datarate or sc.link.datarate,
                                        _stream(sc.seed, 3, g, i)))
        self.up_latency = sc.link.latency.sampler(_stream(sc.seed, 1))
        self.compute = None
        if cfg.compute and sc.model is not None:
            from testbed.emulate.compute import NodeCompute

            self.compute = NodeCompute(sc)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="node-cpu")
        self.stats = {"head_overruns": 0, "encode_overruns": 0, "late_arrivals": 0, "max_arrival_lag_s": 0.0,
                      "payload_size_mismatch": 0, "connection_errors": 0}
        self.t0 = 0.0
        self.shaper: LinkShaper | None = None
        self._rid: dict[tuple[int, int], int] = {}
        self._open = 0
        self._all_done = asyncio.Event()
        self._arrivals_over = False

    # -- time ----------------------------------------------------------------------------------
    def _rel(self, t: float) -> float:
        return (t - self.t0) / self.k

    async def _sleep_until(self, t: float) -> None:
        await sleep_until(t)

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> pd.DataFrame:
        sc, k = self.sc, self.k
        loop = asyncio.get_running_loop()
        app_latency = self.cfg.shape_uplink or self.cfg.app_latency
        self.shaper = LinkShaper(sc.link.datarate / k if self.cfg.shape_uplink else None, sc.link.model,
                                 (lambda: self.up_latency() * k) if app_latency else None)
        for node in self.nodes:
            node.reader, node.writer = await asyncio.open_connection(self.cfg.host, self.cfg.port, limit=1 << 16)
        self.t0 = loop.time() + self.cfg.start_delay
        tasks = []
        for node in self.nodes:
            tasks += [loop.create_task(self._arrive(node)), loop.create_task(self._cpu(node)),
                      loop.create_task(self._receive(node))]
        arrival_tasks = tasks[0::3]
        await asyncio.gather(*arrival_tasks)
        self._arrivals_over = True
        for node in self.nodes:
            node.wake.set()
        drain = min(sc.drain_s, self.cfg.drain_cap)
        deadline = self.t0 + (sc.duration + drain) * k
        if self._open > 0 or any(n.queue for n in self.nodes):
            try:
                await asyncio.wait_for(self._all_done.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                pass
        self.meta_end = self._rel(loop.time())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for node in self.nodes:
            if node.writer is not None:
                node.writer.close()
        self.shaper.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        return self.records()

    def _finish_one(self) -> None:
        self._open -= 1
        if self._open == 0 and self._arrivals_over and not any(n.queue for n in self.nodes):
            self._all_done.set()

    async def _arrive(self, node: _Node) -> None:
        loop, rec, k = asyncio.get_running_loop(), self.rec, self.k
        for t in node.arrivals:
            if t >= self.sc.duration:
                return
            await self._sleep_until(self.t0 + t * k)
            lag = self._rel(loop.time()) - t
            self.stats["max_arrival_lag_s"] = max(self.stats["max_arrival_lag_s"], lag)
            if lag > 0.005:
                self.stats["late_arrivals"] += 1
            rid = rec.new(node.index, node.group, node.frames, t)  # created at its nominal time
            self._rid[(node.index, node.frames)] = rid
            node.frames += 1
            self._open += 1
            if (not node.busy and not node.queue) or node.capacity is None or len(node.queue) < node.capacity:
                node.queue.append(rid)
            elif node.drop_oldest and node.queue:
                self._drop(node.queue.popleft(), t)
                node.queue.append(rid)
            else:
                self._drop(rid, t)
            node.wake.set()

    def _drop(self, rid: int, t: float) -> None:
        self.rec.status[rid] = _DROPPED_AT_NODE
        self.rec.finished_s[rid] = t
        self._finish_one()

    async def _cpu(self, node: _Node) -> None:
        """The node's one CPU: head then encode, one frame at a time, padded to the charges."""
        loop, rec, k = asyncio.get_running_loop(), self.rec, self.k
        while True:
            node.busy = False
            if not node.queue:
                if self._arrivals_over:
                    return
                node.wake.clear()
                await node.wake.wait()
                continue
            rid = node.queue.popleft()
            node.busy = True
            image, size, head, encode = node.draw()
            start = loop.time()
            rec.image[rid] = image
            rec.head_start_s[rid] = self._rel(start)
            features = None
            if self.compute is not None:
                features = await loop.run_in_executor(self.pool, self.compute.head_features, image)
            if loop.time() - start > head * k:
                self.stats["head_overruns"] += 1
            await self._sleep_until(start + head * k)
            head_end = loop.time()
            rec.head_end_s[rid] = self._rel(head_end)
            if self.compute is not None:
                payload = await loop.run_in_executor(self.pool, self.compute.encode, features)
                if len(payload) != int(size):
                    self.stats["payload_size_mismatch"] += 1
            else:
                payload = node.bytes_rng.bytes(int(round(size)))
            if loop.time() - head_end > encode * k:
                self.stats["encode_overruns"] += 1
            # chained on the nominal head end, so timer overshoots do not add up
            await self._sleep_until(max(start + head * k, head_end - 0.002) + encode * k)
            rec.encode_end_s[rid] = self._rel(loop.time())
            rec.payload_bytes[rid] = len(payload)
            loop.create_task(self._send(node, rid, payload))

    async def _send(self, node: _Node, rid: int, payload: bytes) -> None:
        assert self.shaper is not None and node.writer is not None
        data = pack_request(node.index, int(self.rec.frame[rid]), payload)
        rate = node.rate / self.k if self.cfg.shape_uplink else None
        start, end = await self.shaper.send(node.writer, data, rate)
        self.rec.tx_start_s[rid] = self._rel(start)
        self.rec.tx_end_s[rid] = self._rel(end)

    async def _receive(self, node: _Node) -> None:
        assert node.reader is not None
        loop, rec = asyncio.get_running_loop(), self.rec
        try:
            while True:
                body = await read_frame(node.reader)
                if body is None:
                    return
                now = loop.time()
                r = unpack_response(body)
                rid = self._rid.get((node.index, r.request))
                if rid is None or rec.status[rid] != _IN_FLIGHT:
                    continue
                arrival, queued, ready, start, end, down = r.stamps
                rec.server_arrival_s[rid] = self._rel(arrival)
                if not self.cfg.shape_uplink:  # kernel-shaped: the air is not observable here
                    lat = self.cfg.uplink_latency or 0.0
                    rec.tx_end_s[rid] = max(rec.tx_start_s[rid], self._rel(arrival) - lat)
                rec.status[rid] = _STATUS[r.status]
                if r.status == OK:
                    rec.queued_s[rid] = self._rel(queued)
                    rec.batch_ready_s[rid] = self._rel(ready)
                    rec.batch_start_s[rid] = self._rel(start)
                    rec.batch_end_s[rid] = self._rel(end)
                    rec.downlink_start_s[rid] = self._rel(down)
                    rec.downlink_end_s[rid] = self._rel(now)
                    rec.finished_s[rid] = self._rel(now)
                    rec.result_bytes[rid] = len(r.result)
                    rec.batch_size[rid] = r.batch_size
                    rec.gpu[rid] = r.gpu
                    self.prediction[rid] = r.prediction
                else:
                    rec.finished_s[rid] = self._rel(end)
                self._finish_one()
        except (FrameError, ConnectionError, OSError):
            self.stats["connection_errors"] += 1

    def records(self) -> pd.DataFrame:
        """The records as the simulator writes them (plus ``prediction`` for model scenarios)."""
        names = tuple(g.name or f"group{i}" for i, g in enumerate(self.sc.fleet))
        df = self.rec.to_frame(names).copy()
        if self.sc.model is not None:
            pred = np.full(len(df), -1, dtype=np.int64)
            for rid, p in self.prediction.items():
                pred[rid] = p
            df["prediction"] = pred
        return df


def run_fleet(sc: Scenario, cfg: FleetConfig, base_dir: Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the fleet against a server already listening at ``cfg.host:cfg.port``."""
    fleet = Fleet(sc, cfg, base_dir)
    df = asyncio.run(fleet.run())
    meta = dict(fleet.stats)
    meta["end_s"] = fleet.meta_end
    meta["uplink_bytes"] = fleet.shaper.bytes_sent if fleet.shaper else 0
    return df, meta


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.emulate.clients CONFIG.json``: run the fleet (inside a namespace) and
    write ``records.parquet`` and ``fleet.json`` into CONFIG's ``out`` folder."""
    import json
    import sys

    from testbed.config.load import scenario_from_dict

    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    base = Path(spec["base_dir"]) if spec.get("base_dir") else None
    sc = scenario_from_dict(spec["scenario"], base)
    cfg = FleetConfig(host=spec["host"], port=spec["port"], time_scale=spec["time_scale"],
                      shape_uplink=spec["shape_uplink"], uplink_latency=spec.get("uplink_latency"),
                      app_latency=spec.get("app_latency", False),
                      drain_cap=spec["drain_cap"])
    df, meta = run_fleet(sc, cfg, base)
    out = Path(spec["out"])
    df.to_parquet(out / "records.parquet", index=False)
    (out / "fleet.json").write_text(json.dumps(meta, default=float))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

"""The live edge server: TCP on loopback, length-prefixed frames, real decode, dynamic batching.

Each connection is read by its own task. A request is decoded (the real codec when the scenario
has a model; its charge is padded with sleep), queued, and batched by the simulator's rule
(:func:`testbed.sim.calc.batch_decision`). A batch runs the real tail (GPU when present, else
the CPU) and is padded to the server profile's charge; each result goes back through the
downlink shaper to the connection it came from. A malformed, truncated or oversized frame, or a
client leaving mid-frame, closes that connection and adds an error record; nothing else changes.

Run alone with ``python -m testbed.emulate.server CONFIG.json`` (see :func:`main`).
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from testbed.core.calc import batch_decision
from testbed.emulate.clock import sleep_until
from testbed.emulate.shaper import LinkShaper
from testbed.emulate.wire import (
    BAD_PAYLOAD,
    DROPPED,
    MAX_FRAME,
    OK,
    TIMED_OUT,
    FrameError,
    pack_response,
    read_frame,
    unpack_request,
)

__all__ = ["ServerConfig", "EdgeServer", "server_config", "main"]


@dataclass
class ServerConfig:
    """Everything the server needs, in wall-clock seconds and bytes per second (already scaled)."""

    gpus: int = 1
    max_batch: int = 1
    max_delay: float = 0.0
    batch_time: Callable[[int], float] = lambda b: 0.0
    decode_time: Callable[[], float] = lambda: 0.0
    result_size: Callable[[], float] = lambda: 64.0
    queue_capacity: int | None = None
    timeout: float | None = None
    downlink_rate: float | None = None            # None: unshaped (kernel-shaped or not at all)
    node_rates: dict[int, float] = field(default_factory=dict)
    discipline: str = "fifo"
    downlink_latency: Callable[[], float] = lambda: 0.0
    max_frame: int = MAX_FRAME
    compute: Any = None                            # a ServerCompute, or None (timing only)


@dataclass
class _Pending:
    node: int
    request: int
    writer: asyncio.StreamWriter
    arrival: float
    queued: float = math.nan
    features: Any = None
    live: bool = True


class EdgeServer:
    """An asyncio TCP server; ``async with EdgeServer(cfg) as s`` binds and serves on ``s.port``."""

    def __init__(self, cfg: ServerConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cfg, self.host, self.port = cfg, host, port
        self.errors: list[dict[str, Any]] = []
        self.stats = {"requests": 0, "responses": 0, "batches": 0, "bad_payloads": 0, "dropped": 0,
                      "timed_out": 0, "connections": 0, "tail_overruns": 0, "decode_overruns": 0,
                      "tail_compute_s": 0.0, "tail_charge_s": 0.0}
        self._queue: deque[_Pending] = deque()
        self._live = 0
        self._free = list(range(cfg.gpus - 1, -1, -1))
        self._hold: float | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._decode_pool = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self._gpu_pools = [ThreadPoolExecutor(1, thread_name_prefix=f"gpu{g}") for g in range(cfg.gpus)]
        self.downlink: LinkShaper | None = None

    async def __aenter__(self) -> "EdgeServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> int:
        """Bind and start accepting; returns the port."""
        self.downlink = LinkShaper(self.cfg.downlink_rate, self.cfg.discipline, self.cfg.downlink_latency)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=1 << 16)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self.downlink is not None:
            self.downlink.close()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        for p in self._gpu_pools:
            p.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._error("internal", None, f"{type(exc).__name__}: {exc}")

    def _error(self, kind: str, peer: Any, message: str, node: int | None = None) -> None:
        self.errors.append({"time": time.monotonic(), "kind": kind, "peer": str(peer), "node": node,
                            "error": message})

    # -- connections ----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.stats["connections"] += 1
        loop = asyncio.get_running_loop()
        try:
            while True:
                body = await read_frame(reader, self.cfg.max_frame)
                if body is None:
                    break
                now = loop.time()
                req = unpack_request(body)
                self.stats["requests"] += 1
                self._spawn(self._admit(_Pending(req.node, req.request, writer, now), req.payload))
        except FrameError as exc:
            self._error("frame", peer, str(exc))
        except (ConnectionError, OSError) as exc:
            self._error("connection", peer, f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    async def _admit(self, p: _Pending, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        charge = self.cfg.decode_time()
        compute = self.cfg.compute
        if compute is not None:
            t0 = loop.time()
            try:
                p.features = await loop.run_in_executor(self._decode_pool, compute.decode, payload)
            except Exception as exc:  # PayloadError and whatever a forged payload provokes
                self.stats["bad_payloads"] += 1
                self._error("payload", p.writer.get_extra_info("peername"), f"{type(exc).__name__}: {exc}", p.node)
                self._respond(p, BAD_PAYLOAD, loop.time())
                return
            if loop.time() - t0 > charge:
                self.stats["decode_overruns"] += 1
        await sleep_until(p.arrival + charge)
        now = loop.time()
        if self.cfg.queue_capacity is not None and self._live >= self.cfg.queue_capacity:
            self.stats["dropped"] += 1
            self._respond(p, DROPPED, now)
            return
        p.queued = now
        self._queue.append(p)
        self._live += 1
        if self.cfg.timeout is not None:
            loop.call_at(now + self.cfg.timeout, self._expire, p)
        self._dispatch()

    def _expire(self, p: _Pending) -> None:
        if p.live:
            p.live = False
            self._live -= 1
            self.stats["timed_out"] += 1
            self._respond(p, TIMED_OUT, asyncio.get_running_loop().time())

    # -- batching (the simulator's rule) --------------------------------------------------------
    def _dispatch(self, fired: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        now = max(loop.time(), fired)
        while self._free:
            while self._queue and not self._queue[0].live:
                self._queue.popleft()
            if not self._queue:
                self._hold = None
                return
            oldest = self._queue[0]
            take = batch_decision(self._live, self.cfg.max_batch, self.cfg.max_delay, now - oldest.queued)
            if take == 0:
                if self._hold is None:
                    self._hold = now
                deadline = oldest.queued + self.cfg.max_delay
                if deadline < self._timer_at or self._timer is None:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer_at = deadline
                    self._timer = loop.create_task(self._wait_timer(deadline))
                return
            gpu = self._free.pop()
            ready = self._hold if self._hold is not None else now
            self._hold = None
            batch = []
            while len(batch) < take:
                p = self._queue.popleft()
                if p.live:
                    p.live = False
                    batch.append(p)
            self._live -= take
            self.stats["batches"] += 1
            self._spawn(self._run_batch(gpu, batch, ready, now))

    async def _wait_timer(self, deadline: float) -> None:
        await sleep_until(deadline)
        self._timer, self._timer_at = None, math.inf
        self._dispatch(deadline)

    async def _run_batch(self, gpu: int, batch: list[_Pending], ready: float, start: float) -> None:
        loop = asyncio.get_running_loop()
        charge = self.cfg.batch_time(len(batch))
        preds = np.full(len(batch), -1)
        try:
            if self.cfg.compute is not None:
                t0 = loop.time()
                preds = await loop.run_in_executor(self._gpu_pools[gpu], self.cfg.compute.run_tail,
                                                   [p.features for p in batch])
                spent = loop.time() - t0
                self.stats["tail_compute_s"] += spent
                if spent > charge:
                    self.stats["tail_overruns"] += 1
            self.stats["tail_charge_s"] += charge
            await sleep_until(start + charge)
        finally:
            end = loop.time()
            self._free.append(gpu)
            for p, pred in zip(batch, preds.tolist()):
                p.features = None
                self._respond(p, OK, end, (ready, start, end), len(batch), gpu, int(pred))
            self._dispatch()

    # -- responses ------------------------------------------------------------------------------
    def _respond(self, p: _Pending, status: int, at: float, batch: tuple[float, float, float] | None = None,
                 size: int = 0, gpu: int = -1, prediction: int = -1) -> None:
        ready, start, end = batch if batch is not None else (math.nan, math.nan, at)
        result = b"\0" * max(0, int(round(self.cfg.result_size()))) if status == OK else b""
        stamps = (p.arrival, p.queued, ready, start, end)

        def make(t: float) -> bytes:
            return pack_response(status, p.node, p.request, (*stamps, t), size, gpu, prediction, result)

        self._spawn(self._send(p, make))

    async def _send(self, p: _Pending, make: Callable[[float], bytes]) -> None:
        if p.writer.is_closing():
            return
        assert self.downlink is not None
        rate = self.cfg.downlink_rate
        if rate is not None and p.node in self.cfg.node_rates:
            rate = min(rate, self.cfg.node_rates[p.node])
        await self.downlink.send(p.writer, make, rate)
        self.stats["responses"] += 1


def server_config(scenario: Any, time_scale: float = 1.0, base_dir: Path | None = None, *,
                  shape_downlink: bool = True, compute: bool = True, max_frame: int = MAX_FRAME,
                  device: str | None = None, app_latency: bool = False) -> ServerConfig:
    """A :class:`ServerConfig` for ``scenario`` with every time multiplied by ``time_scale`` (and
    every rate divided by it); the server's random streams are the simulator's (keys (2,), (2, 1),
    (2, 2) and (1, 1))."""
    from testbed.sim.world import _stream
    from testbed.emulate.clients import make_workload

    sc, k = scenario, time_scale
    wl = make_workload(sc, base_dir)
    batch = wl.batch_time(_stream(sc.seed, 2))
    decode = wl.decode().sampler(_stream(sc.seed, 2, 1))
    down_lat = sc.link.downlink_latency.sampler(_stream(sc.seed, 1, 1))
    rates, n = {}, 0
    for g in sc.fleet:
        for _ in range(g.count):
            rates[n] = (g.datarate or sc.link.datarate) / k
            n += 1
    comp = None
    if compute and sc.model is not None:
        from testbed.emulate.compute import ServerCompute

        comp = ServerCompute(sc, device)
    return ServerConfig(
        gpus=sc.server.gpus, max_batch=sc.server.batching.max_batch, max_delay=sc.server.batching.max_delay * k,
        batch_time=lambda b: batch(b) * k, decode_time=lambda: decode() * k,
        result_size=wl.result_drawer(_stream(sc.seed, 2, 2)), queue_capacity=sc.server.queue_capacity,
        timeout=sc.server.timeout * k if sc.server.timeout is not None else None,
        downlink_rate=sc.link.downlink_datarate / k if shape_downlink else None, node_rates=rates,
        discipline=sc.link.model, downlink_latency=(lambda: down_lat() * k) if shape_downlink or app_latency else (lambda: 0.0),
        max_frame=max_frame, compute=comp)


async def _serve(cfg_file: Path) -> None:
    from testbed.config.load import scenario_from_dict

    spec = json.loads(cfg_file.read_text())
    base = Path(spec["base_dir"]) if spec.get("base_dir") else None
    sc = scenario_from_dict(spec["scenario"], base)
    cfg = server_config(sc, spec.get("time_scale", 1.0), base, shape_downlink=spec.get("shape_downlink", True),
                        max_frame=spec.get("max_frame", MAX_FRAME), device=spec.get("device"),
                        app_latency=spec.get("app_latency", False))
    server = EdgeServer(cfg, spec.get("host", "127.0.0.1"), spec.get("port", 0))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"READY {server.port}", flush=True)
        await stop.wait()
    report = {"stats": server.stats, "errors": server.errors,
              "device": str(cfg.compute.device) if cfg.compute is not None else None}
    Path(spec["report"]).write_text(json.dumps(report, default=float))


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.emulate.server CONFIG.json``: serve until SIGTERM, then write the report.

    CONFIG holds ``scenario`` (the raw mapping), ``base_dir``, ``time_scale``, ``host``, ``port``,
    ``shape_downlink``, ``max_frame``, ``device`` and ``report`` (a JSON path for stats and errors).
    """
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

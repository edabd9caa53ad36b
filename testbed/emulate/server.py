"""The live edge server: TCP on loopback, length-prefixed frames, real decode, dynamic batching.

Each connection is read by its own task. A request is decoded (the real codec when the scenario
has a model; its charge is padded with sleep), queued, and batched by the simulator's own policy
(:class:`testbed.core.policy.Batcher` through :class:`testbed.emulate.batching.LiveBatcher`). A batch runs the real tail (GPU when present, else
the CPU) and is padded to the server profile's charge; each result (with the split model's five
best classes) goes back through the downlink shaper to the connection it came from. A malformed, truncated or oversized frame, or a
client leaving mid-frame, closes that connection and adds an error record; nothing else changes.

:mod:`testbed.emulate.serve` builds its configuration from a resolved scenario and runs it as a
process (``python -m testbed.emulate.serve CONFIG.json``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testbed.core.policy import Batch, Batcher
from testbed.emulate.batching import LiveBatcher
from testbed.emulate.clock import sleep_until
from testbed.emulate.shaper import LinkShaper
from testbed.emulate.wire import (
    BAD_PAYLOAD,
    DROPPED,
    MAX_FRAME,
    OK,
    TIMED_OUT,
    TOP_K,
    FrameError,
    pack_response,
    read_frame,
    unpack_request,
)

__all__ = ["EdgeServer", "ServerConfig"]


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
    nodes: int | None = None                       # valid node ids are 0 .. nodes - 1 (None: any)
    idle_timeout: float | None = 60.0              # silence between frames with nothing in flight
    read_timeout: float | None = 10.0              # a started frame: this long plus its length / min_rate
    min_rate: float | None = 1024.0                # bytes/s a sender must sustain within a frame
    max_in_flight: int = 64                        # requests of one connection inside the server at once


@dataclass
class _Conn:
    """One connection's state (freed when it closes): its node, and its requests in the server."""

    peer: Any
    node: int | None = None
    in_flight: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.in_flight -= 1
        self.room.set()


@dataclass
class _Pending:
    node: int
    request: int
    writer: asyncio.StreamWriter
    arrival: float
    conn: _Conn | None = None
    queued: float = math.nan
    features: Any = None


class EdgeServer:
    """An asyncio TCP server; ``async with EdgeServer(cfg) as s`` binds and serves on ``s.port``."""

    def __init__(self, cfg: ServerConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cfg, self.host, self.port = cfg, host, port
        self.errors: list[dict[str, Any]] = []
        self.stats = {"requests": 0, "responses": 0, "batches": 0, "bad_payloads": 0, "dropped": 0,
                      "timed_out": 0, "connections": 0, "open_connections": 0, "bad_nodes": 0,
                      "timeouts": 0, "paused_reads": 0, "tail_overruns": 0, "decode_overruns": 0,
                      "tail_compute_s": 0.0, "tail_charge_s": 0.0}
        self._pending: dict[int, _Pending] = {}
        self._ids = 0
        self.batcher = LiveBatcher(Batcher(gpus=cfg.gpus, max_batch=cfg.max_batch, max_delay=cfg.max_delay,
                                           capacity=cfg.queue_capacity, timeout=cfg.timeout),
                                   self._start_batch, self._call_at)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._decode_pool = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self._gpu_pools = [ThreadPoolExecutor(1, thread_name_prefix=f"gpu{g}") for g in range(cfg.gpus)]
        self.downlink: LinkShaper | None = None

    async def __aenter__(self) -> EdgeServer:
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

    def _call_at(self, at: float, fn: Callable[[], None]) -> None:
        async def wait() -> None:
            await sleep_until(at)
            fn()

        self._spawn(wait())

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
        """Read one connection's frames. Reading pauses while it has ``max_in_flight`` requests inside
        the server (so one flooding connection holds at most that many places in the shared queue),
        a frame for an unknown node or another node than the connection's first is answered as a bad
        payload, and a silent or too slow sender is disconnected."""
        cfg = self.cfg
        conn = _Conn(writer.get_extra_info("peername"))
        self.stats["connections"] += 1
        self.stats["open_connections"] += 1
        loop = asyncio.get_running_loop()
        try:
            while True:
                while conn.in_flight >= cfg.max_in_flight:
                    self.stats["paused_reads"] += 1
                    conn.room.clear()
                    await conn.room.wait()
                body = await read_frame(reader, cfg.max_frame, idle=cfg.idle_timeout, read=cfg.read_timeout,
                                        min_rate=cfg.min_rate, busy=lambda: conn.in_flight > 0)
                if body is None:
                    break
                now = loop.time()
                req = unpack_request(body)
                self.stats["requests"] += 1
                p = _Pending(req.node, req.request, writer, now, conn)
                conn.in_flight += 1
                why = self._bad_node(conn, req.node)
                if why:
                    self.stats["bad_nodes"] += 1
                    self._error("node", conn.peer, why, req.node)
                    self._respond(p, BAD_PAYLOAD, now)
                    continue
                self._spawn(self._admit(p, req.payload))
        except FrameError as exc:
            if "timeout" in str(exc) or "too slow" in str(exc):
                self.stats["timeouts"] += 1
            self._error("frame", conn.peer, str(exc))
        except (ConnectionError, OSError) as exc:
            self._error("connection", conn.peer, f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            if self.downlink is not None:
                self.downlink.forget(writer)
            self.stats["open_connections"] -= 1

    def _bad_node(self, conn: _Conn, node: int) -> str:
        """Why a frame for ``node`` on ``conn`` is refused ('' when it is not)."""
        n = self.cfg.nodes
        if n is not None and not 0 <= node < n:
            return f"node id {node} is not in the scenario (0 to {n - 1})"
        if conn.node is None:
            conn.node = node
        elif node != conn.node:
            return f"node id {node} on the connection of node {conn.node}"
        return ""

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
        rid, self._ids = self._ids, self._ids + 1
        self._pending[rid] = p
        p.queued = loop.time()
        if not self.batcher.arrive(rid, p.queued):
            del self._pending[rid]
            self.stats["dropped"] += 1
            self._respond(p, DROPPED, p.queued)
            return
        if self.cfg.timeout is not None:
            loop.call_at(p.queued + self.cfg.timeout, self._expire, rid)

    def _expire(self, rid: int) -> None:
        if self.batcher.expire(rid):
            p = self._pending.pop(rid)
            self.stats["timed_out"] += 1
            self._respond(p, TIMED_OUT, asyncio.get_running_loop().time())

    # -- batches (the simulator's policy decides; this runs them) -------------------------------
    def _start_batch(self, batch: Batch, now: float) -> None:
        self.stats["batches"] += 1
        self._spawn(self._run_batch(batch.gpu, [self._pending.pop(r) for r in batch.rids], batch.ready, now))

    async def _run_batch(self, gpu: int, batch: list[_Pending], ready: float, start: float) -> None:
        loop = asyncio.get_running_loop()
        charge = self.cfg.batch_time(len(batch))
        answers = np.full((len(batch), TOP_K), -1)  # per request its five best classes (-1: none)
        try:
            if self.cfg.compute is not None:
                t0 = loop.time()
                answers = await loop.run_in_executor(self._gpu_pools[gpu], self.cfg.compute.run_tail,
                                                     [p.features for p in batch])
                spent = loop.time() - t0
                self.stats["tail_compute_s"] += spent
                if spent > charge:
                    self.stats["tail_overruns"] += 1
            self.stats["tail_charge_s"] += charge
            await sleep_until(start + charge)
        finally:
            end = loop.time()
            for p, top5 in zip(batch, answers.tolist()):
                p.features = None
                self._respond(p, OK, end, (ready, start, end), len(batch), gpu, top5)
            self.batcher.finish(gpu)

    # -- responses ------------------------------------------------------------------------------
    def _respond(self, p: _Pending, status: int, at: float, batch: tuple[float, float, float] | None = None,
                 size: int = 0, gpu: int = -1, top5: Sequence[int] = ()) -> None:
        if p.conn is not None:
            p.conn.release()
        ready, start, end = batch if batch is not None else (math.nan, math.nan, at)
        result = b"\0" * max(0, round(self.cfg.result_size())) if status == OK else b""
        stamps = (p.arrival, p.queued, ready, start, end)

        def make(t: float) -> bytes:
            return pack_response(status, p.node, p.request, (*stamps, t), size, gpu, top5, result)

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

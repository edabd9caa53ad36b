"""The live server as a process: its configuration from a resolved scenario (the simulator's
workload, streams and batching policy, scaled to wall-clock time), and the process entry
``python -m testbed.emulate.serve CONFIG.json``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from testbed.bridge.workload import make_workload
from testbed.config.resolve import Resolved
from testbed.core.arrivals import expected_frames
from testbed.emulate.handoff import load_resolved
from testbed.emulate.server import EdgeServer, ServerConfig
from testbed.emulate.wire import MAX_FRAME
from testbed.streams import link_stream, server_stream

__all__ = ["connection_limits", "main", "server_config"]


def server_config(res: Resolved, time_scale: float = 1.0, *, shape_downlink: bool = True, compute: bool = True,
                  max_frame: int = MAX_FRAME, device: str | None = None, app_latency: bool = False) -> ServerConfig:
    """A :class:`ServerConfig` for ``res`` with every time multiplied by ``time_scale`` (and every
    rate divided by it); the server draws from the simulator's streams ((2,) batch times, (2, 1)
    decode, (2, 2) result sizes, (1, 1) downlink latency)."""
    sc, k = res.scenario, time_scale
    wl = make_workload(res)
    batch = wl.batch_time(server_stream(sc.seed))
    decode = wl.decode().sampler(server_stream(sc.seed, 1))
    down_lat = sc.link.downlink_latency.sampler(link_stream(sc.seed, 1))
    rates = [(g.datarate or sc.link.datarate) / k for g in sc.fleet for _ in range(g.count)]
    comp = None
    if compute and sc.model is not None:
        from testbed.emulate.compute import ServerCompute

        comp = ServerCompute(res, device)
    srv = sc.server
    return ServerConfig(
        gpus=srv.gpus, max_batch=srv.batching.max_batch, max_delay=srv.batching.max_delay * k,
        batch_time=lambda b: batch(b) * k, decode_time=lambda: decode() * k,
        result_size=wl.result_drawer(server_stream(sc.seed, 2)), queue_capacity=srv.queue_capacity,
        timeout=srv.timeout * k if srv.timeout is not None else None,
        downlink_rate=sc.link.downlink_datarate / k if shape_downlink else None, node_rates=dict(enumerate(rates)),
        discipline=sc.link.model,
        downlink_latency=(lambda: down_lat() * k) if shape_downlink or app_latency else (lambda: 0.0),
        max_frame=max_frame, compute=comp, nodes=sc.node_count, **connection_limits(res, time_scale))


def connection_limits(res: Resolved, time_scale: float = 1.0) -> dict[str, Any]:
    """Timeouts and caps of the server's connections, generous for this scenario's own fleet.

    ``idle_timeout``: 50 mean inter-frame gaps of the slowest group (at least 60 s wall);
    ``read_timeout`` and ``min_rate``: a started frame may take 10 s (scaled) plus its length at a
    quarter of the slowest node's fair share of the link; ``max_in_flight``: four full batches per GPU."""
    sc, k = res.scenario, time_scale
    gaps = [sc.duration / max(expected_frames(g.arrivals, g.count, sc.duration), 1.0) for g in sc.fleet]
    slowest = min((g.datarate or sc.link.datarate) for g in sc.fleet) / k
    return {"idle_timeout": max(60.0, 50.0 * max(gaps) * k), "read_timeout": 10.0 * max(1.0, k),
            "min_rate": slowest / max(1, sc.node_count) / 4.0,
            "max_in_flight": max(16, 4 * sc.server.batching.max_batch * sc.server.gpus)}


async def _serve(cfg_file: Path) -> None:
    spec = json.loads(cfg_file.read_text())
    cfg = server_config(load_resolved(spec["resolved"]), spec.get("time_scale", 1.0),
                        shape_downlink=spec.get("shape_downlink", True), max_frame=spec.get("max_frame", MAX_FRAME),
                        device=spec.get("device"), app_latency=spec.get("app_latency", False))
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
    """``python -m testbed.emulate.serve CONFIG.json``: serve until SIGTERM, then write the report.

    CONFIG holds ``resolved`` (the hand-off file of :mod:`testbed.emulate.handoff`), ``time_scale``,
    ``host``, ``port``, ``shape_downlink``, ``max_frame``, ``device``, ``app_latency`` and ``report``
    (a JSON path for stats and errors).
    """
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

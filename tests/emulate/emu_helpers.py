"""Helpers for the emulation tests: a small timing-only scenario and a client that sends and collects."""

from __future__ import annotations

import asyncio
import copy
from typing import Any


def emu_scenario(**overrides: Any) -> dict[str, Any]:
    """A tiny timing-only scenario (3 nodes, 3 s, 10 kB at 200 kB/s)."""
    raw: dict[str, Any] = {
        "name": "emu-test", "seed": 5, "duration": "3 s", "warmup": "0.5 s", "drain": "2 s",
        "fleet": [{"name": "cams", "count": 3, "device": "pi4b", "arrivals": {"kind": "poisson", "rate": "4/s"},
                   "head": "10 ms", "encode": "2 ms", "payload": "10 kB"}],
        "link": {"model": "shared_fifo", "datarate": "200 kB/s", "latency": "2 ms"},
        "server": {"device": "h100", "batching": {"max_batch": 4, "max_delay": "5 ms"},
                   "service": {"table": {1: "3 ms", 4: "6 ms"}}},
    }
    raw.update(copy.deepcopy(overrides))
    return raw


async def send_and_collect(host: str, port: int, node: int, payloads: list[bytes]) -> list[Any]:
    """Send requests on one connection and wait for every response (in any order)."""
    from testbed.emulate.wire import pack_request, read_frame, unpack_response

    reader, writer = await asyncio.open_connection(host, port)
    for i, p in enumerate(payloads):
        writer.write(pack_request(node, i, p))
    await writer.drain()
    out = []
    while len(out) < len(payloads):
        body = await asyncio.wait_for(read_frame(reader), 20)
        assert body is not None, "server closed a good connection"
        out.append(unpack_response(body))
    writer.close()
    return out

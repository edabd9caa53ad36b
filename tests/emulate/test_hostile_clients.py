"""The live server against clients that misbehave: silent or slow senders are disconnected, frames
for nodes the scenario lacks are answered as bad, closed connections leave no state behind, and one
flooding connection cannot starve another node."""

from __future__ import annotations

import asyncio

from emu_helpers import send_and_collect

from testbed.emulate.server import EdgeServer, ServerConfig
from testbed.emulate.wire import BAD_PAYLOAD, OK, pack_request, read_frame, unpack_response


def _cfg(**kw: object) -> ServerConfig:
    base = dict(gpus=1, max_batch=4, max_delay=0.002, batch_time=lambda b: 0.002, max_frame=64 * 1024)
    base.update(kw)
    return ServerConfig(**base)  # type: ignore[arg-type]


def test_silent_and_slow_senders_are_disconnected() -> None:
    async def go() -> tuple[bytes | None, bytes | None, EdgeServer]:
        async with EdgeServer(_cfg(idle_timeout=0.3, read_timeout=0.3, min_rate=1e6)) as srv:
            r1, _w1 = await asyncio.open_connection(srv.host, srv.port)            # says nothing
            r2, w2 = await asyncio.open_connection(srv.host, srv.port)             # starts a frame, stalls
            w2.write((1000).to_bytes(4, "big") + b"x" * 10)
            await w2.drain()
            silent = await asyncio.wait_for(read_frame(r1), 20)
            slow = await asyncio.wait_for(read_frame(r2), 20)
            ok = await send_and_collect(srv.host, srv.port, 0, [b"a", b"b"])      # others still served
            assert [r.status for r in ok] == [OK, OK]
            return silent, slow, srv
    silent, slow, srv = asyncio.run(go())
    assert silent is None and slow is None                                     # closed by the server
    errors = " | ".join(e["error"] for e in srv.errors)
    assert "idle for 0.3 s" in errors and "not received within" in errors
    assert srv.stats["timeouts"] == 2


def test_a_connection_waiting_for_its_answers_is_not_idle() -> None:
    async def go() -> list:
        async with EdgeServer(_cfg(idle_timeout=0.1, max_delay=0.5, batch_time=lambda b: 0.3)) as srv:
            return await send_and_collect(srv.host, srv.port, 0, [b"a"])
    assert [r.status for r in asyncio.run(go())] == [OK]


def test_frames_for_unknown_nodes_are_answered_as_bad() -> None:
    async def go() -> tuple[list, list, EdgeServer]:
        async with EdgeServer(_cfg(nodes=3)) as srv:
            unknown = await send_and_collect(srv.host, srv.port, 7, [b"a"])
            reader, writer = await asyncio.open_connection(srv.host, srv.port)     # node 1, then node 2
            writer.write(pack_request(1, 0, b"x") + pack_request(2, 1, b"y"))
            await writer.drain()
            mixed = [unpack_response(await asyncio.wait_for(read_frame(reader), 20)) for _ in range(2)]
            writer.close()
            return unknown, mixed, srv
    unknown, mixed, srv = asyncio.run(go())
    assert [r.status for r in unknown] == [BAD_PAYLOAD]
    assert sorted((r.node, r.status) for r in mixed) == [(1, OK), (2, BAD_PAYLOAD)]
    assert srv.stats["bad_nodes"] == 2
    assert any("node id 7 is not in the scenario" in e["error"] for e in srv.errors)


def test_closed_connections_leave_no_state_behind() -> None:
    async def go() -> EdgeServer:
        async with EdgeServer(_cfg(downlink_rate=1e7)) as srv:
            for n in range(20):
                await send_and_collect(srv.host, srv.port, n, [b"p"] * 3)
            for _ in range(50):
                if srv.stats["open_connections"] == 0:
                    break
                await asyncio.sleep(0.05)
            return srv
    srv = asyncio.run(go())
    assert srv.stats["open_connections"] == 0
    assert srv.downlink is not None and srv.downlink.connections == 0


def test_one_flooding_connection_cannot_starve_another_node() -> None:
    flood_n = 600

    async def go() -> tuple[list[float], float]:
        async with EdgeServer(_cfg(max_in_flight=8)) as srv:
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(b"".join(pack_request(0, i, b"f" * 200) for i in range(flood_n)))
            times: list[float] = []

            async def drain_flood() -> None:
                while len(times) < flood_n:
                    body = await asyncio.wait_for(read_frame(reader), 60)
                    assert body is not None
                    times.append(loop.time())

            flood = loop.create_task(drain_flood())
            await asyncio.sleep(0.05)
            victim = await send_and_collect(srv.host, srv.port, 1, [b"v"] * 3)
            victim_done = loop.time()
            assert all(r.status == OK for r in victim)
            await flood
            writer.close()
            return times, victim_done
    times, victim_done = asyncio.run(go())
    before = sum(t <= victim_done for t in times)
    assert before < flood_n / 2        # served while the flood still had most of its frames to go

"""Framing and the application-level link shaper (timings against the link model's arithmetic)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from testbed.emulate.shaper import LinkShaper
from testbed.emulate.wire import (
    MAX_FRAME,
    FrameError,
    pack_request,
    pack_response,
    read_frame,
    unpack_request,
    unpack_response,
)


def _reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


def test_request_and_response_round_trip() -> None:
    async def go() -> None:
        frame = pack_request(7, 42, b"payload-bytes")
        body = await read_frame(_reader(frame))
        req = unpack_request(body)
        assert (req.node, req.request, req.payload) == (7, 42, b"payload-bytes")
        top5 = [17, 3, 999, 0, 2**31 - 1]
        frame = pack_response(0, 7, 42, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), 3, 0, top5, b"r" * 64)
        assert len(frame) == 4 + 87 + 64                      # the documented 87-byte header
        resp = unpack_response(await read_frame(_reader(frame)))
        assert resp.stamps == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
        assert (resp.batch_size, resp.gpu, resp.top5, len(resp.result)) == (3, 0, tuple(top5), 64)
        assert resp.prediction == 17                          # top-1 is top5[0]
    asyncio.run(go())


@pytest.mark.parametrize(("top5", "want"), [
    ([], (-1, -1, -1, -1, -1)),                               # no answer (dropped, timed out, bad payload)
    ([4, 1], (4, 1, -1, -1, -1)),                             # fewer classes than five: -1 padded
    (np.array([9, 8, 7, 6, 5, 4, 3]), (9, 8, 7, 6, 5)),       # more than five (numpy ints): truncated
    ((-1, -1, -1, -1, -1), (-1, -1, -1, -1, -1)),
    ([-(2**31), 2**31 - 1], (-(2**31), 2**31 - 1, -1, -1, -1)),  # the i32 extremes
])
def test_response_top5_is_padded_and_truncated_to_five(top5: object, want: tuple[int, ...]) -> None:
    resp = unpack_response(pack_response(1, 2, 3, (0.0,) * 6, 1, -1, top5, b"")[4:])  # type: ignore[arg-type]
    assert resp.top5 == want and resp.prediction == want[0] and resp.result == b""


@pytest.mark.parametrize(("top5", "match"), [
    ([2**31], "signed 32-bit"),
    ([1, -(2**31) - 1], "signed 32-bit"),
    ([1.5], "not an integer"),
    (["3"], "not an integer"),
    ([None], "not an integer"),
])
def test_response_top5_bad_values_are_refused(top5: list[object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack_response(0, 0, 0, (0.0,) * 6, 1, 0, top5, b"")  # type: ignore[arg-type]


def test_response_shorter_than_its_header_is_refused() -> None:
    body = pack_response(0, 0, 0, (0.0,) * 6, 1, 0, [1, 2, 3, 4, 5], b"")[4:]
    with pytest.raises(FrameError, match="shorter than its 87-byte header"):
        unpack_response(body[:-1])
    with pytest.raises(FrameError, match="not a response"):
        unpack_response(b"XXXX" + body[4:])


@pytest.mark.parametrize("data,match", [
    (b"\x00\x00", "inside a length prefix"),
    ((1000).to_bytes(4, "big") + b"x" * 10, "after 10 of 1000"),
    ((MAX_FRAME + 1).to_bytes(4, "big"), "exceeds the maximum"),
])
def test_bad_frames_raise(data: bytes, match: str) -> None:
    async def go() -> None:
        await read_frame(_reader(data))
    with pytest.raises(FrameError, match=match):
        asyncio.run(go())


def test_clean_end_and_bad_header() -> None:
    async def go() -> None:
        assert await read_frame(_reader(b"")) is None
    asyncio.run(go())
    with pytest.raises(FrameError, match="not a request"):
        unpack_request(b"XXXX" + bytes(20))
    with pytest.raises(FrameError, match="shorter"):
        unpack_request(b"TBE1")


class _Sink:
    """A writer that records when each byte arrived."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.times: list[tuple[float, int]] = []

        self.data = bytearray()

    def write(self, b: bytes) -> None:
        self.times.append((self.loop.time(), len(b)))
        self.data += b

    def is_closing(self) -> bool:
        return False


def _finish_times(discipline: str, sizes: list[int], rate: float) -> tuple[list[tuple[float, float]], float]:
    async def go() -> tuple[list[tuple[float, float]], float]:
        shaper = LinkShaper(rate, discipline)
        t0 = asyncio.get_running_loop().time()
        sinks = [_Sink() for _ in sizes]
        res = await asyncio.gather(*(shaper.send(s, b"x" * n) for s, n in zip(sinks, sizes, strict=True)))
        shaper.close()
        assert [sum(n for _, n in s.times) for s in sinks] == sizes
        return [(a - t0, b - t0) for a, b in res], shaper.busy_s
    return asyncio.run(go())


# Lower bounds only: a late event loop can make a transmission end later, never earlier, than the
# link's schedule; the air time the shaper books is exact whatever the load.

def test_fifo_serialises_at_the_rate() -> None:
    # three 20 kB messages at 200 kB/s submitted together: done at 0.1, 0.2, 0.3 s at the earliest
    times, busy = _finish_times("shared_fifo", [20_000] * 3, 200_000.0)
    for (start, end), want in zip(times, (0.1, 0.2, 0.3), strict=True):
        assert end >= want - 1e-9 and end - start >= 0.1 - 1e-9
    assert busy == pytest.approx(0.3, abs=1e-12)


def test_fair_share_splits_the_rate() -> None:
    # processor sharing: 10 kB and 30 kB together at 200 kB/s -> 0.1 s and 0.2 s (FIFO: 0.05 and 0.2)
    ((_, e1), (_, e2)), busy = _finish_times("fair_share", [10_000, 30_000], 200_000.0)
    assert 0.095 <= e1 < e2 and e2 >= 0.2 - 1e-9
    assert busy == pytest.approx(0.2, abs=1e-12)


def test_random_latency_never_reorders_a_sockets_bytes() -> None:
    # messages of one socket, each with its own propagation delay, sent fair-share beside another
    # socket's: the bytes must arrive whole and in order, never before their delay
    import random

    rng = random.Random(3)

    async def go() -> tuple[bytes, bytes, list]:
        shaper = LinkShaper(500_000.0, "fair_share", latency=lambda: rng.uniform(0.0, 0.02))
        a, b = _Sink(), _Sink()
        msgs = [bytes([i]) * rng.randint(100, 9000) for i in range(1, 9)]
        other = [bytes([200 + i]) * 5000 for i in range(4)]
        await asyncio.gather(*(shaper.send(a, m) for m in msgs), *(shaper.send(b, m) for m in other))
        await asyncio.sleep(0.05)
        shaper.close()
        return bytes(a.data), bytes(b.data), [b"".join(msgs), b"".join(other)]
    got_a, got_b, (want_a, want_b) = asyncio.run(go())
    assert got_a == want_a and got_b == want_b

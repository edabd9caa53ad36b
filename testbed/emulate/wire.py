"""The emulator's wire protocol: length-prefixed binary frames over TCP (never pickle).

Every frame is a 4-byte big-endian length ``L`` followed by ``L`` bytes: a fixed header and a body.

Request (node -> server), header ``>4sBBHII`` (16 bytes)::

    magic b"TBE1" | kind 1 | flags 0 | reserved 0 | node u32 | request u32 | payload (codec wire format)

Response (server -> node), header ``>4sBBHII6dhb5i`` (87 bytes), then the result bytes::

    magic | kind 2 | status (0 ok, 1 dropped at server, 2 timed out, 3 bad payload) | reserved | node | request
    | server_arrival, queued, batch_ready, batch_start, batch_end, downlink_start (CLOCK_MONOTONIC seconds)
    | batch_size i16 | gpu i8 | top5 5 x i32 (the split model's five best classes, best first; -1 where none)

The top-1 answer is ``top5[0]`` (:attr:`Response.prediction`; -1 when none: not answered, or a
detector that found nothing).

A frame longer than ``max_frame``, shorter than its header, with a wrong magic or kind, or cut
short by a disconnect raises :class:`FrameError`.
"""

from __future__ import annotations

import asyncio
import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "BAD_PAYLOAD",
    "DROPPED",
    "MAGIC",
    "MAX_FRAME",
    "OK",
    "REQUEST",
    "RESPONSE",
    "TIMED_OUT",
    "TOP_K",
    "FrameError",
    "Request",
    "Response",
    "frame",
    "pack_request",
    "pack_response",
    "read_frame",
    "unpack_request",
    "unpack_response",
]

MAGIC = b"TBE1"
MAX_FRAME = 8 << 20
"""Default largest frame the server accepts (8 MiB, far above any split payload)."""
REQUEST, RESPONSE = 1, 2
OK, DROPPED, TIMED_OUT, BAD_PAYLOAD = 0, 1, 2, 3

_LEN = struct.Struct(">I")
_REQ = struct.Struct(">4sBBHII")
TOP_K = 5
"""Classes a response carries, best first (-1 past the last one)."""
_RESP = struct.Struct(f">4sBBHII6dhb{TOP_K}i")
_I32 = (-(1 << 31), (1 << 31) - 1)


class FrameError(Exception):
    """A malformed, truncated or oversized frame (the connection it came on is closed)."""


@dataclass(frozen=True)
class Request:
    node: int
    request: int
    payload: bytes


@dataclass(frozen=True)
class Response:
    status: int
    node: int
    request: int
    stamps: tuple[float, float, float, float, float, float]
    batch_size: int
    gpu: int
    top5: tuple[int, int, int, int, int]
    result: bytes

    @property
    def prediction(self) -> int:
        """The top-1 answer (-1 when none)."""
        return self.top5[0]


def frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length prefix."""
    return _LEN.pack(len(body)) + body


def pack_request(node: int, request: int, payload: bytes) -> bytes:
    """A complete request frame (length prefix included)."""
    return frame(_REQ.pack(MAGIC, REQUEST, 0, 0, node, request) + payload)


def unpack_request(body: bytes) -> Request:
    """Parse a request body (the frame without its length prefix)."""
    if len(body) < _REQ.size:
        raise FrameError(f"request of {len(body)} bytes is shorter than its {_REQ.size}-byte header")
    magic, kind, _flags, _res, node, request = _REQ.unpack_from(body)
    if magic != MAGIC or kind != REQUEST:
        raise FrameError(f"not a request frame (magic {magic!r}, kind {kind})")
    return Request(node, request, body[_REQ.size:])


def _top5(top5: Sequence[int]) -> list[int]:
    """``top5`` as exactly :data:`TOP_K` i32 values: truncated, or padded with -1."""
    out = []
    for v in list(top5)[:TOP_K]:
        try:
            i = operator.index(v)
        except TypeError:
            raise ValueError(f"top5: {v!r} is not an integer class") from None
        if not _I32[0] <= i <= _I32[1]:
            raise ValueError(f"top5: {i} does not fit a signed 32-bit integer")
        out.append(i)
    return out + [-1] * (TOP_K - len(out))


def pack_response(status: int, node: int, request: int, stamps: tuple[float, ...], batch_size: int,
                  gpu: int, top5: Sequence[int], result: bytes) -> bytes:
    """A complete response frame (length prefix included); ``top5`` is the split model's best classes,
    best first, truncated or padded with -1 to five (``[]`` when there is no answer)."""
    return frame(_RESP.pack(MAGIC, RESPONSE, status, 0, node, request, *stamps, batch_size, gpu, *_top5(top5))
                 + result)


def unpack_response(body: bytes) -> Response:
    """Parse a response body."""
    if len(body) < _RESP.size:
        raise FrameError(f"response of {len(body)} bytes is shorter than its {_RESP.size}-byte header")
    magic, kind, status, _res, node, request, *rest = _RESP.unpack_from(body)
    if magic != MAGIC or kind != RESPONSE:
        raise FrameError(f"not a response frame (magic {magic!r}, kind {kind})")
    stamps = tuple(float(x) for x in rest[:6])
    top5 = tuple(int(x) for x in rest[8:8 + TOP_K])
    return Response(status, node, request, stamps, int(rest[6]), int(rest[7]), top5,  # type: ignore[arg-type]
                    body[_RESP.size:])


async def read_frame(reader: asyncio.StreamReader, max_frame: int = MAX_FRAME, *, idle: float | None = None,
                     read: float | None = None, min_rate: float | None = None,
                     busy: Callable[[], bool] | None = None) -> bytes | None:
    """The next frame body, or None on a clean end of stream between frames.

    Raises :class:`FrameError` for an oversized length or a stream that ends mid-frame, and, when
    timeouts are given, for a sender silent for ``idle`` seconds between frames (while ``busy()`` is
    False: it has no request in flight) or one that takes longer than ``read`` seconds plus
    ``length / min_rate`` to deliver a frame it has started.
    """
    while True:
        try:
            head = await asyncio.wait_for(reader.readexactly(_LEN.size), idle)
            break
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise FrameError(f"connection closed inside a length prefix ({len(exc.partial)} of 4 bytes)") from None
        except TimeoutError:  # readexactly leaves partial bytes in the buffer when cancelled
            if busy is not None and busy():
                continue
            raise FrameError(f"idle for {idle:g} s between frames (read timeout)") from None
    (length,) = _LEN.unpack(head)
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes exceeds the maximum of {max_frame}")
    budget = None if read is None else read + (length / min_rate if min_rate else 0.0)
    try:
        return await asyncio.wait_for(reader.readexactly(length), budget)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(f"connection closed after {len(exc.partial)} of {length} frame bytes") from None
    except TimeoutError:
        raise FrameError(f"frame of {length} bytes not received within {budget:g} s (too slow a sender)") from None

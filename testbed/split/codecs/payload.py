"""The self-describing payload sent at the split point.

Layout (all integers little-endian; ``v`` = unsigned LEB128 varint)::

    magic    4 bytes  b"TBFM"
    version  u8       1
    dtype    u8       dtype of the decoded feature (0 float32, 1 float16)
    rank     u8       then ``rank`` x v: the per-image feature shape
    spec     v + N    codec chain as compact JSON, e.g. [{"quantize":{"bits":1}},{"lzma":{}}]
    blobs    u8 count, then per tensor stage and the serializer: v length + side information
    body     v length + the byte-stage output
    crc32    u32      CRC-32 of every byte before it

Everything but ``body`` is the header: ``len(payload) == header_size + body_size``.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from testbed.split.codecs.errors import PayloadError
from testbed.split.codecs.varint import Reader, write_varint

__all__ = ["DTYPE_CODES", "MAGIC", "MAX_SPEC_BYTES", "VERSION", "Frame", "encode_spec", "read_frame", "write_frame"]

MAGIC = b"TBFM"
VERSION = 1
DTYPE_CODES = {"float32": 0, "float16": 1}
_DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
_MIN_SIZE = len(MAGIC) + 3 + 1 + 1 + 1 + 4
#: longest codec spec a header may carry (stage names and small parameters; never file paths)
MAX_SPEC_BYTES = 4096


@dataclass(frozen=True)
class Frame:
    """A parsed payload."""

    dtype: str
    shape: tuple[int, ...]
    spec: list[dict[str, Any]]
    blobs: list[bytes]
    body: bytes
    header_size: int
    spec_bytes: bytes = b""


def encode_spec(spec: list[dict[str, Any]]) -> bytes:
    """The compact JSON of a chain spec as stored in headers."""
    return json.dumps(spec, separators=(",", ":"), sort_keys=True).encode()


def write_frame(dtype: str, shape: tuple[int, ...], spec: list[dict[str, Any]] | bytes,
                blobs: list[bytes], body: bytes) -> bytes:
    """Assemble a payload (see the module docstring for the layout); ``spec`` may be pre-encoded."""
    spec_bytes = spec if isinstance(spec, bytes) else encode_spec(spec)
    parts = [MAGIC, bytes([VERSION, DTYPE_CODES[dtype], len(shape)])]
    parts += [write_varint(d) for d in shape]
    parts += [write_varint(len(spec_bytes)), spec_bytes, bytes([len(blobs)])]
    for blob in blobs:
        parts += [write_varint(len(blob)), blob]
    parts += [write_varint(len(body)), body]
    data = b"".join(parts)
    return data + struct.pack("<I", zlib.crc32(data))


def read_frame(payload: bytes | bytearray | memoryview) -> Frame:
    """Parse and verify a payload; any inconsistency raises :class:`PayloadError`."""
    data = bytes(payload)
    if len(data) < _MIN_SIZE:
        raise PayloadError(f"payload truncated: {len(data)} bytes, a header alone needs at least {_MIN_SIZE}")
    if data[:4] != MAGIC:
        raise PayloadError(f"not a testbed feature payload (magic {data[:4]!r}, expected {MAGIC!r})")
    if data[4] != VERSION:
        raise PayloadError(f"unsupported payload version {data[4]} (this build reads version {VERSION})")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise PayloadError(f"payload checksum mismatch ({len(data)} bytes): corrupted or truncated")
    r = Reader(data, 5, len(data) - 4)
    code = r.u8("dtype")
    if code not in _DTYPE_NAMES:
        raise PayloadError(f"unknown feature dtype code {code}")
    shape = tuple(r.varint("shape") for _ in range(r.u8("rank")))
    spec_len = r.varint("spec length")
    if spec_len > MAX_SPEC_BYTES:
        raise PayloadError(f"payload header holds a codec spec of {spec_len} bytes, at most {MAX_SPEC_BYTES}")
    spec_bytes = r.take(spec_len, "codec spec")
    try:
        spec = json.loads(spec_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"malformed codec spec in payload header ({type(exc).__name__})") from None
    if not isinstance(spec, list):
        raise PayloadError("malformed codec spec in payload header (not a list)")
    blobs = [r.take(r.varint("side info length"), "side info") for _ in range(r.u8("side info count"))]
    body_len = r.varint("body length")
    header_size = r.pos + 4
    body = r.take(body_len, "body")
    if r.pos != r.end:
        raise PayloadError(f"payload has {r.end - r.pos} unexpected trailing bytes")
    return Frame(_DTYPE_NAMES[code], shape, spec, blobs, body, header_size, spec_bytes)

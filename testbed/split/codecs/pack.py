"""Serialization of one image's tensor: bit packing of integer codes, raw bytes for floats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.split.codecs.base import Codes, Serializer, register_codec
from testbed.split.codecs.errors import PayloadError
from testbed.split.codecs.varint import Reader, write_varint

__all__ = ["DTYPES", "Pack", "pack_bits", "packed_size", "unpack_bits"]

DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("uint8"), 3: np.dtype("<f8"),
}
_CODE = {np.dtype(v).str: k for k, v in DTYPES.items()}


def packed_size(count: int, bits: int) -> int:
    """Bytes needed for ``count`` codes of ``bits`` bits: ``ceil(count * bits / 8)``."""
    return (count * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack unsigned codes (< 2**bits) little-endian bit-first into exactly ``packed_size`` bytes."""
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return flat.tobytes()
    if bits == 1:
        return np.packbits(flat, bitorder="little").tobytes()
    if bits == 4:
        pad = np.zeros(flat.size + (flat.size & 1), dtype=np.uint8)
        pad[:flat.size] = flat
        return (pad[0::2] | (pad[1::2] << 4)).tobytes()
    if bits == 2:
        pad = np.zeros(-(-flat.size // 4) * 4, dtype=np.uint8)
        pad[:flat.size] = flat
        p = pad.reshape(-1, 4)
        return (p[:, 0] | (p[:, 1] << 2) | (p[:, 2] << 4) | (p[:, 3] << 6)).tobytes()
    planes = np.unpackbits(flat[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`; ``data`` must hold exactly ``packed_size(count, bits)`` bytes."""
    if len(data) != packed_size(count, bits):
        raise PayloadError(f"packed data has {len(data)} bytes, expected {packed_size(count, bits)} "
                           f"for {count} codes of {bits} bits")
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return raw.copy()
    if bits == 1:
        return np.unpackbits(raw, count=count, bitorder="little")
    if bits == 4:
        out = np.empty(raw.size * 2, dtype=np.uint8)
        out[0::2], out[1::2] = raw & 0x0F, raw >> 4
        return out[:count]
    if bits == 2:
        out = np.empty((raw.size, 4), dtype=np.uint8)
        for i in range(4):
            out[:, i] = (raw >> (2 * i)) & 0x03
        return out.reshape(-1)[:count]
    planes = np.unpackbits(raw, count=count * bits, bitorder="little").reshape(count, bits)
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (planes.astype(np.uint16) @ weights).astype(np.uint8)


@register_codec("pack")
@dataclass(frozen=True)
class Pack(Serializer):
    """Integer codes are bit-packed to ``ceil(n * bits / 8)`` bytes; floats go as raw bytes.

    Side information: dtype code, bits (0 for raw), rank and shape of the serialized tensor.
    Inserted automatically at the end of the tensor stages when a chain names no serializer.
    """

    def encode(self, codes: Codes) -> tuple[bytes, bytes]:
        a = codes.array
        bits = codes.bits or 0
        dtype = np.dtype("uint8") if bits else a.dtype.newbyteorder("<")
        if dtype.str not in _CODE:
            raise TypeError(f"cannot serialize dtype {a.dtype}")
        side = bytes([_CODE[dtype.str], bits, a.ndim]) + b"".join(write_varint(d) for d in a.shape)
        body = pack_bits(a, bits) if bits else np.ascontiguousarray(a, dtype=dtype).tobytes()
        return body, side

    @staticmethod
    def parse_side(side: bytes) -> tuple[np.dtype, int, tuple[int, ...]]:
        r = Reader(side)
        code, bits, nd = r.u8("pack dtype"), r.u8("pack bits"), r.u8("pack rank")
        if code not in DTYPES:
            raise PayloadError(f"pack: unknown dtype code {code}")
        if bits > 8 or (bits and DTYPES[code] != np.dtype("uint8")):
            raise PayloadError(f"pack: invalid bit width {bits}")
        shape = tuple(r.varint("pack shape") for _ in range(nd))
        if r.pos != len(side):
            raise PayloadError("pack: trailing bytes in side information")
        return DTYPES[code], bits, shape

    def expected_size(self, side: bytes) -> int:
        """Exact number of bytes the serialized body must have."""
        dtype, bits, shape = self.parse_side(side)
        count = int(np.prod(shape, dtype=np.int64))
        return packed_size(count, bits) if bits else count * dtype.itemsize

    def decode(self, data: bytes, side: bytes) -> np.ndarray:
        dtype, bits, shape = self.parse_side(side)
        count = int(np.prod(shape, dtype=np.int64))
        if bits:
            return unpack_bits(data, bits, count).reshape(shape)
        if len(data) != count * dtype.itemsize:
            raise PayloadError(f"raw data has {len(data)} bytes, expected {count * dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

"""Lossless byte coders: LZMA (raw LZMA2 stream), zlib (raw deflate) and Zstandard.

Container framing (xz, zlib and zstd frame headers) is dropped where the library allows it: the
payload header already records the coder and its parameters and carries a CRC32.
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass

from testbed.errors import ConfigError
from testbed.split.codecs.base import ByteStage, register_codec
from testbed.split.codecs.errors import PayloadError

__all__ = ["Lzma", "Zlib", "Zstd"]


def _too_big(name: str, max_size: int) -> PayloadError:
    return PayloadError(f"{name}: decompressed data exceeds the {max_size} bytes the receiver expects")


_LZMA_DICT = [1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 22, 1 << 23, 1 << 23, 1 << 24, 1 << 25, 1 << 26]


@register_codec("lzma")
@dataclass(frozen=True)
class Lzma(ByteStage):
    """LZMA2 (the xz algorithm) at ``preset`` 0..9, optionally ``extreme``."""

    always = ("preset",)

    preset: int = 6
    extreme: bool = False

    def validate(self, path: str) -> None:
        if not 0 <= self.preset <= 9:
            raise ConfigError(f"{path}.preset", self.preset, "an integer from 0 to 9")

    def _filters(self, size: int) -> list[dict[str, int]]:
        # A dictionary larger than the data changes nothing in the output but costs allocation
        # time (8 MiB at preset 6), so it is capped at the data size.
        dict_size = max(4096, min(size, _LZMA_DICT[self.preset]))
        return [{"id": lzma.FILTER_LZMA2, "preset": self.preset | (lzma.PRESET_EXTREME if self.extreme else 0),
                 "dict_size": dict_size}]

    def encode(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=self._filters(len(data)))

    def decode(self, data: bytes, max_size: int) -> bytes:
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=self._filters(max_size))
        try:
            out = dec.decompress(data, max_length=max_size + 1)
        except lzma.LZMAError as exc:
            raise PayloadError(f"lzma: corrupt stream ({exc})") from None
        if len(out) > max_size:
            raise _too_big("lzma", max_size)
        if not dec.eof:
            raise PayloadError("lzma: stream truncated")
        return out


@register_codec("zlib")
@dataclass(frozen=True)
class Zlib(ByteStage):
    """Deflate (RFC 1951) at ``level`` 0..9, without the zlib wrapper."""

    always = ("level",)

    level: int = 6

    def validate(self, path: str) -> None:
        if not 0 <= self.level <= 9:
            raise ConfigError(f"{path}.level", self.level, "an integer from 0 to 9")

    def encode(self, data: bytes) -> bytes:
        comp = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        return comp.compress(data) + comp.flush()

    def decode(self, data: bytes, max_size: int) -> bytes:
        dec = zlib.decompressobj(-15)
        try:
            out = dec.decompress(data, max_size + 1)
        except zlib.error as exc:
            raise PayloadError(f"zlib: corrupt stream ({exc})") from None
        if len(out) > max_size:
            raise _too_big("zlib", max_size)
        if not dec.eof:
            raise PayloadError("zlib: stream truncated")
        return out


@register_codec("zstd")
@dataclass(frozen=True)
class Zstd(ByteStage):
    """Zstandard (RFC 8878) at ``level`` 1..22 via the ``zstandard`` package."""

    always = ("level",)

    level: int = 3

    def validate(self, path: str) -> None:
        if not 1 <= self.level <= 22:
            raise ConfigError(f"{path}.level", self.level, "an integer from 1 to 22")

    def encode(self, data: bytes) -> bytes:
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            self.level, source_size=len(data), write_checksum=False, write_content_size=True,
            write_dict_id=False)
        return zstandard.ZstdCompressor(compression_params=params).compress(data)

    def decode(self, data: bytes, max_size: int) -> bytes:
        import io

        import zstandard

        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise PayloadError(f"zstd: corrupt stream ({exc})") from None
        if declared > max_size:  # -1: size not recorded (the bounded read below still caps it)
            raise _too_big("zstd", max_size)
        # a streaming read never allocates more than asked, whatever the frame header claims
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        try:
            out = reader.read(max_size + 1)
        except zstandard.ZstdError as exc:
            raise PayloadError(f"zstd: corrupt stream ({exc})") from None
        if len(out) > max_size:
            raise _too_big("zstd", max_size)
        if declared >= 0 and len(out) != declared:
            raise PayloadError(f"zstd: stream truncated ({len(out)} of {declared} bytes)")
        return bytes(out)

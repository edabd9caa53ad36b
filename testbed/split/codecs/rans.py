"""Range asymmetric numeral systems (rANS): an exact entropy coder for integer symbols under given
frequency tables (Duda, "Asymmetric numeral systems", arXiv:1311.2540; the byte-wise coder of
Giesen's ``ryg_rans``, as CompressAI's ``RansEncoder`` uses it).

Every symbol is coded under one of several tables (one per feature-map channel): ``freqs[t]`` are
positive integers summing to ``2^PRECISION``. The state is kept in ``[2^23, 2^31)`` and renormalised a
byte at a time, so a stream costs about ``sum(-log2(f / 2^16))`` bits plus 4 bytes of final state.
Pure arithmetic (numpy for the tables): :func:`decode` inverts :func:`encode` exactly, tested by
round trips.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from testbed.split.codecs.errors import PayloadError

__all__ = ["PRECISION", "Tables", "decode", "encode", "quantize_pmf"]

PRECISION = 16
_TOTAL = 1 << PRECISION
_LOW = 1 << 23  # lower bound of the normalised state


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer frequencies (each at least 1) summing to ``2^precision`` from a probability vector;
    the rounding remainder goes to the most probable symbol."""
    p = np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None)
    total = 1 << precision
    k = p.size
    if k < 1 or k >= total:
        raise ValueError(f"an alphabet of {k} symbols does not fit {precision}-bit frequencies")
    p = p / p.sum() if p.sum() > 0 else np.full(k, 1.0 / k)
    f = np.floor(p * (total - k)).astype(np.int64) + 1
    f[int(np.argmax(p))] += total - int(f.sum())
    return f


@dataclass(frozen=True)
class Tables:
    """Frequency tables: ``freqs[t]`` for table ``t`` (positive, summing to ``2^PRECISION``)."""

    freqs: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        for f in self.freqs:
            if f.ndim != 1 or f.size < 1 or int(f.min()) < 1 or int(f.sum()) != _TOTAL:
                raise ValueError(f"a frequency table must hold positive integers summing to {_TOTAL}")

    @classmethod
    def from_arrays(cls, freqs: Sequence[np.ndarray]) -> Tables:
        return cls(tuple(np.asarray(f, dtype=np.int64) for f in freqs))

    def sizes(self) -> list[int]:
        return [int(f.size) for f in self.freqs]

    def cums(self) -> list[list[int]]:
        return [np.concatenate([[0], np.cumsum(f)[:-1]]).astype(np.int64).tolist() for f in self.freqs]

    def lookups(self) -> list[array]:
        """Per table: the symbol of each slot in ``[0, 2^PRECISION)``."""
        return [array("H", np.repeat(np.arange(f.size, dtype=np.uint16), f).tobytes()) for f in self.freqs]


def encode(symbols: np.ndarray, table_of: np.ndarray, tables: Tables) -> bytes:
    """Code ``symbols[i]`` (in ``[0, len(freqs[table_of[i]]))``) under table ``table_of[i]``."""
    sym = np.asarray(symbols, dtype=np.int64).ravel()
    tab = np.asarray(table_of, dtype=np.int64).ravel()
    if sym.shape != tab.shape:
        raise ValueError("symbols and table indices differ in length")
    sizes = np.asarray(tables.sizes(), dtype=np.int64)
    if sym.size and (int(tab.min()) < 0 or int(tab.max()) >= sizes.size or bool((sym < 0).any())
                     or bool((sym >= sizes[tab]).any())):
        raise ValueError("a symbol lies outside its table's alphabet")
    cums = tables.cums()
    freqs = [f.tolist() for f in tables.freqs]
    fs = [freqs[t][s] for t, s in zip(tab.tolist(), sym.tolist())]
    cs = [cums[t][s] for t, s in zip(tab.tolist(), sym.tolist())]
    out = bytearray()
    x = _LOW
    shift = PRECISION
    bound = (_LOW >> PRECISION) << 8
    for i in range(len(fs) - 1, -1, -1):
        f = fs[i]
        x_max = bound * f
        while x >= x_max:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // f) << shift) + (x % f) + cs[i]
    for _ in range(4):
        out.append(x & 0xFF)
        x >>= 8
    out.reverse()
    return bytes(out)


def decode(data: bytes, table_of: np.ndarray, tables: Tables) -> np.ndarray:
    """Invert :func:`encode` given the same table indices; a stream that is too short, too long or
    inconsistent is a :class:`PayloadError`."""
    tab = np.asarray(table_of, dtype=np.int64).ravel()
    if tab.size and (int(tab.min()) < 0 or int(tab.max()) >= len(tables.freqs)):
        raise ValueError("table index out of range")
    if len(data) < 4:
        raise PayloadError("rans: stream shorter than its 4-byte state")
    cums = tables.cums()
    freqs = [f.tolist() for f in tables.freqs]
    looks = tables.lookups()
    mask = _TOTAL - 1
    x = int.from_bytes(data[:4], "big")
    pos, n = 4, len(data)
    out = [0] * tab.size
    for i, t in enumerate(tab.tolist()):
        slot = x & mask
        s = looks[t][slot]
        x = freqs[t][s] * (x >> PRECISION) + slot - cums[t][s]
        while x < _LOW:
            if pos >= n:
                raise PayloadError("rans: stream ends early")
            x = (x << 8) | data[pos]
            pos += 1
        out[i] = s
    if pos != n or x != _LOW:
        raise PayloadError("rans: stream does not end where its symbols do")
    return np.asarray(out, dtype=np.int64)

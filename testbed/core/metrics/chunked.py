"""Exact statistics of a long series read in chunks, in memory bounded by the chunk, not the series.

A streamed run's summary needs, from the latency of every completed request in creation order,
percentiles, censored percentiles, batch-means intervals and MSER-5. Held whole, that series grows
by 8 bytes per request; these functions take a ``read(start, stop)`` callable instead (the series on
disk) and touch :data:`CHUNK` values at a time:

- :func:`order_statistics`: the values at given ranks of given segments, exactly, by radix selection
  on the float64 bit pattern (16 bits a pass over the segment, at most four passes; once a rank's
  candidates number at most :data:`COLLECT` they are gathered and partitioned in memory).
- :func:`percentiles` / :func:`censored_percentiles`: numpy's default ("linear") percentile from the two
  order statistics it interpolates, interpolated by numpy itself (:func:`lerp`), so the result is the
  one ``np.percentile`` gives on the whole series, bit for bit (tested).
- :func:`segment_mean`, :func:`batch_interval` and :func:`mser`: as in :mod:`testbed.core.metrics.intervals`,
  with sums accumulated chunk by chunk (equal to the in-memory figures up to floating-point rounding;
  an MSER-5 minimum tied within rounding could fall on a neighbouring batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from testbed.core.metrics.intervals import BATCHES, LEVEL, MIN_PER_BATCH, MSER_BATCH, _t

__all__ = ["CHUNK", "COLLECT", "Reader", "batch_interval", "censored_percentiles", "lerp", "mser",
           "order_statistics", "percentile_ranks", "percentiles", "segment_mean"]

Reader = Callable[[int, int], np.ndarray]
"""``read(start, stop)``: the series' values ``[start, stop)`` as float64."""

CHUNK = 65535
"""Values read at a time (a multiple of :data:`~testbed.core.metrics.intervals.MSER_BATCH`)."""
COLLECT = 1 << 17
"""A rank's candidates are gathered in memory once there are at most this many."""

_SIGN = np.uint64(1 << 63)
_DIGIT = 16


def _keys(values: np.ndarray) -> np.ndarray:
    """Unsigned keys in the order of the float64 values (IEEE 754 total order)."""
    u = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    return np.where(u >> np.uint64(63) != 0, ~u, u | _SIGN)


def _value(key: int) -> float:
    k = np.uint64(key)
    u = k ^ _SIGN if k & _SIGN else ~k
    return float(np.array([u], dtype=np.uint64).view(np.float64)[0])


class _Target:
    __slots__ = ("bits", "count", "prefix", "rank", "start", "stop", "value")

    def __init__(self, start: int, stop: int, rank: int) -> None:
        self.start, self.stop, self.rank = start, stop, rank
        self.prefix, self.bits, self.count = 0, 0, stop - start
        self.value: float | None = None


def order_statistics(read: Reader, targets: Sequence[tuple[int, int, int]], chunk: int = CHUNK,
                     collect: int = COLLECT) -> list[float]:
    """For each ``(start, stop, rank)``, the ``rank``-th smallest (0-based) of the values ``[start, stop)``."""
    state = [_Target(a, b, r) for a, b, r in targets]
    for t in state:
        if not 0 <= t.rank < t.stop - t.start:
            raise ValueError(f"rank {t.rank} outside a segment of {t.stop - t.start} values")
    while True:
        active = [t for t in state if t.value is None]
        if not active:
            return [float(t.value) for t in state]  # type: ignore[arg-type]
        hist = {id(t): np.zeros(1 << _DIGIT, dtype=np.int64) for t in active if t.count > collect}
        bags: dict[int, list[np.ndarray]] = {id(t): [] for t in active if t.count <= collect}
        lo, hi = min(t.start for t in active), max(t.stop for t in active)
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            keys: np.ndarray | None = None
            for t in active:
                a, b = max(t.start, c0), min(t.stop, c1)
                if a >= b:
                    continue
                if keys is None:
                    keys = _keys(read(c0, c1))
                k = keys[a - c0:b - c0]
                if t.bits:
                    k = k[(k >> np.uint64(64 - t.bits)) == np.uint64(t.prefix)]
                if id(t) in bags:
                    bags[id(t)].append(k)
                else:
                    digit = (k >> np.uint64(64 - t.bits - _DIGIT)) & np.uint64((1 << _DIGIT) - 1)
                    hist[id(t)] += np.bincount(digit.astype(np.intp), minlength=1 << _DIGIT)
        for t in active:
            if id(t) in bags:
                cand = np.concatenate(bags[id(t)]) if bags[id(t)] else np.zeros(0, dtype=np.uint64)
                t.value = _value(int(np.partition(cand, t.rank)[t.rank]))
                continue
            cum = np.cumsum(hist[id(t)])
            d = int(np.searchsorted(cum, t.rank, side="right"))
            t.rank -= int(cum[d - 1]) if d else 0
            t.prefix, t.bits, t.count = (t.prefix << _DIGIT) | d, t.bits + _DIGIT, int(hist[id(t)][d])
            if t.bits == 64:  # every candidate has this exact bit pattern
                t.value = _value(t.prefix)


def percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """(lower rank, upper rank, weight) numpy's linear percentile ``q`` of ``n`` values interpolates."""
    vi = (n - 1) * (np.float64(q) / 100)
    lo = math.floor(float(vi))
    if lo >= n - 1:
        return n - 1, n - 1, 0.0
    return lo, lo + 1, float(vi - lo)


def lerp(a: float, b: float, gamma: float) -> float:
    """numpy's interpolation between neighbouring order statistics (its own code: ``np.quantile`` of the
    pair at ``gamma`` interpolates exactly as it does inside a whole series)."""
    return float(np.quantile(np.array([a, b], dtype=np.float64), gamma))


def percentiles(read: Reader, start: int, stop: int, qs: Sequence[float]) -> list[float]:
    """``np.percentile(values[start:stop], qs)`` (linear) of a non-empty, finite segment."""
    n = stop - start
    ranks = [percentile_ranks(n, q) for q in qs]
    wanted = sorted({r for lo, hi, _ in ranks for r in (lo, hi)})
    got = dict(zip(wanted, order_statistics(read, [(start, stop, r) for r in wanted])))
    return [lerp(got[lo], got[hi], g) for lo, hi, g in ranks]


def censored_percentiles(read: Reader, start: int, stop: int, total: int, qs: Sequence[float]) -> list[float]:
    """:func:`~testbed.core.metrics.latency.censored_statistic` of the finite values ``[start, stop)``
    joined by ``total - (stop - start)`` infinite ones (``inf`` where a percentile reaches them)."""
    k = stop - start
    out: dict[float, float] = {}
    need: list[tuple[float, int, int, float]] = []
    for q in qs:
        if total == 0:
            out[q] = math.nan
            continue
        lo, hi, g = percentile_ranks(total, q)
        pos = lerp(float(lo), float(hi), g)  # np.percentile(np.arange(total), q): the rank it reads
        if k == 0 or math.ceil(pos) >= k:
            out[q] = math.inf
        else:  # ranks at or beyond k read the largest finite value (numpy's replacement of inf)
            need.append((q, min(lo, k - 1), min(hi, k - 1), g))
    wanted = sorted({r for _, lo, hi, _ in need for r in (lo, hi)})
    got = dict(zip(wanted, order_statistics(read, [(start, stop, r) for r in wanted]))) if wanted else {}
    for q, lo, hi, g in need:
        out[q] = lerp(got[lo], got[hi], g)
    return [out[q] for q in qs]


def segment_mean(read: Reader, start: int, stop: int, chunk: int = CHUNK) -> float:
    """Mean of ``[start, stop)`` (NaN when empty)."""
    if stop <= start:
        return math.nan
    total = 0.0
    for c0 in range(start, stop, chunk):
        total += float(np.sum(read(c0, min(c0 + chunk, stop))))
    return total / (stop - start)


def _batches(start: int, n: int, batches: int) -> list[tuple[int, int]]:
    """The segments ``np.array_split`` cuts ``n`` values into."""
    size, extra = divmod(n, batches)
    out, a = [], start
    for i in range(batches):
        b = a + size + (i < extra)
        out.append((a, b))
        a = b
    return out


def batch_interval(read: Reader, start: int, stop: int, q: float | None = None, batches: int = BATCHES,
                   level: float = LEVEL, min_per_batch: int = MIN_PER_BATCH) -> tuple[float, float]:
    """:func:`testbed.core.metrics.intervals.batch_interval` of the finite values ``[start, stop)``."""
    n = stop - start
    if batches < 2 or n < batches * min_per_batch:
        return (math.nan, math.nan)
    segs = _batches(start, n, batches)
    if q is None:
        per_batch = np.array([segment_mean(read, a, b) for a, b in segs])
        centre = segment_mean(read, start, stop)
    else:
        per_batch = np.array([percentiles(read, a, b, [q])[0] for a, b in segs])
        centre = percentiles(read, start, stop, [q])[0]
    if not (np.isfinite(per_batch).all() and math.isfinite(centre)):
        return (math.nan, math.nan)
    half = _t(level, batches - 1) * float(np.std(per_batch, ddof=1)) / math.sqrt(batches)
    return (centre - half, centre + half)


def mser(read: Reader, n: int, batch: int = MSER_BATCH, chunk: int = CHUNK) -> int | None:
    """:func:`testbed.core.metrics.intervals.mser` of the ``n`` values, three chunked passes over the
    batch means (their mean, the centred totals, then the truncation scores of the first half)."""
    m = n // batch
    if m < 4:
        return None
    step = max(batch, chunk - chunk % batch)
    total = 0.0
    for z in _iter(read, m, batch, step):
        if not np.isfinite(z).all():
            return None
        total += float(z.sum())
    mean = total / m
    t1 = t2 = 0.0
    for z in _iter(read, m, batch, step):
        c = z - mean
        t1 += float(c.sum())
        t2 += float((c * c).sum())
    half = m // 2
    best, best_d, before1, before2, d0 = math.inf, 0, 0.0, 0.0, 0
    for z in _iter(read, m, batch, step):
        if d0 > half:
            break
        c = z - mean
        p1 = before1 + np.concatenate([[0.0], np.cumsum(c)[:-1]])  # sums before each d
        p2 = before2 + np.concatenate([[0.0], np.cumsum(c * c)[:-1]])
        d = np.arange(d0, d0 + len(c))
        keep = d <= half
        kept = (m - d[keep]).astype(float)
        tail1, tail2 = t1 - p1[keep], t2 - p2[keep]
        score = np.maximum(tail2 - tail1 ** 2 / kept, 0.0) / kept ** 2
        i = int(np.argmin(score))
        if score[i] < best:
            best, best_d = float(score[i]), int(d[keep][i])
        before1 += float(c.sum())
        before2 += float((c * c).sum())
        d0 += len(c)
    return None if best_d == half else best_d * batch


def _iter(read: Reader, m: int, batch: int, step: int) -> Iterator[np.ndarray]:
    """The batch means, chunk by chunk."""
    for c0 in range(0, m * batch, step):
        yield read(c0, min(c0 + step, m * batch)).reshape(-1, batch).mean(axis=1)

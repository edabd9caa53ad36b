"""Pure arithmetic used by the stations (no SimPy here, all unit-tested on its own)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from testbed.dists import Dist

__all__ = ["DeliverySchedule", "RateSchedule", "batch_decision", "batch_time_fn", "fifo_start", "interpolate_table"]

_EPS = 1e-12


def interpolate_table(table: Mapping[int, float], size: float) -> float:
    """Batch service time at ``size`` from a table of measured batch sizes.

    Linear between measured sizes; below the smallest size the smallest time; above the largest,
    extrapolated along the last segment (never below the last time).
    """
    xs = sorted(table)
    ys = [table[x] for x in xs]
    if size <= xs[0]:
        return float(ys[0])
    if size >= xs[-1]:
        if len(xs) == 1:
            return float(ys[0] * size / xs[0])
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(max(ys[-1], ys[-1] + slope * (size - xs[-1])))
    return float(np.interp(size, xs, ys))


def batch_time_fn(table: Mapping[int, float] | None = None, per_batch: float | None = None,
                  per_item: float | None = None, dist: Dist | None = None,
                  rng: np.random.Generator | None = None) -> Callable[[int], float]:
    """A function batch size -> service time, from exactly one of the three forms."""
    if table is not None:
        cache = {b: interpolate_table(table, b) for b in range(1, max(table) + 1)}
        return lambda b: cache[b] if b in cache else interpolate_table(table, b)
    if dist is not None:
        if rng is None:
            raise ValueError("a service distribution needs a random generator")
        draw = dist.sampler(rng)
        return lambda b: draw()
    a, c = per_batch or 0.0, per_item or 0.0
    return lambda b: a + c * b


def batch_decision(queued: int, max_batch: int, max_delay: float, oldest_wait: float) -> int:
    """How many requests a free GPU takes now (0 = keep waiting).

    A full batch goes at once; with no delay whatever is queued goes; otherwise an incomplete
    batch goes only once its oldest request has waited ``max_delay``.
    """
    if queued <= 0:
        return 0
    if queued >= max_batch or max_delay <= 0.0 or oldest_wait >= max_delay - _EPS:
        return min(queued, max_batch)
    return 0


def fifo_start(now: float, busy_until: float | None) -> float:
    """When a transmission submitted at ``now`` starts on a one-at-a-time FIFO channel whose last
    transmission ends at ``busy_until`` (None: idle): Lindley's recursion, ``max(now, busy_until)``."""
    return now if busy_until is None or busy_until <= now else busy_until


class RateSchedule:
    """A piecewise-constant rate factor ``f(t)``: ``factors[i]`` from ``times[i]`` until ``times[i + 1]``
    (``times[0] == 0``; the last factor holds forever). :meth:`duration` turns the time a transmission
    would take at the nominal rate into the time it takes under the schedule: the ``T`` with
    ``integral of f over [start, start + T] == nominal``."""

    def __init__(self, times: Sequence[float], factors: Sequence[float]) -> None:
        if not times or times[0] != 0.0 or len(times) != len(factors):
            raise ValueError("times must start at 0 and have one factor each")
        if any(b <= a for a, b in itertools.pairwise(times)) or min(factors) <= 0:
            raise ValueError("times must increase strictly and factors be positive")
        self.times, self.factors = tuple(times), tuple(factors)

    def duration(self, start: float, nominal: float) -> float:
        import bisect

        i = max(0, bisect.bisect_right(self.times, start) - 1)
        t, work = start, nominal
        while i + 1 < len(self.times):
            room = (self.times[i + 1] - t) * self.factors[i]  # nominal seconds sent before the next change
            if room >= work:
                break
            work -= room
            t = self.times[i + 1]
            i += 1
        return t + work / self.factors[i] - start


_NS_MS = 1e-6  # a nanosecond in milliseconds


class DeliverySchedule:
    """A packet-delivery trace in the Mahimahi format (Netravali et al., "Mahimahi: Accurate Record-and-Replay
    for HTTP", USENIX ATC 2015): each entry is a millisecond at which the link may deliver one ``mtu``-byte
    packet; the trace repeats every ``period_ms`` (its last timestamp, as Mahimahi loops it).

    :meth:`transmit` serves one transmission after another, in order (a FIFO link), as Mahimahi's link
    queue does: a transmission of ``b`` bytes uses the delivery opportunities from its start on, ``mtu``
    bytes each, and ends at the one that carries its last byte; bytes left in that opportunity go to the
    next transmission if it starts at that very instant, and are lost otherwise (an opportunity nobody
    uses is lost too)."""

    def __init__(self, ms: Sequence[int], mtu: float) -> None:
        if not ms or any(b < a for a, b in itertools.pairwise(ms)) or ms[0] < 0 or ms[-1] <= 0:
            raise ValueError("a packet trace needs non-decreasing millisecond timestamps, the last above 0")
        if mtu <= 0:
            raise ValueError("mtu must be above 0")
        self.ms, self.mtu = tuple(int(m) for m in ms), float(mtu)
        self.period_ms = self.ms[-1]
        self.next = 0              # index (counting over the loops) of the first opportunity not used
        self.left = 0.0            # bytes left in the last opportunity used
        self.left_at = -1.0        # its time

    def time(self, k: int) -> float:
        """Time (seconds) of opportunity ``k`` (counting over the loops)."""
        n = len(self.ms)
        return (self.ms[k % n] + (k // n) * self.period_ms) / 1000.0

    def first_at_or_after(self, t: float) -> int:
        """Index of the first opportunity at or after ``t`` seconds (within a nanosecond: event times are
        sums of floats)."""
        import bisect

        n, period = len(self.ms), self.period_ms
        t_ms = t * 1000.0 - _NS_MS
        loop = int(t_ms // period) if period else 0
        while True:
            i = bisect.bisect_left(self.ms, t_ms - loop * period)
            if i < n:
                return loop * n + i
            loop += 1

    def transmit(self, start: float, nbytes: float) -> float:
        """End time of a transmission of ``nbytes`` starting at ``start`` (after the previous one ended)."""
        if nbytes <= 0:
            return start
        if self.left > 0 and abs(self.left_at - start) <= 1e-9:
            use = min(self.left, nbytes)
            self.left -= use
            nbytes -= use
            if nbytes <= 0:
                return start
        k = max(self.next, self.first_at_or_after(start))
        m = math.ceil(nbytes / self.mtu - 1e-12)
        last = k + m - 1
        end = self.time(last)
        self.next = last + 1
        self.left, self.left_at = m * self.mtu - nbytes, end
        return end

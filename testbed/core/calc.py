"""Pure arithmetic used by the stations (no SimPy here, all unit-tested on its own)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from testbed.dists import Dist

__all__ = ["batch_decision", "batch_time_fn", "interpolate_table"]

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

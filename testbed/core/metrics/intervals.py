"""Confidence intervals and warm-up detection: pure functions of numeric series.

- :func:`t_interval`: Student-t interval of a mean from independent values (e.g. one per replication,
  Law & Kelton, *Simulation Modeling and Analysis*, 5th ed., sec. 9.4.1); :func:`replication_interval`
  the same from at least :data:`MIN_REPLICATIONS` values.
- :func:`batch_interval`: within one run, the method of batch means (Law & Kelton sec. 9.5.3): the
  series, in creation order, is cut into ``batches`` consecutive batches of equal size; the statistic of
  each batch gives the spread. The interval is centred on the statistic of the whole series and its half
  width is ``t(k-1) * sd(batch statistics) / sqrt(k)`` ("sectioning", Asmussen & Glynn, *Stochastic
  Simulation*, 2007, sec. III.5a), which keeps a percentile's point estimate inside its interval.
- :func:`mser`: the MSER-5 truncation heuristic (White 1997, *Simulation* 69(6); White, Cobb & Spratt
  2000): the warm-up to discard is the one that minimises the standard error of the mean of what is kept.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BATCHES", "LEVEL", "MIN_PER_BATCH", "MIN_REPLICATIONS", "MSER_BATCH", "batch_interval",
           "batch_method", "mser", "replication_interval", "replication_method", "replication_warning", "statistic", "t_interval"]

LEVEL = 0.95
"""Confidence level of every interval."""
MIN_REPLICATIONS = 3
"""Fewest replications a replication interval is computed from (two give t = 12.7 and bow ties)."""
BATCHES = 20
"""Batches of a within-run interval (Law & Kelton recommend 10 to 30)."""
MIN_PER_BATCH = 10
"""Fewest observations per batch; a shorter series gets no within-run interval."""
MSER_BATCH = 5
"""MSER-5: the series is averaged in non-overlapping batches of five before truncation."""


def statistic(values: np.ndarray, q: float | None) -> float:
    """The mean (``q`` None) or the ``q``-th percentile (numpy's default, linear) of ``values``."""
    return float(np.mean(values)) if q is None else float(np.percentile(values, q))


def _t(level: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def t_interval(values: np.ndarray, level: float = LEVEL, min_n: int = 2) -> tuple[float, float]:
    """Student-t interval of the mean of independent ``values`` (NaNs ignored); NaN below ``min_n``."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n < max(2, min_n) or not np.isfinite(v).all():
        return (math.nan, math.nan)
    m, s = float(np.mean(v)), float(np.std(v, ddof=1))
    half = _t(level, n - 1) * s / math.sqrt(n)
    return (m - half, m + half)


def replication_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """:func:`t_interval` across replications, NaN with fewer than :data:`MIN_REPLICATIONS` of them."""
    return t_interval(values, level, min_n=MIN_REPLICATIONS)


def replication_method(replications: int, level: float = LEVEL) -> str:
    """How a sweep cell's ``<metric>_ci_low/_ci_high`` were computed from its ``replications``."""
    if replications < MIN_REPLICATIONS:
        return (f"none: {replications} replication{'s' if replications != 1 else ''}; "
                f"intervals need {MIN_REPLICATIONS} or more")
    return f"Student-t {level:.0%} across {replications} replications"


def replication_warning(replications: int) -> str | None:
    """One line for a sweep whose cells have fewer than :data:`MIN_REPLICATIONS` replications."""
    if replications >= MIN_REPLICATIONS:
        return None
    return (f"no confidence intervals: {replications} replication{'s' if replications != 1 else ''} per cell "
            f"(set replications: {MIN_REPLICATIONS} or more for Student-t intervals and bands)")


def batch_method(batches: int = BATCHES, level: float = LEVEL) -> str:
    """How :func:`batch_interval` computes, in one line (stored beside the intervals)."""
    return (f"batch means: {batches} consecutive batches of completed requests by creation time, "
            f"Student-t {level:.0%}")


def batch_interval(values: np.ndarray, q: float | None = None, batches: int = BATCHES, level: float = LEVEL,
                   min_per_batch: int = MIN_PER_BATCH) -> tuple[float, float]:
    """Within-run interval of the mean (``q`` None) or ``q``-th percentile of a series in time order.

    ``values`` is cut into ``batches`` consecutive batches of (almost) equal size; the interval is the
    whole series' statistic plus or minus ``t(batches-1) * sd / sqrt(batches)`` of the batch statistics.
    NaN when any batch would hold fewer than ``min_per_batch`` values or a value is not finite."""
    v = np.asarray(values, dtype=float)
    if batches < 2 or len(v) < batches * min_per_batch or not np.isfinite(v).all():
        return (math.nan, math.nan)
    per_batch = np.array([statistic(b, q) for b in np.array_split(v, batches)])
    centre = statistic(v, q)
    half = _t(level, batches - 1) * float(np.std(per_batch, ddof=1)) / math.sqrt(batches)
    return (centre - half, centre + half)


def mser(values: np.ndarray, batch: int = MSER_BATCH) -> int | None:
    """MSER-``batch`` truncation point: how many leading ``values`` to discard as warm-up.

    The series is averaged in non-overlapping batches of ``batch`` (a trailing partial batch is left
    out); for each ``d`` in the first half of the ``m`` batch means ``Z``, ``MSER(d) = sum_{j>=d} (Z_j -
    mean(Z_{d:}))^2 / (m - d)^2``; the truncation is ``batch * argmin``. Returns None when the minimum
    lies at the end of the first half (no steady state within the series: it is still trending) or
    the series is too short (fewer than four batches)."""
    v = np.asarray(values, dtype=float)
    m = len(v) // batch
    if m < 4 or not np.isfinite(v).all():
        return None
    z = v[: m * batch].reshape(m, batch).mean(axis=1)
    z = z - z.mean()  # centred: the sums of squares below lose no precision
    tail_sum = np.cumsum(z[::-1])[::-1]            # sum_{j>=d} z_j
    tail_sq = np.cumsum((z * z)[::-1])[::-1]       # sum_{j>=d} z_j^2
    kept = m - np.arange(m)                         # m - d
    half = m // 2
    ss = tail_sq[: half + 1] - tail_sum[: half + 1] ** 2 / kept[: half + 1]
    score = np.maximum(ss, 0.0) / kept[: half + 1] ** 2
    d = int(np.argmin(score))
    return None if d == half else d * batch

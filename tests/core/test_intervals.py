"""Intervals and warm-up detection against known cases: coverage of seeded repetitions, the batch
means' advantage on a correlated series, MSER-5 against a brute-force evaluation and on series with
and without an initial transient."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from testbed.core.metrics.intervals import (
    MIN_REPLICATIONS,
    batch_interval,
    mser,
    replication_interval,
    replication_method,
    replication_warning,
    t_interval,
)


def _covers(interval: tuple[float, float], value: float) -> bool:
    return interval[0] <= value <= interval[1]


def test_t_interval_is_scipys_student_t() -> None:
    x = np.array([1.0, 2.0, 4.0, 7.5])
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert t_interval(x) == pytest.approx(ref)
    assert t_interval(np.array([1.0, np.nan, 2.0, 4.0])) == pytest.approx(t_interval(np.array([1.0, 2.0, 4.0])))


def test_replication_intervals_need_three_replications() -> None:
    assert MIN_REPLICATIONS == 3
    assert all(math.isnan(v) for v in replication_interval(np.array([0.040, 0.041])))
    assert all(math.isfinite(v) for v in replication_interval(np.array([0.040, 0.041, 0.043])))
    assert replication_warning(2) is not None and "2 replications" in str(replication_warning(2))
    assert replication_warning(3) is None
    assert replication_method(1).startswith("none") and "3 replications" in replication_method(3)


def test_batch_interval_of_iid_normal_means_covers_about_95_percent() -> None:
    rng = np.random.default_rng(14)
    reps = 400
    hits = sum(_covers(batch_interval(rng.normal(5.0, 2.0, 2000)), 5.0) for _ in range(reps))
    assert 0.92 <= hits / reps <= 0.98   # 95% +- 3 standard errors of a binomial share over 400


def test_batch_interval_of_a_percentile_covers_the_true_percentile() -> None:
    rng = np.random.default_rng(15)
    true_p95 = 5.0 + 2.0 * stats.norm.ppf(0.95)
    reps = 300
    hits = 0
    for _ in range(reps):
        x = rng.normal(5.0, 2.0, 4000)
        lo, hi = batch_interval(x, 95.0)
        assert lo <= np.percentile(x, 95) <= hi   # centred on the whole series' statistic
        hits += _covers((lo, hi), true_p95)
    assert 0.89 <= hits / reps <= 0.985


def test_batch_means_cover_a_correlated_mean_where_the_iid_interval_does_not() -> None:
    """AR(1) with phi 0.9 (a queue's latency is autocorrelated like this): the naive interval treats
    20,000 correlated values as independent and is far too narrow; batches of 1,000 are nearly
    independent."""
    rng = np.random.default_rng(16)
    reps, batch_hits, naive_hits = 200, 0, 0
    for _ in range(reps):
        x = lfilter([1.0], [1.0, -0.9], rng.normal(0.0, 1.0, 20_000))
        batch_hits += _covers(batch_interval(x), 0.0)
        naive_hits += _covers(t_interval(x), 0.0)
    assert batch_hits / reps >= 0.88
    assert naive_hits / reps <= 0.6


def test_batch_interval_needs_enough_finite_values() -> None:
    assert all(math.isnan(v) for v in batch_interval(np.ones(199)))        # 20 batches of at least 10
    assert batch_interval(np.ones(200)) == (1.0, 1.0)
    assert all(math.isnan(v) for v in batch_interval(np.r_[np.ones(300), np.inf]))


def _mser_brute(x: np.ndarray, batch: int = 5) -> int:
    m = len(x) // batch
    z = x[: m * batch].reshape(m, batch).mean(axis=1)
    scores = [np.sum((z[d:] - z[d:].mean()) ** 2) / (m - d) ** 2 for d in range(m // 2 + 1)]
    return int(np.argmin(scores)) * batch


def test_mser_equals_the_definition() -> None:
    rng = np.random.default_rng(17)
    for _ in range(30):
        x = rng.gamma(2.0, 1.0, int(rng.integers(40, 400)))
        x[: len(x) // 10] += rng.uniform(0, 5)   # an occasional transient
        brute = _mser_brute(x)
        got = mser(x)
        assert got == (None if brute == 5 * (len(x) // 5 // 2) else brute)


def test_mser_finds_an_obvious_initial_transient() -> None:
    rng = np.random.default_rng(18)
    t = np.arange(5000)
    x = 1.0 + 10.0 * np.exp(-t / 100.0) + rng.normal(0.0, 1.0, len(t))
    d = mser(x)
    assert d is not None and 150 <= d <= 1200   # the bias is below the noise after about 300-500


def test_mser_truncates_little_of_a_stationary_series() -> None:
    rng = np.random.default_rng(19)
    cuts = [mser(rng.exponential(1.0, 5000)) for _ in range(20)]
    assert all(c is not None for c in cuts)
    assert np.median([c for c in cuts if c is not None]) <= 250      # at most 5% of the series


def test_mser_reports_a_series_still_trending() -> None:
    rng = np.random.default_rng(20)
    assert mser(np.linspace(0.0, 100.0, 3000) + rng.normal(0.0, 1.0, 3000)) is None   # a queue growing
    assert mser(np.ones(19)) is None                                                   # too short

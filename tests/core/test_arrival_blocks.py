"""Arrival times served from vectorised blocks equal the scalar recurrences they replace."""

from __future__ import annotations

import itertools

import numpy as np

from testbed.core.arrivals import _BLOCK, _periodic, _poisson
from testbed.dists import Dist, Normal


def _poisson_loop(rate: float, rng: np.random.Generator, n: int) -> list[float]:
    out, t = [], 0.0
    while len(out) < n:
        for g in rng.exponential(1.0 / rate, _BLOCK).tolist():
            t += g
            out.append(t)
    return out[:n]


def _periodic_loop(period: float, jitter: Dist | None, phase: float, rng: np.random.Generator, n: int) -> list[float]:
    out, k, last = [], 0, 0.0
    while len(out) < n:
        nominal = phase + period * np.arange(k, k + _BLOCK, dtype=float)
        times = nominal + jitter.draw(rng, _BLOCK) if jitter is not None else nominal
        for t in times.tolist():
            last = t if t > last else last
            out.append(last)
        k += _BLOCK
    return out[:n]


def test_poisson_blocks_equal_the_running_sum_bit_for_bit() -> None:
    for seed in (0, 1, 2):
        n = 3 * _BLOCK + 7
        got = list(itertools.islice(_poisson(3.7, np.random.default_rng(seed)), n))
        assert got == _poisson_loop(3.7, np.random.default_rng(seed), n)


def test_periodic_blocks_keep_frames_in_order_as_the_loop_did() -> None:
    jitter = Normal(0.0, 0.4)  # larger than half the period: the running maximum matters
    for seed in (0, 1):
        n = 2 * _BLOCK + 3
        got = list(itertools.islice(_periodic(0.5, jitter, 0.1, np.random.default_rng(seed)), n))
        assert got == _periodic_loop(0.5, jitter, 0.1, np.random.default_rng(seed), n)
        assert all(b >= a for a, b in itertools.pairwise(got))
    plain = list(itertools.islice(_periodic(0.25, None, 0.0, np.random.default_rng(0)), 5))
    assert plain == [0.0, 0.25, 0.5, 0.75, 1.0]

"""Arrival-time generators for one node: periodic with jitter and phase, Poisson, or a trace."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from testbed.config.schema import Arrivals
from testbed.dists import Dist

__all__ = ["arrival_times"]

_BLOCK = 64


def _periodic(period: float, jitter: Dist | None, phase: float, rng: np.random.Generator) -> Iterator[float]:
    k, last = 0, 0.0
    while True:
        nominal = phase + period * np.arange(k, k + _BLOCK, dtype=float)
        times = nominal + jitter.draw(rng, _BLOCK) if jitter is not None else nominal
        for t in times.tolist():
            last = t if t > last else last  # jitter never reorders frames
            yield last
        k += _BLOCK


def _poisson(rate: float, rng: np.random.Generator) -> Iterator[float]:
    t = 0.0
    while True:
        gaps = rng.exponential(1.0 / rate, _BLOCK)
        for g in gaps.tolist():
            t += g
            yield t


def arrival_times(spec: Arrivals, node_in_group: int, rng: np.random.Generator) -> Iterator[float]:
    """Absolute arrival times (seconds, non-decreasing) for one node, drawn from ``rng``."""
    if spec.kind == "periodic":
        assert spec.rate is not None
        period = 1.0 / spec.rate
        phase = float(rng.uniform(0.0, period)) if spec.random_phase else 0.0
        jitter = spec.jitter if isinstance(spec.jitter, Dist) else None
        return _periodic(period, jitter, phase, rng)
    if spec.kind == "poisson":
        assert spec.rate is not None
        return _poisson(spec.rate, rng)
    times = np.asarray(spec.trace_times, dtype=float)
    if spec.trace_nodes:
        times = times[np.asarray(spec.trace_nodes) == node_in_group]
    return iter(np.sort(times).tolist())

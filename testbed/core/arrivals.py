"""Arrival processes: for one node, absolute arrival times drawn from its own stream.

Each process is registered by the name ``fleet.N.arrivals.kind`` selects (``periodic`` with jitter
and phase, ``poisson``, ``trace``), with the mean number of frames a node makes, which sizes the
record arrays once. A new process is one module with a registration in :data:`ARRIVALS` (its name and
parameters also go in the ``Arrivals`` schema, as the built-in ones' do).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from testbed.config.schema import Arrivals
from testbed.dists import Dist
from testbed.registry import Registry

__all__ = ["ARRIVALS", "ArrivalProcess", "arrival_times", "expected_frames"]

_BLOCK = 64


def _periodic(period: float, jitter: Dist | None, phase: float, rng: np.random.Generator) -> Iterator[float]:
    def blocks() -> Iterator[list[float]]:
        k, last = 0, 0.0
        while True:
            nominal = phase + period * np.arange(k, k + _BLOCK, dtype=float)
            times = nominal + jitter.draw(rng, _BLOCK) if jitter is not None else nominal
            # jitter never reorders frames: each time is at least the one before (a running maximum)
            kept = np.maximum.accumulate(np.concatenate(([last], times)))[1:].tolist()
            last = kept[-1]
            yield kept
            k += _BLOCK
    return itertools.chain.from_iterable(blocks())  # a C-level next per frame


def _poisson(rate: float, rng: np.random.Generator) -> Iterator[float]:
    def blocks() -> Iterator[list[float]]:
        t = 0.0
        while True:
            gaps = rng.exponential(1.0 / rate, _BLOCK)
            times = list(itertools.accumulate(gaps.tolist(), initial=t))[1:]  # t += gap, as a loop would
            t = times[-1]
            yield times
    return itertools.chain.from_iterable(blocks())


@dataclass(frozen=True)
class ArrivalProcess:
    """``times(spec, node_in_group, rng)``: the node's arrival times (seconds, non-decreasing);
    ``frames(spec, nodes_in_group, duration_s)``: the mean number of frames one node makes."""

    times: Callable[[Arrivals, int, np.random.Generator], Iterator[float]]
    frames: Callable[[Arrivals, int, float], float]


ARRIVALS: Registry[ArrivalProcess] = Registry("arrival process")


def _periodic_times(spec: Arrivals, node_in_group: int, rng: np.random.Generator) -> Iterator[float]:
    assert spec.rate is not None
    period = 1.0 / spec.rate
    phase = float(rng.uniform(0.0, period)) if spec.random_phase else 0.0
    jitter = spec.jitter if isinstance(spec.jitter, Dist) else None
    return _periodic(period, jitter, phase, rng)


def _poisson_times(spec: Arrivals, node_in_group: int, rng: np.random.Generator) -> Iterator[float]:
    assert spec.rate is not None
    return _poisson(spec.rate, rng)


def _trace_times(spec: Arrivals, node_in_group: int, rng: np.random.Generator) -> Iterator[float]:
    times = np.asarray(spec.trace_times, dtype=float)
    if spec.trace_nodes:
        times = times[np.asarray(spec.trace_nodes) == node_in_group]
    return iter(np.sort(times).tolist())


def _rate_frames(spec: Arrivals, nodes: int, duration_s: float) -> float:
    return (spec.rate or 0.0) * duration_s


def _trace_frames(spec: Arrivals, nodes: int, duration_s: float) -> float:
    return len(spec.trace_times) if not spec.trace_nodes else len(spec.trace_times) / max(1, nodes)


ARRIVALS.add("periodic", ArrivalProcess(_periodic_times, _rate_frames))
ARRIVALS.add("poisson", ArrivalProcess(_poisson_times, _rate_frames))
ARRIVALS.add("trace", ArrivalProcess(_trace_times, _trace_frames))


def arrival_times(spec: Arrivals, node_in_group: int, rng: np.random.Generator) -> Iterator[float]:
    """Absolute arrival times (seconds, non-decreasing) for one node, drawn from ``rng``."""
    return ARRIVALS.get(spec.kind, "arrivals.kind").times(spec, node_in_group, rng)


def expected_frames(spec: Arrivals, nodes_in_group: int, duration_s: float) -> float:
    """The mean number of frames one node of the group makes in ``duration_s``."""
    return ARRIVALS.get(spec.kind, "arrivals.kind").frames(spec, nodes_in_group, duration_s)

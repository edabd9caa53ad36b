"""Distributions for durations, sizes and inter-arrival times.

Every duration or size in a scenario may be a constant (``"20 ms"``) or a distribution
(``{dist: exponential, mean: 20 ms}``). Values are stored in base units (seconds, bytes).
Samplers draw from a caller-owned :class:`numpy.random.Generator` in blocks, so a scalar draw
costs a C-level ``next`` over the current block rather than a NumPy call (:func:`block_sampler`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.errors import ConfigError
from testbed.registry import Registry
from testbed.units import parse_duration, parse_rate, parse_size

__all__ = [
    "DISTS",
    "DIST_KINDS",
    "Deterministic",
    "Dist",
    "Empirical",
    "EmpiricalFile",
    "Exponential",
    "Lognormal",
    "Normal",
    "Uniform",
    "block_sampler",
    "int_sampler",
    "parse_dist",
]

_BLOCK = 64


def block_sampler(draw: Callable[[int], np.ndarray]) -> Callable[[], float]:
    """Scalar draws served from blocks of vectorised draws ``draw(n)``: a call is a C-level ``next`` on
    the current block; the next block of ``_BLOCK`` draws is made when one runs out (as late as possible,
    so the generator's other users see the same stream)."""
    return functools.partial(next, _blocks(draw))


def int_sampler(rng: np.random.Generator, n: int) -> Callable[[], int]:
    """Uniform integers in ``[0, n)`` from ``rng``, served as :func:`block_sampler` serves its draws."""
    return functools.partial(next, _blocks(lambda k: rng.integers(0, n, k)))


def _blocks(draw: Callable[[int], np.ndarray]) -> Iterator[Any]:
    def chunks() -> Iterator[list[Any]]:
        while True:
            yield draw(_BLOCK).tolist()
    return itertools.chain.from_iterable(chunks())


@dataclass(frozen=True)
class Dist:
    """Base class; subclasses implement :meth:`draw` and :meth:`mean`."""

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def second_moment(self) -> float:
        """E[X^2], used by queueing formulas (Pollaczek-Khinchine)."""
        x = self.draw(np.random.default_rng(0), 200_000)
        return float(np.mean(x * x))

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        return block_sampler(lambda n: self.draw(rng, n))

    def scaled(self, factor: float) -> Dist:
        """The same shape with every value multiplied by ``factor``."""
        raise NotImplementedError(type(self).__name__)


@dataclass(frozen=True)
class Deterministic(Dist):
    value: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def mean(self) -> float:
        return self.value

    def second_moment(self) -> float:
        return self.value * self.value

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        value = float(self.value)
        return lambda: value

    def scaled(self, factor: float) -> Deterministic:
        return Deterministic(self.value * factor)


def constant_of(dist: Dist) -> float | None:
    """The value of a constant distribution (None otherwise): a caller may skip sampling it, which
    draws no random numbers, so the other draws are unchanged."""
    return float(dist.value) if isinstance(dist, Deterministic) else None


@dataclass(frozen=True)
class Exponential(Dist):
    mean_value: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_value, n)

    def mean(self) -> float:
        return self.mean_value

    def second_moment(self) -> float:
        return 2.0 * self.mean_value**2

    def scaled(self, factor: float) -> Exponential:
        return Exponential(self.mean_value * factor)


@dataclass(frozen=True)
class Uniform(Dist):
    low: float
    high: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)

    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    def second_moment(self) -> float:
        return (self.low**2 + self.low * self.high + self.high**2) / 3.0

    def scaled(self, factor: float) -> Uniform:
        return Uniform(self.low * factor, self.high * factor)


@dataclass(frozen=True)
class Lognormal(Dist):
    """Lognormal given by its median and the standard deviation ``sigma`` of log(X)."""

    median: float
    sigma: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(math.log(self.median), self.sigma, n)

    def mean(self) -> float:
        return self.median * math.exp(0.5 * self.sigma**2)

    def second_moment(self) -> float:
        return self.median**2 * math.exp(2.0 * self.sigma**2)

    def scaled(self, factor: float) -> Lognormal:
        return Lognormal(self.median * factor, self.sigma)


@dataclass(frozen=True)
class Normal(Dist):
    """Normal with mean and std, clipped at zero (durations and sizes are never negative)."""

    mean_value: float
    std: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.maximum(rng.normal(self.mean_value, self.std, n), 0.0)

    def mean(self) -> float:
        return self.mean_value  # exact when std << mean; clipping is documented

    def scaled(self, factor: float) -> Normal:
        return Normal(self.mean_value * factor, self.std * factor)


@dataclass(frozen=True)
class Empirical(Dist):
    """Resampling (with replacement) of observed values, e.g. measured latencies from a file."""

    values: tuple[float, ...]
    source: str = ""

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        arr = np.asarray(self.values, dtype=float)
        return arr[rng.integers(0, len(arr), n)]

    def mean(self) -> float:
        return float(np.mean(self.values))

    def second_moment(self) -> float:
        arr = np.asarray(self.values, dtype=float)
        return float(np.mean(arr * arr))

    def scaled(self, factor: float) -> Empirical:
        return Empirical(tuple(v * factor for v in self.values), self.source)


@dataclass(frozen=True)
class EmpiricalFile(Dist):
    """An empirical distribution whose values are still in a file (``file``, optional CSV ``column``;
    values are multiplied by ``scale``, the unit's factor). :func:`testbed.config.resolve.resolve`
    reads it into an :class:`Empirical`; drawing from it before then is an error."""

    file: str
    column: str | None = None
    scale: float = 1.0

    def _unresolved(self) -> Any:
        raise ConfigError("file", self.file, "a scenario resolved first (testbed.run.prepare.prepare reads "
                          "empirical data files)")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._unresolved()

    def mean(self) -> float:
        return self._unresolved()

    def second_moment(self) -> float:
        return self._unresolved()

    def scaled(self, factor: float) -> EmpiricalFile:
        return EmpiricalFile(self.file, self.column, self.scale * factor)

    def resolved(self, values: tuple[float, ...]) -> Empirical:
        """The distribution over ``values`` read from the file (in the file's unit)."""
        if not values:
            raise ValueError(f"file: {self.file!r} holds no values")
        if self.scale != 1.0:
            values = tuple(v * self.scale for v in values)
        check_values(values)
        return Empirical(values, self.file)


def check_values(values: tuple[float, ...]) -> None:
    """Empirical values must be finite and >= 0 (ValueError naming the first that is not)."""
    for i, v in enumerate(values):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"empirical values must be finite and >= 0 (value {i + 1} is {v})")


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, (list, tuple, dict)) or len(value) < 20 else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."



_PARSERS: dict[str, Callable[[object], float]] = {
    "duration": parse_duration, "size": parse_size, "interval": parse_duration,
}


def parse_dist(raw: Any, kind: str = "duration") -> Dist:
    """Read a constant or ``{dist: ...}`` mapping into a :class:`Dist` in base units.

    No file is opened: ``{dist: empirical, file: ...}`` becomes an :class:`EmpiricalFile` that
    :func:`testbed.config.resolve.resolve` reads. Raises ``ValueError`` with a message that names
    the offending key; the scenario loader prefixes it with the field path.
    """
    parse = _PARSERS[kind]
    if not isinstance(raw, Mapping):
        value = parse(raw)
        if value < 0 or not math.isfinite(value):
            raise ValueError("must be a finite value >= 0")
        return Deterministic(value)
    spec = dict(raw)
    name = spec.pop("dist", None)
    if not isinstance(name, str) or name not in DISTS:
        raise ValueError(f"dist must be one of {', '.join(DIST_KINDS)} (got {_clip(name)})")
    allowed, build = DISTS.get(name)
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {_clip(sorted(map(str, unknown)))} for dist {name}; allowed: {sorted(allowed)}")
    return build(_Spec(name, spec, parse))


@dataclass(frozen=True)
class _Spec:
    """The keys of one ``{dist: name, ...}`` mapping and the unit parser of its field."""

    name: str
    keys: dict[str, Any]
    parse: Callable[[object], float]

    def get(self, key: str, positive: bool = False) -> float:
        if key not in self.keys:
            raise ValueError(f"dist {self.name} needs '{key}'")
        try:
            v = self.parse(self.keys[key])
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise ValueError(f"{key} must be {'> 0' if positive else '>= 0'} (got {_clip(self.keys[key])})")
        return v


def _exponential(s: _Spec) -> Dist:
    if "rate" in s.keys:
        try:
            rate = parse_rate(s.keys["rate"])
        except ValueError as exc:
            raise ValueError(f"rate: {exc}") from None
        if not rate > 0 or not math.isfinite(1.0 / rate):
            raise ValueError(f"rate must be a finite rate > 0 (got {_clip(s.keys['rate'])})")
        return Exponential(1.0 / rate)
    return Exponential(s.get("mean", positive=True))


def _uniform(s: _Spec) -> Dist:
    low, high = s.get("low"), s.get("high")
    if high < low:
        raise ValueError(f"uniform needs low <= high (got low={_clip(s.keys['low'])}, high={_clip(s.keys['high'])})")
    return Uniform(low, high)


#: largest lognormal sigma (std of log X): exp(sigma^2 / 2), the mean's factor, stays finite and sane
MAX_SIGMA = 10.0


def _lognormal(s: _Spec) -> Dist:
    raw = s.keys.get("sigma")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"lognormal needs sigma, a number from 0 to {MAX_SIGMA:g} (std of log X; got {_clip(raw)})")
    sigma = float(raw)
    if not 0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"lognormal needs sigma from 0 to {MAX_SIGMA:g} (std of log X; got {_clip(raw)})")
    if "median" in s.keys:
        return Lognormal(s.get("median", positive=True), sigma)
    return Lognormal(s.get("mean", positive=True) * math.exp(-0.5 * sigma**2), sigma)


def _normal(s: _Spec) -> Dist:
    std = s.get("std")
    return Normal(s.get("mean"), std)


def _empirical(s: _Spec) -> Dist:
    spec, parse = s.keys, s.parse
    factor = parse(f"1 {spec['unit']}") if "unit" in spec else None
    if "file" in spec and "values" not in spec:
        column = spec.get("column")
        return EmpiricalFile(str(spec["file"]), str(column) if column is not None else None,
                             1.0 if factor is None else factor)
    if "values" not in spec:
        raise ValueError("empirical needs 'file' (one value per line, or a CSV column) or 'values'")
    if not isinstance(spec["values"], (list, tuple)):
        raise ValueError(f"empirical values must be a list of numbers (got {_clip(spec['values'])})")
    values = tuple(parse(v) for v in spec["values"])
    if not values:
        raise ValueError("empirical needs at least one value")
    if factor is not None:
        values = tuple(v * factor for v in values)
    check_values(values)
    return Empirical(values, "inline")


DistKind = tuple[frozenset[str], Callable[[_Spec], Dist]]
"""A ``dist`` name's allowed keys and its builder."""

DISTS: Registry[DistKind] = Registry("distribution")
"""The ``{dist: NAME, ...}`` kinds (a new distribution: a :class:`Dist` class and one registration)."""
DISTS.add("deterministic", (frozenset({"value"}), lambda s: Deterministic(s.get("value"))))
DISTS.add("exponential", (frozenset({"mean", "rate"}), _exponential))
DISTS.add("uniform", (frozenset({"low", "high"}), _uniform))
DISTS.add("lognormal", (frozenset({"median", "sigma", "mean"}), _lognormal))
DISTS.add("normal", (frozenset({"mean", "std"}), _normal))
DISTS.add("empirical", (frozenset({"file", "column", "values", "unit"}), _empirical))
DIST_KINDS = tuple(name for name, _ in DISTS.items())

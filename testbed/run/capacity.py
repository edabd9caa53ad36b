"""Capacity planning: the largest fleet that meets a latency objective, found by bisection.

The objective is written ``"p95 < 200 ms"`` (``p50|p90|p95|p99|mean|max``, ``<`` or ``<=``). Requests
dropped, timed out or still in flight at the end count as infinitely late, so a fleet that only
"meets" the objective by dropping frames does not pass. Assumes latency grows with fleet size.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from testbed.config.load import apply_overrides
from testbed.core.metrics import censored_statistic, in_window, latency_or_inf, with_stages
from testbed.errors import ConfigError
from testbed.run.prepare import prepare_dict
from testbed.run.sweep import replication_seed
from testbed.units import parse_duration

__all__ = ["MAX_FLEET", "CapacityResult", "Probe", "Slo", "capacity_search", "check_search", "parse_slo", "probe",
           "probe_runs", "resolve_groups", "saturating", "slo_value"]

_METRICS = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0, "mean": None}


@dataclass(frozen=True)
class Slo:
    metric: str
    bound_s: float
    strict: bool = True

    def met(self, value: float) -> bool:
        return value < self.bound_s if self.strict else value <= self.bound_s

    def __str__(self) -> str:
        return f"{self.metric} {'<' if self.strict else '<='} {self.bound_s * 1e3:g} ms"


def parse_slo(text: str) -> Slo:
    m = re.fullmatch(r"\s*(\w+)\s*(<=|<)\s*(.+?)\s*", text)
    if not m or m.group(1) not in _METRICS:
        raise ConfigError("--slo", text, f"an objective like 'p95 < 200 ms' with one of {', '.join(_METRICS)}")
    try:
        bound = parse_duration(m.group(3))
    except ValueError as exc:
        raise ConfigError("--slo", text, f"a duration bound like '200 ms' ({exc})") from None
    if bound <= 0:
        raise ConfigError("--slo", text, "a positive bound")
    return Slo(m.group(1), bound, m.group(2) == "<")


MAX_FLEET = 1_000_000
"""Largest fleet size a search may probe."""


def check_search(start: int, limit: int) -> None:
    """Refuse a search range that is empty, not positive or beyond :data:`MAX_FLEET`."""
    if not 1 <= start <= MAX_FLEET:
        raise ConfigError("--start", start, f"a fleet size from 1 to {MAX_FLEET:,}")
    if not start <= limit <= MAX_FLEET:
        raise ConfigError("--limit", limit, f"a fleet size from --start ({start}) to {MAX_FLEET:,}")


def slo_value(records: Any, window: tuple[float, float], metric: str) -> float:
    """The objective's latency statistic over the requests created in ``window``, with those not
    completed counted as infinitely late (:func:`~testbed.core.metrics.censored_statistic`, the
    summary's ``latency_*_all_s``, read at the ``higher`` rank: an observed latency or ``inf``)."""
    return censored_statistic(latency_or_inf(with_stages(in_window(records, window))), _METRICS[metric],
                              method="higher")


def group_slo_values(records: Any, window: tuple[float, float], metric: str, groups: dict[str, int]
                     ) -> dict[str, float]:
    """:func:`slo_value` over each named fleet group's requests only (``groups``: name -> index)."""
    rows = with_stages(in_window(records, window))
    group = rows["group"].to_numpy()
    return {name: censored_statistic(latency_or_inf(rows[group == g]), _METRICS[metric], method="higher")
            for name, g in groups.items()}


def resolve_groups(raw: dict[str, Any], groups: Sequence[str]) -> dict[str, int]:
    """Fleet group names (``all``: every group) -> their indices in ``raw``'s fleet; an unknown name is a
    :class:`ConfigError` on ``--group``."""
    fleet = raw.get("fleet") or []
    names = [str(g.get("name") or f"group{i}") if isinstance(g, dict) else f"group{i}" for i, g in enumerate(fleet)]
    if "all" in groups:
        return {name: i for i, name in enumerate(names)}
    out = {}
    for name in groups:
        if name not in names:
            raise ConfigError("--group", name, f"a fleet group name ({', '.join(names)}) or all")
        out[name] = names.index(name)
    return out


@dataclass
class CapacityResult:
    values: dict[str, Any]
    capacity: int
    value_at_capacity: float
    first_failing: int | None
    value_at_failing: float
    saturating_station: str
    utilisation: dict[str, float]
    probes: int
    warnings: list[str] = field(default_factory=list)  # the runs at capacity's summary warnings
    binding_group: str | None = None  # per-group objective: the group that fails first (worst at failing)


@dataclass(frozen=True)
class Probe:
    """One fleet size's runs: the objective's statistic (replications averaged), mean utilisations,
    and the summaries' warnings (each once, in order)."""

    value: float
    utilisation: dict[str, float]
    warnings: tuple[str, ...] = ()
    by_group: dict[str, float] = field(default_factory=dict)  # per objective group (replications averaged)


def saturating(utilisation: dict[str, float], within: float = 0.02) -> str:
    """The busiest station, and any other within ``within`` of it (``uplink + server GPU``)."""
    if not utilisation:
        return "-"
    top = max(utilisation.values())
    return " + ".join(k for k, v in utilisation.items() if v >= top - within)


def probe(raw: dict[str, Any], field: str, n: int, slo: Slo, base_dir: Path | None, replications: int
          ) -> tuple[float, dict[str, float]]:
    """Run the scenario with ``field = n`` (all replications pooled) -> (statistic, utilisations)."""
    p = probe_runs(raw, field, n, slo, base_dir, replications)
    return p.value, p.utilisation


def probe_runs(raw: dict[str, Any], field: str, n: int, slo: Slo, base_dir: Path | None, replications: int,
               groups: dict[str, int] | None = None) -> Probe:
    """Run the scenario with ``field = n``, each replication once: :class:`Probe`. With ``groups``
    (name -> fleet index) the objective holds for each of those groups' requests: the value is the worst
    group's statistic (``by_group`` each one's)."""
    from testbed.run.runner import run_scenario

    vals: list[float] = []
    per_group: dict[str, list[float]] = {name: [] for name in groups or {}}
    util: dict[str, list[float]] = {"uplink": [], "server GPU": [], "node CPU": []}
    warnings: dict[str, None] = {}
    for r in range(replications):
        cell = apply_overrides(raw, {field: n, "seed": replication_seed(int(raw.get("seed", 0)), r)})
        res = run_scenario(prepare_dict(cell, base_dir))
        if groups:
            values = group_slo_values(res.records, res.sim.window, slo.metric, groups)
            for name, v in values.items():
                per_group[name].append(v)
            vals.append(max(values.values()))
        else:
            vals.append(slo_value(res.records, res.sim.window, slo.metric))
        util["uplink"].append(res.summary["link_utilisation"])
        util["server GPU"].append(res.summary["gpu_utilisation"])
        util["node CPU"].append(res.summary.get("node_utilisation", 0.0))
        warnings.update(dict.fromkeys(res.summary.get("warnings") or ()))
    return Probe(float(np.mean(vals)), {k: float(np.mean(v)) for k, v in util.items()}, tuple(warnings),
                 {name: float(np.mean(v)) for name, v in per_group.items()})


def capacity_search(raw: dict[str, Any], slo: Slo, field: str = "fleet.0.count", start: int = 1,
                    limit: int = 100_000, base_dir: Path | None = None,
                    on_probe: Callable[[dict[str, Any], int, float], None] | None = None,
                    groups: Sequence[str] = ()) -> list[CapacityResult]:
    """For every combination of the other swept fields, the largest ``field`` value meeting ``slo``.

    With ``groups`` (fleet group names, ``all``: every group) the objective must hold for each named
    group's own requests (e.g. how many old cameras fit while the new ones keep p95 < 100 ms); the
    result names the group that fails first. Every combination is prepared (at the first size probed)
    before any run, so a configuration error stops the search before it spends time."""
    check_search(max(1, start), limit)
    named = resolve_groups(raw, groups) if groups else None
    grid = {k: v for k, v in (raw.get("sweep") or {}).items() if k != field}
    reps = int(raw.get("replications", 1))
    base = {k: v for k, v in raw.items() if k not in ("sweep", "replications")}
    combos = [dict(zip(grid, combo)) for combo in (itertools.product(*grid.values()) if grid else [()])]
    cells = [apply_overrides(base, values) for values in combos]
    for cell in cells:
        prepare_dict(apply_overrides(cell, {field: max(1, start)}), base_dir)
    results = []
    for values, cell in zip(combos, cells):
        search = _Search(cell, values, field, slo, base_dir, reps, on_probe, named)
        lo, hi = search.bisect(max(1, start), limit)
        cache = search.cache
        fail_util = cache[hi].utilisation if hi is not None else (cache[lo].utilisation if lo else {})
        station = saturating(fail_util)
        if not lo and fail_util and max(fail_util.values()) < 0.5:  # missed with no station even half busy
            station = f"none saturated at {max(1, start)} node(s); busiest: {station}"
        results.append(CapacityResult(values, lo, cache[lo].value if lo else math.nan, hi,
                                      cache[hi].value if hi is not None else math.nan, station,
                                      fail_util, len(cache), list(cache[lo].warnings) if lo else [],
                                      _binding(cache[hi].by_group) if hi is not None else None))
    return results


def _binding(by_group: dict[str, float]) -> str | None:
    """The group with the worst statistic (None without per-group objectives)."""
    return max(by_group, key=lambda name: by_group[name]) if by_group else None


@dataclass
class _Search:
    """The probes of one combination of swept values (each fleet size run once)."""

    cell: dict[str, Any]
    values: dict[str, Any]
    target: str  # the fleet-size field searched
    slo: Slo
    base_dir: Path | None
    replications: int
    on_probe: Callable[[dict[str, Any], int, float], None] | None
    groups: dict[str, int] | None = None
    cache: dict[int, Probe] = field(default_factory=dict)

    def passes(self, n: int) -> bool:
        if n not in self.cache:
            self.cache[n] = probe_runs(self.cell, self.target, n, self.slo, self.base_dir, self.replications,
                                       self.groups)
            if self.on_probe:
                self.on_probe(self.values, n, self.cache[n].value)
        return self.slo.met(self.cache[n].value)

    def bisect(self, start: int, limit: int) -> tuple[int, int | None]:
        """(largest passing size, smallest failing size or None): doubling from ``start`` (the last step
        probes ``limit`` itself), then bisection (0 nodes pass vacuously)."""
        lo, hi = 0, None
        n = start
        while n <= limit:
            if self.passes(n):
                lo = n
                n = limit if n < limit < 2 * n else 2 * n
            else:
                hi = n
                break
        if hi is not None:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self.passes(mid):
                    lo = mid
                else:
                    hi = mid
        return lo, hi

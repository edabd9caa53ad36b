"""Open a scenario the one way every command does: load, resolve, check what the run needs.

``testbed validate`` and ``testbed run`` (and sweeps, capacity, emulation) call the same function,
so a scenario that validates does not fail at run time on its configuration: the schema checks the
YAML (:mod:`testbed.config.load`), :func:`~testbed.config.resolve.resolve` reads every file it
names against the scenario's directory (never the working directory), and
:func:`~testbed.bridge.check.check` checks the model side and the profiles' figures.
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.bridge.check import check
from testbed.config.load import load_scenario, scenario_from_dict
from testbed.config.resolve import Resolved, resolve
from testbed.config.schema import Scenario
from testbed.core.arrivals import expected_frames
from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS
from testbed.errors import ConfigError
from testbed.sim.links import LINKS
from testbed.sim.topology import check_topology

__all__ = ["NODE_BYTES", "check_memory", "memory_needed", "prepare", "prepare_dict", "scenario_dir"]

NODE_BYTES = 32_000
"""Memory one simulated node holds (its process, queue, samplers and policy), a generous estimate."""
RECORD_COPIES = 3
"""The records, the DataFrame built from them and one working copy while the summary is computed."""


def scenario_dir(path: Path | str | None) -> Path | None:
    """The directory a scenario file's relative paths are read against (None: the default scenario)."""
    return Path(path).resolve().parent if path is not None else None


def prepare(path: Path | str | None = None, overrides: Mapping[str, Any] | list[str] | None = None
            ) -> tuple[Resolved, dict[str, Any]]:
    """Load ``path`` (the built-in default when None) with ``overrides``, resolve it against the
    file's directory and check it. Returns it with the raw mapping after overrides."""
    scenario, raw = load_scenario(path, overrides)
    resolved = resolve(scenario, scenario_dir(path))
    _check(resolved)
    return resolved, raw


def prepare_dict(data: Mapping[str, Any], base_dir: Path | str | None = None) -> Resolved:
    """:func:`prepare` for a mapping (relative paths against ``base_dir``)."""
    resolved = resolve(scenario_from_dict(data), base_dir)
    _check(resolved)
    return resolved


def _check(resolved: Resolved) -> None:
    """What the schema cannot know: the link model's name (the simulator's registry), whether the
    run fits in this machine's memory, then the model side and the profiles' figures
    (:func:`testbed.bridge.check.check`)."""
    check_topology(resolved.scenario)  # cells (link is the first of them), servers, assignment
    link = resolved.scenario.link
    LINKS.get(link.model, "link.model")
    if link.rate_trace is not None and link.model != "shared_fifo":
        raise ConfigError("link.rate_trace", link.model, "link.model shared_fifo (the only link model that "
                          "follows a rate trace so far)")
    check_memory(resolved.scenario)
    check(resolved)


def memory_needed(sc: Scenario) -> tuple[float, float, list[float]]:
    """``(bytes, requests, per-group bytes)``: what one run of ``sc`` is expected to hold in memory
    (the per-request records as :func:`testbed.core.records.expected_requests` sizes them, kept
    :data:`RECORD_COPIES` times, and :data:`NODE_BYTES` per node); may be ``inf``."""
    per_request = RECORD_COPIES * (8 * len(FLOAT_COLUMNS) + sum(array(code).itemsize for _, code in INT_COLUMNS))
    groups: list[float] = []
    requests = 0.0
    for g in sc.fleet:
        frames = float(g.count) * expected_frames(g.arrivals, g.count, sc.duration)
        requests += frames
        groups.append(frames * per_request + float(g.count) * NODE_BYTES)
    total = requests * 1.01 + 4 * math.sqrt(requests) + 64 if math.isfinite(requests) else math.inf
    return total * per_request + sum(float(g.count) for g in sc.fleet) * NODE_BYTES, total, groups


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 << 30


def check_memory(sc: Scenario, limit: int | None = None) -> None:
    """Refuse a run that would need more memory than ``limit`` (this machine's physical memory),
    naming the fleet group that asks for most of it and how much the run would need."""
    limit = _physical_memory() if limit is None else limit
    need, requests, groups = memory_needed(sc)
    if need <= limit:
        return
    g = max(range(len(groups)), key=lambda i: groups[i])
    group = sc.fleet[g]
    per_node = expected_frames(group.arrivals, group.count, sc.duration)
    field, value = (f"fleet.{g}.count", group.count) if group.count >= per_node else ("duration", sc.duration)
    raise ConfigError(field, value,
                      f"a run this machine can hold in memory: it would need about {_size(need)} of memory "
                      f"({_num(requests)} requests over {_num(sum(f.count for f in sc.fleet))} nodes in "
                      f"{sc.duration:g} s) and this machine has {_size(limit)}; use fewer nodes, a lower "
                      "rate or a shorter duration")


def _size(n: float) -> str:
    if not math.isfinite(n):
        return "unbounded"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} EB"


def _num(n: float) -> str:
    return f"{n:.3g}" if math.isfinite(n) else "unbounded"

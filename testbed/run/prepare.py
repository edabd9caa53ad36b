"""Open a scenario the one way every command does: load, resolve, check what the run needs.

``testbed validate`` and ``testbed run`` (and sweeps, capacity, emulation) call the same function,
so a scenario that validates does not fail at run time on its configuration: the schema checks the
YAML (:mod:`testbed.config.load`), :func:`~testbed.config.resolve.resolve` reads every file it
names against the scenario's directory (never the working directory), and
:func:`~testbed.bridge.check.check` checks the model side and the profiles' figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.bridge.check import check
from testbed.config.load import load_scenario, scenario_from_dict
from testbed.config.resolve import Resolved, resolve
from testbed.sim.links import LINKS

__all__ = ["prepare", "prepare_dict", "scenario_dir"]


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
    """What the schema cannot know: the link model's name (the simulator's registry), then the
    model side and the profiles' figures (:func:`testbed.bridge.check.check`)."""
    LINKS.get(resolved.scenario.link.model, "link.model")
    check(resolved)

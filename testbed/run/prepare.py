"""Open a scenario the one way every command does: load, resolve, check the model section.

``testbed validate`` and ``testbed run`` (and sweeps, capacity, emulation) call the same function,
so a scenario that validates does not fail at run time on its configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.bridge.check import check_model
from testbed.config.load import load_scenario, scenario_from_dict
from testbed.config.resolve import Resolved, resolve

__all__ = ["prepare", "prepare_dict"]


def prepare(path: Path | str | None = None, overrides: Mapping[str, Any] | list[str] | None = None
            ) -> tuple[Resolved, dict[str, Any]]:
    """Load ``path`` (the built-in default when None) with ``overrides``, resolve it against the
    file's directory and check its model section. Returns it with the raw mapping after overrides."""
    scenario, raw = load_scenario(path, overrides)
    resolved = resolve(scenario, Path(path).resolve().parent if path is not None else None)
    check_model(resolved)
    return resolved, raw


def prepare_dict(data: Mapping[str, Any], base_dir: Path | str | None = None) -> Resolved:
    """:func:`prepare` for a mapping (relative paths against ``base_dir``)."""
    resolved = resolve(scenario_from_dict(data, base_dir), base_dir)
    check_model(resolved)
    return resolved

"""Resolution: a validated :class:`Scenario` plus its base directory -> :class:`Resolved`.

This is the only code that opens the files a scenario names (device profiles, NestQuant modes
files; traces, empirical data and codec checkpoints as they move here). Everything below the
configuration layer receives a :class:`Resolved` and never looks a name up again, so a scenario
resolves the same way whatever the working directory, and ``testbed validate`` and ``testbed run``
agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.config.modes import NestQuantModes
from testbed.config.profiles import Profile, find_profile, load_profile
from testbed.config.schema import Scenario
from testbed.errors import ConfigError

__all__ = ["Resolved", "resolve", "as_resolved"]


@dataclass(frozen=True)
class Resolved:
    """A scenario with everything it names loaded.

    ``node_profiles[g]`` and ``nestquant[g]`` belong to fleet group ``g``; ``base_dir`` is the
    directory relative paths were resolved against (None for the built-in default).
    """

    scenario: Scenario
    base_dir: Path | None
    node_profiles: tuple[Profile, ...]
    server_profile: Profile
    nestquant: tuple[NestQuantModes | None, ...]


def _profile(name: str, base_dir: Path | None, role: str, path: str) -> Profile:
    try:
        return load_profile(find_profile(name, base_dir, role=role))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise ConfigError(path, name, f"{exc.path}: {exc.allowed}" if exc.path else exc.allowed) from None
        raise ConfigError(path, name, str(exc)) from None


def resolve(scenario: Scenario, base_dir: Path | str | None = None) -> Resolved:
    """Load every file ``scenario`` names, relative paths against ``base_dir``."""
    base = Path(base_dir).resolve() if base_dir is not None else None
    nodes = tuple(_profile(g.device, base, "node", f"fleet.{i}.device") for i, g in enumerate(scenario.fleet))
    server = _profile(scenario.server.device, base, "server", "server.device")
    modes = tuple(NestQuantModes.load(g.nestquant.modes) if g.nestquant is not None else None
                  for g in scenario.fleet)
    return Resolved(scenario, base, nodes, server, modes)


def as_resolved(scenario: Scenario | Resolved) -> Resolved:
    """``scenario`` itself when already resolved, else resolved against no base directory."""
    return scenario if isinstance(scenario, Resolved) else resolve(scenario)

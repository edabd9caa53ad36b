"""Device profiles: measured or estimated compute times and power, with provenance.

Profiles are YAML files in ``nodes/`` (the repository's, or one beside the scenario file), found by
name (``pi4b`` -> ``nodes/pi4b.yaml``) or given as a path.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["profile_dirs", "available_profiles", "find_profile", "load_profile_raw"]

REPO_NODES = Path(__file__).resolve().parent.parent / "nodes"


def profile_dirs(base_dir: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: ``BASE/nodes``, ``./nodes``, the repo's."""
    dirs = []
    if base_dir is not None:
        dirs.append(Path(base_dir) / "nodes")
    dirs += [Path.cwd() / "nodes", REPO_NODES]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def available_profiles(base_dir: Path | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profile_dirs(base_dir):
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def find_profile(name: str, base_dir: Path | None = None, role: str | None = None) -> Path:
    """The file of profile ``name``; raises ``ValueError`` listing the available ones."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.exists():
            raise ValueError(f"profile file {name!r} does not exist")
    else:
        profiles = available_profiles(base_dir)
        if name not in profiles:
            listed = ", ".join(sorted(profiles)) or "none"
            raise ValueError(f"unknown device profile {name!r}; available: {listed}")
        path = profiles[name]
    if role is not None:
        raw = load_profile_raw(path)
        if raw.get("role") not in (role, "both"):
            raise ValueError(f"profile {name!r} has role {raw.get('role')!r}, a {role} profile is needed here")
    return path


@lru_cache(maxsize=64)
def _load(path: str, mtime: float) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ConfigError(path, type(data).__name__, "a profile must be a YAML mapping")
    return data


def load_profile_raw(path: Path) -> dict[str, Any]:
    return _load(str(path), path.stat().st_mtime)

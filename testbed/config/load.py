"""Scenario loading: YAML with the safe loader, dotted ``--set`` overrides, one error flattener.

:func:`load_scenario` reads a file (or the built-in default) into a validated
:class:`~testbed.config.schema.Scenario`; pydantic's errors become one
:class:`~testbed.errors.ConfigError` naming the dotted field path, the value and what is allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from testbed.config.files import MAX_YAML_BYTES, load_yaml, read_limited
from testbed.config.schema import Scenario
from testbed.errors import ConfigError

__all__ = ["DEFAULT_SCENARIO", "apply_overrides", "load_scenario", "read_yaml", "scenario_from_dict", "set_path"]


DEFAULT_SCENARIO: dict[str, Any] = {
    # `testbed run` without a file: 50 Raspberry Pi 4 B cameras run the pretrained EfficientNet-Lite0 up to
    # stage 4 on the bundled photos, send 8-bit zstd feature maps over one shared 5 MB/s link, and an H100
    # runs the rest in batches. Payload bytes and answers come from the real model, run once and cached.
    "name": "default",
    "seed": 1,
    "duration": "2 min",
    "warmup": "10 s",
    "model": {"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage4"},
    "codec": [{"quantize": {"bits": 8}}, {"zstd": {"level": 3}}],
    "dataset": {"kind": "photos", "limit": 64},
    "fleet": [{
        "name": "cameras", "count": 50, "device": "pi4b",
        "arrivals": {"kind": "periodic", "rate": "2/s", "jitter": "5 ms"},
        "queue": {"capacity": 4, "policy": "drop_oldest"},
    }],
    "link": {"model": "shared_fifo", "datarate": "5 MB/s", "latency": "2 ms"},
    "server": {"device": "h100", "gpus": 1, "batching": {"max_batch": 32, "max_delay": "2 ms"}},
}


def _format_loc(loc: tuple[Any, ...]) -> str:
    """Dotted field path, without pydantic's validator entries (``function-before[...]``)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    path = _format_loc(err["loc"])
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, ConfigError):  # raised by a component that knows its own field names
        return ConfigError(".".join(p for p in (path, inner.path) if p), inner.value, inner.allowed)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; unknown keys are errors)"
    elif err["type"] == "missing":
        msg = "this field is required"
    locs = [e["loc"] for e in exc.errors()]
    # errors on a container caused by an error inside it (a prefix of another loc) are echoes
    real = [a for a in locs if not any(len(b) > len(a) and b[: len(a)] == a for b in locs)]
    extra = len(real) - 1
    if extra:
        msg += f" (and {extra} more error{'s' if extra > 1 else ''})"
    return ConfigError(path, err.get("input"), msg)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Validate a mapping (as read from YAML) into a :class:`Scenario`; no file is opened (the files
    a scenario names are read by :func:`testbed.config.resolve.resolve`; to load, resolve and check
    in one call use :func:`testbed.run.prepare.prepare_dict`)."""
    if not isinstance(data, Mapping):
        raise ConfigError("", data, "a scenario must be a mapping of fields")
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise _first_error(exc) from None


def read_yaml(path: Path | str) -> dict[str, Any]:
    """Read a YAML mapping with the bounded safe loader (:func:`testbed.config.files.load_yaml`: at most
    4 MiB, 64 levels deep, a limit on alias expansion); every problem is one error naming the file."""
    path = Path(path)
    data = load_yaml(read_limited(path, MAX_YAML_BYTES, "scenario file"), str(path), "scenario file")
    if not isinstance(data, dict):
        raise ConfigError(str(path), type(data).__name__, "a scenario file must hold a mapping")
    return data


def _index(key: str) -> int | None:
    """``key`` as a list index (ASCII digits only: ``²`` is no index), else None."""
    return int(key) if key.isascii() and key.isdecimal() else None


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][0][c] = value`` for ``dotted = "a.b.0.c"``, creating mappings as needed."""
    keys = dotted.split(".")
    if not dotted or any(not k for k in keys):
        raise ConfigError("--set", dotted, "a dotted field path such as fleet.0.count")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(node, list):
            idx = _index(key)
            if idx is None or idx >= len(node):
                raise ConfigError(".".join(keys[: i + 1]), key, f"an index below {len(node)}")
            node = node[idx]
        elif isinstance(node, dict):
            if key not in node or node[key] is None:
                node[key] = [] if _index(nxt) is not None else {}
            node = node[key]
        else:
            raise ConfigError(".".join(keys[:i]), node, "a mapping or list to set a field in")
    last = keys[-1]
    if isinstance(node, list):
        idx = _index(last)
        if idx is None or idx >= len(node):
            raise ConfigError(dotted, last, f"an index below {len(node)}")
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(dotted, node, "a mapping or list to set a field in")


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any] | list[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with dotted-path overrides applied.

    ``overrides`` is a mapping ``{"link.datarate": "2 MB/s"}`` or a list of ``"path=value"``
    strings, whose values are read as YAML scalars (``--set fleet.0.count=200``).
    """
    out = copy.deepcopy(dict(data))
    if isinstance(overrides, list):
        pairs: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError("--set", item, "overrides are written path=value, e.g. link.datarate='2 MB/s'")
            key, raw = item.split("=", 1)
            try:
                pairs[key.strip()] = load_yaml(raw, f"--set {key.strip()}", "value")
            except ConfigError:
                pairs[key.strip()] = raw
        overrides = pairs
    for key, value in overrides.items():
        set_path(out, key, copy.deepcopy(value))
    return out


def load_scenario(path: Path | str | None = None, overrides: Mapping[str, Any] | list[str] | None = None
                  ) -> tuple[Scenario, dict[str, Any]]:
    """Load and validate a scenario file (or the built-in default when ``path`` is None); the files
    it names are not read (see :func:`testbed.run.prepare.prepare`, which does both).

    Returns the scenario and the raw mapping after overrides (what ``scenario.yaml`` records).
    """
    raw = copy.deepcopy(DEFAULT_SCENARIO) if path is None else read_yaml(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return scenario_from_dict(raw), raw

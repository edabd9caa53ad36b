"""NestQuant operating modes for the simulator: a torch-free record and a pure switching policy.

Xie et al., "NestQuant: Post-Training Integer-Nesting Quantization for On-Device DNN",
arXiv:2506.17870, 2025. A NestQuant node keeps one INT8 head whose higher ``part_bits`` bits form a
lower-bit head; it runs the full-bit head with the lower bits paged in, or the part-bit head with
them paged out. :class:`NestQuantModes` carries what a simulated node needs (per-mode accuracy,
relative compute charge, bytes paged per switch, storage) and is saved as JSON beside the
checkpoint by ``testbed train nestquant``; :func:`choose_mode` is the policy (battery level,
queue length -> mode). This module imports neither torch nor simpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError

__all__ = [
    "FULL",
    "MODES",
    "PART",
    "NestQuantModes",
    "NestQuantPolicy",
    "choose_mode",
    "modes_path",
    "switch_bytes",
]

FULL = "full"
PART = "part"
MODES = (FULL, PART)


@dataclass(frozen=True)
class NestQuantModes:
    """Per-mode figures of one NestQuant head.

    ``accuracy`` and ``compute_scale`` map ``"full"``/``"part"`` to the measured test accuracy and
    the compute charge relative to the full-bit head (bit-operations: ``part_bits / full_bits``);
    ``switch_bytes`` are the lower-bit weight bytes paged in or out per switch; ``storage_bytes``
    maps ``nested`` (what the node stores), ``full``, ``part`` and ``separate`` (a full-bit and a
    part-bit model stored side by side) to bytes.
    """

    full_bits: int
    part_bits: int
    accuracy: dict[str, float]
    compute_scale: dict[str, float]
    switch_bytes: int
    storage_bytes: dict[str, int] = field(default_factory=dict)
    metric: str = "accuracy"

    def __post_init__(self) -> None:
        if not 1 <= self.part_bits < self.full_bits <= 8:
            raise ConfigError("part_bits", self.part_bits, f"an integer from 1 to {self.full_bits - 1}")
        for name, table in (("accuracy", self.accuracy), ("compute_scale", self.compute_scale)):
            if set(table) != set(MODES):
                raise ConfigError(name, sorted(table), f"exactly the modes {', '.join(MODES)}")
        if self.switch_bytes < 0:
            raise ConfigError("switch_bytes", self.switch_bytes, "a non-negative byte count")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.to_json() + "\n")
        return p

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NestQuantModes:
        """Validate a modes mapping; a missing, unknown or malformed key is a ConfigError naming it."""
        if not isinstance(data, dict):
            raise ConfigError("", type(data).__name__, "a NestQuant modes JSON object")
        known = {"full_bits", "part_bits", "accuracy", "compute_scale", "switch_bytes", "storage_bytes", "metric"}
        unknown = set(data) - known
        if unknown:
            key = sorted(map(str, unknown))[0]
            raise ConfigError(key, data.get(key), f"NestQuant mode fields: {', '.join(sorted(known))}")
        missing = [k for k in ("full_bits", "part_bits", "accuracy", "compute_scale", "switch_bytes") if k not in data]
        if missing:
            raise ConfigError(missing[0], None, "this field is required in a NestQuant modes file "
                                                "(written by `testbed train nestquant`)")
        return cls(_int(data, "full_bits"), _int(data, "part_bits"), _table(data, "accuracy", float),
                   _table(data, "compute_scale", float), _int(data, "switch_bytes"),
                   _table(data, "storage_bytes", int) if "storage_bytes" in data else {},
                   str(data.get("metric", "accuracy")))

    @classmethod
    def load(cls, path: str | Path) -> NestQuantModes:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("modes", str(path), "an existing NestQuant modes JSON file")
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError("modes", str(path), f"a readable NestQuant modes JSON file ({type(exc).__name__})") from None
        return cls.from_dict(data)


def _int(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, value, "an integer")
    return value


def _table(data: dict[str, Any], key: str, kind: type) -> dict[str, Any]:
    """A mapping mode -> number (finite; integers for ``kind`` int)."""
    table = data[key]
    if not isinstance(table, dict):
        raise ConfigError(key, table, "a mapping of mode -> number")
    out: dict[str, Any] = {}
    for k, v in table.items():
        ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not math.isfinite(v):
            raise ConfigError(f"{key}.{k}", v, "a finite integer" if kind is int else "a finite number")
        out[str(k)] = kind(v)
    return out


@dataclass(frozen=True)
class NestQuantPolicy:
    """Switch to the part-bit head when the battery falls below ``low_battery`` (fraction 0..1) or
    the queue reaches ``queue_high``; return to full bits only once the battery is at least
    ``resume_battery`` and the queue at most ``queue_low`` (hysteresis against flapping)."""

    low_battery: float = 0.2
    resume_battery: float = 0.3
    queue_high: int = 8
    queue_low: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_battery <= self.resume_battery <= 1.0:
            raise ConfigError("resume_battery", self.resume_battery,
                              f"a fraction with low_battery ({self.low_battery}) <= resume_battery <= 1")
        if not 0 <= self.queue_low < self.queue_high:
            raise ConfigError("queue_low", self.queue_low, f"an integer from 0 to queue_high - 1 ({self.queue_high - 1})")


def choose_mode(battery: float, queue_length: int, current: str = FULL,
                policy: NestQuantPolicy = NestQuantPolicy()) -> str:
    """The head to run next (``"full"`` or ``"part"``) for a battery level in [0, 1] and a queue length."""
    if not 0.0 <= battery <= 1.0:
        raise ConfigError("battery", battery, "a battery level between 0 and 1")
    if queue_length < 0:
        raise ConfigError("queue_length", queue_length, "a non-negative queue length")
    if current not in MODES:
        raise ConfigError("current", current, f"one of {', '.join(MODES)}")
    if battery < policy.low_battery or queue_length >= policy.queue_high:
        return PART
    if current == PART and (battery < policy.resume_battery or queue_length > policy.queue_low):
        return PART
    return FULL


def switch_bytes(modes: NestQuantModes, current: str, target: str) -> int:
    """Bytes paged for a switch (the lower-bit weights, in for part->full, out for full->part)."""
    for name, value in (("current", current), ("target", target)):
        if value not in MODES:
            raise ConfigError(name, value, f"one of {', '.join(MODES)}")
    return 0 if current == target else modes.switch_bytes


def modes_path(checkpoint: str | Path) -> Path:
    """Where the modes JSON of a NestQuant checkpoint lives: ``X.pt`` -> ``X.modes.json``."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".modes.json")

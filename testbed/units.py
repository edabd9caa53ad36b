"""Parse quantities written with units: durations, sizes, data rates and event rates.

Bare numbers are taken in base units (seconds, bytes, bytes per second, events per second).
Decimal prefixes are SI (1 kB = 1000 B, 1 MB/s = 10**6 B/s); binary prefixes are explicit
(KiB, MiB). Bits are written ``bit`` or ``b`` (``40 Mbit/s``, ``40 Mbps``); bytes ``B``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

__all__ = ["format_duration", "parse_datarate", "parse_duration", "parse_rate", "parse_size"]

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"

_TIME_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0,
    "second": 1.0, "seconds": 1.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0,
    "days": 86400.0,
}
_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4}


def _finite(parse: Any) -> Any:
    """``parse`` with non-finite results (``nan``, ``inf``, ``1e400 s``) refused."""

    @functools.wraps(parse)
    def wrapper(value: object) -> float:
        x = parse(value)
        if not math.isfinite(x):
            raise ValueError(f"must be a finite number (got {x})")
        return x

    return wrapper


def _split(text: str) -> tuple[float, str]:
    m = re.fullmatch(rf"\s*{_NUM}\s*(.*?)\s*", text)
    if not m:
        raise ValueError(f"cannot read a number in {_clip(text)}")
    return float(m.group(1)), m.group(2)


def _clip(text: str, limit: int = 60) -> str:
    r = repr(text[: limit + 1])
    return r if len(text) <= limit else r[:limit] + "..."


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a quantity")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a number or a string with a unit, got {type(value).__name__}")
    return None


@_finite
def parse_duration(value: object) -> float:
    """``"20 ms"`` -> 0.02 seconds; ``"10 min"`` -> 600.0; a bare number is seconds."""
    num = _number(value)
    if num is not None:
        return num
    x, unit = _split(str(value))
    if unit == "":
        return x
    if unit not in _TIME_UNITS:
        raise ValueError(f"unknown time unit {_clip(unit)} (use ns, us, ms, s, min, h)")
    return x * _TIME_UNITS[unit]


def _size_factor(unit: str) -> float:
    """Bytes per unit for units like B, kB, MiB, bit, kbit, Mb."""
    m = re.fullmatch(r"(Ki|Mi|Gi|Ti|k|K|M|G|T)?(B|bytes?|b|bits?)", unit)
    if not m:
        raise ValueError(f"unknown size unit {_clip(unit)} (use B, kB, MB, KiB, MiB, bit, kbit, Mbit)")
    prefix, base = m.group(1) or "", m.group(2)
    per = 1.0 if base in ("B", "byte", "bytes") else 1.0 / 8.0
    return _PREFIX[prefix] * per


@_finite
def parse_size(value: object) -> float:
    """``"25 kB"`` -> 25000.0 bytes; ``"1 KiB"`` -> 1024.0; a bare number is bytes."""
    num = _number(value)
    if num is not None:
        return num
    x, unit = _split(str(value))
    return x if unit == "" else x * _size_factor(unit)


@_finite
def parse_datarate(value: object) -> float:
    """``"5 MB/s"`` -> 5e6 bytes/s; ``"40 Mbit/s"`` or ``"40 Mbps"`` -> 5e6; bare number is B/s."""
    num = _number(value)
    if num is not None:
        return num
    x, unit = _split(str(value))
    if unit == "":
        return x
    m = re.fullmatch(r"(Ki|Mi|Gi|Ti|k|K|M|G|T)?bps", unit)
    if m:
        return x * _PREFIX[m.group(1) or ""] / 8.0
    if "/" not in unit:
        raise ValueError(f"a data rate needs a per-time unit, like '5 MB/s' or '40 Mbit/s' (got {_clip(unit)})")
    size_unit, time_unit = unit.split("/", 1)
    if time_unit.strip() not in _TIME_UNITS:
        raise ValueError(f"unknown time unit {_clip(time_unit)} in data rate")
    return x * _size_factor(size_unit.strip()) / _TIME_UNITS[time_unit.strip()]


@_finite
def parse_rate(value: object) -> float:
    """Events per second: ``"2/s"``, ``"120/min"``, ``"0.5 Hz"``; a bare number is per second."""
    num = _number(value)
    if num is not None:
        return num
    x, unit = _split(str(value))
    if unit in ("", "/s", "Hz", "hz", "per s"):
        return x
    if unit.startswith("/") and unit[1:].strip() in _TIME_UNITS:
        return x / _TIME_UNITS[unit[1:].strip()]
    if unit.startswith("per ") and unit[4:].strip() in _TIME_UNITS:
        return x / _TIME_UNITS[unit[4:].strip()]
    raise ValueError(f"unknown rate unit {_clip(unit)} (use '2/s', '120/min', '0.5 Hz')")


def format_duration(seconds: float) -> str:
    """Human-readable duration with a sensible unit (for tables)."""
    if not math.isfinite(seconds):
        return str(seconds)
    a = abs(seconds)
    if a >= 1.0:
        return f"{seconds:.3f} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"

"""Device profiles: measured or estimated compute times and power, each with its provenance.

A profile is a YAML file in ``nodes/`` (beside the scenario, in a directory above it, or the repository's),
found by name (``pi4b`` -> ``nodes/pi4b.yaml``) or given as a path. Every figure names a record in the
profile's ``provenance`` table: ``measured`` (device, date, software, command, runs) or ``estimated``
(source and method) or ``published`` (source). A figure without provenance is an error.

Per model, ``blocks`` holds the batch-1 time of each stage in pipeline order, so the head time up to a
split point is the sum of the blocks up to it; ``tail`` holds, per split point, the server's batch
service time by batch size (interpolated by the simulator).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from testbed.config.files import MAX_YAML_BYTES, load_yaml, read_limited
from testbed.errors import ConfigError
from testbed.units import parse_datarate, parse_duration

__all__ = [
    "BatchTable",
    "CodecCosts",
    "Figure",
    "MacRate",
    "ModelProfile",
    "Power",
    "Profile",
    "Provenance",
    "available_profiles",
    "find_profile",
    "load_profile",
    "load_profile_raw",
    "parse_profile",
    "profile_dirs",
]

REPO_NODES = Path(__file__).resolve().parents[2] / "nodes"


def _seconds(v: Any) -> float:
    x = parse_duration(v)
    if not math.isfinite(x) or x < 0:
        raise ValueError("must be a duration >= 0")
    return x


def _bytes_per_s(v: Any) -> float:
    x = parse_datarate(v)
    if not math.isfinite(x) or x <= 0:
        raise ValueError("must be a throughput > 0, like '20 MB/s'")
    return x


Seconds = Annotated[float, BeforeValidator(_seconds)]
Throughput = Annotated[float, BeforeValidator(_bytes_per_s)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Provenance(_Frozen):
    kind: Literal["measured", "estimated", "published"]
    source: str
    method: str | None = None
    device: str | None = None
    date: str | None = None
    software: str | None = None
    command: str | None = None
    runs: Annotated[int, Field(strict=True, ge=1)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Provenance:
        if self.kind == "measured":
            missing = [k for k in ("device", "date", "command", "runs") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a measured figure needs {', '.join(missing)}")
        if self.kind == "estimated" and not self.method:
            raise ValueError("an estimated figure needs 'method' (how it was derived)")
        return self


class Figure(_Frozen):
    """A time: median and interquartile range over runs (seconds)."""

    median: Seconds
    iqr: Seconds = 0.0
    provenance: str


class BatchTable(_Frozen):
    """Batch size -> service time (median of runs)."""

    batches: dict[Annotated[int, Field(ge=1)], Seconds]
    provenance: str


class ModelProfile(_Frozen):
    blocks: dict[str, Figure] = {}
    tail: dict[str, BatchTable] = {}


class CodecCosts(_Frozen):
    """Codec costs: tensor stages per element, lossless coders by throughput on uncompressed bytes."""

    per_element: dict[str, Figure] = {}           # e.g. quantize, dequantize, pack, unpack, float16
    encode_throughput: dict[str, Throughput] = {}  # e.g. "lzma:preset=6": 12 MB/s
    decode_throughput: dict[str, Throughput] = {}
    provenance: str


class PowerFigure(_Frozen):
    watts: Annotated[float, Field(ge=0)]
    provenance: str


class Power(_Frozen):
    """Node power: ``idle`` and ``busy`` (all cores computing) draw; ``radio_tx`` and ``radio_rx`` are
    the extra draw above idle while the radio sends or receives."""

    idle: PowerFigure
    busy: PowerFigure
    radio_tx: PowerFigure | None = None
    radio_rx: PowerFigure | None = None


class MacRate(_Frozen):
    """Multiply-accumulates per second the device sustains on a CNN (charges learned codec stages)."""

    ops_per_s: Annotated[float, Field(gt=0)]
    provenance: str


class Profile(_Frozen):
    name: str
    role: Literal["node", "server", "both"]
    description: str = ""
    provenance: dict[str, Provenance]
    power: Power | None = None
    models: dict[str, ModelProfile] = {}
    codecs: CodecCosts | None = None
    mac_rate: MacRate | None = None

    @model_validator(mode="after")
    def _references(self) -> Profile:
        refs: list[tuple[str, str]] = []
        if self.mac_rate is not None:
            refs.append(("mac_rate", self.mac_rate.provenance))
        for m, mp in self.models.items():
            refs += [(f"models.{m}.blocks.{b}", f.provenance) for b, f in mp.blocks.items()]
            refs += [(f"models.{m}.tail.{s}", t.provenance) for s, t in mp.tail.items()]
        if self.codecs is not None:
            refs.append(("codecs", self.codecs.provenance))
            refs += [(f"codecs.per_element.{k}", f.provenance) for k, f in self.codecs.per_element.items()]
        if self.power is not None:
            for key in ("idle", "busy", "radio_tx", "radio_rx"):
                fig = getattr(self.power, key)
                if fig is not None:
                    refs.append((f"power.{key}", fig.provenance))
        for where, ref in refs:
            if ref not in self.provenance:
                raise ValueError(f"{where}: provenance {ref!r} is not in the profile's provenance table "
                                 f"(has: {', '.join(self.provenance) or 'none'})")
        return self


# -- finding and parsing (reading files is :mod:`testbed.config.resolve`'s job) ---------------------
def profile_dirs(base_dir: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: ``nodes/`` in ``base_dir`` (the scenario's
    directory) and in each directory above it, then the repository's. Never the working directory,
    so a scenario finds the same profiles from wherever it is run."""
    base = [Path(base_dir).resolve()] if base_dir is not None else []
    dirs = [d / "nodes" for d in (base + list(base[0].parents) if base else [])] + [REPO_NODES]
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


def find_profile(name: str, base_dir: Path | None = None) -> Path:
    """The file of profile ``name`` (or the path ``name``, relative to ``base_dir``); raises
    ``ValueError`` listing the available ones."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise ValueError(f"profile file {name!r} does not exist (looked at {path})")
        return path.resolve()
    profiles = available_profiles(base_dir)
    if name not in profiles:
        listed = ", ".join(sorted(profiles)) or "none"
        where = ", ".join(str(d) for d in profile_dirs(base_dir))
        raise ValueError(f"unknown device profile {name!r}; available: {listed} (searched {where})")
    return profiles[name]


@functools.lru_cache(maxsize=64)
def parse_profile(text: str | bytes, origin: str) -> Profile:
    """Validate a profile's YAML text (bounded: :func:`testbed.config.files.load_yaml`); errors name
    ``origin`` (the file) and the field. Memoised on the text (a sweep resolves the same profiles for
    every cell; the result is immutable)."""
    data = load_yaml(text, origin, "profile file")
    if not isinstance(data, dict):
        raise ConfigError(origin, type(data).__name__, "a profile must be a YAML mapping")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "this field is required"
        raise ConfigError(f"{Path(origin).name}: {loc}", err.get("input"), msg) from None


def load_profile_raw(path: Path) -> dict[str, Any]:
    data = load_yaml(read_limited(path, MAX_YAML_BYTES, "profile file"), str(path), "profile file")
    if not isinstance(data, dict):
        raise ConfigError(str(path), type(data).__name__, "a profile must be a YAML mapping")
    return data


def load_profile(name_or_path: str | Path, base_dir: Path | None = None) -> Profile:
    """Load and validate a profile by name or path, for tools and tests (a scenario's profiles are
    loaded by :func:`testbed.config.resolve.resolve`)."""
    path = Path(name_or_path)
    if not path.is_file():
        try:
            path = find_profile(str(name_or_path), base_dir)
        except ValueError as exc:
            raise ConfigError("device", str(name_or_path), str(exc)) from None
    return parse_profile(read_limited(path, MAX_YAML_BYTES, "profile file"), str(path))

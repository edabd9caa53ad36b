"""Compute charges from device profiles: head time up to a split, the tail's batch table, codec time.

Pure arithmetic on :class:`~testbed.config.profiles.Profile` objects (no I/O, no torch): the
simulator and the emulator charge time from these figures, never from this machine's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from testbed.config.profiles import Figure, ModelProfile, Profile
from testbed.dists import Deterministic, Dist, Lognormal
from testbed.errors import ConfigError

__all__ = [
    "CostKind",
    "StageCost",
    "block_order",
    "codec_time",
    "decode_key",
    "head_figure",
    "head_time",
    "spread_dist",
    "tail_table",
]

CostKind = Literal["element", "bytes", "macs"]
_KINDS: tuple[str, ...] = ("element", "bytes", "macs")


@dataclass(frozen=True)
class StageCost:
    """How one codec stage is charged from a device profile (declared by the stage itself).

    * ``element``: per feature-map element, ``profile.codecs.per_element[key]`` (decode:
      :func:`decode_key`), e.g. ``quantize``, ``pack``;
    * ``bytes``: per uncompressed byte at ``profile.codecs.{en,de}code_throughput[key]``, e.g.
      ``lzma:preset=6``;
    * ``macs``: ``encode_macs``/``decode_macs`` multiply-accumulates per image at ``profile.mac_rate``
      (learned stages).
    """

    kind: CostKind
    key: str
    encode_macs: float = 0.0
    decode_macs: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"stage cost kind {self.kind!r} is not one of {', '.join(_KINDS)}")

    def macs(self, direction: Literal["encode", "decode"]) -> float:
        return self.encode_macs if direction == "encode" else self.decode_macs

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the pipeline cache's ``meta.json``)."""
        return {"kind": self.kind, "key": self.key, "encode_macs": self.encode_macs, "decode_macs": self.decode_macs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageCost:
        return cls(d["kind"], str(d["key"]), float(d.get("encode_macs", 0.0)), float(d.get("decode_macs", 0.0)))


def _model(profile: Profile, model: str) -> ModelProfile:
    if model not in profile.models:
        raise ConfigError("model.name", model, f"profile {profile.name!r} has figures for: "
                          f"{', '.join(profile.models) or 'no model'}")
    return profile.models[model]


def head_figure(profile: Profile, model: str, split: str, order: Sequence[str] = ()) -> Figure:
    """Head time on the node up to ``split``: the sum of the block medians (IQRs added, an upper
    bound on the spread of the sum). ``input`` costs nothing; ``none`` is the whole model.

    ``order`` is the model's split points in pipeline order (from the model registry); blocks are
    summed in that order whatever their order in the YAML, the profile's order otherwise."""
    mp = _model(profile, model)
    names = block_order(order, list(mp.blocks))
    if split == "input":
        return Figure(median=0.0, iqr=0.0, provenance="none")
    if split != "none" and split not in names:
        raise ConfigError("model.split", split, f"profile {profile.name!r} has blocks for {model}: "
                          f"{', '.join(names)} (and input, none)")
    upto = names if split == "none" else names[: names.index(split) + 1]
    blocks = [mp.blocks[b] for b in upto]
    prov = sorted({b.provenance for b in blocks})
    return Figure(median=sum(b.median for b in blocks), iqr=sum(b.iqr for b in blocks),
                  provenance=prov[0] if len(prov) == 1 else "+".join(prov))


def block_order(points: Sequence[str], names: list[str]) -> list[str]:
    """Blocks in pipeline order: the model's split points first, whatever the YAML order."""
    return [p for p in points if p in names] + [n for n in names if n not in points]


def head_time(profile: Profile, model: str, split: str, order: Sequence[str] = ()) -> float:
    return head_figure(profile, model, split, order).median


def tail_table(profile: Profile, model: str, split: str) -> dict[int, float]:
    """Server batch service time by batch size for the tail after ``split``."""
    mp = _model(profile, model)
    key = "input" if split == "input" else split
    if key not in mp.tail:
        raise ConfigError("model.split", split, f"server profile {profile.name!r} has tail tables for {model} "
                          f"after: {', '.join(mp.tail) or 'no split'}")
    return dict(mp.tail[key].batches)


def spread_dist(median: float, iqr: float) -> Dist:
    """A lognormal with the given median and interquartile range (constant when the IQR is 0)."""
    if iqr <= 0 or median <= 0:
        return Deterministic(median)
    # lognormal quartiles: median * exp(+-0.6745 sigma)  =>  iqr = 2 median sinh(0.6745 sigma)
    sigma = math.asinh(iqr / (2 * median)) / 0.6744897501960817
    return Lognormal(median, sigma)


def decode_key(name: str) -> str:
    """Name under which a per-element stage's decode cost is kept (``quantize`` -> ``dequantize``)."""
    return {"quantize": "dequantize", "pack": "unpack"}.get(name, f"{name}_decode")


def codec_time(profile: Profile, stages: Sequence[StageCost], elements: int, serialized_bytes: float,
               direction: Literal["encode", "decode"]) -> float:
    """Seconds to encode (or decode) one feature map through a chain whose stages cost ``stages``
    (see :class:`StageCost`); ``serialized_bytes`` is the size entering the first lossless coder."""
    total = 0.0
    for cost in stages:  # summed in stage order, plainly (sum() may compensate rounding)
        total += _stage_time(profile, cost, stages, elements, serialized_bytes, direction)
    return total


def _stage_time(profile: Profile, cost: StageCost, stages: Sequence[StageCost], elements: int,
                serialized_bytes: float, direction: Literal["encode", "decode"]) -> float:
    if cost.kind == "macs":
        ops = cost.macs(direction)
        if not ops:
            return 0.0
        if profile.mac_rate is None:
            raise ConfigError("codec", cost.key, f"profile {profile.name!r} has no mac_rate to charge a learned stage")
        return ops / profile.mac_rate.ops_per_s
    costs = profile.codecs
    if costs is None:
        raise ConfigError("codec", [s.key for s in stages], f"profile {profile.name!r} has no codec costs")
    if cost.kind == "element":
        name = cost.key if direction == "encode" else decode_key(cost.key)
        if name not in costs.per_element:
            raise ConfigError("codec", cost.key, f"profile {profile.name!r} has per-element costs for: "
                              f"{', '.join(costs.per_element)}")
        return costs.per_element[name].median * elements
    table = costs.encode_throughput if direction == "encode" else costs.decode_throughput
    if cost.key not in table:
        raise ConfigError("codec", cost.key, f"profile {profile.name!r} has {direction} throughput for: "
                          f"{', '.join(table)}")
    return serialized_bytes / table[cost.key]

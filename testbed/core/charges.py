"""Compute charges from device profiles: head time up to a split, the tail's batch table, codec time.

Pure arithmetic on :class:`~testbed.config.profiles.Profile` objects (no I/O, no torch): the
simulator and the emulator charge time from these figures, never from this machine's clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from testbed.config.profiles import Figure, ModelProfile, Profile
from testbed.dists import Deterministic, Dist, Lognormal
from testbed.errors import ConfigError

__all__ = ["head_figure", "head_time", "tail_table", "codec_time", "spread_dist", "decode_key", "block_order"]

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


def codec_time(profile: Profile, stages: list[tuple[str, str]], elements: int, serialized_bytes: float,
               direction: Literal["encode", "decode"],
               macs: dict[str, tuple[float, float]] | None = None) -> float:
    """Seconds to encode (or decode) one feature map through a chain.

    ``stages`` lists ``(kind, key)``: kind ``element`` for tensor stages and the bit packer
    (charged per element, key e.g. ``quantize``), kind ``bytes`` for lossless coders (charged per
    uncompressed byte, key e.g. ``lzma:preset=6``), kind ``macs`` for learned stages (charged
    ``macs[key] = (encode MACs, decode MACs)`` per image at the profile's ``mac_rate``).
    ``serialized_bytes`` is the size entering the first lossless coder.
    """
    if not stages:
        return 0.0
    costs = profile.codecs
    total = 0.0
    for kind, key in stages:
        if kind == "macs":
            ops = (macs or {}).get(key, (0.0, 0.0))[0 if direction == "encode" else 1]
            if ops:
                if profile.mac_rate is None:
                    raise ConfigError("codec", key, f"profile {profile.name!r} has no mac_rate to charge a learned stage")
                total += ops / profile.mac_rate.ops_per_s
            continue
        if costs is None:
            raise ConfigError("codec", [k for _, k in stages], f"profile {profile.name!r} has no codec costs")
        table = costs.encode_throughput if direction == "encode" else costs.decode_throughput
        if kind == "element":
            name = key if direction == "encode" else decode_key(key)
            if name not in costs.per_element:
                raise ConfigError("codec", key, f"profile {profile.name!r} has per-element costs for: "
                                  f"{', '.join(costs.per_element)}")
            total += costs.per_element[name].median * elements
        else:
            if key not in table:
                raise ConfigError("codec", key, f"profile {profile.name!r} has {direction} throughput for: "
                                  f"{', '.join(table)}")
            total += serialized_bytes / table[key]
    return total

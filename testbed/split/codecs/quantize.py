"""Quantizers: uniform affine quantization at 1..8 bits and a 1-bit threshold mode.

Uniform affine quantization maps ``x`` in ``[lo, hi]`` to ``q = round((x - lo) / s)`` with
``s = (hi - lo) / (2^b - 1)`` and reconstructs ``lo + q * s`` (as in Jacob et al., 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference");
the error is at most ``s / 2`` for values inside the clipping range. Percentile clipping trades
outlier error for a finer step (as in Wu et al., 2020, "Integer Quantization for Deep Learning
Inference"). The 1-bit threshold mode sends ``x > t`` and reconstructs each channel with the mean
of its values on either side of the threshold, the optimal two levels for a fixed threshold
(Lloyd, 1982, "Least squares quantization in PCM"); cf. the per-channel scaling of XNOR-Net
(Rastegari et al., 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from testbed.errors import ConfigError
from testbed.split.codecs.base import TensorStage, register_codec
from testbed.split.codecs.errors import PayloadError

__all__ = ["Binarize", "Quantize", "channel_view"]

_GRANULARITY = ("tensor", "channel")


def channel_view(x: Tensor, per_channel: bool, channel_axis: int | None) -> Tensor:
    """View a batch ``[N, *shape]`` as ``[N, C, M]`` (``C = 1`` for per-tensor statistics).

    ``channel_axis`` indexes the per-image shape; ``None`` means 0 for maps ``[C, H, W]`` and the
    last axis for token sequences ``[T, D]``.
    """
    n = x.shape[0]
    if not per_channel:
        return x.reshape(n, 1, -1)
    nd = x.dim() - 1
    axis = _resolve_axis(channel_axis, nd)
    return x.movedim(axis + 1, 1).reshape(n, x.shape[axis + 1], -1)


def _resolve_axis(channel_axis: int | None, nd: int) -> int:
    if channel_axis is None:
        return 0 if nd != 2 else 1
    axis = channel_axis % nd if -nd <= channel_axis < nd else None
    if axis is None:
        raise ValueError(f"channel_axis {channel_axis} out of range for a {nd}-d feature")
    return axis


def _restore(v: Tensor, shape: torch.Size, per_channel: bool, channel_axis: int | None) -> Tensor:
    """Inverse of :func:`channel_view`."""
    if not per_channel:
        return v.reshape(shape)
    axis = _resolve_axis(channel_axis, len(shape) - 1)
    moved = list(shape)
    moved.insert(1, moved.pop(axis + 1))
    return v.reshape(moved).movedim(1, axis + 1)


def _params_blob(*arrays: Tensor) -> list[bytes]:
    stacked = torch.cat([a.reshape(a.shape[0], -1) for a in arrays], dim=1)
    data = stacked.to(torch.float32).cpu().numpy().astype("<f4")
    return [row.tobytes() for row in data]


def _parse_params(side: list[bytes], count: int, channels: int, what: str) -> Tensor:
    rows = []
    for blob in side:
        if len(blob) != 4 * count * channels:
            raise PayloadError(f"{what} side information has {len(blob)} bytes, expected {4 * count * channels}")
        rows.append(np.frombuffer(blob, dtype="<f4"))
    if rows and not np.isfinite(np.stack(rows)).all():
        raise PayloadError(f"{what} side information holds non-finite values")
    return torch.from_numpy(np.stack(rows).astype(np.float32)).reshape(len(side), count, channels)


def _check_common(path: str, granularity: str, channel_axis: int | None) -> None:
    if granularity not in _GRANULARITY:
        raise ConfigError(f"{path}.granularity", granularity, f"one of {', '.join(_GRANULARITY)}")
    if channel_axis is not None and not -4 <= channel_axis < 4:
        raise ConfigError(f"{path}.channel_axis", channel_axis, "an axis of the per-image feature (-4..3)")


@register_codec("quantize")
@dataclass(frozen=True)
class Quantize(TensorStage):
    """Uniform affine quantization to ``bits`` bits, per tensor or per channel.

    ``clip="minmax"`` uses the exact range; ``clip="percentile"`` clips to the
    ``[100 - percentile, percentile]`` percentiles of each tensor/channel.
    Side information per image: ``lo`` and ``step`` (float32) per tensor or channel.
    """

    always = ("bits",)

    bits: int = 8
    granularity: str = "tensor"
    clip: str = "minmax"
    percentile: float = 99.99
    channel_axis: int | None = None

    def validate(self, path: str) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"{path}.bits", self.bits, "an integer from 1 to 8")
        _check_common(path, self.granularity, self.channel_axis)
        if self.clip not in ("minmax", "percentile"):
            raise ConfigError(f"{path}.clip", self.clip, "one of minmax, percentile")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"{path}.percentile", self.percentile, "a percentile in (50, 100]")

    def output_bits(self) -> int:
        return self.bits

    @property
    def per_channel(self) -> bool:
        return self.granularity == "channel"

    def ranges(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """Clipping range ``(lo, hi)`` of each row of ``v`` (shape ``[N, C, M]`` -> ``[N, C]``)."""
        if self.clip == "minmax":
            return v.amin(dim=2), v.amax(dim=2)
        m = v.shape[2]
        k_hi = min(m, max(1, math.ceil(self.percentile / 100.0 * m)))
        k_lo = min(m, max(1, math.floor((100.0 - self.percentile) / 100.0 * m) + 1))
        return v.kthvalue(k_lo, dim=2).values, v.kthvalue(k_hi, dim=2).values

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        v = channel_view(x.to(torch.float32), self.per_channel, self.channel_axis)
        lo, hi = self.ranges(v)
        levels = (1 << self.bits) - 1
        step = (hi - lo) / levels
        inv = torch.where(step > 0, 1.0 / step, torch.zeros_like(step))
        q = torch.round((v - lo[..., None]) * inv[..., None]).clamp_(0, levels).to(torch.uint8)
        return _restore(q, x.shape, self.per_channel, self.channel_axis), _params_blob(lo, step)

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        v = channel_view(y, self.per_channel, self.channel_axis)
        params = _parse_params(side, 2, v.shape[1], "quantize").to(y.device)
        if v.numel() and int(v.max()) >= (1 << self.bits):
            raise PayloadError(f"quantize: code above {(1 << self.bits) - 1} in a {self.bits}-bit payload")
        lo, step = params[:, 0], params[:, 1]
        out = lo[..., None] + v.to(torch.float32) * step[..., None]
        return _restore(out, y.shape, self.per_channel, self.channel_axis)


@register_codec("binarize")
@dataclass(frozen=True)
class Binarize(TensorStage):
    """1-bit quantization: ``x > t`` with two reconstruction levels per channel (or per tensor).

    ``threshold`` is ``"mean"``, ``"median"`` (of each channel/tensor) or a number. The levels are
    the means of the values at or below and above the threshold (the threshold itself where a side
    is empty). Side information per image: the two levels (float32) per channel.
    """

    threshold: str | float = "mean"
    granularity: str = "channel"
    channel_axis: int | None = None

    def validate(self, path: str) -> None:
        if isinstance(self.threshold, str) and self.threshold not in ("mean", "median"):
            raise ConfigError(f"{path}.threshold", self.threshold, "mean, median or a number")
        _check_common(path, self.granularity, self.channel_axis)

    def output_bits(self) -> int:
        return 1

    def thresholds(self, v: Tensor) -> Tensor:
        """Threshold of each row of ``v`` (``[N, C, M]`` -> ``[N, C]``)."""
        if self.threshold == "mean":
            return v.mean(dim=2)
        if self.threshold == "median":
            return v.median(dim=2).values
        return torch.full(v.shape[:2], float(self.threshold), dtype=v.dtype, device=v.device)

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        per_channel = self.granularity == "channel"
        v = channel_view(x.to(torch.float32), per_channel, self.channel_axis)
        t = self.thresholds(v)
        above = v > t[..., None]
        n_hi = above.sum(dim=2)
        n_lo = v.shape[2] - n_hi
        s_hi = torch.where(above, v, torch.zeros_like(v)).sum(dim=2)
        s_lo = v.sum(dim=2) - s_hi
        hi = torch.where(n_hi > 0, s_hi / n_hi.clamp(min=1), t)
        lo = torch.where(n_lo > 0, s_lo / n_lo.clamp(min=1), t)
        codes = _restore(above.to(torch.uint8), x.shape, per_channel, self.channel_axis)
        return codes, _params_blob(lo, hi)

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        per_channel = self.granularity == "channel"
        v = channel_view(y, per_channel, self.channel_axis)
        params = _parse_params(side, 2, v.shape[1], "binarize").to(y.device)
        if v.numel() and int(v.max()) > 1:
            raise PayloadError("binarize: code above 1 in a 1-bit payload")
        out = torch.where(v.bool(), params[:, 1, :, None], params[:, 0, :, None])
        return _restore(out, y.shape, per_channel, self.channel_axis)

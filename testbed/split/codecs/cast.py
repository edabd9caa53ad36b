"""Precision casts (no side information)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from testbed.split.codecs.base import TensorStage, register_codec

__all__ = ["Float16"]

_F16_MAX = 65504.0


@register_codec("float16")
@dataclass(frozen=True)
class Float16(TensorStage):
    """IEEE half precision; values beyond +-65504 saturate instead of becoming infinite."""

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        y = x.to(torch.float32).clamp(-_F16_MAX, _F16_MAX).to(torch.float16)
        return y, [b""] * x.shape[0]

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        return y.to(torch.float32)

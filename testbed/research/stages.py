"""Registered codec stages of the research methods (usable in a scenario's codec chain).

* ``autoencoder`` (TCL, doi:10.1109/ACCESS.2025.3579107): encode = the node's encoder, decode = the
  server's decoder; follow it with ``quantize`` and ``lzma``:
  ``[{autoencoder: {checkpoint: ae.pt}}, {quantize: {bits: 2}}, {lzma: {preset: 6}}]``.
* ``qcnet`` (doi:10.1109/ACCESS.2025.3627072): nothing on the node (encode is the identity),
  decode refines the dequantized map: ``[{qcnet: {checkpoint: qc.pt}}, {binarize: {}}, {lzma: {}}]``.
* ``softquant`` (arXiv:2603.05172) and ``augq`` (Applied Intelligence 2025): quantizers emitting
  exactly ``bits``-bit codes with their learned/calibrated levels in the checkpoint:
  ``[{softquant: {checkpoint: sq.pt}}, {lzma: {}}]``.

Learned stages read their checkpoint with ``torch.load(weights_only=True)``; a payload names the
checkpoint in its header, so decoding needs the payload and the checkpoint only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from testbed.split.codecs.base import TensorStage, register_codec
from testbed.split.codecs.errors import PayloadError
from testbed.split.codecs.quantize import _restore, channel_view
from testbed.errors import ConfigError
from testbed.research.common import load_checkpoint

__all__ = ["AutoencoderStage", "QCNetStage", "SoftQuantStage", "AuGQStage", "cached_checkpoint"]


def cached_checkpoint(path: str, method: str, field: str) -> Any:
    """The loaded modules of a checkpoint, cached by path and modification time."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(field, path, f"an existing {method} checkpoint file (from `testbed train {method}`)")
    return _load(str(p.resolve()), p.stat().st_mtime, method, field)


@lru_cache(maxsize=32)
def _load(path: str, mtime: float, method: str, field: str) -> Any:
    if method == "autoencoder":
        from testbed.research.autoencoder import load_autoencoder

        return load_autoencoder(path, field)
    if method == "qcnet":
        from testbed.research.qcnet import load_qcnet

        return load_qcnet(path, field)
    if method == "softquant":
        from testbed.research.softquant import load_softquant

        return load_softquant(path, field)
    blob = load_checkpoint(path, "augq", field)
    return blob["state"]["levels"], blob["config"]


def _no_side(n: int) -> list[bytes]:
    return [b""] * n


def _check_side(side: list[bytes], name: str) -> None:
    if any(side):
        raise PayloadError(f"{name}: unexpected side information in the payload")


def _checkpoint_field(stage: Any, path: str) -> None:
    if not stage.checkpoint:
        raise ConfigError(f"{path}.checkpoint", stage.checkpoint, "the path of a checkpoint from `testbed train`")


@register_codec("autoencoder")
@dataclass(frozen=True)
class AutoencoderStage(TensorStage):
    """TCL autoencoder bottleneck: encoder on the node, decoder on the server (no side information)."""

    checkpoint: str = ""

    def validate(self, path: str) -> None:
        _checkpoint_field(self, path)
        cached_checkpoint(self.checkpoint, "autoencoder", f"{path}.checkpoint")

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        enc = cached_checkpoint(self.checkpoint, "autoencoder", "checkpoint")[0]
        with torch.no_grad():
            return enc(x.to(torch.float32)), _no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        _check_side(side, self.name)
        dec = cached_checkpoint(self.checkpoint, "autoencoder", "checkpoint")[1]
        with torch.no_grad():
            return dec(y.to(torch.float32))


@register_codec("qcnet")
@dataclass(frozen=True)
class QCNetStage(TensorStage):
    """QCNet: identity on the node; on the server, refines the dequantized map of the next stage."""

    checkpoint: str = ""

    def validate(self, path: str) -> None:
        _checkpoint_field(self, path)
        cached_checkpoint(self.checkpoint, "qcnet", f"{path}.checkpoint")

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        return x, _no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        _check_side(side, self.name)
        net = cached_checkpoint(self.checkpoint, "qcnet", "checkpoint")[0]
        with torch.no_grad():
            return net(y.to(torch.float32))


@register_codec("softquant")
@dataclass(frozen=True)
class SoftQuantStage(TensorStage):
    """Hardened bitwise soft quantizer: ``bits``-bit codes, levels from the checkpoint."""

    checkpoint: str = ""

    def _q(self) -> Any:
        return cached_checkpoint(self.checkpoint, "softquant", "checkpoint")[0]

    def validate(self, path: str) -> None:
        _checkpoint_field(self, path)
        cached_checkpoint(self.checkpoint, "softquant", f"{path}.checkpoint")

    def output_bits(self) -> int:
        return int(self._q().bits)

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        return self._q().hard_codes(x.to(torch.float32)), _no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        _check_side(side, self.name)
        q = self._q()
        if y.numel() and int(y.max()) >= (1 << q.bits):
            raise PayloadError(f"softquant: code above {(1 << q.bits) - 1} in a {q.bits}-bit payload")
        return q.dequantize(y)


@register_codec("augq")
@dataclass(frozen=True)
class AuGQStage(TensorStage):
    """AuGQ piecewise-affine quantizer with per-channel level tables calibrated post-training."""

    checkpoint: str = ""

    def _levels(self) -> tuple[Tensor, dict[str, Any]]:
        return cached_checkpoint(self.checkpoint, "augq", "checkpoint")

    def validate(self, path: str) -> None:
        _checkpoint_field(self, path)
        cached_checkpoint(self.checkpoint, "augq", f"{path}.checkpoint")

    def output_bits(self) -> int:
        return int(self._levels()[1]["bits"])

    def _view(self, x: Tensor, cfg: dict[str, Any]) -> Tensor:
        v = channel_view(x, cfg["granularity"] == "channel", None)
        if v.shape[1] != self._levels()[0].shape[0]:
            raise PayloadError(f"augq: feature has {v.shape[1]} channels, the checkpoint {self._levels()[0].shape[0]}")
        return v

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        from testbed.research.augq import quantize_to_levels

        levels, cfg = self._levels()
        v = self._view(x.to(torch.float32), cfg)
        codes = quantize_to_levels(v, levels)
        return _restore(codes, x.shape, cfg["granularity"] == "channel", None), _no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        from testbed.research.augq import dequantize_levels

        _check_side(side, self.name)
        levels, cfg = self._levels()
        if y.numel() and int(y.max()) >= levels.shape[1]:
            raise PayloadError(f"augq: code above {levels.shape[1] - 1} in a {cfg['bits']}-bit payload")
        v = self._view(y, cfg)
        return _restore(dequantize_levels(v, levels), y.shape, cfg["granularity"] == "channel", None)

"""AuGQ: augmented quantization granularity for sub-byte feature maps and weights.

Mujtaba et al., "AuGQ: Augmented quantization granularity to overcome accuracy degradation for
sub-byte quantized deep neural networks", Applied Intelligence, 2025, doi:10.1007/s10489-025-06495-1.

The (clipped) value range of each channel is cut into ``intervals`` small uniform intervals and
each interval gets its own affine quantizer: its scale and offset are fitted to the calibration
values that fall inside it, and it receives a share ``n_i`` of the ``2^b`` codes. The shares are
chosen post-training on a few samples (64 by default) by greedy allocation of one code at a time
to the interval that lowers the calibration MSE most; the result is compared with the plain
uniform quantizer over the same range and the better one is kept. A code is the index into the
channel's sorted level table (exactly ``b`` bits); values are encoded to the nearest level, which
inside an interval is the interval's affine rounding. The level tables (``C x 2^b`` floats) are the
calibrated parameters: they travel in the checkpoint, not in the payload.

This follows the paper's abstract (uniform intervals, affine quantization inside each, 64
calibration samples); details such as the code allocation rule are this implementation's.

Codec stage ``augq``: exactly ``bits``-bit codes against the checkpoint's level tables, charged like
the uniform quantizer (an interval lookup and an affine map per element):
``[{augq: {checkpoint: aq.pt}}, {lzma: {}}]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research.common import load_checkpoint, save_checkpoint
from testbed.research.measure import LZMA, EvalContext, Row
from testbed.research.registry import Method, Option, register_method
from testbed.research.stagekit import LearnedStage, check_side, no_side
from testbed.research.train import TrainOptions, eval_tail, split_task
from testbed.split.codecs import PayloadError, register_codec
from testbed.split.codecs.quantize import _restore, channel_view

__all__ = ["AuGQConfig", "AuGQStage", "augq_quantize_module", "calibrate_features", "calibrate_levels",
           "dequantize_levels", "level_mse", "load_augq", "quantize_to_levels", "save_augq", "uniform_levels",
           "uniform_quantize_module"]


@dataclass(frozen=True)
class AuGQConfig:
    """``intervals`` uniform intervals over the ``[100 - clip, clip]`` percentile range."""

    bits: int = 4
    intervals: int = 16
    clip: float = 99.99
    samples: int = 64

    def validate(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError("bits", self.bits, "an integer from 1 to 8")
        if not 1 <= self.intervals <= 256:
            raise ConfigError("intervals", self.intervals, "an integer from 1 to 256")
        if not 50.0 < self.clip <= 100.0:
            raise ConfigError("clip", self.clip, "a percentile in (50, 100]")
        if self.samples < 1:
            raise ConfigError("samples", self.samples, "a positive number of calibration samples")


def _nearest(v: Tensor, levels: Tensor) -> Tensor:
    """Index of the nearest level for each value; ``v [C, M]``, sorted ``levels [C, L]``."""
    mid = (levels[:, 1:] + levels[:, :-1]) / 2
    return torch.searchsorted(mid.contiguous(), v.contiguous())


def level_mse(v: Tensor, levels: Tensor) -> Tensor:
    """Per-row MSE of nearest-level quantization (``[C, M]``, ``[C, L]`` -> ``[C]``)."""
    idx = _nearest(v, levels)
    return (torch.gather(levels, 1, idx) - v).pow(2).mean(1)


def _range(v: Tensor, clip: float) -> tuple[Tensor, Tensor]:
    if clip >= 100.0:
        return v.amin(1), v.amax(1)
    q = torch.tensor([1 - clip / 100.0, clip / 100.0], dtype=v.dtype)
    lohi = torch.quantile(v, q, dim=1)
    return lohi[0], lohi[1]


def uniform_levels(v: Tensor, bits: int, clip: float = 100.0) -> Tensor:
    """Uniform affine levels over each row's (clipped) range: ``[C, M]`` -> ``[C, 2^b]``."""
    lo, hi = _range(v, clip)
    t = torch.linspace(0, 1, 1 << bits, dtype=v.dtype)
    return lo[:, None] + (hi - lo)[:, None] * t


def _row_levels(v: Tensor, bits: int, intervals: int, lo: float, hi: float) -> Tensor:
    """Greedy code allocation for one row of values (clipped to ``[lo, hi]``)."""
    total = 1 << bits
    v = v.clamp(lo, hi)
    if hi <= lo:
        return torch.full((total,), lo, dtype=v.dtype)
    edges = torch.linspace(lo, hi, intervals + 1, dtype=v.dtype)
    which = torch.bucketize(v, edges[1:-1])
    bounds: list[tuple[float, float, float] | None] = []
    for i in range(intervals):
        inside = v[which == i]
        bounds.append(None if inside.numel() == 0 else (float(inside.min()), float(inside.max()), float(inside.mean())))

    def levels_of(alloc: list[int]) -> Tensor:
        out: list[Tensor] = []
        for (n, b) in zip(alloc, bounds):
            if n == 0 or b is None:
                continue
            a, z, mean = b
            out.append(torch.tensor([mean], dtype=v.dtype) if n == 1 else torch.linspace(a, z, n, dtype=v.dtype))
        return torch.sort(torch.cat(out)).values

    alloc = [0] * intervals
    candidates = [i for i, b in enumerate(bounds) if b is not None]
    for _ in range(total):
        best, best_err = candidates[0], float("inf")
        for i in candidates:
            alloc[i] += 1
            err = float(level_mse(v[None], levels_of(alloc)[None])[0])
            alloc[i] -= 1
            if err < best_err:
                best, best_err = i, err
        alloc[best] += 1
    return levels_of(alloc)


def calibrate_levels(v: Tensor, cfg: AuGQConfig) -> Tensor:
    """AuGQ level tables for each row of ``v`` (``[C, M]`` -> ``[C, 2^b]``, sorted); a row keeps the
    uniform table where that has the lower calibration MSE."""
    cfg.validate()
    v = v.to(torch.float32)
    lo, hi = _range(v, cfg.clip)
    tables = torch.stack([_row_levels(v[c], cfg.bits, cfg.intervals, float(lo[c]), float(hi[c]))
                          for c in range(v.shape[0])])
    uni = uniform_levels(v, cfg.bits, cfg.clip)
    better = level_mse(v, uni) < level_mse(v, tables)
    return torch.where(better[:, None], uni, tables)


def quantize_to_levels(v: Tensor, levels: Tensor) -> Tensor:
    """Codes (uint8) of ``v [N, C, M]`` against per-channel ``levels [C, L]``."""
    n, c, m = v.shape
    rows = v.permute(1, 0, 2).reshape(c, n * m)
    return _nearest(rows, levels).reshape(c, n, m).permute(1, 0, 2).to(torch.uint8)


def dequantize_levels(codes: Tensor, levels: Tensor) -> Tensor:
    """Inverse of :func:`quantize_to_levels` (``[N, C, M]`` uint8 -> float32)."""
    n, c, m = codes.shape
    rows = codes.permute(1, 0, 2).reshape(c, n * m).long()
    return torch.gather(levels, 1, rows).reshape(c, n, m).permute(1, 0, 2)


def _weight(layer: nn.Module) -> Tensor:
    w = layer.weight
    assert isinstance(w, Tensor), f"{type(layer).__name__} has no weight tensor"
    return w


def _weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def augq_quantize_module(module: nn.Module, cfg: AuGQConfig) -> tuple[nn.Module, int]:
    """A copy of ``module`` whose conv/linear weights are AuGQ-quantized per output channel, and the
    storage in bytes (packed codes plus float32 level tables)."""
    out = copy.deepcopy(module)
    size = 0
    for layer in _weight_layers(out):
        w = _weight(layer).data
        rows = w.reshape(w.shape[0], -1)
        levels = calibrate_levels(rows, cfg)
        codes = quantize_to_levels(rows[None], levels)
        _weight(layer).data = dequantize_levels(codes, levels)[0].reshape(w.shape)
        size += (rows.numel() * cfg.bits + 7) // 8 + 4 * levels.numel()
    return out, size


def uniform_quantize_module(module: nn.Module, bits: int) -> tuple[nn.Module, int]:
    """Baseline: per-output-channel uniform min-max weight quantization; copy and storage bytes."""
    out = copy.deepcopy(module)
    size = 0
    for layer in _weight_layers(out):
        w = _weight(layer).data
        rows = w.reshape(w.shape[0], -1)
        levels = uniform_levels(rows, bits)
        _weight(layer).data = dequantize_levels(quantize_to_levels(rows[None], levels), levels)[0].reshape(w.shape)
        size += (rows.numel() * bits + 7) // 8 + 8 * rows.shape[0]
    return out, size


def calibrate_features(x: Tensor, cfg: AuGQConfig, granularity: str = "channel") -> Tensor:
    """Level tables for feature maps ``x [N, C, ...]`` from the first ``cfg.samples`` items:
    ``[C, 2^b]`` per channel or ``[1, 2^b]`` per tensor."""
    if granularity not in ("channel", "tensor"):
        raise ConfigError("granularity", granularity, "one of channel, tensor")
    v = channel_view(x[:cfg.samples].to(torch.float32), granularity == "channel", None)
    rows = v.permute(1, 0, 2).reshape(v.shape[1], -1)
    return calibrate_levels(rows, cfg)


def save_augq(path: str, levels: Tensor, cfg: AuGQConfig, granularity: str,
              meta: Mapping[str, object] | None = None, head_state: dict[str, Tensor] | None = None) -> None:
    """Write an AuGQ checkpoint: the level tables (and optionally the AuGQ-quantized head weights)."""
    state = {"levels": levels}
    state.update({f"head.{k}": v for k, v in (head_state or {}).items()})
    save_checkpoint(path, "augq", {**cfg.__dict__, "granularity": granularity, **(meta or {})}, state)


def load_augq(path: str, field: str = "checkpoint") -> tuple[Tensor, dict[str, Any]]:
    """The level tables and the config of an AuGQ checkpoint."""
    blob = load_checkpoint(path, "augq", field)
    return blob["state"]["levels"], blob["config"]


@register_codec("augq")
@dataclass(frozen=True)
class AuGQStage(LearnedStage):
    """AuGQ piecewise-affine quantizer with per-channel level tables calibrated post-training."""

    loader = staticmethod(load_augq)

    def _levels(self) -> tuple[Tensor, dict[str, Any]]:
        levels, cfg = self.loaded()
        return levels, cfg

    def output_bits(self) -> int:
        return int(self._levels()[1]["bits"])

    def _view(self, x: Tensor, cfg: dict[str, Any]) -> Tensor:
        v = channel_view(x, cfg["granularity"] == "channel", None)
        if v.shape[1] != self._levels()[0].shape[0]:
            raise PayloadError(f"augq: feature has {v.shape[1]} channels, the checkpoint {self._levels()[0].shape[0]}")
        return v

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        levels, cfg = self._levels()
        codes = quantize_to_levels(self._view(x.to(torch.float32), cfg), levels)
        return _restore(codes, x.shape, cfg["granularity"] == "channel", None), no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        check_side(side, self.name)
        levels, cfg = self._levels()
        if y.numel() and int(y.max()) >= levels.shape[1]:
            raise PayloadError(f"augq: code above {levels.shape[1] - 1} in a {cfg['bits']}-bit payload")
        v = self._view(y, cfg)
        return _restore(dequantize_levels(v, levels), y.shape, cfg["granularity"] == "channel", None)

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """Charged like the uniform quantizer: an interval lookup and an affine map per element."""
        return StageCost("element", "quantize")


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    task = split_task(o, device)
    cfg = AuGQConfig(bits=p["bits"], intervals=p["intervals"], samples=p["samples"])
    gran, head, head_state = p["granularity"], task.head, None
    if p["head_bits"]:
        head, _ = augq_quantize_module(task.head, AuGQConfig(bits=p["head_bits"], intervals=p["intervals"]))
        head_state = head.state_dict()
    calib = task.features(task.x_train[:cfg.samples]) if head is task.head else head(task.x_train[:cfg.samples]).detach()
    levels = calibrate_features(calib, cfg, gran)
    save_augq(o.out, levels, cfg, gran, {"model": o.model, "split": o.split, "head_bits": p["head_bits"]}, head_state)

    def roundtrip(f: Tensor) -> Tensor:
        v = channel_view(f, gran == "channel", None)
        return dequantize_levels(quantize_to_levels(v, levels), levels).reshape(f.shape)

    return {"metrics": eval_tail(head, task.tail, task, roundtrip), "codec": [{"augq": {"checkpoint": o.out}}, LZMA]}


def eval_rows(ctx: EvalContext) -> list[Row]:
    """Feature maps: uniform per-channel quantization against AuGQ (2 and 4 bits); head weights and
    activations (W+A) likewise."""
    task, s = ctx.task, ctx.settings
    meta = {"model": s.model, "split": s.split}
    rows = []
    for b in (2, 4):
        rows.append(ctx.measure("split", "uniform per-channel quantize", str(b),
                                [{"quantize": {"bits": b, "granularity": "channel"}}, LZMA], task.tail, ctx.head_c,
                                ctx.tail_c, ctx.f_test))
        path, cfg = ctx.path(f"augq_{b}bit.pt"), AuGQConfig(bits=b)
        save_augq(path, calibrate_features(task.features(task.x_train[:cfg.samples]), cfg), cfg, "channel", meta)
        rows.append(ctx.measure("split", "AuGQ (64-sample calibration)", str(b), [{"augq": {"checkpoint": path}}, LZMA],
                                task.tail, ctx.head_c, ctx.tail_c, ctx.f_test))
    for b in (2, 4):
        cfg = AuGQConfig(bits=b)
        uhead, ubytes = uniform_quantize_module(task.head, b)
        with torch.no_grad():
            rows.append(ctx.measure("weights", "uniform per-channel W+A", f"W{b}A{b}",
                                    [{"quantize": {"bits": b, "granularity": "channel"}}, LZMA], task.tail, ctx.head_c,
                                    ctx.tail_c, uhead(task.x_test), head_weight_bytes=ubytes))
        ahead, abytes = augq_quantize_module(task.head, cfg)
        path = ctx.path(f"augq_w{b}a{b}.pt")
        save_augq(path, calibrate_features(ahead(task.x_train[:cfg.samples]).detach(), cfg), cfg, "channel",
                  {**meta, "head_bits": b}, ahead.state_dict())
        with torch.no_grad():
            rows.append(ctx.measure("weights", "AuGQ W+A", f"W{b}A{b}", [{"augq": {"checkpoint": path}}, LZMA],
                                    task.tail, ctx.head_c, ctx.tail_c, ahead(task.x_test), head_weight_bytes=abytes))
    return rows


METHOD = register_method(Method(
    name="augq", title="augmented quantization granularity (Mujtaba et al., Applied Intelligence 2025, "
                       "doi:10.1007/s10489-025-06495-1)",
    train=train, eval_rows=eval_rows, stages=(AuGQStage,),
    options=(Option("bits", int, 4, "quantization bits"),
             Option("granularity", str, "channel", "channel or tensor"),
             Option("intervals", int, 16, "uniform intervals over the range"),
             Option("samples", int, 64, "calibration samples"),
             Option("head_bits", int, 0, "also AuGQ-quantize the head weights to this many bits (0: no)"))))

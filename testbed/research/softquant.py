"""Trainable bitwise soft quantization of input features.

After arXiv:2603.05172 ("trainable bitwise soft quantization"): every input feature is quantized
to ``b`` bits by a staircase built from ``2^b - 1`` sigmoids with learnable, ordered thresholds
``t_k`` and learnable step heights ``a_k``::

    soft(x) = v_0 + sum_k a_k * sigmoid((x - t_k) / (tau * s))

``tau`` is annealed geometrically during training, and at inference every sigmoid is hardened to a
step: the node sends ``code(x) = #{k : x > t_k}``, an integer in ``[0, 2^b - 1]`` (exactly ``b``
bits), and the server reconstructs ``v_0 + a_1 + ... + a_code``. Thresholds are kept ordered by
construction (``t_k = t_0 + cumsum(softplus(g))``), so the hard code indexes the reconstruction
levels monotonically. Works on images at the split ``input`` (per pixel, per channel or per
tensor) and on tabular sensor vectors ``[N, D]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.errors import ConfigError
from testbed.research.common import batches, load_checkpoint, save_checkpoint
from testbed.research.nets import task_loss

__all__ = ["SoftBitQuantizer", "SoftQuantConfig", "train_softquant", "load_softquant", "GRANULARITIES"]

GRANULARITIES = ("feature", "channel", "tensor")


def _inv_softplus(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


class SoftBitQuantizer(nn.Module):
    """Per-feature ``bits``-bit soft quantizer; ``hard_codes``/``dequantize`` are its inference form.

    ``param_shape`` broadcasts against one item's shape: the full shape (``feature``), ``[C, 1, 1]``
    (``channel``) or ``[1]`` (``tensor``).
    """

    def __init__(self, param_shape: tuple[int, ...], bits: int, lo: Tensor | float = -1.0,
                 hi: Tensor | float = 1.0) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ConfigError("bits", bits, "an integer from 1 to 8")
        self.bits = bits
        self.param_shape = tuple(param_shape)
        k = (1 << bits) - 1
        lo_t = torch.as_tensor(lo, dtype=torch.float32).expand(self.param_shape).clone()
        hi_t = torch.as_tensor(hi, dtype=torch.float32).expand(self.param_shape).clone()
        step = ((hi_t - lo_t) / k).clamp(min=1e-3)
        self.register_buffer("scale", step.clone())
        self.start = nn.Parameter((lo_t - 0.5 * step).unsqueeze(-1))
        self.gaps = nn.Parameter(_inv_softplus(step).unsqueeze(-1).repeat(*([1] * len(self.param_shape)), k))
        self.base = nn.Parameter(lo_t.unsqueeze(-1))
        self.heights = nn.Parameter(_inv_softplus(step).unsqueeze(-1).repeat(*([1] * len(self.param_shape)), k))
        self.tau = 1.0

    def thresholds(self) -> Tensor:
        """Ordered thresholds ``[*param_shape, 2^b - 1]``."""
        return self.start + torch.cumsum(F.softplus(self.gaps), -1)

    def levels(self) -> Tensor:
        """Reconstruction levels ``[*param_shape, 2^b]`` (non-decreasing)."""
        return torch.cat([self.base, self.base + torch.cumsum(F.softplus(self.heights), -1)], -1)

    def forward(self, x: Tensor) -> Tensor:
        """Soft staircase at the current temperature ``tau`` (training), hard steps in eval mode."""
        if not self.training:
            return self.dequantize(self.hard_codes(x))
        z = (x.unsqueeze(-1) - self.thresholds()) / (self.tau * self.scale.unsqueeze(-1))
        return self.base.squeeze(-1) + (torch.sigmoid(z) * F.softplus(self.heights)).sum(-1)

    def hard_codes(self, x: Tensor) -> Tensor:
        """Integer codes ``#{k: x > t_k}`` as uint8, each below ``2^bits``."""
        with torch.no_grad():
            return (x.unsqueeze(-1) > self.thresholds()).sum(-1).to(torch.uint8)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Levels of the given codes (``[N, *shape]`` uint8 -> float32)."""
        with torch.no_grad():
            lv = self.levels()
            idx = codes.long().unsqueeze(-1)
            lv = lv.expand(*codes.shape[1:], lv.shape[-1]).unsqueeze(0).expand(codes.shape[0], *[-1] * (codes.dim()))
            return torch.gather(lv, -1, idx).squeeze(-1)


@dataclass(frozen=True)
class SoftQuantConfig:
    """Training settings; the temperature goes from ``tau_start`` to ``tau_end`` over the epochs."""

    bits: int = 2
    granularity: str = "feature"
    epochs: int = 6
    lr: float = 1e-2
    model_lr: float = 5e-4
    finetune: bool = True
    tau_start: float = 1.0
    tau_end: float = 0.02
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError("bits", self.bits, "an integer from 1 to 8")
        if self.granularity not in GRANULARITIES:
            raise ConfigError("granularity", self.granularity, f"one of {', '.join(GRANULARITIES)}")
        if self.epochs < 1:
            raise ConfigError("epochs", self.epochs, "a positive number of epochs")
        if not 0 < self.tau_end <= self.tau_start:
            raise ConfigError("tau_end", self.tau_end, f"a temperature in (0, tau_start={self.tau_start}]")


def _param_shape(shape: tuple[int, ...], granularity: str) -> tuple[int, ...]:
    if granularity == "feature":
        return shape
    if granularity == "channel":
        return (shape[0], *([1] * (len(shape) - 1))) if len(shape) > 1 else shape
    return (1,) * len(shape)


def _init_range(x: Tensor, pshape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """0.5 / 99.5 percentiles of the training data per parameter cell (global where a cell is flat)."""
    n = x.shape[0]
    full = x.reshape(n, -1)
    glo, ghi = torch.quantile(full.flatten()[:1_000_000], torch.tensor([0.005, 0.995]))
    view = x.expand(n, *x.shape[1:])
    dims = [0] + [i + 1 for i, d in enumerate(pshape) if d == 1]
    moved = view.permute(*[i for i in range(view.dim()) if i not in dims], *dims)
    flat = moved.reshape(*[view.shape[i] for i in range(view.dim()) if i not in dims], -1)
    lo = torch.quantile(flat, 0.005, dim=-1).reshape(pshape)
    hi = torch.quantile(flat, 0.995, dim=-1).reshape(pshape)
    flat_cell = (hi - lo) < 1e-3 * float(ghi - glo)
    return torch.where(flat_cell, glo, lo), torch.where(flat_cell, ghi, hi)


def train_softquant(model: nn.Module, x: Tensor, y: Tensor | None, cfg: SoftQuantConfig,
                    teacher: Tensor | None = None, device: torch.device | None = None,
                    out: str | None = None, meta: dict[str, Any] | None = None
                    ) -> tuple[SoftBitQuantizer, nn.Module, dict[str, list[float]]]:
    """Train a quantizer in front of ``model`` (fine-tuned too when ``cfg.finetune``).

    Returns the quantizer, the (copied) model and the per-epoch loss; ``out`` saves a checkpoint
    holding both (the codec stage needs only the quantizer).
    """
    cfg.validate()
    device = device or torch.device("cpu")
    pshape = _param_shape(tuple(x.shape[1:]), cfg.granularity)
    lo, hi = _init_range(x, pshape)
    quant = SoftBitQuantizer(pshape, cfg.bits, lo, hi).to(device).train()
    net = copy.deepcopy(model).to(device)
    net.train(cfg.finetune)
    for p in net.parameters():
        p.requires_grad_(cfg.finetune)
    groups: list[dict[str, Any]] = [{"params": quant.parameters(), "lr": cfg.lr}]
    if cfg.finetune:
        groups.append({"params": net.parameters(), "lr": cfg.model_lr})
    opt = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(cfg.seed)
    steps = cfg.epochs * len(batches(len(x), cfg.batch_size))
    ratio = cfg.tau_end / cfg.tau_start
    step = 0
    hist: dict[str, list[float]] = {"loss": [], "tau": []}
    for _ in range(cfg.epochs):
        tot, n = 0.0, 0
        for idx in batches(len(x), cfg.batch_size, g):
            quant.tau = cfg.tau_start * ratio ** (step / max(1, steps - 1))
            logits = net(quant(x[idx].to(device)))
            loss = task_loss(logits, y[idx].to(device) if y is not None else None,
                             teacher[idx].to(device) if teacher is not None else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        hist["loss"].append(tot / n)
        hist["tau"].append(quant.tau)
    quant.cpu().eval()
    net.cpu().eval()
    for p in net.parameters():
        p.requires_grad_(True)
    if out:
        state = {**{f"quantizer.{k}": v for k, v in quant.state_dict().items()},
                 **{f"model.{k}": v for k, v in net.state_dict().items()}}
        config = {**cfg.__dict__, "param_shape": list(pshape), "item_shape": list(x.shape[1:]), **(meta or {})}
        save_checkpoint(out, "softquant", config, state, {"history": hist})
    return quant, net, hist


def load_softquant(path: str, field: str = "checkpoint") -> tuple[SoftBitQuantizer, dict[str, Tensor], dict]:
    """The hardened quantizer, the fine-tuned model's state dict and the config of a checkpoint."""
    blob = load_checkpoint(path, "softquant", field)
    cfg = blob["config"]
    q = SoftBitQuantizer(tuple(cfg["param_shape"]), int(cfg["bits"]))
    q.load_state_dict({k[10:]: v for k, v in blob["state"].items() if k.startswith("quantizer.")})
    model = {k[6:]: v for k, v in blob["state"].items() if k.startswith("model.")}
    return q.eval(), model, cfg


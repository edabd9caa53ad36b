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
tensor) and on tabular sensor vectors ``[N, D]``: scikit-learn's breast cancer and wine
(classification, accuracy) and diabetes (regression on the standardized target, MSE and R^2;
:func:`tabular_rows`), 1-6 bits per feature against a float model, the per-item min-max codec and
the same quantizer left untrained (a uniform per-feature grid, :func:`save_uniform_grid`).

Codec stage ``softquant``: exactly ``bits``-bit codes with the learned levels in the checkpoint,
charged ``2^b - 1`` comparisons per element to encode and one table lookup to decode:
``[{softquant: {checkpoint: sq.pt}}, {lzma: {}}]``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research.common import (
    Compute,
    batches,
    count_compute,
    load_checkpoint,
    save_checkpoint,
    seeded,
    train_mode,
)
from testbed.research.measure import LZMA, EvalContext, Log, Row, log_row, measure_row
from testbed.research.nets import TabularMLP, evaluate_logits, tabular_tensors, task_loss, train_classifier
from testbed.research.registry import Method, Option, register_method
from testbed.research.stagekit import LearnedStage, check_side, no_side
from testbed.research.train import TABULAR_PREFIX, TrainOptions, split_task
from testbed.split.codecs import PayloadError, register_codec

__all__ = ["GRANULARITIES", "TABULAR_BITS", "TABULAR_SETS", "SoftBitQuantizer", "SoftQuantConfig", "SoftQuantStage",
           "load_softquant", "save_uniform_grid", "tabular_rows", "train_softquant"]

GRANULARITIES = ("feature", "channel", "tensor")
#: the tables and bit widths of the tabular rows (the paper's 1-6 bits per feature)
TABULAR_SETS = ("breast_cancer", "wine", "diabetes")
TABULAR_BITS = (1, 2, 3, 4, 5, 6)


def _inv_softplus(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


class SoftBitQuantizer(nn.Module):
    """Per-feature ``bits``-bit soft quantizer; ``hard_codes``/``dequantize`` are its inference form.

    ``param_shape`` broadcasts against one item's shape: the full shape (``feature``), ``[C, 1, 1]``
    (``channel``) or ``[1]`` (``tensor``).
    """

    scale: Tensor

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
    if cfg.finetune:
        train_mode(net, frozen_bn=teacher is not None)
    else:
        net.eval()
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


def load_softquant(path: str, field: str = "checkpoint") -> tuple[SoftBitQuantizer, dict[str, Tensor], dict[str, Any]]:
    """The hardened quantizer, the fine-tuned model's state dict and the config of a checkpoint."""
    blob = load_checkpoint(path, "softquant", field)
    cfg = blob["config"]
    q = SoftBitQuantizer(tuple(cfg["param_shape"]), int(cfg["bits"]))
    q.load_state_dict({k[10:]: v for k, v in blob["state"].items() if k.startswith("quantizer.")})
    model = {k[6:]: v for k, v in blob["state"].items() if k.startswith("model.")}
    return q.eval(), model, cfg



@register_codec("softquant")
@dataclass(frozen=True)
class SoftQuantStage(LearnedStage):
    """Hardened bitwise soft quantizer: ``bits``-bit codes, levels from the checkpoint."""

    loader = staticmethod(load_softquant)

    def _q(self) -> SoftBitQuantizer:
        return self.loaded()[0]

    def output_bits(self) -> int:
        return int(self._q().bits)

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        return self._q().hard_codes(x.to(torch.float32)), no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        check_side(side, self.name)
        q = self._q()
        if y.numel() and int(y.max()) >= (1 << q.bits):
            raise PayloadError(f"softquant: code above {(1 << q.bits) - 1} in a {q.bits}-bit payload")
        return q.dequantize(y)

    def tuned_tail(self, model: str, split: str, tail: Any) -> nn.Module | None:
        """The model fine-tuned with the quantizer (``model.1.*`` in the checkpoint: the tail of the
        split ``input``, the whole network) when the checkpoint was trained on ``model`` at ``input``
        with fine-tuning; None otherwise (the server keeps the model's own weights)."""
        _, state, cfg = self.loaded()
        tuned = {k[2:]: v for k, v in state.items() if k.startswith("1.")}
        if split != "input" or cfg.get("model") != model or not cfg.get("finetune") or not tuned \
                or any(k.startswith("0.") for k in state):
            return None
        out = copy.deepcopy(tail)
        out.load_state_dict(tuned)
        return out

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """``2^b - 1`` threshold comparisons per element to encode, one level lookup to decode."""
        elements = float(math.prod(shape))
        return StageCost("macs", self.name, (2 ** self.output_bits() - 1) * elements, elements)


def _tabular_model(name: str, seed: int) -> tuple[nn.Module, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """A two-layer perceptron trained (seeded) on a bundled scikit-learn table, and the table: a
    classifier (cross-entropy) or, for a regression table (``diabetes``), one output trained on the
    standardized target with MSE."""
    data = tabular_tensors(name, seed)
    xtr, ytr = data[0], data[1]
    outputs = 1 if ytr.is_floating_point() else int(ytr.max()) + 1
    with seeded(seed):
        mlp = TabularMLP(xtr.shape[1], outputs)
    train_classifier(mlp, xtr, ytr, 30, seed, lr=1e-2, batch_size=32)
    return mlp, data


def save_uniform_grid(model: nn.Module, x: Tensor, bits: int, out: str) -> SoftBitQuantizer:
    """The untrained quantizer as a checkpoint: a uniform per-feature grid over the training range
    (0.5-99.5 percentiles, midpoint thresholds), ``model`` unchanged. The ablation of
    arXiv:2603.05172's learning: same codes, same payload, no learned thresholds or levels."""
    pshape = _param_shape(tuple(x.shape[1:]), "feature")
    lo, hi = _init_range(x, pshape)
    quant = SoftBitQuantizer(pshape, bits, lo, hi).eval()
    state = {**{f"quantizer.{k}": v for k, v in quant.state_dict().items()},
             **{f"model.{k}": v for k, v in model.state_dict().items()}}
    config = {"bits": bits, "granularity": "feature", "epochs": 0, "param_shape": list(pshape),
              "item_shape": list(x.shape[1:]), "uniform_grid": True}
    save_checkpoint(out, "softquant", config, state, {"history": {}})
    return quant


def tabular_rows(name: str, seed: int, out: str, bits: tuple[int, ...] = TABULAR_BITS,
                 device: torch.device | None = None, log: Log = print, suffix: str = "") -> list[Row]:
    """arXiv:2603.05172 on a scikit-learn table: the float MLP, then per bit width the per-item
    min-max ``quantize`` codec, the untrained uniform per-feature grid (:func:`save_uniform_grid`)
    and the trained soft quantizer (model fine-tuned with it), each through real payloads; labels
    (accuracy) or the standardized regression target (``mse``/``r2`` in the row's extra).
    Checkpoints go to ``out`` (``softquant_<name>_<b>bit<suffix>.pt``)."""
    t0 = time.perf_counter()
    mlp, (xtr, ytr, xte, yte) = _tabular_model(name, seed)
    mc, none_c = count_compute(mlp, xte[:1]), Compute(0, 0)
    with torch.no_grad():
        teacher = mlp(xte)
    section, raw = f"tabular:{name}", 4 * xte.shape[1]
    rows: list[Row] = []

    def measure(method: str, b: str, spec: list[dict[str, Any]] | None, server: nn.Module) -> None:
        row = measure_row(section, method, b, spec, server, none_c, mc, xte, yte, teacher, strip=str(out),
                          raw_float32_bytes=raw, features=int(xte.shape[1]))
        log_row(log, row, time.perf_counter() - t0)
        rows.append(row)

    measure("float32 features (no codec)", "32", None, mlp)
    for b in bits:
        measure("uniform quantize", str(b), [{"quantize": {"bits": b}}], mlp)
        grid = str(Path(out) / f"softquant_{name}_{b}bit_grid{suffix}.pt")
        save_uniform_grid(mlp, xtr, b, grid)
        measure("uniform per-feature grid", str(b), [{"softquant": {"checkpoint": grid}}], mlp)
        path = str(Path(out) / f"softquant_{name}_{b}bit{suffix}.pt")
        train_softquant(mlp, xtr, ytr, SoftQuantConfig(bits=b, epochs=30, batch_size=32, lr=2e-2, seed=seed),
                        device=device, out=path)
        measure("bitwise soft quantization", str(b), [{"softquant": {"checkpoint": path}}], _tuned(mlp, path))
    return rows


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    cfg = SoftQuantConfig(bits=p["bits"], granularity=p["granularity"], epochs=p["epochs"], seed=o.seed,
                          finetune=p["finetune"])
    if o.dataset.startswith(TABULAR_PREFIX):
        model, (xtr, ytr, xte, yte) = _tabular_model(o.dataset[len(TABULAR_PREFIX):], o.seed)
        q, net, hist = train_softquant(model, xtr, ytr, cfg, device=device, out=o.out, meta={"dataset": o.dataset})
        with torch.no_grad():
            metrics = evaluate_logits(net(q(xte)), yte, model(xte))
            metrics = {**metrics, **{f"float_{k}": v for k, v in evaluate_logits(model(xte), yte, None).items()}}
    else:
        task = split_task(o, device, split="input")
        full = nn.Sequential(task.head, task.tail)
        teacher = task.teacher_logits(task.x_train) if task.target == "teacher" else None
        q, net, hist = train_softquant(full, task.x_train, task.y_train, cfg, teacher, device, o.out,
                                       meta={"model": o.model, "dataset": o.dataset})
        with torch.no_grad():
            metrics = evaluate_logits(net(q(task.x_test)), task.y_test, task.teacher_logits(task.x_test))
    return {"history": hist["loss"], "metrics": metrics, "codec": [{"softquant": {"checkpoint": o.out}}, LZMA],
            "note": "the server runs the fine-tuned model stored under 'model.' in the checkpoint"}


def _tuned(model: nn.Module, path: str) -> nn.Module:
    net = copy.deepcopy(model)
    net.load_state_dict(load_softquant(path)[1])
    return net.eval()


def _input_rows(ctx: EvalContext) -> list[Row]:
    """Images at the split ``input``: uniform quantization against soft quantization, 1-3 bits."""
    task, itask, s = ctx.task, ctx.input_task(), ctx.settings
    full = nn.Sequential(itask.head, itask.tail).eval()
    full_c, none_c, raw = count_compute(full, task.x_test[:1]), Compute(0, 0), task.x_test[0].numel()
    rows = []
    for b in (1, 2, 3):
        rows.append(ctx.measure("input", "uniform input quantize", str(b), [{"quantize": {"bits": b}}, LZMA], full,
                                none_c, full_c, task.x_test, raw_uint8_bytes=raw))
        path = ctx.path(f"softquant_input_{b}bit.pt")
        teacher = itask.teacher_logits(itask.x_train) if itask.target == "teacher" else None
        train_softquant(full, itask.x_train, itask.y_train,
                        SoftQuantConfig(bits=b, epochs=max(3, s.epochs // 2), seed=s.seed), teacher, ctx.device, path)
        rows.append(ctx.measure("input", "bitwise soft quantization", str(b), [{"softquant": {"checkpoint": path}},
                                                                             LZMA],
                                _tuned(full, path), none_c, full_c, task.x_test, raw_uint8_bytes=raw))
    return rows


def eval_rows(ctx: EvalContext) -> list[Row]:
    rows = _input_rows(ctx)
    if ctx.settings.tabular:
        rows += tabular_rows(ctx.settings.tabular, ctx.settings.seed, str(ctx.out), device=ctx.device, log=ctx.log)
    return rows


METHOD = register_method(Method(
    name="softquant", title="trainable bitwise soft quantization of inputs (arXiv:2603.05172)",
    train=train, eval_rows=eval_rows, stages=(SoftQuantStage,),
    options=(Option("bits", int, 2, "quantization bits"),
             Option("epochs", int, 6, "training epochs"),
             Option("granularity", str, "feature", f"one of {', '.join(GRANULARITIES)}"),
             Option("finetune", bool, True, "fine-tune the model jointly (--no-finetune: thresholds only, "
                                            "the model frozen)"))))

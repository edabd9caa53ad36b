"""Autoencoder bottleneck at the split, trained with the time-dependent clustering loss (TCL).

Berg et al., "TCL: Time-Dependent Clustering Loss for Optimizing Post-Training Feature Map
Quantization for Partitioned DNNs", IEEE Access 13, 2025, doi:10.1109/ACCESS.2025.3579107.

The encoder (node) reduces the channels of the split feature map with a 1x1 convolution and a
sigmoid, so its code lies in ``[0, 1]``; the decoder (server) restores the channels. TCL is the
mean squared distance of each code value to the nearest of the ``2^b`` uniform quantization levels
``k / (2^b - 1)``; its weight grows over training (:func:`tcl_weight`), so early epochs learn the
task and later ones pull the code onto the levels. After training the code is quantized
post-training with the ordinary ``quantize`` stage (min-max, ``b`` bits) and coded with LZMA.

Codec stage ``autoencoder`` (encode = the node's encoder, decode = the server's decoder; the
server runs the fine-tuned tail stored in the checkpoint), charged by the encoder's and decoder's
multiply-accumulates: ``[{autoencoder: {checkpoint: ae.pt}}, {quantize: {bits: 2}}, {lzma: {preset: 6}}]``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research.common import batches, count_compute, load_checkpoint, save_checkpoint, seeded, train_mode
from testbed.research.measure import LZMA, EvalContext, Row, Seq
from testbed.research.nets import SplitTask, task_loss
from testbed.research.registry import Method, Option, register_method
from testbed.research.stagekit import LearnedStage, check_side, no_side
from testbed.research.train import TrainOptions, eval_tail, split_task
from testbed.split.codecs import register_codec

__all__ = ["SCHEDULES", "AutoencoderConfig", "AutoencoderStage", "BottleneckDecoder", "BottleneckEncoder",
           "load_autoencoder", "tcl_loss", "tcl_weight", "train_autoencoder"]

History = dict[str, list[float]]

SCHEDULES = ("linear", "quadratic", "exponential", "constant")


class BottleneckEncoder(nn.Module):
    """Node side: ``[N, C, H, W] -> [N, c, H, W]`` in ``[0, 1]`` (1x1 conv + BN + sigmoid)."""

    def __init__(self, channels: int, code_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, code_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(code_channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.bn(self.conv(x)))


class BottleneckDecoder(nn.Module):
    """Server side: ``[N, c, H, W] -> [N, C, H, W]`` (1x1 expand, 3x3 refine); ends with a ReLU when
    the split feature is non-negative (``nonneg``; a split after a ReLU), linear otherwise (the
    linear bottlenecks of MobileNet-style blocks such as EfficientNet-Lite's)."""

    def __init__(self, channels: int, code_channels: int, nonneg: bool = True) -> None:
        super().__init__()
        self.nonneg = nonneg
        self.expand = nn.Sequential(nn.Conv2d(code_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                    nn.ReLU())
        self.refine = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, z: Tensor) -> Tensor:
        y = self.expand(z)
        return F.relu(y + self.refine(y)) if self.nonneg else y + self.refine(y)


def tcl_loss(z: Tensor, bits: int) -> Tensor:
    """Mean squared distance of ``z`` (in ``[0, 1]``) to the nearest of ``2^bits`` uniform levels."""
    levels = (1 << bits) - 1
    return ((z * levels - torch.round(z * levels)) / levels).pow(2).mean()


def tcl_weight(step: int, total: int, max_weight: float, schedule: str = "quadratic",
               warmup: float = 0.2) -> float:
    """TCL weight at ``step`` of ``total``: 0 during the first ``warmup`` fraction, then growing to
    ``max_weight`` (linearly, quadratically or exponentially) at the end of training."""
    if schedule not in SCHEDULES:
        raise ConfigError("schedule", schedule, f"one of {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return max_weight
    t = (step / max(1, total - 1) - warmup) / max(1e-9, 1.0 - warmup)
    t = min(1.0, max(0.0, t))
    if schedule == "linear":
        return max_weight * t
    if schedule == "quadratic":
        return max_weight * t * t
    return max_weight * (math.exp(5.0 * t) - 1.0) / (math.exp(5.0) - 1.0)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Training settings (``tcl_max = 0`` trains a plain autoencoder, the ablation)."""

    bits: int = 2
    code_channels: int = 8
    epochs: int = 10
    lr: float = 2e-3
    tail_lr: float = 5e-4
    recon_weight: float = 1.0
    tcl_max: float = 20.0
    schedule: str = "quadratic"
    batch_size: int = 64
    seed: int = 0
    #: fine-tune the tail jointly (stored under ``tail.``); False keeps the original tail frozen
    finetune_tail: bool = True
    #: weight of the task loss (cross-entropy on labels, or KL to the unsplit model's softened outputs)
    task_weight: float = 1.0
    #: epochs before ``epochs`` with the feature loss (and TCL) only: the tail is not run, so they cost
    #: little next to an epoch through a large tail
    feature_epochs: int = 0

    def validate(self) -> None:
        if not 1 <= self.bits <= 8:
            raise ConfigError("bits", self.bits, "an integer from 1 to 8")
        if self.code_channels < 1:
            raise ConfigError("code_channels", self.code_channels, "a positive number of channels")
        if self.epochs < 1 or self.feature_epochs < 0:
            raise ConfigError("epochs", (self.epochs, self.feature_epochs),
                              "a positive number of epochs and non-negative feature_epochs")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.task_weight <= 1e6 or not 0.0 <= self.tcl_max <= 1e6:
            raise ConfigError("task_weight", (self.task_weight, self.tcl_max),
                              "task_weight and tcl_max from 0 to 1e6")


def train_autoencoder(task: SplitTask, cfg: AutoencoderConfig, device: torch.device | None = None,
                      out: str | None = None) -> tuple[BottleneckEncoder, BottleneckDecoder, nn.Module, History]:
    """Train encoder, decoder and (fine-tune) the tail on the frozen head's features.

    Loss per step: task loss + ``recon_weight`` * MSE(decoded, feature) + ``tcl_weight(t)`` * TCL.
    Returns ``(encoder, decoder, tail, history)``; writes a checkpoint to ``out`` when given.
    """
    cfg.validate()
    device = device or torch.device("cpu")
    feats = task.features(task.x_train, device=device)
    teacher = task.teacher_logits(task.x_train, device=device) if task.target == "teacher" else None
    channels = feats.shape[1]
    nonneg = bool(feats.min() >= 0)
    with seeded(cfg.seed):
        enc = BottleneckEncoder(channels, cfg.code_channels)
        dec = BottleneckDecoder(channels, cfg.code_channels, nonneg)
    tail = copy.deepcopy(task.tail)
    frozen_bn = task.target == "teacher"  # a pretrained network distilled on a few hundred frames
    for m in (enc, dec):
        m.to(device).train()
    tail.to(device)
    if cfg.finetune_tail:
        train_mode(tail, frozen_bn)
    else:
        tail.eval()
    for p in tail.parameters():
        p.requires_grad_(cfg.finetune_tail)
    scale = float(feats.pow(2).mean().sqrt().clamp(min=1e-6))
    groups: list[dict[str, Any]] = [{"params": [*enc.parameters(), *dec.parameters()], "lr": cfg.lr}]
    if cfg.finetune_tail:
        groups.append({"params": tail.parameters(), "lr": cfg.tail_lr})
    opt = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(cfg.seed)
    total = (cfg.feature_epochs + cfg.epochs) * len(batches(len(feats), cfg.batch_size))
    step = 0
    hist: History = {"loss": [], "task": [], "tcl": [], "tcl_weight": []}
    w = 0.0
    for epoch in range(cfg.feature_epochs + cfg.epochs):
        sums = [0.0, 0.0, 0.0]
        n = 0
        for idx in batches(len(feats), cfg.batch_size, g):
            f = feats[idx].to(device)
            z = enc(f)
            r = dec(z)
            if epoch >= cfg.feature_epochs:
                lt = task_loss(tail(r), task.y_train[idx].to(device) if task.y_train is not None else None,
                               teacher[idx].to(device) if teacher is not None else None)
            else:
                lt = torch.zeros(())
            lc = tcl_loss(z, cfg.bits)
            w = tcl_weight(step, total, cfg.tcl_max, cfg.schedule)
            loss = cfg.task_weight * lt + cfg.recon_weight * F.mse_loss(r, f) / scale ** 2 + w * lc
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            sums[0] += float(loss.detach()) * len(idx)
            sums[1] += float(lt.detach()) * len(idx)
            sums[2] += float(lc.detach()) * len(idx)
            n += len(idx)
        hist["loss"].append(sums[0] / n)
        hist["task"].append(sums[1] / n)
        hist["tcl"].append(sums[2] / n)
        hist["tcl_weight"].append(w)
    for mod in (enc, dec, tail):
        mod.cpu().eval()
    for p in tail.parameters():
        p.requires_grad_(True)
    if out:
        tuned = tail.state_dict() if cfg.finetune_tail else {}
        state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
                 **{f"decoder.{k}": v for k, v in dec.state_dict().items()},
                 **{f"tail.{k}": v for k, v in tuned.items()}}
        config = {**cfg.__dict__, "channels": channels, "nonneg": nonneg, "model": task.model_name,
                  "split": task.point}
        save_checkpoint(out, "autoencoder", config, state, {"history": hist})
    return enc, dec, tail, hist


def load_autoencoder(path: str, field: str = "checkpoint") -> tuple[BottleneckEncoder, BottleneckDecoder,
                                                                     dict[str, Tensor], dict[str, Any]]:
    """Encoder, decoder, the fine-tuned tail's state dict and the config of a checkpoint."""
    blob = load_checkpoint(path, "autoencoder", field)
    cfg = blob["config"]
    enc = BottleneckEncoder(int(cfg["channels"]), int(cfg["code_channels"]))
    dec = BottleneckDecoder(int(cfg["channels"]), int(cfg["code_channels"]), bool(cfg.get("nonneg", True)))
    state = blob["state"]
    enc.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    dec.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")})
    tail = {k[5:]: v for k, v in state.items() if k.startswith("tail.")}
    return enc.eval(), dec.eval(), tail, cfg


@register_codec("autoencoder")
@dataclass(frozen=True)
class AutoencoderStage(LearnedStage):
    """TCL autoencoder bottleneck: encoder on the node, decoder on the server (no side information)."""

    loader = staticmethod(load_autoencoder)

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        enc = self.loaded()[0]
        with torch.no_grad():
            return enc(x.to(torch.float32)), no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        check_side(side, self.name)
        with torch.no_grad():
            return self.loaded()[1](y.to(torch.float32))

    def encoded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(self.loaded()[3]["code_channels"]), *shape[1:])

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """The encoder's MACs on the node, the decoder's on the server."""
        enc, dec = self.loaded()[:2]
        x = torch.zeros(1, *shape)
        with torch.no_grad():
            code = enc(x)
        return StageCost("macs", self.name, float(count_compute(enc, x).macs), float(count_compute(dec, code).macs))


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    task = split_task(o, device)
    cfg = AutoencoderConfig(bits=p["bits"], code_channels=p["code_channels"], epochs=p["epochs"],
                            tcl_max=p["tcl_max"], schedule=p["schedule"], seed=o.seed,
                            finetune_tail=p["finetune_tail"], task_weight=p["task_weight"],
                            feature_epochs=p["feature_epochs"])
    enc, dec, tail, hist = train_autoencoder(task, cfg, device, o.out)
    return {"history": hist["loss"], "float_metrics": eval_tail(task.head, tail, task, lambda f: dec(enc(f))),
            "codec": [{"autoencoder": {"checkpoint": o.out}}, {"quantize": {"bits": cfg.bits}}, LZMA]}


def eval_rows(ctx: EvalContext) -> list[Row]:
    """1-3 bit codes with TCL and without (the ablation), each with its fine-tuned tail."""
    task, s, f1 = ctx.task, ctx.settings, ctx.f_test[:1]
    rows = []
    for b in (1, 2, 3):
        for tcl in (0.0, 20.0):
            path = ctx.path(f"ae_{b}bit_{'tcl' if tcl else 'notcl'}.pt")
            train_autoencoder(task, AutoencoderConfig(bits=b, epochs=s.epochs, tcl_max=tcl, seed=s.seed), ctx.device,
                              path)
            enc, dec, state, _ = load_autoencoder(path)
            tail = copy.deepcopy(task.tail)
            if state:
                tail.load_state_dict(state)
            name = "autoencoder + TCL" if tcl else "autoencoder, no TCL (ablation)"
            with torch.no_grad():
                code = enc(f1)
            rows.append(ctx.measure("split", name, str(b), [{"autoencoder": {"checkpoint": path}},
                                                             {"quantize": {"bits": b}}, LZMA],
                                    tail.eval(), ctx.head_c + count_compute(enc, f1),
                                    count_compute(Seq(dec, task.tail), code), ctx.f_test))
    return rows


METHOD = register_method(Method(
    name="autoencoder",
    title="autoencoder bottleneck + time-dependent clustering loss (Berg et al., IEEE Access 2025, "
          "doi:10.1109/ACCESS.2025.3579107)",
    train=train, eval_rows=eval_rows, stages=(AutoencoderStage,),
    options=(Option("bits", int, 2, "quantization bits of the code"),
             Option("epochs", int, 10, "training epochs"),
             Option("code_channels", int, 8, "channels of the code"),
             Option("tcl_max", float, 20.0, "final TCL weight (0 = no TCL)"),
             Option("schedule", str, "quadratic", f"TCL weight schedule: {', '.join(SCHEDULES)}"),
             Option("finetune_tail", bool, True, "fine-tune the tail jointly (--no-finetune-tail: frozen tail)"),
             Option("task_weight", float, 1.0, "weight of the task/distillation loss (0: feature loss only)"),
             Option("feature_epochs", int, 0, "epochs of feature loss (+ TCL) only before --epochs (cheap)"))))

"""GroupNL heads trained by distillation: ``testbed train groupnl``.

Ding, Xie et al., "GroupNL: Low-Resource and Robust CNN Design over Cloud and Device", IEEE TMC
2026, arXiv:2506.12335 (the convolution and the head transformation: :mod:`testbed.research.groupnl`).

The head of the model up to ``--split`` has its convolutions replaced by GroupNL convolutions
(``--ratio``, ``--groups``, ``--sparse``), except the last one by default (``--keep-last``: the
convolution whose output the frozen tail reads stays standard; a GroupNL output would hand the tail
sinusoids of half its channels in place of the channels it was trained on, which no training of the
head can undo) and any the options ``--keep-first`` / ``--keep REGEX`` name. The new head is warm-started
from the original filters (the first ``s`` of each convolution), then calibrated on ``--calibration``
frames (:func:`~testbed.research.groupnl.calibrate_groupnl`: seed maps rescaled to unit scale with their
batch norms compensated exactly, so that the sinusoids do not alias a pretrained convolution's large
maps into noise; the generated maps start as their channel's mean), and trained label-free on the
dataset's frames (the ``photos``) so that its output features match the original head's (MSE over the
teacher features' mean square, ``--feature-weight``) and the frozen tail's logits on them match the
unsplit model's (KL divergence to the softened logits at ``--temperature``, times T^2 and
``--kl-weight``); where the dataset has labels and the model was trained on them, a cross-entropy term is
added. Adam with a cosine decay. Only the head's parameters are trained (the seed filters, the kept
convolutions and the batch norms' affine terms; batch-norm statistics and the NLF hyperparameters are
fixed), so those are the bytes a cloud-device training round sends. ``--ratio 1`` fine-tunes the
original head the same way (the baseline GroupNL is compared with).

Why the recipe is this (measured on the pretrained Lite0 over the photos, see docs/results/groupnl.md):
warm-started without calibration, the sinusoids of raw pretrained maps (standard deviations 2-9, peaks
near 100) are noise and the head's features are off by 4x their own energy (agreement 0); calibration
brings the stage-1 head to 45% agreement before training. A feature loss at every block output cannot
be met (half of each GroupNL output is a fixed function of the other half) and the head-output MSE alone
stalls (55% at stage 1); the KL through the tail is what lifts it (70% after 2 short epochs). At stage 2
and beyond (7 and more convolutions replaced) the same budget does not recover the features (about 1%
agreement): the GroupNL head is a half-width head that would need far more than a few minutes of
distillation on a dozen photographs.

Deterministic on the CPU for a seed: fixed threads (``--threads``, default 1), a seeded data order,
``torch.use_deterministic_algorithms(True)`` during training (restored afterwards); two runs with one
seed write identical checkpoints. The checkpoint (read back with ``weights_only=True``) is what a
scenario names as ``model.head``; the node's head time is then the profile's head time scaled by the
GroupNL head's MACs over the original's (see :mod:`testbed.bridge.workload`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.errors import ConfigError
from testbed.research.common import batches, load_checkpoint
from testbed.research.groupnl import (
    METHOD_NAME,
    GroupNLConfig,
    calibrate_groupnl,
    groupnl_head,
    restore_groupnl,
    save_groupnl,
)
from testbed.research.registry import Method, Option, register_method
from testbed.research.train import TrainOptions, eval_tail, split_task
from testbed.split.models import register_head
from testbed.split.profiler import count_compute

__all__ = ["METHOD", "distil", "trainable_bytes"]


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block, the caller's setting restored."""
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def _frozen_bn(module: nn.Module) -> None:
    """Train mode for everything but the batch norms (their running statistics stay fixed)."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def distil(student: nn.Module, teacher_head: nn.Module, tail: nn.Module, x: Tensor, y: Tensor | None, *,
           epochs: int, batch_size: int, lr: float, temperature: float, feature_weight: float, seed: int,
           device: torch.device, kl_weight: float = 1.0) -> list[float]:
    """Train ``student`` (a head) to match ``teacher_head``'s output features (MSE over their mean
    square, times ``feature_weight``) and, through the frozen ``tail``, the teacher's softened logits
    (KL at ``temperature``, times T^2 and ``kl_weight``; cross-entropy on labels ``y`` where given).
    Adam at ``lr`` with a cosine decay to 0 over all steps; batch-norm statistics fixed (calibrated
    before: :func:`~testbed.research.groupnl.calibrate_groupnl`). Returns the mean loss per epoch."""
    teacher_head, tail = teacher_head.to(device).eval(), tail.to(device).eval()
    student.to(device)
    for p in (*teacher_head.parameters(), *tail.parameters()):
        p.requires_grad_(False)
    with torch.no_grad():
        feats, logits = [], []
        for idx in batches(len(x), batch_size):
            f = teacher_head(x[idx].to(device))
            feats.append(f)
            logits.append(tail(f))
        t_feat, t_logits = torch.cat(feats), torch.cat(logits)
    scale = float(t_feat.pow(2).mean().clamp(min=1e-12))
    params = [p for p in student.parameters() if p.requires_grad]
    history: list[float] = []
    if not params or epochs == 0:
        return history
    opt = torch.optim.Adam(params, lr=lr)
    steps = epochs * len(batches(len(x), batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * k / steps)))
    gen = torch.Generator().manual_seed(seed)
    temp = temperature
    for _ in range(epochs):
        _frozen_bn(student)
        total, n = 0.0, 0
        for idx in batches(len(x), batch_size, gen):
            xb = x[idx].to(device)
            f = student(xb)
            loss = feature_weight * F.mse_loss(f, t_feat[idx]) / scale
            if kl_weight > 0 or y is not None:
                out = tail(f)
                loss = loss + kl_weight * F.kl_div(F.log_softmax(out / temp, 1), F.log_softmax(t_logits[idx] / temp, 1),
                                                   reduction="batchmean", log_target=True) * temp * temp
                if y is not None:
                    loss = loss + F.cross_entropy(out, y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append(total / max(1, n))
    student.eval()
    return history


def trainable_bytes(head: nn.Module) -> int:
    """Bytes of the head's trainable float32 parameters: what one cloud-device training round sends
    (the NLF hyperparameters and batch-norm statistics are buffers and never move)."""
    return 4 * sum(p.numel() for p in head.parameters())


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Build the GroupNL head at ``o.split``, distil it and save the checkpoint to ``o.out``."""
    checks = (("--epochs", p["epochs"] >= 0, "a number of epochs >= 0"),
              ("--batch-size", p["batch_size"] >= 1, "a batch size >= 1"),
              ("--temperature", p["temperature"] > 0, "a distillation temperature > 0"),
              ("--calibration", p["calibration"] >= 0, "a number of calibration frames >= 0"),
              ("--kl-weight", p["kl_weight"] >= 0, "a loss weight >= 0"),
              ("--feature-weight", p["feature_weight"] >= 0, "a loss weight >= 0"))
    for option, ok, allowed in checks:
        if not ok:
            raise ConfigError(option, p[option[2:].replace("-", "_")], allowed)
    cfg = GroupNLConfig(ratio=p["ratio"], groups=p["groups"], sparse=p["sparse"], seed=o.seed,
                        keep_last=p["keep_last"], keep_first=p["keep_first"], keep=p["keep"])
    cfg.validate()
    task = split_task(o, device)
    with torch.random.fork_rng(devices=[]), deterministic():
        torch.manual_seed(o.seed)
        student = groupnl_head(task.head, cfg)
        seed_scales = calibrate_groupnl(student, task.x_train[:p["calibration"]]) if p["calibration"] else {}
        history = distil(student, task.head, task.tail, task.x_train, task.y_train, epochs=p["epochs"],
                         batch_size=p["batch_size"], lr=p["lr"], temperature=p["temperature"],
                         feature_weight=p["feature_weight"], kl_weight=p["kl_weight"], seed=o.seed,
                         device=device)
    student = student.cpu().eval()
    weights = o.weights or "pretrained"
    example = task.x_train[:1].cpu()
    orig, gnl = count_compute(task.head.cpu(), example), count_compute(student, example)
    costs = {"head_macs": gnl.macs, "head_params": gnl.params, "original_head_macs": orig.macs,
             "original_head_params": orig.params, "trainable_bytes": trainable_bytes(student)}
    save_groupnl(o.out, student, cfg, o.model, o.split, weights,
                 {"history": history, **costs, "train_frames": len(task.x_train), "options": dict(p),
                  "dataset": o.dataset, "limit": o.limit, "seed_scales": seed_scales})
    metrics = eval_tail(student, task.tail.cpu(), task) if len(task.x_test) else {}
    return {"loss": history, **costs, "metrics": metrics,
            "scenario": {"model": {"name": o.model, "split": o.split, "head": o.out}}}


def _load_head(path: str, model: str, split: str, head: nn.Module) -> nn.Module:
    """The pipeline's hook (:func:`testbed.split.models.register_head`): the GroupNL head of ``path``
    on this model's original ``head``; a checkpoint trained on another model or split is an error."""
    blob = load_checkpoint(path, METHOD_NAME, "model.head")
    cfg = blob["config"]
    if cfg.get("model") != model or cfg.get("split") != split:
        raise ConfigError("model.head", path, f"a groupnl checkpoint trained on {model} at {split} "
                          f"(this one: {cfg.get('model')} at {cfg.get('split')})")
    return restore_groupnl(blob, head)


register_head(METHOD_NAME, _load_head)

METHOD = register_method(Method(
    name=METHOD_NAME, title="GroupNL heads: seed convolutions and fixed sinusoidal maps (Ding, Xie et al., "
    "IEEE TMC 2026, arXiv:2506.12335)", train=train, order=60,
    options=(Option("ratio", int, 2, "reduction ratio r: a seed convolution makes ceil(m / r) of m maps"),
             Option("groups", int, 4, "NLF groups of the seed maps (one sinusoid per group and copy)"),
             Option("sparse", bool, True, "replace depthwise convolutions too (--no-sparse: keep them)"),
             Option("keep_last", bool, True, "keep the head's last convolution (whose output the frozen tail "
                    "reads) a standard one (--no-keep-last: replace it too)"),
             Option("keep_first", bool, False, "keep the head's first convolution (the stem, which sees the "
                    "pixels) a standard one"),
             Option("keep", str, "", "regular expression of module names whose convolutions stay standard "
                    "(e.g. _project_conv)"),
             Option("calibration", int, 64, "frames the batch norms are calibrated on before training (0: none)"),
             Option("epochs", int, 4, "distillation epochs"),
             Option("batch_size", int, 16, "frames per step"),
             Option("lr", float, 3e-3, "Adam learning rate (cosine decay to 0)"),
             Option("temperature", float, 2.0, "softening temperature of the logit distillation"),
             Option("feature_weight", float, 1.0, "weight of the head-output MSE (normalised)"),
             Option("kl_weight", float, 1.0, "weight of the KL to the unsplit model's softened logits"))))

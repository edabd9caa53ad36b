"""GroupNL heads trained by distillation: ``testbed train groupnl``.

Ding, Xie et al., "GroupNL: Low-Resource and Robust CNN Design over Cloud and Device", IEEE TMC
2026, arXiv:2506.12335 (the convolution and the head transformation: :mod:`testbed.research.groupnl`).

The head of the model up to ``--split`` has its convolutions replaced by GroupNL convolutions
(``--ratio``, ``--groups``, ``--sparse``; warm-started from the original filters) and is trained,
label-free, on the dataset's frames (the ``photos`` by default) so that its features match the
original head's (MSE, normalised by the teacher features' mean square) and the frozen tail's logits
on them match the unsplit model's (KL divergence to the teacher's softened logits, temperature
``--temperature``, times T^2); where the dataset has labels and the model was trained on them, a
cross-entropy term is added. Only the head's parameters are trained (the seed filters and the batch
norms' affine terms; batch-norm statistics and the NLF hyperparameters are fixed), so those are the
bytes a cloud-device training round sends. ``--ratio 1`` fine-tunes the original head the same way
(the baseline GroupNL is compared with).

Deterministic on the CPU for a seed: fixed threads (``--threads``, default 1), a seeded data order,
``torch.use_deterministic_algorithms(True)`` during training (restored afterwards); two runs with one
seed write identical checkpoints. The checkpoint (read back with ``weights_only=True``) is what a
scenario names as ``model.head``; the node's head time is then the profile's head time scaled by the
GroupNL head's MACs over the original's (see :mod:`testbed.bridge.workload`).
"""

from __future__ import annotations

import contextlib
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
           device: torch.device) -> list[float]:
    """Train ``student`` (a head) to match ``teacher_head``'s features and, through the frozen ``tail``,
    the teacher's logits (and labels ``y`` where given); returns the mean loss per epoch."""
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
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    temp = temperature
    for _ in range(epochs):
        _frozen_bn(student)
        total, n = 0.0, 0
        for idx in batches(len(x), batch_size, gen):
            xb = x[idx].to(device)
            f = student(xb)
            out = tail(f)
            loss = feature_weight * F.mse_loss(f, t_feat[idx]) / scale
            loss = loss + F.kl_div(F.log_softmax(out / temp, 1), F.log_softmax(t_logits[idx] / temp, 1),
                                   reduction="batchmean", log_target=True) * temp * temp
            if y is not None:
                loss = loss + F.cross_entropy(out, y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append(total / max(1, n))
    return history


def trainable_bytes(head: nn.Module) -> int:
    """Bytes of the head's trainable float32 parameters: what one cloud-device training round sends
    (the NLF hyperparameters and batch-norm statistics are buffers and never move)."""
    return 4 * sum(p.numel() for p in head.parameters())


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Build the GroupNL head at ``o.split``, distil it and save the checkpoint to ``o.out``."""
    if p["epochs"] < 0 or p["batch_size"] < 1 or p["temperature"] <= 0:
        raise ConfigError("epochs", p["epochs"], "epochs >= 0, batch size >= 1, temperature > 0")
    cfg = GroupNLConfig(ratio=p["ratio"], groups=p["groups"], sparse=p["sparse"], seed=o.seed)
    cfg.validate()
    task = split_task(o, device)
    with torch.random.fork_rng(devices=[]), deterministic():
        torch.manual_seed(o.seed)
        student = groupnl_head(task.head, cfg)
        history = distil(student, task.head, task.tail, task.x_train, task.y_train, epochs=p["epochs"],
                         batch_size=p["batch_size"], lr=p["lr"], temperature=p["temperature"],
                         feature_weight=p["feature_weight"], seed=o.seed, device=device)
    student = student.cpu().eval()
    weights = o.weights or "pretrained"
    example = task.x_train[:1].cpu()
    orig, gnl = count_compute(task.head.cpu(), example), count_compute(student, example)
    costs = {"head_macs": gnl.macs, "head_params": gnl.params, "original_head_macs": orig.macs,
             "original_head_params": orig.params, "trainable_bytes": trainable_bytes(student)}
    save_groupnl(o.out, student, cfg, o.model, o.split, weights, {"history": history, **costs})
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
             Option("epochs", int, 4, "distillation epochs"),
             Option("batch_size", int, 16, "frames per step"),
             Option("lr", float, 1e-3, "Adam learning rate"),
             Option("temperature", float, 2.0, "softening temperature of the logit distillation"),
             Option("feature_weight", float, 1.0, "weight of the feature MSE (normalised) against the KL"))))

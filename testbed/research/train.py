"""Training and calibration entry points behind ``testbed train METHOD`` (one per research method).

Every function takes a :class:`TrainOptions`, writes a checkpoint to ``opts.out`` and returns a
summary dict (loss history, test accuracy, the codec chain that uses the checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from testbed.errors import ConfigError
from testbed.research.common import pick_device, seeded, set_threads
from testbed.research.nets import (
    TINY_MODEL,
    TabularMLP,
    evaluate_logits,
    load_split_task,
    tabular_tensors,
    train_classifier,
)

__all__ = ["TrainOptions", "METHODS", "train_method", "TABULAR_PREFIX"]

METHODS = ("base", "autoencoder", "qcnet", "softquant", "augq", "nestquant")
TABULAR_PREFIX = "tabular:"


@dataclass(frozen=True)
class TrainOptions:
    """Command-line options shared by all methods (method-specific ones carry defaults)."""

    out: str
    model: str = TINY_MODEL
    weights: str = ""
    split: str = "layer1"
    dataset: str = "digits"
    limit: int | None = None
    seed: int = 0
    epochs: int | None = None
    bits: int | None = None
    device: str | None = None
    threads: int | None = 1
    code_channels: int = 8
    tcl_max: float = 20.0
    schedule: str = "quadratic"
    quantizer: str = "binarize"
    granularity: str | None = None
    intervals: int = 16
    samples: int = 64
    head_bits: int | None = None
    part_bits: int = 4
    adaptive: bool = True


def _task(o: TrainOptions, split: str | None = None, device: torch.device | None = None):
    return load_split_task(o.model, o.weights, split or o.split, o.dataset, o.limit, o.seed, device=device)


def _eval_tail(head: nn.Module, tail: nn.Module, task: Any, mid: Any = None) -> dict[str, float]:
    with torch.no_grad():
        f = head(task.x_test)
        logits = tail(mid(f) if mid is not None else f)
    teacher = task.teacher_logits(task.x_test)
    return evaluate_logits(logits, task.y_test, teacher)


def train_method(method: str, o: TrainOptions) -> dict[str, Any]:
    """Run ``method`` (one of :data:`METHODS`) and return its summary."""
    if method not in METHODS:
        raise ConfigError("method", method, f"one of {', '.join(METHODS)}")
    set_threads(o.threads)
    device = pick_device(o.device)
    summary: dict[str, Any] = {"method": method, "checkpoint": o.out, "device": str(device)}
    if method == "base":
        if o.model != TINY_MODEL:
            raise ConfigError("model", o.model, f"{TINY_MODEL} (torchvision models bring their own weights)")
        task = load_split_task(o.model, "", o.split, o.dataset, o.limit, o.seed, base_epochs=o.epochs or 12,
                               device=device, base_out=o.out)
        summary.update(_eval_tail(task.head, task.tail, task))
        return summary
    if method == "autoencoder":
        from testbed.research.autoencoder import AutoencoderConfig, train_autoencoder

        task = _task(o, device=device)
        cfg = AutoencoderConfig(bits=o.bits or 2, code_channels=o.code_channels, epochs=o.epochs or 10,
                                tcl_max=o.tcl_max, schedule=o.schedule, seed=o.seed)
        enc, dec, tail, hist = train_autoencoder(task, cfg, device, o.out)
        summary.update(history=hist["loss"], float_metrics=_eval_tail(task.head, tail, task, lambda f: dec(enc(f))),
                       codec=[{"autoencoder": {"checkpoint": o.out}}, {"quantize": {"bits": cfg.bits}},
                              {"lzma": {"preset": 6}}])
        return summary
    if method == "qcnet":
        from testbed.split.codecs import normalize_spec
        from testbed.research.qcnet import QCNetConfig, quantize_roundtrip, train_qcnet

        task = _task(o, device=device)
        qspec = [{n: p} for n, p in normalize_spec(o.quantizer, "quantizer")]
        cfg = QCNetConfig(quantizer=qspec, epochs=o.epochs or 10, seed=o.seed)
        net, tail, hist = train_qcnet(task, cfg, device, o.out)
        chain = cfg.validate()
        summary.update(history=hist["loss"],
                       metrics=_eval_tail(task.head, tail, task, lambda f: net(quantize_roundtrip(chain, f))),
                       codec=[{"qcnet": {"checkpoint": o.out}}, *qspec, {"lzma": {"preset": 6}}],
                       note="the server runs the fine-tuned tail stored under 'tail.' in the checkpoint")
        return summary
    if method == "softquant":
        from testbed.research.softquant import SoftQuantConfig, train_softquant

        cfg = SoftQuantConfig(bits=o.bits or 2, granularity=o.granularity or "feature", epochs=o.epochs or 6,
                              seed=o.seed)
        if o.dataset.startswith(TABULAR_PREFIX):
            xtr, ytr, xte, yte = tabular_tensors(o.dataset[len(TABULAR_PREFIX):], o.seed)
            with seeded(o.seed):
                model: nn.Module = TabularMLP(xtr.shape[1], int(ytr.max()) + 1)
            train_classifier(model, xtr, ytr, 30, o.seed, lr=1e-2, batch_size=32)
            q, net, hist = train_softquant(model, xtr, ytr, cfg, device=device, out=o.out,
                                           meta={"dataset": o.dataset})
            with torch.no_grad():
                metrics = evaluate_logits(net(q(xte)), yte, model(xte))
        else:
            task = _task(o, split="input", device=device)
            full = nn.Sequential(task.head, task.tail)
            teacher = full(task.x_train).detach() if task.target == "teacher" else None
            q, net, hist = train_softquant(full, task.x_train, task.y_train, cfg, teacher, device, o.out,
                                           meta={"model": o.model, "dataset": o.dataset})
            with torch.no_grad():
                metrics = evaluate_logits(net(q(task.x_test)), task.y_test, full(task.x_test))
        summary.update(history=hist["loss"], metrics=metrics,
                       codec=[{"softquant": {"checkpoint": o.out}}, {"lzma": {"preset": 6}}],
                       note="the server runs the fine-tuned model stored under 'model.' in the checkpoint")
        return summary
    if method == "augq":
        from testbed.split.codecs.quantize import channel_view
        from testbed.research.augq import AuGQConfig, augq_quantize_module, calibrate_features, dequantize_levels, \
            quantize_to_levels, save_augq

        task = _task(o, device=device)
        cfg = AuGQConfig(bits=o.bits or 4, intervals=o.intervals, samples=o.samples)
        gran = o.granularity or "channel"
        head = task.head
        head_state = None
        if o.head_bits:
            head, _ = augq_quantize_module(task.head, AuGQConfig(bits=o.head_bits, intervals=o.intervals))
            head_state = head.state_dict()
        calib = task.features(task.x_train[:cfg.samples]) if head is task.head else head(task.x_train[:cfg.samples]).detach()
        levels = calibrate_features(calib, cfg, gran)
        save_augq(o.out, levels, cfg, gran, {"model": o.model, "split": o.split, "head_bits": o.head_bits or 0},
                  head_state)

        def roundtrip(f: torch.Tensor) -> torch.Tensor:
            v = channel_view(f, gran == "channel", None)
            return dequantize_levels(quantize_to_levels(v, levels), levels).reshape(f.shape)

        summary.update(metrics=_eval_tail(head, task.tail, task, roundtrip),
                       codec=[{"augq": {"checkpoint": o.out}}, {"lzma": {"preset": 6}}])
        return summary
    from testbed.config.modes import NestQuantModes, modes_path
    from testbed.research.nestquant import NestQuantConfig, build_nestquant, save_nestquant

    task = _task(o, device=device)
    cfg = NestQuantConfig(part_bits=o.part_bits, adaptive=o.adaptive, samples=o.samples, seed=o.seed)
    nq = build_nestquant(task.head, task.x_train, cfg)
    save_nestquant(nq, o.out, {**cfg.__dict__, "model": o.model, "split": o.split})
    metrics = {m: _eval_tail(nq.module(m), task.tail, task) for m in ("full", "part")}
    key = "accuracy" if task.target == "labels" else "agreement"
    modes = NestQuantModes(8, cfg.part_bits, {m: metrics[m][key] for m in metrics},
                           {"full": 1.0, "part": cfg.part_bits / 8}, nq.switch_bytes(), nq.storage_bytes(), key)
    path = modes.save(modes_path(o.out))
    summary.update(metrics=metrics, modes=str(path), switch_bytes=modes.switch_bytes, storage=modes.storage_bytes)
    return summary


"""Measure a device profile: per-block model latency, tail latency by batch size, codec costs.

Run on the device itself (``testbed profile --model resnet50 --device cpu --out nodes/mybox.yaml``):
on a Raspberry Pi this writes a real Pi profile. Times are wall-clock medians after warm-up (CUDA
times are taken between synchronisations); the interquartile range is kept as the spread.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Compute",
    "build_profile",
    "count_compute",
    "profile_blocks",
    "profile_codecs",
    "profile_tails",
    "time_call",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, runs: int, warmup: int) -> tuple[float, float]:
    """(median, interquartile range) in seconds of ``fn()`` over ``runs`` after ``warmup``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t)
    q = np.percentile(samples, [25, 75])
    return float(statistics.median(samples)), float(q[1] - q[0])


def _example_input(model_name: str, batch: int, device: torch.device) -> torch.Tensor:
    from testbed.split.models import get_spec

    side = get_spec(model_name).crop
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, side, side, generator=g).to(device)


def profile_blocks(model_name: str, device: torch.device, runs: int = 20, warmup: int = 3) -> dict[str, tuple[float, float]]:
    """Batch-1 time of every stage alone, in pipeline order: ``{stage: (median_s, iqr_s)}``."""
    from testbed.split.models import load_model, model_stages

    model = load_model(model_name, "random", 0).eval().to(device)
    stages = model_stages(model_name, model)
    x = _example_input(model_name, 1, device)
    out: dict[str, tuple[float, float]] = {}
    with torch.inference_mode():
        for name, stage in stages:
            out[name] = time_call(functools.partial(stage, x), device, runs, warmup)
            x = stage(x)
    return out


def profile_tails(model_name: str, splits: Sequence[str], batches: Sequence[int], device: torch.device,
                  runs: int = 10, warmup: int = 2) -> dict[str, dict[int, float]]:
    """Median tail time after each split, by batch size: ``{split: {batch: seconds}}``."""
    from testbed.split.models import load_model, split_loaded

    model = load_model(model_name, "random", 0).eval().to(device)
    out: dict[str, dict[int, float]] = {}
    with torch.inference_mode():
        for split in splits:
            head, tail = split_loaded(model_name, model, split)
            out[split] = {}
            for b in batches:
                feats = head(_example_input(model_name, b, device))
                out[split][b] = time_call(functools.partial(tail, feats), device, runs, warmup)[0]
    return out


@dataclass(frozen=True)
class Compute:
    """Parameters and multiply-accumulates per item of a module (convolutions and linear layers)."""

    params: int
    macs: int

    def __add__(self, other: Compute) -> Compute:
        return Compute(self.params + other.params, self.macs + other.macs)


def _macs(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> int:
    """Per-item MACs of one convolution or linear layer from its input and output."""
    if isinstance(m, nn.Conv2d):
        per_out = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        return out.numel() // out.shape[0] * per_out
    if isinstance(m, nn.ConvTranspose2d):
        per_in = (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        return inp[0].numel() // inp[0].shape[0] * per_in
    if isinstance(m, nn.Linear):
        return out.numel() // out.shape[0] * m.in_features
    return 0


def count_compute(module: nn.Module | None, example: Tensor) -> Compute:
    """Count parameters and per-item MACs of ``module`` on ``example`` (a batch of one or more)."""
    if module is None:
        return Compute(0, 0)
    macs = 0

    def hook(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        macs += _macs(m, inp, out)

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(example[:1])
    finally:
        for h in handles:
            h.remove()
    return Compute(sum(p.numel() for p in module.parameters()), macs)


def profile_codecs(features: torch.Tensor, chains: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    """Per-element costs of tensor stages and packing, throughput of lossless coders (uncompressed
    bytes per second), measured by running real codec chains over ``features`` [N, C, H, W]."""
    from testbed.core.charges import decode_key
    from testbed.split.codecs import parse_chain

    per_el: dict[str, list[float]] = {}
    enc_tp: dict[str, list[float]] = {}
    dec_tp: dict[str, list[float]] = {}
    n, elements = features.shape[0], int(features[0].numel())
    for text in chains:
        chain = parse_chain(text)
        bits = chain.bits or 32
        raw_bytes = n * -(-elements * bits // 8)
        costs = chain.costs(tuple(features.shape[1:]))
        for _ in range(repeats):
            chain.timings.clear()
            payloads = chain.encode(features)
            chain.decode_batch(payloads, tuple(features.shape[1:]))
            t = chain.timings
            for cost in costs:
                key = cost.key
                name = key.split(":")[0]
                if cost.kind == "macs":
                    continue
                if cost.kind == "element":
                    inverse = decode_key(name)
                    per_el.setdefault(name, []).append(t.get(("encode", name), 0.0) / (n * elements))
                    per_el.setdefault(inverse, []).append(t.get(("decode", name), 0.0) / (n * elements))
                else:
                    enc_tp.setdefault(key, []).append(raw_bytes / max(t.get(("encode", name), 0.0), 1e-12))
                    dec_tp.setdefault(key, []).append(raw_bytes / max(t.get(("decode", name), 0.0), 1e-12))
    med = statistics.median
    return {
        "per_element": {k: (med(v), float(np.subtract(*np.percentile(v, [75, 25])))) for k, v in per_el.items()},
        "encode_throughput": {k: med(v) for k, v in enc_tp.items()},
        "decode_throughput": {k: med(v) for k, v in dec_tp.items()},
    }


def profile_image_codecs(images: torch.Tensor, quality: int = 90, repeats: int = 3) -> dict[str, tuple[float, float]]:
    """Seconds per uint8 value to encode/decode PNG and JPEG (``images``: uint8 [N, 3, H, W])."""
    from testbed.split.imagecodec import decode_image, encode_image

    out: dict[str, tuple[float, float]] = {}
    arrays = [x.numpy() for x in images]
    per = arrays[0].size
    cpu = torch.device("cpu")
    for fmt in ("png", "jpeg"):
        encoded = [encode_image(a, fmt, quality) for a in arrays]
        e = [time_call(functools.partial(encode_image, a, fmt, quality), cpu, repeats, 1)[0] / per for a in arrays]
        d = [time_call(functools.partial(decode_image, b, fmt, a.shape), cpu, repeats, 1)[0] / per
             for a, b in zip(arrays, encoded)]
        out[fmt] = (statistics.median(e), float(np.subtract(*np.percentile(e, [75, 25]))))
        out[f"{fmt}_decode"] = (statistics.median(d), float(np.subtract(*np.percentile(d, [75, 25]))))
    return out


def software_versions() -> str:
    import torchvision

    return f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_s(x: float) -> str:
    return f"{x * 1e3:.6g} ms" if x >= 1e-4 else f"{x * 1e9:.6g} ns"


def build_profile(name: str, role: str, device: str, models: Sequence[str], splits: Sequence[str] | None,
                  batches: Sequence[int], runs: int, command: str, codec_chains: Sequence[str] = (),
                  features_for_codecs: torch.Tensor | None = None, description: str = "",
                  images_uint8: torch.Tensor | None = None) -> dict[str, Any]:
    """Measure everything and return the profile as a YAML-ready mapping."""
    from testbed.split.models import get_spec

    dev = torch.device(device)
    label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    prov_key = "profiler"
    prov = {prov_key: {
        "kind": "measured", "source": "testbed profile", "device": f"{platform.node()} ({label}, "
        f"{torch.get_num_threads()} threads)" if dev.type == "cpu" else label,
        "date": _dt.date.today().isoformat(), "software": software_versions(), "command": command,
        "runs": runs}}
    out: dict[str, Any] = {"name": name, "role": role, "description": description or f"measured on {label}",
                           "provenance": prov, "models": {}}
    for i, m in enumerate(models):
        blocks = profile_blocks(m, dev, runs=runs)
        if i == 0:  # the device's multiply-accumulate rate on this CNN, to charge learned codec stages
            from testbed.split.models import load_model

            macs = count_compute(load_model(m, "random", 0).eval(), _example_input(m, 1, torch.device("cpu"))).macs
            out["mac_rate"] = {"ops_per_s": float(macs / sum(v[0] for v in blocks.values())), "provenance": prov_key}
        entry: dict[str, Any] = {"blocks": {b: {"median": _fmt_s(v[0]), "iqr": _fmt_s(v[1]), "provenance": prov_key}
                                            for b, v in blocks.items()}}
        if role in ("server", "both"):
            points = [p for p in get_spec(m).split_points if p != "none"]
            chosen = [p for p in points if splits is None or p in splits]
            tails = profile_tails(m, chosen, batches, dev, runs=max(3, runs // 2))
            entry["tail"] = {s: {"batches": {b: _fmt_s(t) for b, t in tb.items()}, "provenance": prov_key}
                             for s, tb in tails.items()}
        out["models"][m] = entry
    if codec_chains and features_for_codecs is not None:
        costs = profile_codecs(features_for_codecs, codec_chains)
        if images_uint8 is not None:
            costs["per_element"].update(profile_image_codecs(images_uint8))
        out["codecs"] = {
            "per_element": {k: {"median": _fmt_s(v[0]), "iqr": _fmt_s(v[1]), "provenance": prov_key}
                            for k, v in costs["per_element"].items()},
            "encode_throughput": {k: f"{v / 1e6:.4g} MB/s" for k, v in costs["encode_throughput"].items()},
            "decode_throughput": {k: f"{v / 1e6:.4g} MB/s" for k, v in costs["decode_throughput"].items()},
            "provenance": prov_key,
        }
    return out

"""Build the shipped profiles that are not measured on this machine.

    python analysis/build_profiles.py            # writes nodes/h100.yaml, nodes/h100-cudagraphs.yaml, nodes/pi4b.yaml

- ``h100``: tail latency by batch size after every ResNet split and whole-model latency of five models,
  measured on an H100 in eager PyTorch (float32, random weights, CUDA events, median of 20), from
  ``nodes/sources/h100_resnet_tail_eager.csv``.
- ``h100-cudagraphs``: published H100 CUDA-graph FP16 ResNet-50 figures (whole model and tail after
  stem/layer1/layer2/layer3 at batch 1/8/32).
- ``pi4b``: Raspberry Pi 4 Model B. Published whole-model latencies, distributed over the blocks by the
  per-block shares measured on this machine's CPU (``nodes/cpu-x86.yaml``, one thread); codec costs scaled
  from the same CPU by the one-thread ResNet-50 time ratio. All per-block and codec figures are marked
  estimated.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / "nodes"

# Raspberry Pi 4 B whole-model latency, batch 1 (ms), with the source of each figure.
PI_WHOLE_MS = {
    "resnet50": (225.2, "pytorch-tutorial", "published"),
    "resnet18": (100.3, "pytorch-tutorial", "published"),
    "mobilenet_v3_large": (30.7, "pytorch-tutorial-int8", "published"),
    "efficientnet_v2_s": (460.0, "by-compute", "estimated"),
    "convnext_tiny": (250.0, "by-compute", "estimated"),
    "vit_b_16": (1000.0, "by-compute", "estimated"),
    "efficientnet_lite0": (49.0, "tflite-lite0", "published"),
    "efficientnet_lite1": (49.0 * 631 / 407, "by-compute-lite", "estimated"),
    "efficientnet_lite2": (49.0 * 899 / 407, "by-compute-lite", "estimated"),
}
PI_PROVENANCE = {
    "pytorch-tutorial": {
        "kind": "estimated", "source": "pytorch/tutorials, real-time inference on Raspberry Pi 4 (ResNet-50 "
        "225.2 ms, ResNet-18 100.3 ms, PyTorch, FP32 most likely), via ../shared/reference/figures.md",
        "method": "published whole-model time distributed over blocks by the per-block shares measured on "
        "the cpu-x86 profile (no per-block Pi measurement is published)"},
    "pytorch-tutorial-int8": {
        "kind": "estimated", "source": "pytorch/tutorials, real-time inference on Raspberry Pi 4: "
        "MobileNetV3-Large 30.7 ms (qnnpack INT8, TorchScript)",
        "method": "published INT8 whole-model time distributed over blocks by cpu-x86 per-block shares; "
        "an FP32 model runs slower (ncnn FP32: 56.3 ms)"},
    "by-compute": {
        "kind": "estimated", "source": "../shared/reference/figures.md: no Pi 4 measurement; ResNet-50 runs "
        "4.09 GMAC in 225 ms (~18 GMAC/s): ConvNeXt-T ~250 ms, EfficientNetV2-S ~460 ms, ViT-B/16 ~1.0 s",
        "method": "whole-model time by MAC count at the ResNet-50 rate, distributed over blocks by "
        "cpu-x86 per-block shares; depthwise and attention layers usually run slower than that rate"},
    "tflite-lite0": {
        "kind": "published", "source": "TildAlice, 'MobileNet vs EfficientNet-Lite: Pi 4': EfficientNet-Lite0 49 ms "
        "with TFLite on a Raspberry Pi 4 B CPU (a single source), via ../shared/reference/real-models.md",
        "method": "the published whole-model time distributed over blocks by the per-block shares measured on the "
        "cpu-x86 profile; PyTorch on the Pi is likely slower than TFLite"},
    "by-compute-lite": {
        "kind": "estimated", "source": "no Pi 4 measurement; Lite0's published 49 ms (TFLite) for 407 M multiply-adds",
        "method": "whole-model time by multiply-add count at Lite0's rate (Lite1 631 M, Lite2 899 M, from the "
        "TensorFlow efficientnet/lite README), distributed over blocks by cpu-x86 per-block shares"},
    "codec-scaled": {
        "kind": "estimated", "source": "codec costs measured on this machine (nodes/cpu-x86.yaml)",
        "method": "scaled by the one-thread ResNet-50 time ratio pi4b / cpu-x86: 225.2 ms x 636.0/335.3 (ncnn's "
        "1- vs 4-thread slowdown on the Pi) over the CPU total measured with one thread (testbed profile --threads 1)"},
    "mac-rate": {
        "kind": "estimated", "source": "../shared/reference/figures.md: PyTorch ResNet-50 runs 4.09 GMAC in 225 ms "
        "on a Pi 4 (about 18 GMAC/s)", "method": "MACs / published whole-model latency; charges learned codec stages"},
    "pidramble": {
        "kind": "published", "source": "pidramble power benchmarks, Raspberry Pi 4 B: 2.7 W idle (540 mA), "
        "6.4 W at full CPU load (4 cores), via ../shared/reference/figures.md"},
    "radio-assumed": {
        "kind": "estimated", "source": "no published Pi 4 radio power figure at hand",
        "method": "assumed 1.0 W transmitting and 0.5 W receiving above idle, the order of magnitude of "
        "802.11ac SoC radios; replace with a measurement (USB power meter during iperf3)"},
}


def _ms(x: float) -> str:
    return f"{x:.6g} ms"


def host_codecs(cpu_profile: Path, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Codec costs of the server's host CPU: this machine's measured costs as a stand-in."""
    from testbed.config.profiles import load_profile

    if not cpu_profile.exists():
        return None
    c = load_profile(cpu_profile).codecs
    if c is None:
        return None
    prov = {"kind": "estimated", "source": f"codec costs measured on this machine ({cpu_profile.name}, AMD EPYC)",
            "method": "the GPU server's host CPU decodes payloads; no measurement of the H100 host CPU, so this "
                      "machine's server-class CPU stands in for it unscaled"}
    codecs = {"per_element": {k: {"median": f"{f.median * 1e9:.6g} ns", "iqr": f"{f.iqr * 1e9:.6g} ns",
                                  "provenance": key} for k, f in c.per_element.items()},
              "encode_throughput": {k: f"{v / 1e6:.4g} MB/s" for k, v in c.encode_throughput.items()},
              "decode_throughput": {k: f"{v / 1e6:.4g} MB/s" for k, v in c.decode_throughput.items()},
              "provenance": key}
    return codecs, prov


def h100_eager(csv_path: Path) -> dict[str, Any]:
    tails: dict[str, dict[str, dict[int, str]]] = {}
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    header_idx = next(i for i, r in enumerate(rows) if r[:2] == ["model", "split"])
    for model, split, dtype, batch, ms in rows[header_idx + 1:]:
        if dtype != "float32":
            continue
        point = "input" if split == "full" else split
        tails.setdefault(model, {}).setdefault(point, {})[int(batch)] = _ms(float(ms))
    prov = {"eager": {"kind": "measured", "source": "nodes/sources/h100_resnet_tail_eager.csv (from "
                      "../shared/reference)", "device": "NVIDIA H100 80GB HBM3", "date": "2026-11",
                      "software": "torch {}, torchvision {}".format(*rows[0][0].split()[:2]),
                      "command": "eager PyTorch float32, random weights, CUDA events", "runs": 20}}
    macs = 4.09e9  # ResNet-50, one 224x224 image
    whole_b1 = float(tails["resnet50"]["input"][1].split()[0]) * 1e-3
    prov["eager-rate"] = {"kind": "estimated", "source": "resnet50 whole-model eager latency at batch 1 in the same file",
                          "method": "4.09 GMAC / batch-1 latency: a launch-bound lower bound on the MAC rate"}
    prov["eager-by-layers"] = {
        "kind": "estimated", "source": "mobilenet_v3_large whole-model eager latency by batch in the same file",
        "method": "EfficientNet-Lite tails: MobileNetV3-Large's latency x (conv/linear layers in the tail / "
                  "MobileNetV3-Large's layers), since small depthwise networks run launch-bound on an eager "
                  "H100; ignores Lite's larger multiply-add count (Lite0 407 M vs 217 M), which matters only at "
                  "large batches. Replace with `testbed profile --device cuda --role server` where a GPU is at hand"}
    models = {m: {"tail": {s: {"batches": b, "provenance": "eager"} for s, b in t.items()}} for m, t in tails.items()}
    for lite in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        models[lite] = {"tail": lite_tails_by_layers(tails["mobilenet_v3_large"]["input"], lite)}
    return {"name": "h100", "role": "server", "mac_rate": {"ops_per_s": macs / whole_b1, "provenance": "eager-rate"},
            "description": "NVIDIA H100 80GB HBM3, eager PyTorch float32: tail latency by batch size; at small "
                           "batch bounded by kernel-launch overhead",
            "provenance": prov, "models": models}


def _convs(module: Any) -> int:
    import torch

    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in module.modules())


def lite_tails_by_layers(whole: dict[int, str], model: str = "efficientnet_lite0") -> dict[str, Any]:
    """An EfficientNet-Lite tail per split point and batch, from MobileNetV3-Large's measured whole-model eager
    latency (same file) scaled by the share of convolution/linear layers in the tail: at the batch sizes of
    an edge server an eager H100 runs these small depthwise networks launch-bound, one kernel sequence per
    layer, so time follows the layer count, not the multiply-adds."""
    from torchvision.models import mobilenet_v3_large

    from testbed.split.models import get_spec, split_model

    ref_layers = _convs(mobilenet_v3_large())
    out = {}
    for point in get_spec(model).split_points:
        if point == "none":
            continue
        _, tail = split_model(model, point)
        share = _convs(tail) / ref_layers
        out[point] = {"batches": {b: _ms(float(v.split()[0]) * share) for b, v in whole.items()},
                      "provenance": "eager-by-layers"}
    return out


def h100_cudagraphs() -> dict[str, Any]:
    whole = {1: 0.91, 8: 1.16, 32: 2.65, 128: 9.4, 256: 18.2}
    tails = {"stem": (0.86, 1.08, 2.34), "layer1": (0.71, 0.84, 1.50), "layer2": (0.51, 0.57, 0.88),
             "layer3": (0.19, 0.21, 0.29)}
    table = {"input": {"batches": {b: _ms(v) for b, v in whole.items()}, "provenance": "graphs"}}
    for s, vals in tails.items():
        table[s] = {"batches": {b: _ms(v) for b, v in zip((1, 8, 32), vals)}, "provenance": "graphs"}
    return {"name": "h100-cudagraphs", "role": "server", "mac_rate": {"ops_per_s": 4.09e9 / 0.91e-3, "provenance": "graphs"},
            "description": "NVIDIA H100, CUDA graphs, FP16, ResNet-50 (whole model and tails)",
            "provenance": {"graphs": {"kind": "published", "source": "../shared/reference/figures.md, GPU server: "
                                      "H100 with CUDA graphs, FP16, ResNet-50 whole model and tail after each "
                                      "split, batch 1/8/32 (measured)"}},
            "models": {"resnet50": {"tail": table}}}


def pi4b(cpu_profile: Path) -> dict[str, Any]:
    from testbed.config.profiles import load_profile

    cpu = load_profile(cpu_profile)
    models = {}
    for m, (whole_ms, prov, _) in PI_WHOLE_MS.items():
        if m not in cpu.models:
            continue
        blocks = cpu.models[m].blocks
        total = sum(b.median for b in blocks.values())
        models[m] = {"blocks": {name: {"median": _ms(whole_ms * b.median / total),
                                       "iqr": _ms(whole_ms * b.iqr / total), "provenance": prov}
                                for name, b in blocks.items()}}
    # Codecs run on one thread: compare one Pi thread with one thread here. The Pi's one-thread PyTorch
    # time is not published; ncnn's FP32 ResNet-50 slows from 335.3 ms (4 threads) to 636.0 ms (1 thread).
    pi_one_thread = 0.2252 * 636.0 / 335.3
    ratio = pi_one_thread / sum(b.median for b in cpu.models["resnet50"].blocks.values())
    codecs = None
    if cpu.codecs is not None:
        c = cpu.codecs
        codecs = {"per_element": {k: {"median": f"{f.median * ratio * 1e9:.6g} ns", "iqr": f"{f.iqr * ratio * 1e9:.6g} ns",
                                      "provenance": "codec-scaled"} for k, f in c.per_element.items()},
                  "encode_throughput": {k: f"{v / ratio / 1e6:.4g} MB/s" for k, v in c.encode_throughput.items()},
                  "decode_throughput": {k: f"{v / ratio / 1e6:.4g} MB/s" for k, v in c.decode_throughput.items()},
                  "provenance": "codec-scaled"}
    out = {"name": "pi4b", "role": "node",
           "description": "Raspberry Pi 4 Model B (4 GB, stock 1.5 GHz), PyTorch on the CPU",
           "provenance": PI_PROVENANCE,
           "power": {"idle": {"watts": 2.7, "provenance": "pidramble"},
                     "busy": {"watts": 6.4, "provenance": "pidramble"},
                     "radio_tx": {"watts": 1.0, "provenance": "radio-assumed"},
                     "radio_rx": {"watts": 0.5, "provenance": "radio-assumed"}},
           "models": models,
           "mac_rate": {"ops_per_s": 4.09e9 / 0.2252, "provenance": "mac-rate"}}
    if codecs:
        out["codecs"] = codecs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-profile", default=str(NODES / "cpu-x86.yaml"))
    args = ap.parse_args()
    header = "# Generated by analysis/build_profiles.py; edit that script, not this file.\n"
    host = host_codecs(Path(args.cpu_profile), "host-cpu")
    servers = [h100_eager(NODES / "sources" / "h100_resnet_tail_eager.csv"), h100_cudagraphs()]
    for prof in servers:
        if host is not None:
            prof["provenance"]["host-cpu"] = host[1]
            prof["codecs"] = host[0]
    for name, prof in (("h100", servers[0]), ("h100-cudagraphs", servers[1]), ("pi4b", pi4b(Path(args.cpu_profile)))):
        (NODES / f"{name}.yaml").write_text(header + yaml.safe_dump(prof, sort_keys=False))
        print(f"wrote nodes/{name}.yaml")


if __name__ == "__main__":
    main()

"""The research codecs on the real pretrained model: each paper's claim, over several seeds.

Builds ``docs/results/research-<model>.md`` and ``.json``: every method at the split points its paper
uses on the ImageNet-pretrained EfficientNet-Lite0 (``weights: pretrained``), on the ``photos``
frames (seeded crops of the bundled photographs, no labels: *agreement* is top-1 equal to the
unsplit model's answer on the same frame). Learned methods train label-free, distilling the unsplit
model (KL to its softened outputs, plus a feature loss where the method has one). Every row sends the
test frames through real payloads (``CodecChain.encode`` -> bytes -> decode) and reports the mean and
the spread (sample standard deviation) over the seeds; a seed fixes the train/test split of the
frames, the initialisation and the data order, and every number (CPU, 1 thread, deterministic
kernels, instruction set pinned: :mod:`testbed.research.repro`).

    python analysis/research_table.py --seeds 0,1,2 --jobs 2   # ~90 min on 2 shared cores

Jobs (seed x group) run in separate processes and are kept in ``--out`` (a rerun resumes);
``--groups`` picks some. The grid (splits, bits, epochs) is scoped to fit a 2-core machine; see the
table's header for what was run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import testbed.research  # noqa: F401  (sets the pinned instruction-set environment for the job processes)
from testbed.research.common import Compute, count_compute
from testbed.research.measure import LZMA, EvalContext, EvalSettings, Row, Seq
from testbed.research.nets import SplitTask, _split_indices, evaluate_logits
from testbed.research.repro import isa_pinned, reproducible

MODEL = "efficientnet_lite0"
WEIGHTS = "pretrained"
EARLY, MIDDLE = "stage2", "stage4"
GROUPS = ("base", "qcnet", "ae", "entropy", "augq", "nestquant", "softquant", "tabular")


@dataclass(frozen=True)
class Grid:
    frames: int = 384
    epochs: int = 1          # epochs through the tail (distillation); the costly part on a CPU
    feature_epochs: int = 15  # epochs on the feature loss (+ TCL / rate) before them, the tail not run
    batch: int = 32
    nq_iters: int = 100
    nq_samples: int = 8


# -- shared data ---------------------------------------------------------------------------------------
def _load(frames: int, cache: Path) -> tuple[nn.Module, Tensor, Tensor]:
    """The pretrained model, the preprocessed frames and the unsplit model's logits (cached on disk)."""
    from testbed.split.data import load_dataset, preprocess_for
    from testbed.split.models.weights import load_model

    model = load_model(MODEL, WEIGHTS, 0).eval()
    images = load_dataset("photos", preprocess_for(MODEL, WEIGHTS), limit=frames).images
    if cache.is_file():
        teacher = torch.load(cache, weights_only=True)
    else:
        with torch.no_grad():
            teacher = torch.cat([model(images[i:i + 64]) for i in range(0, len(images), 64)])
        torch.save(teacher, cache)
    return model, images, teacher


def _task(model: nn.Module, point: str, images: Tensor, teacher: Tensor, seed: int) -> SplitTask:
    from testbed.split.models.split import split_loaded

    head, tail = split_loaded(MODEL, model, point)
    tr, te = _split_indices(len(images), 1 / 3, seed)
    return SplitTask(MODEL, point, head, tail, images[tr], None, images[te], None, "teacher", WEIGHTS,
                     teacher[tr], teacher[te])


def _ctx(task: SplitTask, out: Path, seed: int, epochs: int, log: Callable[[str], Any]) -> EvalContext:
    settings = EvalSettings(out=str(out), model=MODEL, weights=WEIGHTS, split=task.point, dataset="photos",
                            seed=seed, epochs=epochs, threads=1, tabular=None)
    return EvalContext(settings, task, torch.device("cpu"), log, time.perf_counter())


def _row(r: Row, split: str, **extra: Any) -> dict[str, Any]:
    d = asdict(r)
    d["split"] = split
    d["extra"] = {**d.get("extra", {}), **extra}
    return d


# -- groups --------------------------------------------------------------------------------------------
def g_base(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
           log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Float32 and plain quantization at both splits; the image itself (raw, PNG, JPEG) at ``input``."""
    from testbed.split.imagecodec import decode_image, encode_image
    from testbed.split.models import get_spec

    rows = []
    for point in (EARLY, MIDDLE):
        task = _task(model, point, images, teacher, seed)
        ctx = _ctx(task, out, seed, grid.epochs, log)
        rows.append(_row(ctx.measure("split", "float32 (no codec)", "32", None, task.tail, ctx.head_c, ctx.tail_c,
                                     ctx.f_test), point))
        for b in (1, 2, 3, 4, 8):
            rows.append(_row(ctx.measure("split", "plain quantize + dequantize", str(b),
                                         [{"quantize": {"bits": b}}, LZMA], task.tail, ctx.head_c, ctx.tail_c,
                                         ctx.f_test), point))
        rows.append(_row(ctx.measure("split", "plain binarize + dequantize", "1", [{"binarize": {}}, LZMA], task.tail,
                                     ctx.head_c, ctx.tail_c, ctx.f_test), point))
    task = _task(model, "input", images, teacher, seed)
    spec = get_spec(MODEL)
    mean = torch.tensor(spec.mean or (0.485, 0.456, 0.406)).view(3, 1, 1)
    std = torch.tensor(spec.std or (0.229, 0.224, 0.225)).view(3, 1, 1)
    pixels = ((task.x_test * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    full_c = count_compute(model, task.x_test[:1])
    for fmt, q in (("raw", 0), ("png", 0), ("jpeg", 90), ("jpeg", 75), ("jpeg", 50)):
        sizes, decoded = [], []
        for p in pixels:
            data = encode_image(p, fmt, q or 90)
            sizes.append(len(data))
            decoded.append(decode_image(data, fmt, p.shape))
        x = (torch.from_numpy(np.stack(decoded)).float() / 255 - mean) / std
        with torch.no_grad():
            logits = model(x)
        m = evaluate_logits(logits, None, task.teacher_test)
        name = {"raw": "uint8 image (raw)", "png": "PNG image"}.get(fmt, f"JPEG image q{q}")
        rows.append({"section": "image", "split": "input", "method": name, "bits": "8", "codec": fmt,
                     "accuracy": None, "agreement": m["agreement"], "payload_bytes": float(np.mean(sizes)),
                     "body_bytes": float(np.mean(sizes)), "node": asdict(Compute(0, 0)), "server": asdict(full_c),
                     "encode_ms": None, "extra": {}})
        log(f"image {name}: agree={m['agreement']:.3f} bytes={np.mean(sizes):.0f}")
    return rows


def g_ae(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
         log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Berg et al.: autoencoder at the early split, 1-3 bits, with and without TCL (frozen tail)."""
    from testbed.research.methods.autoencoder import AutoencoderConfig, train_autoencoder

    task = _task(model, EARLY, images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    f1, rows = ctx.f_test[:1], []
    for b in (1, 2, 3):
        for tcl in (0.0, 20.0):
            path = out / f"ae_{b}bit_{'tcl' if tcl else 'notcl'}_s{seed}.pt"
            enc, dec, _, _ = train_autoencoder(task, AutoencoderConfig(
                bits=b, epochs=grid.epochs, feature_epochs=grid.feature_epochs, tcl_max=tcl, seed=seed,
                batch_size=grid.batch, finetune_tail=False),
                out=str(path))
            with torch.no_grad():
                code = enc(f1)
            name = "autoencoder + TCL" if tcl else "autoencoder, no TCL (ablation)"
            rows.append(_row(ctx.measure("split", name, str(b), [{"autoencoder": {"checkpoint": str(path)}},
                                                                 {"quantize": {"bits": b}}, LZMA],
                                         task.tail, ctx.head_c + count_compute(enc, f1),
                                         count_compute(Seq(dec, task.tail), code), ctx.f_test), EARLY))
    return rows


def g_qcnet(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
            log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Sanchez Leal et al.: 1-bit binarize, QAT of the tail vs QCNet + fine-tuned tail, early and middle."""
    from testbed.research.methods.qcnet import QCNetConfig, load_qcnet, train_qat_tail, train_qcnet

    rows = []
    for point in (EARLY, MIDDLE):
        task = _task(model, point, images, teacher, seed)
        ctx = _ctx(task, out, seed, grid.epochs, log)
        cfg = QCNetConfig(epochs=grid.epochs, feature_epochs=grid.feature_epochs // 3, seed=seed,
                          batch_size=grid.batch)
        qat_tail, _ = train_qat_tail(task, cfg)
        rows.append(_row(ctx.measure("split", "QAT of the tail", "1", [{"binarize": {}}, LZMA], qat_tail, ctx.head_c,
                                     ctx.tail_c, ctx.f_test), point))
        path = out / f"qcnet_{point}_s{seed}.pt"
        train_qcnet(task, cfg, out=str(path))
        qnet, state, _ = load_qcnet(str(path))
        tail = copy.deepcopy(task.tail)
        tail.load_state_dict(state)
        rows.append(_row(ctx.measure("split", "QCNet + fine-tuned tail", "1",
                                     [{"qcnet": {"checkpoint": str(path)}}, {"binarize": {}}, LZMA], tail.eval(),
                                     ctx.head_c, count_compute(Seq(qnet, task.tail), ctx.f_test[:1]), ctx.f_test),
                         point))
    return rows


def g_entropy(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
              log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """The learned entropy-coded bottleneck (factorized prior + rANS) at the early split, two rate weights."""
    from testbed.research.methods.entropy import EntropyConfig, codec_spec, train_entropy

    task = _task(model, EARLY, images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    f1, rows = ctx.f_test[:1], []
    for beta in (0.02, 0.2):
        path = out / f"entropy_beta{beta}_s{seed}.pt"
        m, _ = train_entropy(task, EntropyConfig(beta=beta, epochs=grid.epochs, feature_epochs=grid.feature_epochs,
                                                 seed=seed, batch_size=grid.batch), out=str(path))
        with torch.no_grad():
            code = m.encode(f1)
        rows.append(_row(ctx.measure("split", f"entropy bottleneck (beta {beta})", "-", codec_spec(str(path)),
                                     task.tail, ctx.head_c + count_compute(m.encoder, f1),
                                     count_compute(Seq(m.decoder, task.tail), code), ctx.f_test), EARLY))
    return rows


def g_softquant(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
                log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """arXiv:2603.05172 at the input split: uniform vs soft quantization of the pixels, 1-6 bits
    (per-channel thresholds, the pretrained model frozen)."""
    from testbed.research.methods.softquant import SoftQuantConfig, train_softquant

    task = _task(model, "input", images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    none_c, full_c = Compute(0, 0), count_compute(model, task.x_test[:1])
    rows = []
    for b in (1, 2, 4, 6):
        rows.append(_row(ctx.measure("input", "uniform input quantize", str(b), [{"quantize": {"bits": b}}, LZMA],
                                     model, none_c, full_c, task.x_test), "input"))
        path = out / f"softquant_input_{b}bit_s{seed}.pt"
        train_softquant(model, task.x_train, None, SoftQuantConfig(
            bits=b, granularity="channel", epochs=grid.epochs, finetune=False, seed=seed, batch_size=grid.batch),
            task.teacher_train, out=str(path))
        rows.append(_row(ctx.measure("input", "bitwise soft quantization", str(b),
                                     [{"softquant": {"checkpoint": str(path)}}, LZMA], model, none_c, full_c,
                                     task.x_test), "input"))
    return rows


def g_tabular(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
              log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """arXiv:2603.05172 on the scikit-learn tables it suits (breast cancer, wine): accuracy on labels."""
    from testbed.research.methods.softquant import SoftQuantConfig, _tabular_model, _tuned, train_softquant

    task = _task(model, EARLY, images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    rows = []
    for name in ("breast_cancer", "wine"):
        mlp, (xtr, ytr, xte, yte) = _tabular_model(name, seed)
        mc, none_c = count_compute(mlp, xte[:1]), Compute(0, 0)
        with torch.no_grad():
            t = mlp(xte)
        sec = f"tabular:{name}"
        rows.append(_row(ctx.measure(sec, "float32 features (no codec)", "32", None, mlp, none_c, mc, xte, yte, t),
                         "input"))
        for b in (1, 2, 4):
            rows.append(_row(ctx.measure(sec, "uniform quantize", str(b), [{"quantize": {"bits": b}}], mlp, none_c,
                                         mc, xte, yte, t), "input"))
            path = out / f"softquant_{name}_{b}bit_s{seed}.pt"
            train_softquant(mlp, xtr, ytr, SoftQuantConfig(bits=b, epochs=30, batch_size=32, lr=2e-2, seed=seed),
                            out=str(path))
            rows.append(_row(ctx.measure(sec, "bitwise soft quantization", str(b),
                                         [{"softquant": {"checkpoint": str(path)}}], _tuned(mlp, str(path)), none_c,
                                         mc, xte, yte, t), "input"))
    return rows


def g_augq(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
           log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Mujtaba et al.: 2/4-bit PTQ of the early split's feature maps and of the head's weights, 64
    calibration frames, against uniform per-tensor and per-channel quantization."""
    from testbed.research.methods.augq import (
        AuGQConfig,
        augq_quantize_module,
        calibrate_features,
        save_augq,
        uniform_quantize_module,
    )

    task = _task(model, EARLY, images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    rows = []
    for b in (2, 4):
        cfg = AuGQConfig(bits=b)
        for gran in ("tensor", "channel"):
            rows.append(_row(ctx.measure("split", f"uniform per-{gran} quantize", str(b),
                                         [{"quantize": {"bits": b, "granularity": gran}}, LZMA], task.tail,
                                         ctx.head_c, ctx.tail_c, ctx.f_test), EARLY))
        path = out / f"augq_{b}bit_s{seed}.pt"
        save_augq(str(path), calibrate_features(task.features(task.x_train)[:cfg.samples], cfg), cfg, "channel",
                  {"model": MODEL, "split": EARLY})
        rows.append(_row(ctx.measure("split", "AuGQ features (64-frame calibration)", str(b),
                                     [{"augq": {"checkpoint": str(path)}}, LZMA], task.tail, ctx.head_c, ctx.tail_c,
                                     ctx.f_test), EARLY))
        for name, (head, nbytes) in (("uniform per-channel head weights", uniform_quantize_module(task.head, b)),
                                     ("AuGQ head weights", augq_quantize_module(task.head, cfg))):
            with torch.no_grad():
                f = torch.cat([head(task.x_test[i:i + 64]) for i in range(0, len(task.x_test), 64)])
            rows.append(_row(ctx.measure("weights", name, f"W{b}", None, task.tail, ctx.head_c, ctx.tail_c, f),
                             EARLY, head_weight_bytes=nbytes))
    return rows


def g_nestquant(model: nn.Module, images: Tensor, teacher: Tensor, seed: int, out: Path, grid: Grid,
                log: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Xie et al.: INT8 heads (early split) nesting INT6/INT4/INT3, adaptive vs nearest rounding, and
    the two separate PTQ heads the paper compares with (INT8 and INT-k, round to nearest)."""
    from testbed.research.methods.nestquant import NestQuantConfig, build_nestquant

    task = _task(model, EARLY, images, teacher, seed)
    ctx = _ctx(task, out, seed, grid.epochs, log)
    float_bytes = 4 * sum(m.weight.numel() for m in task.head.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    rows = []

    def run(head: nn.Module, name: str, bits: str, **extra: Any) -> None:
        with torch.no_grad():
            f = torch.cat([head(task.x_test[i:i + 64]) for i in range(0, len(task.x_test), 64)])
        rows.append(_row(ctx.measure("weights", name, bits, None, task.tail, ctx.head_c, ctx.tail_c, f), EARLY,
                         **extra))

    for pb in (6, 4, 3):
        for adaptive in (True, False):
            cfg = NestQuantConfig(part_bits=pb, adaptive=adaptive, iters=grid.nq_iters, samples=grid.nq_samples,
                                  seed=seed)
            nq = build_nestquant(task.head, task.x_train, cfg)
            tag = "adaptive" if adaptive else "nearest"
            st = nq.storage_bytes()
            for mode in ("full", "part"):
                run(nq.module(mode), f"NestQuant INT8>INT{pb} {mode}-bit ({tag})", "8" if mode == "full" else str(pb),
                    storage=st, switch_bytes=nq.switch_bytes(), float_weight_bytes=float_bytes)
        run(_ptq(task.head, pb), f"separate PTQ INT{pb} head", str(pb))
    run(_ptq(task.head, 8), "separate PTQ INT8 head", "8")
    return rows


def _ptq(head: nn.Module, bits: int) -> nn.Module:
    """A separate post-training head: symmetric per-output-channel INT-``bits`` weights, round to nearest."""
    out = copy.deepcopy(head)
    qmax = (1 << (bits - 1)) - 1
    for m in out.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.data
            s = (w.reshape(w.shape[0], -1).abs().amax(1) / qmax).clamp(min=1e-12).view(-1, *[1] * (w.dim() - 1))
            m.weight.data = torch.clamp(torch.round(w / s), -qmax, qmax) * s
    return out


JOBS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "base": g_base, "ae": g_ae, "qcnet": g_qcnet, "entropy": g_entropy, "softquant": g_softquant,
    "tabular": g_tabular, "augq": g_augq, "nestquant": g_nestquant}


def _teacher(out: str, grid: Grid) -> None:
    with reproducible(1):
        _load(grid.frames, Path(out) / "teacher.pt")


def run_job(group: str, seed: int, out: str, grid: Grid) -> str:
    """One (group, seed) job in its own process: rows to ``<out>/rows-<group>-s<seed>.json``."""
    path = Path(out) / f"rows-{group}-s{seed}.json"
    t0 = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{group} s{seed} {time.perf_counter() - t0:6.0f}s] {line}", flush=True)

    with reproducible(1):
        model, images, teacher = _load(grid.frames, Path(out) / "teacher.pt")
        rows = JOBS[group](model, images, teacher, seed, Path(out), grid, log)
    for r in rows:
        r["codec"] = r["codec"].replace(str(Path(out)) + "/", "")
    path.write_text(json.dumps({"group": group, "seed": seed, "seconds": time.perf_counter() - t0,
                                "isa_pinned": isa_pinned(), "rows": rows}, default=str))
    return f"{group} s{seed} done in {time.perf_counter() - t0:.0f} s"


# -- aggregation ---------------------------------------------------------------------------------------
def aggregate(out: Path, seeds: list[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows grouped by (section, split, method, bits) with mean and sample std over the seeds."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    order: list[tuple[str, str, str, str]] = []
    meta: dict[str, Any] = {"jobs": {}}
    for group in GROUPS:
        for s in seeds:
            f = out / f"rows-{group}-s{s}.json"
            if not f.is_file():
                continue
            blob = json.loads(f.read_text())
            meta["jobs"][f"{group}-s{s}"] = round(blob["seconds"], 1)
            for r in blob["rows"]:
                key = (r["section"], r["split"], r["method"], str(r["bits"]))
                if key not in groups:
                    order.append(key)
                groups.setdefault(key, []).append({**r, "seed": s})
    table = []
    for key in order:
        rs = groups[key]

        def stat(field: str, rs: list[dict[str, Any]] = rs) -> tuple[float | None, float | None]:
            v = [r[field] for r in rs if r[field] is not None]
            if not v:
                return None, None
            return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)

        a, a_sd = stat("agreement")
        acc, acc_sd = stat("accuracy")
        p, p_sd = stat("payload_bytes")
        b, _ = stat("body_bytes")
        table.append({"section": key[0], "split": key[1], "method": key[2], "bits": key[3], "seeds": [r["seed"] for r in rs],
                      "agreement": a, "agreement_sd": a_sd, "agreement_per_seed": [r["agreement"] for r in rs],
                      "accuracy": acc, "accuracy_sd": acc_sd, "payload_bytes": p, "payload_sd": p_sd, "body_bytes": b,
                      "node_macs": rs[0]["node"]["macs"], "server_macs": rs[0]["server"]["macs"],
                      "codec": rs[0]["codec"], "extra": rs[0].get("extra", {})})
    return table, meta


def _pct(m: float | None, sd: float | None) -> str:
    if m is None:
        return "-"
    return f"{100 * m:.1f} ± {100 * sd:.1f}" if sd is not None else f"{100 * m:.1f}"


def _macs(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e5 else f"{n / 1e3:,.1f}k"


def find(table: list[dict[str, Any]], method: str, bits: str | None = None, split: str | None = None,
         section: str | None = None) -> dict[str, Any] | None:
    for r in table:
        if r["method"] == method and (bits is None or r["bits"] == bits) and (split is None or r["split"] == split) \
                and (section is None or r["section"] == section):
            return r
    return None


def claims(table: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) per paper, computed from the aggregated rows."""
    out: list[tuple[str, str, str]] = []

    def ag(r: dict[str, Any] | None) -> float:
        return 100 * r["agreement"] if r and r["agreement"] is not None else float("nan")

    def sd(r: dict[str, Any] | None) -> float:
        return 100 * (r["agreement_sd"] or 0.0) if r else float("nan")

    jpeg = find(table, "JPEG image q90")
    png = find(table, "PNG image")
    if find(table, "autoencoder + TCL", "1"):
        ev, holds = [], []
        for b in ("1", "2", "3"):
            t, n = find(table, "autoencoder + TCL", b), find(table, "autoencoder, no TCL (ablation)", b)
            q = find(table, "plain quantize + dequantize", b, EARLY)
            if not t:
                continue
            drop = 100 - ag(t)
            small = jpeg is not None and t["payload_bytes"] < jpeg["payload_bytes"]
            holds.append(drop < 1 and small)
            ev.append(f"{b} bit: agreement {ag(t):.1f} ± {sd(t):.1f} % (drop {drop:.1f} pt), {t['payload_bytes']:,.0f} B "
                      f"vs JPEG q90 {jpeg['payload_bytes'] if jpeg else float('nan'):,.0f} B; no TCL {ag(n):.1f} ± "
                      f"{sd(n):.1f}; plain {b}-bit quantize {ag(q):.1f} % at {q['payload_bytes'] if q else 0:,.0f} B")
        verdict = "holds" if all(holds) else "holds partly" if any(holds) else "does not hold here"
        out.append(("TCL autoencoder at an early split (stage2): < 1 pt drop at 1-3 bits with a payload below the "
                    "image's", verdict, "; ".join(ev)))
    for point in (EARLY, MIDDLE):
        qc, qat = find(table, "QCNet + fine-tuned tail", "1", point), find(table, "QAT of the tail", "1", point)
        plain = find(table, "plain binarize + dequantize", "1", point)
        if qc and qat and plain:
            beats_plain, beats_qat = ag(qc) > ag(plain), ag(qc) > ag(qat)
            verdict = ("holds" if beats_plain and beats_qat else "holds partly" if beats_plain or beats_qat
                       else "does not hold here")
            out.append((f"QCNet (1 bit, {point}) above plain dequantization and QAT of the tail", verdict,
                        f"QCNet {ag(qc):.1f} ± {sd(qc):.1f} %, QAT {ag(qat):.1f} ± {sd(qat):.1f} %, plain binarize "
                        f"{ag(plain):.1f} ± {sd(plain):.1f} %; same {qc['payload_bytes']:,.0f} B payload; server MACs "
                        f"{_macs(qc['server_macs'])} vs {_macs(qat['server_macs'])}"))
    raw = find(table, "uint8 image (raw)")
    sqs = [r for r in table if r["method"] == "bitwise soft quantization" and r["section"] == "input"]
    if sqs and raw:
        ev, ok = [], []
        for r in sqs:
            u = find(table, "uniform input quantize", r["bits"], section="input")
            bits = int(r["bits"])
            factor = 4 * raw["payload_bytes"] / r["payload_bytes"]
            if 2 <= bits <= 6:  # 32 / b from 16x to 5.3x: the paper's range
                ok.append(100 - ag(r) <= 1)
            ev.append(f"{bits} bit ({32 / bits:.1f}x by bits, {factor:.0f}x by payload bytes vs the float32 input): "
                      f"agreement {ag(r):.1f} ± {sd(r):.1f} % (uniform {ag(u):.1f} ± {sd(u):.1f} % at "
                      f"{u['payload_bytes'] if u else 0:,.0f} B vs {r['payload_bytes']:,.0f} B)")
        verdict = "holds" if ok and all(ok) else "holds partly" if any(ok) else "does not hold here"
        out.append(("Soft quantization of the input: 5-16x compression (2-6 bits) vs 32-bit input at near-float "
                    "agreement (within 1 pt)", verdict, "; ".join(ev)))
    tabs = [r for r in table if r["section"].startswith("tabular:") and r["method"] == "bitwise soft quantization"]
    if tabs:
        ev, wins = [], []
        for r in tabs:
            u = find(table, "uniform quantize", r["bits"], section=r["section"])
            f = find(table, "float32 features (no codec)", section=r["section"])
            a_s, a_u = 100 * (r["accuracy"] or 0), 100 * ((u or {}).get("accuracy") or 0)
            wins.append(a_s >= a_u)
            ev.append(f"{r['section'][8:]} {r['bits']} bit: {32 // int(r['bits'])}x, acc {a_s:.1f} % (uniform "
                      f"{a_u:.1f}, float {100 * ((f or {}).get('accuracy') or 0):.1f})")
        verdict = "holds" if all(wins) else "holds partly" if any(wins) else "does not hold here"
        out.append(("Soft quantization of tabular features at least as accurate as uniform at equal bits", verdict,
                    "; ".join(ev)))
    for b in ("2", "4"):
        a = find(table, "AuGQ features (64-frame calibration)", b)
        t, c = find(table, "uniform per-tensor quantize", b), find(table, "uniform per-channel quantize", b)
        aw, uw = find(table, "AuGQ head weights", f"W{b}"), find(table, "uniform per-channel head weights", f"W{b}")
        if a and t and c:
            feat = ag(a) > max(ag(t), ag(c))
            wts = aw is not None and uw is not None and ag(aw) > ag(uw)
            verdict = "holds" if feat and wts else "holds partly" if feat or wts else "does not hold here"
            out.append((f"AuGQ {b}-bit PTQ above uniform per-tensor/per-channel", verdict,
                        f"features: AuGQ {ag(a):.1f} ± {sd(a):.1f} %, per-tensor {ag(t):.1f} ± {sd(t):.1f}, per-channel "
                        f"{ag(c):.1f} ± {sd(c):.1f}; head weights W{b}: AuGQ {ag(aw):.1f} ± {sd(aw):.1f}, uniform "
                        f"per-channel {ag(uw):.1f} ± {sd(uw):.1f}"))
    for pb in ("6", "4", "3"):
        full = find(table, f"NestQuant INT8>INT{pb} full-bit (adaptive)")
        part = find(table, f"NestQuant INT8>INT{pb} part-bit (adaptive)")
        near = find(table, f"NestQuant INT8>INT{pb} part-bit (nearest)")
        sep = find(table, f"separate PTQ INT{pb} head")
        if full and part:
            st = full["extra"]["storage"]
            reduction = 1 - full["extra"]["switch_bytes"] / st["full"]
            close = ag(full) - ag(part) <= 1
            verdict = "holds" if close and reduction >= 0.7 else "holds partly" if close or reduction >= 0.7 \
                else "does not hold here"
            out.append((f"NestQuant INT8 nesting INT{pb}: part-bit close to full-bit, ~78 % less switching overhead "
                        "than separate models", verdict,
                        f"full {ag(full):.1f} ± {sd(full):.1f} %, part {ag(part):.1f} ± {sd(part):.1f} % (nearest "
                        f"rounding {ag(near):.1f}, separate INT{pb} PTQ {ag(sep):.1f}); switch pages "
                        f"{full['extra']['switch_bytes']:,} B instead of loading the {st['full']:,} B INT8 model "
                        f"({100 * reduction:.0f} % less); storage {st['nested']:,} B nested vs {st['separate']:,} B "
                        "separate"))
    eb = [r for r in table if r["method"].startswith("entropy bottleneck")]
    if eb:
        text = "; ".join(f"{r['method']}: {ag(r):.1f} ± {sd(r):.1f} % at {r['payload_bytes']:,.0f} ± "
                       f"{r['payload_sd'] or 0:,.0f} B" for r in eb)
        best_ae = max((r for r in table if r["method"] == "autoencoder + TCL"), key=lambda r: r["agreement"] or 0,
                      default=None)
        if best_ae:
            text += f"; best TCL autoencoder {ag(best_ae):.1f} % at {best_ae['payload_bytes']:,.0f} B"
        if jpeg and png:
            text += f"; JPEG q90 {ag(jpeg):.1f} % at {jpeg['payload_bytes']:,.0f} B, PNG {png['payload_bytes']:,.0f} B"
        out.append(("Learned entropy-coded bottleneck (baseline): rate and agreement", "measured", text))
    return out


def figure(table: list[dict[str, Any]], path: Path) -> None:
    """Payload bytes per frame against top-1 agreement: one curve per method and split (mean over the
    seeds, bars = spread), the image codecs as points, the unsplit model as a line at 100 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    curves: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        if r["section"] in ("split", "input") and r["agreement"] is not None and r["method"] != "float32 (no codec)":
            curves.setdefault(f"{r['method']} @ {r['split']}", []).append(r)
    markers = "osD^v<>pPXh*"
    for i, (name, rs) in enumerate(curves.items()):
        rs = sorted(rs, key=lambda r: r["payload_bytes"])
        ax.errorbar([r["payload_bytes"] for r in rs], [100 * r["agreement"] for r in rs],
                    yerr=[100 * (r["agreement_sd"] or 0) for r in rs], marker=markers[i % len(markers)], ms=4, lw=1,
                    capsize=2, color=plt.get_cmap("tab20")(i % 20), ls="-" if i < 20 else "--", label=name)
    for r in table:
        if r["section"] == "image":
            ax.plot(r["payload_bytes"], 100 * r["agreement"], "k^", ms=6)
            ax.annotate(r["method"].replace(" image", ""), (r["payload_bytes"], 100 * r["agreement"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    ax.axhline(100, color="grey", ls="--", lw=1, label="unsplit model")
    ax.set_xscale("log")
    ax.set_xlabel("payload bytes per frame (header included)")
    ax.set_ylabel("top-1 agreement with the unsplit model, %")
    ax.set_title(f"{MODEL} (pretrained), photos: rate vs agreement, mean ± sd over seeds")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(table: list[dict[str, Any]], meta: dict[str, Any], docs: Path, cmd: str, grid: Grid, seeds: list[int]) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    figure(table, docs / f"research-{MODEL}.png")
    lines = [f"# Research codecs on {MODEL} (pretrained), photos, seeds {','.join(map(str, seeds))}", "",
             f"Produced by `{cmd}` (CPU, 1 torch thread per job, deterministic kernels, instruction set pinned to "
             f"AVX2). {grid.frames} photo frames (seeded crops of the 12 bundled photographs, 224 px), split "
             f"2/3 train / 1/3 test by each seed; learned methods train label-free: {grid.feature_epochs} epochs on the "
             f"feature loss (+ TCL or rate; QCNet {grid.feature_epochs // 3}) without running the tail, then "
             f"{grid.epochs} epoch(s) of KL to the unsplit model's softened logits (T = 2) + feature MSE through the "
             f"tail (batch {grid.batch}); the autoencoder and the entropy bottleneck keep the pretrained tail frozen, "
             f"QCNet and QAT fine-tune it; soft quantization trains per-channel thresholds in front of the frozen "
             f"model; NestQuant's adaptive rounding uses {grid.nq_iters} iterations on {grid.nq_samples} frames; *agree* = top-1 agreement with the unsplit model on "
             f"the test frames, mean ± sample standard deviation over the seeds; payload = mean bytes per frame of "
             f"the real payload (header included). Early split = `{EARLY}` (24x56x56, 301,056 float32 bytes), middle "
             f"= `{MIDDLE}` (80x14x14, 62,720 B). Job seconds: {json.dumps(meta['jobs'])}."
             + (f" **Jobs not run (missing from this table): {', '.join(meta['missing_jobs'])}.**"
                if meta.get("missing_jobs") else ""), "",
             "", f"![rate vs agreement](research-{MODEL}.png)", "",
             "## Claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    for c, v, e in claims(table):
        lines.append(f"| {c} | **{v}** | {e} |")
    lines += ["", "## All rows", "",
              "| section | split | method | bits | agree % | acc % | payload B | node MACs | server MACs | codec |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        pay = f"{r['payload_bytes']:,.0f}" + (f" ± {r['payload_sd']:,.0f}" if r["payload_sd"] else "")
        lines.append(f"| {r['section']} | {r['split']} | {r['method']} | {r['bits']} | "
                     f"{_pct(r['agreement'], r['agreement_sd'])} | {_pct(r['accuracy'], r['accuracy_sd'])} | {pay} | "
                     f"{_macs(r['node_macs'])} | {_macs(r['server_macs'])} | `{r['codec']}` |")
    (docs / f"research-{MODEL}.md").write_text("\n".join(lines) + "\n")
    (docs / f"research-{MODEL}.json").write_text(json.dumps(
        {"command": cmd, "grid": asdict(grid), "seeds": seeds, "meta": meta, "claims": claims(table), "rows": table},
        indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    p.add_argument("--jobs", type=int, default=2, help="processes (each 1 torch thread)")
    p.add_argument("--frames", type=int, default=Grid.frames)
    p.add_argument("--epochs", type=int, default=Grid.epochs)
    p.add_argument("--out", default="runs/research_table", help="checkpoints and per-job rows (resumable)")
    p.add_argument("--docs", default="docs/results", help="where research-<model>.md/.json go")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run no job: write the tables from the jobs already in --out (a partial grid says so)")
    a = p.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
        groups = [g.strip() for g in a.groups.split(",") if g.strip()]
        bad = [g for g in groups if g not in GROUPS]
        if bad or not seeds or min(seeds) < 0 or not 1 <= a.jobs <= 64 or not 12 <= a.frames <= 4096 \
                or not 1 <= a.epochs <= 1000:
            raise ValueError(f"unknown groups {bad}" if bad else "seeds >= 0, jobs 1-64, frames 12-4096, epochs >= 1")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grid = Grid(frames=a.frames, epochs=a.epochs)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # group-major: a group finished on every seed is usable even when the grid is cut short
    todo = [(g, s) for g in groups for s in seeds if not (out / f"rows-{g}-s{s}.json").is_file()]
    if a.aggregate_only:
        table, meta = aggregate(out, seeds)
        meta["missing_jobs"] = [f"{g}-s{s}" for g, s in todo]
        args = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--aggregate-only"]
        cmd = ("python analysis/research_table.py " + " ".join(args)).strip() + "`; jobs kept in --out, tables "
        cmd += "written from them with `--aggregate-only"
        write(table, meta, Path(a.docs), cmd, grid, seeds)
        print(f"wrote {a.docs}/research-{MODEL}.md from {len(groups) * len(seeds) - len(todo)} jobs; missing: "
              f"{', '.join(meta['missing_jobs']) or 'none'}", flush=True)
        return 0
    print(f"{len(todo)} jobs to run ({len(groups) * len(seeds) - len(todo)} kept from {out})", flush=True)
    ctx = multiprocessing.get_context("spawn")
    # every job runs in a fresh process, which imports torch under the pinned environment set above
    with cf.ProcessPoolExecutor(max_workers=a.jobs, mp_context=ctx) as pool:
        pool.submit(_teacher, str(out), grid).result()  # the teacher's logits, once for all jobs
        futs = [pool.submit(run_job, g, s, str(out), grid) for g, s in todo]
        for f in cf.as_completed(futs):
            print(f"[{time.perf_counter() - t0:6.0f}s] {f.result()}", flush=True)
    table, meta = aggregate(out, seeds)
    meta["wall_seconds"] = round(time.perf_counter() - t0, 1)
    cmd = "python analysis/research_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write(table, meta, Path(a.docs), cmd.strip(), grid, seeds)
    print(f"wrote {a.docs}/research-{MODEL}.md and .json in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

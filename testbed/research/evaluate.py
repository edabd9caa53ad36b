"""``testbed research-eval``: every research method on one split model, through real payloads.

Each row encodes the test set with a codec chain (one self-describing payload per image),
decodes the payloads (learned stages from their checkpoints), runs the server side and reports
accuracy, agreement with the unsplit model, mean payload bytes (header included) and body bytes,
and node/server compute as parameters and MACs per image. Methods and their papers:
autoencoder + TCL (doi:10.1109/ACCESS.2025.3579107), QCNet (doi:10.1109/ACCESS.2025.3627072),
bitwise soft quantization (arXiv:2603.05172), AuGQ (Applied Intelligence 2025) and NestQuant
(arXiv:2506.17870).

Run: ``python -m testbed.research.evaluate --dataset digits --out DIR`` (or ``testbed research-eval``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from testbed.split.codecs import parse_chain
from testbed.split.codecs.chain import decode_payloads
from testbed.research.common import Compute, count_compute, pick_device, seeded, set_threads
from testbed.research.nets import (
    TINY_MODEL,
    SplitTask,
    TabularMLP,
    evaluate_logits,
    load_split_task,
    tabular_tensors,
    train_classifier,
)

__all__ = ["Row", "run_eval", "format_table", "main"]


@dataclass
class Row:
    """One measured configuration."""

    section: str
    method: str
    bits: str
    codec: str
    accuracy: float | None
    agreement: float | None
    payload_bytes: float | None
    body_bytes: float | None
    node: Compute
    server: Compute
    encode_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Seq(nn.Module):
    """Compose optional modules (None entries skipped) for compute counting."""

    def __init__(self, *mods: nn.Module | None) -> None:
        super().__init__()
        self.mods = nn.ModuleList(m for m in mods if m is not None)

    def forward(self, x: Tensor) -> Tensor:
        for m in self.mods:
            x = m(x)
        return x


def _through_chain(spec: list[dict[str, Any]], x: Tensor) -> tuple[Tensor, float, float, float]:
    """Encode ``x`` into payloads and decode them: (decoded, mean payload bytes, mean body bytes, ms)."""
    chain = parse_chain(spec)
    res = chain.encode_timed(x)
    decoded = decode_payloads(res.payloads)
    from testbed.split.codecs.payload import read_frame

    bodies = [len(read_frame(p).body) for p in res.payloads]
    return (decoded, float(np.mean([len(p) for p in res.payloads])), float(np.mean(bodies)),
            1e3 * float(np.mean(res.seconds)))


def _metrics(logits: Tensor, task: SplitTask, teacher: Tensor) -> tuple[float | None, float | None]:
    m = evaluate_logits(logits, task.y_test if task.target == "labels" else None, teacher)
    return m.get("accuracy"), m.get("agreement")


def _tail_from(task: SplitTask, state: dict[str, Tensor]) -> nn.Module:
    import copy

    tail = copy.deepcopy(task.tail)
    tail.load_state_dict(state)
    return tail.eval()


def run_eval(out_dir: str, model: str = TINY_MODEL, weights: str = "", split: str = "layer1",
             dataset: str = "digits", limit: int | None = None, seed: int = 0, epochs: int = 10,
             device: str | None = None, threads: int | None = 1, tabular: str | None = "breast_cancer",
             log: Any = print) -> list[Row]:
    """Train/calibrate every method into ``out_dir`` and measure it; returns the rows."""
    from testbed.research.augq import (
        AuGQConfig,
        augq_quantize_module,
        calibrate_features,
        save_augq,
        uniform_quantize_module,
    )
    from testbed.research.autoencoder import AutoencoderConfig, load_autoencoder, train_autoencoder
    from testbed.config.modes import NestQuantModes, modes_path
    from testbed.research.nestquant import NestQuantConfig, build_nestquant, save_nestquant
    from testbed.research.qcnet import QCNetConfig, load_qcnet, train_qat_tail, train_qcnet
    from testbed.research.softquant import SoftQuantConfig, load_softquant, train_softquant

    set_threads(threads)
    dev = pick_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base_ckpt = str(out / "base.pt") if model == TINY_MODEL and not weights else None
    task = load_split_task(model, weights, split, dataset, limit, seed, device=dev, base_out=base_ckpt)
    if base_ckpt:
        weights = base_ckpt
    log(f"[{time.perf_counter() - t_start:6.1f}s] split model ready ({task.model_name} @ {split}, "
        f"{len(task.x_train)} train / {len(task.x_test)} test, target {task.target})")
    x1 = task.x_test[:1]
    f_test = task.features(task.x_test)
    teacher = task.teacher_logits(task.x_test)
    f1 = f_test[:1]
    head_c = count_compute(task.head, x1)
    tail_c = count_compute(task.tail, f1)
    rows: list[Row] = []

    def add(section: str, method: str, bits: str, spec: list[dict[str, Any]] | None, server: nn.Module,
            node_c: Compute, server_c: Compute, x: Tensor, **extra: Any) -> Row:
        if spec:
            dec, pay, body, ms = _through_chain(spec, x)
        else:
            dec, pay, body, ms = x, float(4 * x[0].numel()), float(4 * x[0].numel()), None
        with torch.no_grad():
            logits = server(dec)
        acc, agr = _metrics(logits, task, teacher)
        codec = parse_chain(spec).describe() if spec else "float32"
        for word in (str(out) + "/",):
            codec = codec.replace(word, "")
        row = Row(section, method, bits, codec, acc, agr, pay, body, node_c, server_c, ms, dict(extra))
        rows.append(row)
        log(f"[{time.perf_counter() - t_start:6.1f}s] {section:8s} {method:28s} {bits:>5s} acc={acc} "
            f"agree={agr:.4f} payload={pay:.0f} B")
        return row

    lz = {"lzma": {"preset": 6}}
    # -- 1. feature maps at the split -----------------------------------------------------------------
    add("split", "float32 (no codec)", "32", None, task.tail, head_c, tail_c, f_test)
    for b in (1, 2, 4):
        add("split", "plain quantize + dequantize", str(b), [{"quantize": {"bits": b}}, lz], task.tail, head_c,
            tail_c, f_test)
    add("split", "plain binarize + dequantize", "1", [{"binarize": {}}, lz], task.tail, head_c, tail_c, f_test)
    qc_cfg = QCNetConfig(epochs=epochs, seed=seed)
    qat_tail, _ = train_qat_tail(task, qc_cfg, dev)
    add("split", "QAT of the tail", "1", [{"binarize": {}}, lz], qat_tail, head_c, tail_c, f_test)
    qc_path = str(out / "qcnet_1bit.pt")
    train_qcnet(task, qc_cfg, dev, qc_path)
    qnet, qtail, _ = load_qcnet(qc_path)
    add("split", "QCNet + fine-tuned tail", "1", [{"qcnet": {"checkpoint": qc_path}}, {"binarize": {}}, lz],
        _tail_from(task, qtail), head_c, count_compute(_Seq(qnet, task.tail), f1), f_test)
    for b in (1, 2, 3):
        for tcl in (0.0, 20.0):
            path = str(out / f"ae_{b}bit_{'tcl' if tcl else 'notcl'}.pt")
            cfg = AutoencoderConfig(bits=b, epochs=epochs, tcl_max=tcl, seed=seed)
            train_autoencoder(task, cfg, dev, path)
            enc, dec, atail, _ = load_autoencoder(path)
            name = "autoencoder + TCL" if tcl else "autoencoder, no TCL (ablation)"
            add("split", name, str(b), [{"autoencoder": {"checkpoint": path}}, {"quantize": {"bits": b}}, lz],
                _tail_from(task, atail), head_c + count_compute(enc, f1),
                count_compute(_Seq(dec, task.tail), enc(f1)), f_test)
    for b in (2, 4):
        add("split", "uniform per-channel quantize", str(b),
            [{"quantize": {"bits": b, "granularity": "channel"}}, lz], task.tail, head_c, tail_c, f_test)
        path = str(out / f"augq_{b}bit.pt")
        acfg = AuGQConfig(bits=b)
        save_augq(path, calibrate_features(task.features(task.x_train[:acfg.samples]), acfg), acfg, "channel",
                  {"model": model, "split": split})
        add("split", "AuGQ (64-sample calibration)", str(b), [{"augq": {"checkpoint": path}}, lz], task.tail,
            head_c, tail_c, f_test)
    # -- 2. head weights: AuGQ and NestQuant ------------------------------------------------------------
    for b in (2, 4):
        acfg = AuGQConfig(bits=b)
        for name, (qhead, wbytes) in (("uniform per-channel W+A", uniform_quantize_module(task.head, b)),
                                      ("AuGQ W+A", augq_quantize_module(task.head, acfg))):
            with torch.no_grad():
                fq = qhead(task.x_test)
            if name.startswith("AuGQ"):
                path = str(out / f"augq_w{b}a{b}.pt")
                save_augq(path, calibrate_features(qhead(task.x_train[:acfg.samples]).detach(), acfg), acfg,
                          "channel", {"model": model, "split": split, "head_bits": b}, qhead.state_dict())
                spec = [{"augq": {"checkpoint": path}}, lz]
            else:
                spec = [{"quantize": {"bits": b, "granularity": "channel"}}, lz]
            add("weights", name, f"W{b}A{b}", spec, task.tail, head_c, tail_c, fq, head_weight_bytes=wbytes)
    nq_float_bytes = 4 * sum(m.weight.numel() for m in task.head.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    for pb in (4, 3):
        for adaptive in (True, False):
            cfg = NestQuantConfig(part_bits=pb, adaptive=adaptive, seed=seed)
            nq = build_nestquant(task.head, task.x_train, cfg)
            tag = "adaptive" if adaptive else "nearest"
            path = str(out / f"nestquant_int8_int{pb}_{tag}.pt")
            save_nestquant(nq, path, {**cfg.__dict__, "model": model, "split": split})
            accs = {}
            for mode in ("full", "part"):
                with torch.no_grad():
                    fq = nq.module(mode)(task.x_test)
                bits = "8" if mode == "full" else str(pb)
                r = add("weights", f"NestQuant INT8>INT{pb} {mode}-bit ({tag})", bits, None, task.tail, head_c,
                        tail_c, fq, storage=nq.storage_bytes(), switch_bytes=nq.switch_bytes(),
                        float_weight_bytes=nq_float_bytes)
                accs[mode] = r.accuracy if r.accuracy is not None else r.agreement
            key = "accuracy" if task.target == "labels" else "agreement"
            NestQuantModes(8, pb, accs, {"full": 1.0, "part": pb / 8}, nq.switch_bytes(), nq.storage_bytes(),
                           key).save(modes_path(path))
    # -- 3. the split `input`: bitwise soft quantization of the images -------------------------------------
    itask = load_split_task(model, weights, "input", dataset, limit, seed, device=dev)
    full = nn.Sequential(itask.head, itask.tail).eval()
    full_c = count_compute(full, task.x_test[:1])
    none_c = Compute(0, 0)
    raw_uint8 = task.x_test[0].numel()
    add("input", "float32 image (no codec)", "32", None, full, none_c, full_c, task.x_test, raw_uint8_bytes=raw_uint8)
    for b in (1, 2, 3):
        add("input", "uniform input quantize", str(b), [{"quantize": {"bits": b}}, lz], full, none_c, full_c,
            task.x_test, raw_uint8_bytes=raw_uint8)
        path = str(out / f"softquant_input_{b}bit.pt")
        steacher = full(itask.x_train).detach() if itask.target == "teacher" else None
        train_softquant(full, itask.x_train, itask.y_train, SoftQuantConfig(bits=b, epochs=max(3, epochs // 2),
                                                                            seed=seed), steacher, dev, path)
        q, mstate, _ = load_softquant(path)
        import copy

        snet = copy.deepcopy(full)
        snet.load_state_dict(mstate)
        add("input", "bitwise soft quantization", str(b), [{"softquant": {"checkpoint": path}}, lz], snet.eval(),
            none_c, full_c, task.x_test, raw_uint8_bytes=raw_uint8)
    # -- 4. tabular sensor data -----------------------------------------------------------------------
    if tabular:
        rows.extend(_tabular(tabular, out, seed, dev, log, t_start))
    return rows


def _tabular(name: str, out: Path, seed: int, dev: torch.device, log: Any, t_start: float) -> list[Row]:
    """Soft quantization of tabular features (a bundled scikit-learn table) against uniform quantization."""
    import copy

    from testbed.research.softquant import SoftQuantConfig, load_softquant, train_softquant

    xtr, ytr, xte, yte = tabular_tensors(name, seed)
    with seeded(seed):
        mlp = TabularMLP(xtr.shape[1], int(ytr.max()) + 1)
    train_classifier(mlp, xtr, ytr, 30, seed, lr=1e-2, batch_size=32)
    mc = count_compute(mlp, xte[:1])
    with torch.no_grad():
        teacher = mlp(xte)
    rows = []

    def add(method: str, bits: str, spec: list[dict[str, Any]] | None, net: nn.Module) -> None:
        if spec:
            dec, pay, body, ms = _through_chain(spec, xte)
        else:
            dec, pay, body, ms = xte, float(4 * xte.shape[1]), float(4 * xte.shape[1]), None
        with torch.no_grad():
            m = evaluate_logits(net(dec), yte, teacher)
        codec = parse_chain(spec).describe().replace(str(out) + "/", "") if spec else "float32"
        rows.append(Row(f"tabular:{name}", method, bits, codec, m["accuracy"], m["agreement"], pay, body,
                        Compute(0, 0), mc, ms, {"raw_float32_bytes": 4 * xte.shape[1]}))
        log(f"[{time.perf_counter() - t_start:6.1f}s] tabular  {method:28s} {bits:>5s} acc={m['accuracy']:.4f} "
            f"payload={pay:.0f} B")

    add("float32 features (no codec)", "32", None, mlp)
    for b in (1, 2):
        add("uniform quantize", str(b), [{"quantize": {"bits": b}}], mlp)
        path = str(out / f"softquant_{name}_{b}bit.pt")
        train_softquant(mlp, xtr, ytr, SoftQuantConfig(bits=b, epochs=30, batch_size=32, lr=2e-2, seed=seed),
                        device=dev, out=path)
        q, mstate, _ = load_softquant(path)
        net = copy.deepcopy(mlp)
        net.load_state_dict(mstate)
        add("bitwise soft quantization", str(b), [{"softquant": {"checkpoint": path}}], net.eval())
    return rows


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:,.0f}"


def _k(n: int) -> str:
    return f"{n / 1e3:,.1f}k" if n < 1e6 else f"{n / 1e6:,.2f}M"


def format_table(rows: list[Row]) -> str:
    """Markdown table of the rows."""
    head = ("section", "method", "bits", "acc %", "agree %", "payload B", "body B", "node params", "node MACs",
            "server params", "server MACs", "codec")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.section, r.method, r.bits, _fmt(r.accuracy), _fmt(r.agreement), _fmt(r.payload_bytes, False),
                 _fmt(r.body_bytes, False), _k(r.node.params), _k(r.node.macs), _k(r.server.params),
                 _k(r.server.macs), f"`{r.codec}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_nestquant(rows: list[Row]) -> str:
    """Storage and switching costs of the NestQuant rows."""
    lines = ["| configuration | full-bit acc % | part-bit acc % | nested storage B | separate models B | "
             "part-bit storage B | switch (paged) B | float32 weights B |", "|---|---|---|---|---|---|---|---|"]
    nq = [r for r in rows if r.method.startswith("NestQuant")]
    for i in range(0, len(nq), 2):
        full, part = nq[i], nq[i + 1]
        s = full.extra["storage"]
        name = full.method.replace(" full-bit", "")
        lines.append(f"| {name} | {_fmt(full.accuracy or full.agreement)} | {_fmt(part.accuracy or part.agreement)} | "
                     f"{s['nested']:,} | {s['separate']:,} | {s['part']:,} | {full.extra['switch_bytes']:,} | "
                     f"{full.extra['float_weight_bytes']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="testbed research-eval", description=__doc__.splitlines()[0])
    from testbed.cli.commands.research_eval import add_arguments

    add_arguments(p)
    return run_from_args(p.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    rows = run_eval(args.out, args.model, args.weights, args.split, args.dataset, args.limit, args.seed,
                    args.epochs, args.device, args.threads, args.tabular or None)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, default=str))
    text = format_table(rows) + "\n\nNestQuant storage and switching:\n\n" + format_nestquant(rows) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s; results in {out}/results.json and {out}/table.md")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

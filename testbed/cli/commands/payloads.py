"""``testbed payloads``: real images through head, codec, decode and tail; bytes on the wire."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from testbed.cli.help import example
from testbed.cli.progress import add_quiet, bar, enabled

__all__ = ["expand_codecs", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "payloads", help="measure payload bytes, codec time and fidelity per split point and codec",
        description="Run a dataset through head -> codec -> decode -> tail for each split point and codec "
                    "chain and report payload bytes (mean, p95), compression ratios, encode/decode time, "
                    "feature SNR and cosine, top-1 agreement with the unsplit model and accuracy.",
        epilog=example("testbed payloads --split stem,blocks.2 --codec 'quantize:bits=4,zlib:level=6' "
                       "--codec float16+zstd --limit 32"))
    p.add_argument("--model", default="efficientnet_lite0", help="registered model (see `testbed models`; "
                   "default efficientnet_lite0, whose ImageNet weights install with the project)")
    p.add_argument("--split", action="append", metavar="POINT",
                   help="split point (repeatable, comma lists allowed; 'all' = every point; default all)")
    p.add_argument("--codec", action="append", metavar="SPEC",
                   help="codec chain, e.g. 'quantize:bits=1,lzma:preset=6', 'float16+zstd', 'float32' or a "
                        "YAML/JSON list (repeatable; default float32)")
    p.add_argument("--bits", type=int, nargs="+", metavar="B",
                   help="run each codec that has a quantize stage once per bit width")
    p.add_argument("--image", action="append", metavar="FORMAT",
                   help="also send the whole image: raw, png or jpeg[:quality=Q] (repeatable; split 'input')")
    p.add_argument("--dataset", default="photos",
                   help="photos (the bundled photographs with camera-like variation), photos:DIR, samples, digits, "
                        "imagefolder:PATH (default photos)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images (photos: frames, default 64)")
    p.add_argument("--weights", default="pretrained",
                   help="pretrained (default), random (seeded; agreement and sizes then mean nothing), a "
                        "torchvision weights name (IMAGENET1K_V2) or a checkpoint path")
    p.add_argument("--floor", type=float, nargs="+", metavar="F",
                   help="also print, per split point, the smallest payload keeping at least F top-1 agreement "
                        "(e.g. --floor 0.9 0.95 0.99)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default=None, help="device of the tail (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object per split and codec (a list)")
    out.add_argument("--pivot", action="store_true",
                     help="print a markdown matrix of mean payload bytes, split points x codecs")
    out.add_argument("--markdown", action="store_true", help="print the full table as markdown")
    add_quiet(p)
    p.set_defaults(func=run)


def expand_codecs(codecs: list[str], bits: list[int] | None) -> list[Any]:
    """Codec chains for ``--codec`` values; each one holding a ``quantize`` stage is repeated per
    ``--bits`` width. Errors name ``codec`` (one ``--codec``) or ``codec[i]`` (several)."""
    import testbed.research  # noqa: F401  (registers the learned codec stages)
    from testbed.errors import ConfigError
    from testbed.split.codecs import normalize_spec, parse_chain, with_bits

    for b in bits or []:
        if not 1 <= b <= 8:
            raise ConfigError("bits", b, "bit widths from 1 to 8")
    out: list[Any] = []
    for i, text in enumerate(codecs):
        path = "codec" if len(codecs) == 1 else f"codec[{i}]"
        stages = [{n: p} for n, p in normalize_spec(text, path)]
        parse_chain(stages, path)  # validate as given
        out += [parse_chain(v, path) for v in with_bits(stages, bits or [])]
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from testbed.errors import ConfigError
    from testbed.split.models import get_spec
    from testbed.split.pipeline import SplitPipeline

    spec = get_spec(args.model)
    splits = spec.select_points(args.split)
    chains = expand_codecs(args.codec or ["float32"], args.bits)
    if args.batch_size < 1:
        raise ConfigError("batch-size", args.batch_size, "a positive integer")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("limit", args.limit, "a positive integer")
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise ConfigError("threads", args.threads, "a number of torch CPU threads from 1 to 1024")
        torch.set_num_threads(args.threads)
    if args.device is not None and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", args.device, "cpu (CUDA is not available here)")
    pipe = SplitPipeline(args.model, args.weights, args.seed, args.device)
    data = pipe.dataset(args.dataset, args.limit)
    floors = _floors(args.floor)
    images = [_image_arg(v) for v in args.image or []]
    progress = bar(enabled(args), total=len(images) + len(splits) * len(chains), desc="payloads", unit="run")
    results = []
    try:
        for fmt, q in images:
            progress.set_postfix_str(f"image {fmt}")
            results.append(pipe.run_image(data, fmt, q, args.batch_size).summary())
            progress.update(1)
        for split in splits:  # the head runs once per split point for all its codecs
            progress.set_postfix_str(f"split {split} x {len(chains)} codec(s)")
            results += [r.summary() for r in pipe.run_codecs(split, chains, data, args.batch_size)]
            progress.update(len(chains))
    finally:
        progress.close()
    if args.weights == "random":
        from testbed.core.metrics.outcomes import RANDOM_WEIGHTS_NOTE

        print(f"note: {RANDOM_WEIGHTS_NOTE}", file=sys.stderr)
        results = [{**r, "note": RANDOM_WEIGHTS_NOTE} for r in results]
    if args.json:
        from testbed.io import json_text

        out: Any = results if not floors else {"rows": results, "smallest_keeping": _floor_json(results, floors)}
        print(json_text(out))
        return 0
    elif args.pivot:
        print(_pivot(results))
    else:
        print(_table(results, markdown=args.markdown, images=len(data), model=args.model,
                     weights=args.weights, dataset=args.dataset, device=str(pipe.device)))
    if floors:
        print()
        print(_floor_table(results, floors, markdown=args.markdown or args.pivot))
    return 0


def _floors(given: list[float] | None) -> list[float]:
    from testbed.errors import ConfigError

    for f in given or []:
        if not (math.isfinite(f) and 0.0 < f <= 1.0):
            raise ConfigError("floor", f, "an agreement share in (0, 1], e.g. 0.9")
    return sorted(set(given or []))


def _image_arg(text: str) -> tuple[str, int]:
    from testbed.errors import ConfigError
    from testbed.split.imagecodec import IMAGE_FORMATS

    fmt, _, rest = text.partition(":")
    quality = 90
    if rest:
        key, _, value = rest.partition("=")
        if key != "quality" or not value.isdigit() or not 1 <= int(value) <= 100:
            raise ConfigError("image", text, "raw, png or jpeg[:quality=Q] with Q from 1 to 100")
        quality = int(value)
    if fmt not in IMAGE_FORMATS or (rest and fmt != "jpeg"):
        raise ConfigError("image", text, "raw, png or jpeg[:quality=Q] with Q from 1 to 100")
    return fmt, quality


def _floor_json(rows: list[dict[str, Any]], floors: list[float]) -> list[dict[str, Any]]:
    from testbed.split.frontier import smallest_keeping

    return [{"split": split, **{f"{f:g}": (None if r is None else {
        "codec": r["codec"], "payload_bytes_mean": r["payload_bytes_mean"],
        "top1_agreement": r["top1_agreement"]}) for f, r in picks.items()}}
        for split, picks in smallest_keeping(rows, floors)]


def _floor_table(rows: list[dict[str, Any]], floors: list[float], markdown: bool) -> str:
    from testbed.split.frontier import smallest_keeping

    head = ["split", *(f">= {f:.0%} top-1 agreement" for f in floors)]
    body = [[split, *("none" if r is None else
                      f"{_fmt_bytes(r['payload_bytes_mean'])} B {r['codec']} ({r['top1_agreement']:.3f})"
                      for r in picks.values())] for split, picks in smallest_keeping(rows, floors)]
    title = "# smallest mean payload keeping each top-1 agreement floor (bytes, codec, agreement)"
    if markdown:
        return "\n".join([title, "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|",
                          *("| " + " | ".join(b) + " |" for b in body)])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    return "\n".join([title, *("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [head, *body])])


def _fmt_bytes(v: float) -> str:
    return f"{v:,.0f}"


def _table(rows: list[dict[str, Any]], markdown: bool, **meta: Any) -> str:
    cols = [
        ("split", lambda r: r["split"]), ("codec", lambda r: r["codec"]),
        ("shape", lambda r: "x".join(map(str, r["feature_shape"]))),
        ("bytes mean", lambda r: _fmt_bytes(r["payload_bytes_mean"])),
        ("bytes p95", lambda r: _fmt_bytes(r["payload_bytes_p95"])),
        ("x f32", lambda r: f"{r['ratio_vs_float32']:.1f}"),
        ("x img", lambda r: f"{r['ratio_vs_input_uint8']:.2f}"),
        ("enc ms", lambda r: f"{r['encode_ms_mean']:.2f}"), ("dec ms", lambda r: f"{r['decode_ms_mean']:.2f}"),
        ("SNR dB", lambda r: "inf" if math.isinf(r["snr_db_mean"]) else f"{r['snr_db_mean']:.1f}"),
        ("cosine", lambda r: f"{r['cosine_mean']:.4f}"),
        ("top1 agree", lambda r: f"{r['top1_agreement']:.3f}"),
        ("top5 agree", lambda r: "-" if r["top5_agreement"] is None else f"{r['top5_agreement']:.3f}"),
        ("confident", lambda r: "-" if r["confident_agreement"] is None else
         f"{r['confident_agreement']:.3f} ({r['confident_frames']})"),
        ("acc", lambda r: "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"),
    ]
    head = [c for c, _ in cols]
    body = [[f(r) for _, f in cols] for r in rows]
    title = (f"# {meta['model']} ({meta['weights']} weights) on {meta['dataset']}: {meta['images']} images, "
             f"tail on {meta['device']}; x f32 / x img = compression vs float32 features / uint8 input image")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join([title, "", *lines])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join([title, *lines])


def _pivot(rows: list[dict[str, Any]]) -> str:
    splits = list(dict.fromkeys(r["split"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    cell = {(r["split"], r["codec"]): r for r in rows}
    lines = ["| split | shape | " + " | ".join(codecs) + " |", "|---|---|" + "---:|" * len(codecs)]
    for s in splits:
        any_row = next(r for r in rows if r["split"] == s)
        vals = [_fmt_bytes(cell[(s, c)]["payload_bytes_mean"]) if (s, c) in cell else "" for c in codecs]
        lines.append(f"| {s} | {'x'.join(map(str, any_row['feature_shape']))} | " + " | ".join(vals) + " |")
    return "\n".join(lines)

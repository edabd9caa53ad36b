"""Throughput of head + codec + tail against head + tail on the same batch, and where codec time goes.

Usage (see docs/models_codecs.md for measured figures)::

    python bench/pipeline_bench.py --model efficientnet_lite0 --split stage2 --batch 8 --repeats 5 \\
        --codec quantize:bits=1,lzma:preset=6 --codec quantize:bits=8,lzma:preset=6 --codec quantize:bits=4,zstd

Both variants run interleaved (A B A B ...) on one batch of frames of the bundled photos (pretrained
weights unless --weights random), so machine load affects them alike; the reported time per variant is the median over repeats. Everything runs on
this machine's CPU unless CUDA is present (then the tail runs there, as in the pipeline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from testbed.split.codecs import CodecChain, decode_payloads, parse_chain
from testbed.split.data import load_dataset, preprocess_for
from testbed.split.models import load_model, split_loaded
from testbed.split.pipeline import default_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(model: str, split: str, codecs: list[str], batch: int, repeats: int, threads: int | None,
          weights: str = "pretrained") -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    device = default_device()
    net = load_model(model, weights, 0)
    head, tail = split_loaded(model, net, split)
    tail = tail.to(device)
    photos = load_dataset("photos", preprocess_for(model, weights), limit=batch).images
    x = photos[torch.arange(batch) % photos.shape[0]]
    chains = [parse_chain(c) for c in codecs]

    def plain() -> None:
        f = head(x)
        tail(f.to(device))
        _sync(device)

    def piped(chain: CodecChain) -> None:
        f = head(x)
        payloads = chain.encode(f)
        rec = torch.cat([decode_payloads([p], chain, tuple(f.shape[1:])) for p in payloads])
        tail(rec.to(device))
        _sync(device)

    out: dict[str, Any] = {"model": model, "split": split, "batch": batch, "repeats": repeats, "device": str(device),
                 "threads": torch.get_num_threads(), "codecs": []}
    with torch.inference_mode():
        plain()  # warm-up (allocators, oneDNN primitives)
        feats = head(x)
        out["feature_shape"] = list(feats.shape[1:])
        for chain in chains:
            piped(chain)
            chain.timings.clear()
            t_plain, t_piped = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                plain()
                t_plain.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                piped(chain)
                t_piped.append(time.perf_counter() - t0)
            codec_total = sum(chain.timings.values())
            shares: dict[str, float] = {}
            for (direction, stage), sec in chain.timings.items():
                shares[f"{direction}:{stage}"] = sec / codec_total
            by_stage: dict[str, float] = {}
            for (_, stage), sec in chain.timings.items():
                by_stage[stage] = by_stage.get(stage, 0.0) + sec / codec_total
            payload = chain.encode(feats[:1])[0]
            mp, mq = statistics.median(t_plain), statistics.median(t_piped)
            out["codecs"].append({
                "codec": chain.describe(), "payload_bytes_first_image": len(payload),
                "head_tail_img_s": batch / mp, "pipeline_img_s": batch / mq, "ratio": mp / mq,
                "codec_ms_per_img": 1e3 * codec_total / (repeats * batch),
                "share_by_stage": dict(sorted(by_stage.items(), key=lambda kv: -kv[1])),
                "share": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
            })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--split", default="stage2")
    ap.add_argument("--weights", default="pretrained", help="pretrained (default) or random (sizes then mean nothing)")
    ap.add_argument("--codec", action="append", help="codec chain (repeatable)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    codecs = args.codec or ["quantize:bits=1,lzma:preset=6", "quantize:bits=8,lzma:preset=6",
                            "quantize:bits=4,zstd:level=3", "float16"]
    res = bench(args.model, args.split, codecs, args.batch, args.repeats, args.threads, args.weights)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"# {res['model']} split at {res['split']} {'x'.join(map(str, res['feature_shape']))}, batch {res['batch']}, "
          f"median of {res['repeats']} interleaved repeats, {res['threads']} CPU threads, tail on {res['device']}")
    print(f"{'codec':34s} {'bytes/img':>9s} {'head+tail img/s':>15s} {'+codec img/s':>12s} {'ratio':>6s} "
          f"{'codec ms/img':>12s}  codec time share")
    for c in res["codecs"]:
        share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in c["share_by_stage"].items() if v >= 0.005)
        print(f"{c['codec']:34s} {c['payload_bytes_first_image']:9,d} {c['head_tail_img_s']:15.2f} "
              f"{c['pipeline_img_s']:12.2f} {c['ratio']:6.3f} {c['codec_ms_per_img']:12.2f}  {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

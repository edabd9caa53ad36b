"""``testbed models``: registered models, their split points, feature shapes and sizes."""

from __future__ import annotations

import argparse
import json

from testbed.cli.help import example

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("models", help="list splittable models, split points and feature shapes",
                              description="List registered models with the per-image feature shape, element "
                                          "count and float32 size at every split point.",
                              epilog=example("testbed models --model efficientnet_lite0"))
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--size", type=int, default=None, help="input side in pixels (default: each model's crop, "
                                                           "224; fixed-size models keep theirs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from testbed.errors import ConfigError
    from testbed.split.models import feature_table, get_spec

    for name in args.model or []:
        get_spec(name)
    if args.size is not None and not 32 <= args.size <= 4096:
        raise ConfigError("--size", args.size, "an input side from 32 to 4096 pixels")
    rows = feature_table(args.model, args.size)
    if args.json:
        print(json.dumps([{"model": r.model, "task": get_spec(r.model).task, "split": r.point,
                           "shape": list(r.shape), "elements": r.elements, "float32_bytes": r.float32_bytes}
                          for r in rows], indent=2))
        return 0
    header = ("model", "split", "shape", "elements", "float32 bytes")
    body = [(r.model, r.point, "x".join(map(str, r.shape)) or "(detections)", f"{r.elements:,}",
             f"{r.float32_bytes:,}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    last = None
    for b in body:
        cells = list(b)
        if b[0] == last:
            cells[0] = ""
        last = b[0]
        print("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return 0

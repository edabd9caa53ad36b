"""``testbed profile``: measure this device and write a profile YAML (see :mod:`testbed.profiler`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from testbed.cli.help import example

__all__ = ["register"]

CODEC_MODEL = "efficientnet_lite0"
DEFAULT_CHAINS = ("quantize:bits=1,lzma:preset=6", "quantize:bits=2,lzma:preset=6", "quantize:bits=3,lzma:preset=6",
                  "quantize:bits=4,zlib:level=6",
                  "quantize:bits=8,zstd:level=3", "quantize:bits=1,zlib:level=6", "quantize:bits=1,zstd:level=3",
                  "binarize,lzma:preset=6", "float16,lzma:preset=6", "float16,zlib:level=6", "float16,zstd:level=3")


def _profile(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from testbed.errors import ConfigError
    from testbed.io import write_text
    from testbed.split.models import get_spec, split_model
    from testbed.split.profiler import build_profile

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device", args.device, "cuda needs a visible GPU; use --device cpu here")
    _batches(args.batches)  # checked before anything is measured
    if not 1 <= args.runs <= 100_000:
        raise ConfigError("--runs", args.runs, "a number of timed runs from 1 to 100000")
    if not 0 <= args.threads <= 1024:
        raise ConfigError("--threads", args.threads, "0 (torch's default) or a number of threads up to 1024")
    models = args.model
    for m in models:
        get_spec(m, "--model")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError("--out", str(out), "exists; pass --force to overwrite it")
    if args.threads:
        torch.set_num_threads(args.threads)
    feats = pixels = None
    if not args.no_codecs:
        from testbed.split.data import load_dataset, preprocess_for

        # codec speed depends on the data (LZMA most of all): time it on real feature maps, the
        # pretrained Lite0 stem on the bundled photos, not on random weights
        prep = preprocess_for(CODEC_MODEL, "pretrained")
        head, _ = split_model(CODEC_MODEL, "stem", "pretrained")
        images = load_dataset("photos", prep, limit=8).images
        with torch.inference_mode():
            feats = head(images)
        pixels = (prep.denormalize(images).clamp(0, 1) * 255).round().to(torch.uint8)
    name = args.name or out.stem
    command = "testbed " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    batches = _batches(args.batches)
    prof = build_profile(name, args.role, args.device, models, args.splits, batches, args.runs, command,
                         () if args.no_codecs else DEFAULT_CHAINS, feats, args.description, pixels)
    write_text(out, yaml.safe_dump(prof, sort_keys=False))
    from testbed.config.profiles import load_profile

    load_profile(out)  # validate what was written
    print(f"wrote {out}")
    return 0


def _batches(text: str) -> list[int]:
    from testbed.errors import ConfigError

    parts = [b.strip() for b in text.split(",")]
    if not all(b.isdigit() and 1 <= int(b) <= 4096 for b in parts):
        raise ConfigError("--batches", text, "comma-separated batch sizes from 1 to 4096, e.g. 1,2,4,8")
    return [int(b) for b in parts]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure this device (model blocks, tails by batch, codecs) into a profile",
                       epilog=example("testbed profile --model efficientnet_lite0 --role node --out nodes/mypi.yaml"))
    p.add_argument("--model", action="append", required=True, help="model name (repeatable)")
    p.add_argument("--splits", nargs="*", help="split points to time tails after (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--role", default="node", choices=["node", "server", "both"])
    p.add_argument("--batches", default="1,2,4,8", help="batch sizes for tail tables (server role)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per figure (after warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--name", help="profile name (default: the file name)")
    p.add_argument("--description", default="", help="free text stored in the profile")
    p.add_argument("--no-codecs", action="store_true", help="skip codec cost measurement")
    p.add_argument("--out", required=True, help="profile YAML to write, e.g. nodes/mypi.yaml")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out profile")
    p.set_defaults(func=_profile)

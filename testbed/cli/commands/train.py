"""``testbed train METHOD``: train or calibrate a research codec and write its checkpoint.

Methods (see :mod:`testbed.research`): ``base`` (the tiny digits ResNet), ``autoencoder`` (TCL,
doi:10.1109/ACCESS.2025.3579107), ``qcnet`` (doi:10.1109/ACCESS.2025.3627072), ``softquant``
(arXiv:2603.05172), ``augq`` (Applied Intelligence 2025) and ``nestquant`` (arXiv:2506.17870).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]

_METHODS = ("base", "autoencoder", "qcnet", "softquant", "augq", "nestquant")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train or calibrate a research codec (autoencoder, qcnet, softquant, augq, nestquant)",
        description="Train/calibrate one research method on a split model and write a checkpoint that a "
                    "scenario's codec chain can reference. Runs on CUDA when available, else the CPU.")
    p.add_argument("method", choices=_METHODS)
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--model", default="tiny_resnet",
                   help="tiny_resnet (digits) or a registered torchvision classifier (see `testbed models`)")
    p.add_argument("--weights", default="",
                   help="tiny_resnet: a `testbed train base` checkpoint (default: train one in process); "
                        "torchvision: DEFAULT, a weights name or a checkpoint path")
    p.add_argument("--split", default="layer1", help="split point (default layer1)")
    p.add_argument("--dataset", default="digits",
                   help="digits, imagefolder:PATH, or tabular:NAME|CSV for softquant (breast_cancer, wine, iris)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--bits", type=int, default=None, help="quantization bits (autoencoder 2, softquant 2, augq 4)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    g = p.add_argument_group("autoencoder")
    g.add_argument("--code-channels", type=int, default=8)
    g.add_argument("--tcl-max", type=float, default=20.0, help="final TCL weight (0 = no TCL)")
    g.add_argument("--schedule", default="quadratic", help="TCL weight schedule: linear, quadratic, exponential, constant")
    g = p.add_argument_group("qcnet")
    g.add_argument("--quantizer", default="binarize", help="node quantizer chain (default binarize = 1 bit)")
    g = p.add_argument_group("softquant / augq")
    g.add_argument("--granularity", default=None, help="softquant: feature|channel|tensor; augq: channel|tensor")
    g.add_argument("--intervals", type=int, default=16, help="augq: uniform intervals over the range")
    g.add_argument("--samples", type=int, default=64, help="augq/nestquant: calibration samples")
    g.add_argument("--head-bits", type=int, default=None, help="augq: also quantize the head weights")
    g = p.add_argument_group("nestquant")
    g.add_argument("--part-bits", type=int, default=4, help="bits of the nested part-bit head")
    g.add_argument("--no-adaptive", action="store_true", help="round the high part to nearest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from testbed.research.train import TrainOptions, train_method

    opts = TrainOptions(out=args.out, model=args.model, weights=args.weights, split=args.split,
                        dataset=args.dataset, limit=args.limit, seed=args.seed, epochs=args.epochs,
                        bits=args.bits, device=args.device, threads=args.threads,
                        code_channels=args.code_channels, tcl_max=args.tcl_max, schedule=args.schedule,
                        quantizer=args.quantizer, granularity=args.granularity, intervals=args.intervals,
                        samples=args.samples, head_bits=args.head_bits, part_bits=args.part_bits,
                        adaptive=not args.no_adaptive)
    print(json.dumps(train_method(args.method, opts), indent=2, default=str))
    return 0

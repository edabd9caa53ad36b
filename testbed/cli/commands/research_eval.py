"""``testbed research-eval``: train and measure every research codec on one split model."""

from __future__ import annotations

import argparse

__all__ = ["register", "add_arguments"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "research-eval", help="measure the research codecs (accuracy, payload bytes, node/server compute)",
        description="Train/calibrate the autoencoder+TCL, QCNet, soft quantization, AuGQ and NestQuant on a "
                    "split model, send the test set through real payloads and print a markdown table.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``testbed research-eval`` (also used by ``python -m testbed.research.evaluate``)."""
    p.add_argument("--dataset", default="digits", help="digits or imagefolder:PATH")
    p.add_argument("--model", default="tiny_resnet", help="tiny_resnet or a registered torchvision classifier")
    p.add_argument("--weights", default="", help="tiny_resnet: base checkpoint (default: trained here); "
                                                 "torchvision: DEFAULT, a weights name or a checkpoint")
    p.add_argument("--split", default="layer1")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10, help="epochs of each learned method")
    p.add_argument("--tabular", default="breast_cancer", help="scikit-learn table for the tabular rows ('' = skip)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="directory for checkpoints, results.json and table.md")


def run(args: argparse.Namespace) -> int:
    from testbed.research.evaluate import run_from_args

    return run_from_args(args)

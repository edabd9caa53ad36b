"""``testbed train METHOD [options]``: train or calibrate a registered research method and write its
checkpoint (``testbed train --help`` lists the methods of :data:`testbed.research.METHODS`).

The method registry imports torch, so this command's full parser is built only when the command
runs (or its help is asked for); ``testbed`` itself starts without torch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from testbed.cli.help import HelpFormatter, example
from testbed.cli.progress import enabled, ticking

__all__ = ["LazyHelp", "build_parser", "check_common", "register", "run"]

_EXAMPLE = example("testbed train entropy --model efficientnet_lite0 --split stage2 --dataset photos "
                   "--limit 384 --epochs 2 --out runs/eb.pt")
_COMMON = ("out", "model", "weights", "split", "dataset", "limit", "seed", "device", "threads")


class LazyHelp(argparse.Action):
    """``-h/--help`` printing a parser built on demand (from the research method registry)."""

    def __init__(self, option_strings: Sequence[str], dest: str, build: Any = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show this help and exit")
        self.build = build

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        self.build().print_help()
        parser.exit()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", add_help=False, help="train or calibrate a research method "
                              "(`testbed train --help` lists them)", usage="testbed train METHOD [options]",
                              epilog=_EXAMPLE)
    p.add_argument("-h", "--help", action=LazyHelp, build=build_parser)
    p.add_argument("method", nargs="?", help="a registered research method")
    p.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out checkpoint")
    p.add_argument("--model", default="tiny_resnet",
                   help="tiny_resnet (digits) or a registered torchvision classifier (see `testbed models`)")
    p.add_argument("--weights", default="",
                   help="tiny_resnet: a `testbed train base` checkpoint (default: train one in process); "
                        "torchvision: DEFAULT, a weights name or a checkpoint path")
    p.add_argument("--split", default="layer1", help="split point")
    p.add_argument("--dataset", default="digits",
                   help="digits, photos (label-free: methods distil the unsplit model), imagefolder:PATH, or "
                        "tabular:NAME|CSV for softquant (breast_cancer, wine, iris; diabetes: regression, MSE)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--seed", type=int, default=0, help="seed of data splits and training")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (a seed fixes every number for a given thread count; deterministic "
                        "kernels, CPU instruction set pinned to AVX2)")
    p.add_argument("--quiet", action="store_true", help="no progress line (it is shown only when stderr is a terminal)")


def _method_options(p: argparse.ArgumentParser) -> None:
    """One flag per option name; its help gives each method's meaning and default."""
    from testbed.research import METHODS

    seen: dict[str, list[tuple[str, Any]]] = {}
    for name, method in METHODS.items():
        for opt in method.options:
            seen.setdefault(opt.name, []).append((name, opt))
    for name, method in METHODS.items():
        owned = [o for o in method.options if seen[o.name][0][0] == name]
        if not owned:
            continue
        group = p.add_argument_group(name, method.title)
        for opt in owned:
            uses = "; ".join(f"{m}: {o.help} (default {o.default})" for m, o in seen[opt.name])
            kind: dict[str, Any] = ({"action": argparse.BooleanOptionalAction} if opt.type is bool
                                    else {"type": opt.type, "metavar": opt.type.__name__.upper()})
            group.add_argument(opt.flag, dest=opt.name, default=argparse.SUPPRESS, help=uses, **kind)


def build_parser() -> argparse.ArgumentParser:
    """The full ``testbed train`` parser: shared options and every registered method's options."""
    from testbed.research import METHODS

    lines = "\n".join(f"  {name:12s} {m.title}" for name, m in METHODS.items())
    p = argparse.ArgumentParser(
        prog="testbed train", formatter_class=HelpFormatter, epilog=_EXAMPLE,
        description="Train/calibrate one research method on a split model and write a checkpoint that a "
                    "scenario's codec chain can reference. Runs on CUDA when available, else the CPU.\n\n"
                    f"methods:\n{lines}")
    p.add_argument("method", choices=METHODS.names(), metavar="METHOD", help="one of: " + ", ".join(METHODS.names()))
    _common(p)
    _method_options(p)
    return p


def check_common(ns: dict[str, Any]) -> None:
    """Refuse shared numeric options out of range (one line naming the option)."""
    from testbed.errors import ConfigError

    if ns.get("limit") is not None and not 1 <= ns["limit"] <= 10_000_000:
        raise ConfigError("--limit", ns["limit"], "a number of images from 1 to 10,000,000")
    if not 1 <= ns.get("threads", 1) <= 1024:
        raise ConfigError("--threads", ns["threads"], "a thread count from 1 to 1024")
    if not 0 <= ns.get("seed", 0) < 2**32:
        raise ConfigError("--seed", ns["seed"], "an integer from 0 to 2**32 - 1")
    if "epochs" in ns and not 1 <= ns["epochs"] <= 100_000:
        raise ConfigError("--epochs", ns["epochs"], "a number of epochs from 1 to 100,000")
    ranges = {"feature_epochs": (0, 100_000, "a number of epochs"), "beta": (0.0, 1e6, "a rate weight"),
              "task_weight": (0.0, 1e6, "a loss weight"), "hidden": (1, 4096, "a number of channels"),
              "code_channels": (1, 1024, "a number of channels")}
    for name, (lo, hi, what) in ranges.items():
        value = ns.get(name)
        if value is not None and not (lo <= value <= hi):  # NaN fails too
            raise ConfigError("--" + name.replace("_", "-"), value, f"{what} from {lo:,} to {hi:,}")


def run(args: argparse.Namespace) -> int:
    from testbed.io import refuse_existing_file
    from testbed.research.train import TrainOptions, train_method

    full = build_parser()
    if args.method is None:
        full.error("the following arguments are required: METHOD")
    ns = vars(full.parse_args([args.method, *args.argv]))
    quiet = ns.pop("quiet")
    check_common(ns)
    refuse_existing_file(ns["out"], ns.pop("force"))  # before the training spends its time
    opts = TrainOptions(**{k: ns.pop(k) for k in _COMMON})
    method = ns.pop("method")
    with ticking(enabled(argparse.Namespace(quiet=quiet)), f"train {method}"):
        summary = train_method(method, opts, ns)
    print(json.dumps(summary, indent=2, default=str))
    return 0

"""``testbed research-eval``: train and measure the registered research methods on one split model."""

from __future__ import annotations

import argparse
import sys
import time

from testbed.cli.commands.train import LazyHelp
from testbed.cli.help import HelpFormatter, example
from testbed.cli.progress import add_quiet, enabled, ticking

__all__ = ["add_arguments", "build_parser", "register", "run"]

_EXAMPLE = example("testbed research-eval --method qcnet --method softquant --epochs 2 --out runs/research")
_DESCRIPTION = ("Train/calibrate the registered research methods on a split model, send the test set through "
                "real payloads and print a markdown table (accuracy, payload bytes, node/server compute).")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "research-eval", add_help=False, description=_DESCRIPTION, epilog=_EXAMPLE,
        help="measure the research methods (accuracy, payload bytes, node/server compute)")
    p.add_argument("-h", "--help", action=LazyHelp, build=build_parser)
    add_arguments(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The parser with the method registry in its help (imports the research methods)."""
    from testbed.research import METHODS

    lines = "\n".join(f"  {name:12s} {m.title}" for name, m in METHODS.items())
    p = argparse.ArgumentParser(prog="testbed research-eval", formatter_class=HelpFormatter, epilog=_EXAMPLE,
                                description=f"{_DESCRIPTION}\n\nmethods:\n{lines}")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``testbed research-eval``."""
    p.add_argument("--method", action="append", metavar="NAME",
                   help="a registered method to run (repeatable; default: all, see --help)")
    p.add_argument("--dataset", default="digits", help="digits, photos (label-free) or imagefolder:PATH; for "
                                                       "the multi-seed table on the real model see "
                                                       "analysis/research_table.py")
    p.add_argument("--model", default="tiny_resnet", help="tiny_resnet or a registered torchvision classifier")
    p.add_argument("--weights", default="", help="tiny_resnet: base checkpoint (default: trained here); "
                                                 "torchvision: DEFAULT, a weights name or a checkpoint")
    p.add_argument("--split", default="layer1", help="split point of the model")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--seed", type=int, default=0, help="seed of data splits and training")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each learned method")
    p.add_argument("--tabular", default="breast_cancer", help="scikit-learn table for the tabular rows ('' = skip)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="directory for checkpoints, results.json and table.md")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    from testbed.cli.commands.train import check_common
    from testbed.io import claim_output
    from testbed.research import METHODS
    from testbed.research.evaluate import run_eval, write_results
    from testbed.research.measure import EvalSettings

    methods = [METHODS.get(m, "--method").name for m in (args.method or METHODS.names())]
    check_common(vars(args))
    claim = claim_output(args.out, args.force, "results.json")  # refuse before the training; locked until written
    t0 = time.perf_counter()
    settings = EvalSettings(out=args.out, model=args.model, weights=args.weights, split=args.split,
                            dataset=args.dataset, limit=args.limit, seed=args.seed, epochs=args.epochs,
                            device=args.device, threads=args.threads, tabular=args.tabular or None)
    with claim, ticking(enabled(args), "research-eval") as progress:
        def log(line: str) -> None:  # the steps, on stdout as before; the bar (stderr) names the last one
            progress.write(line, file=sys.stdout)
            progress.set_postfix_str(" ".join(line.split())[:60], refresh=False)

        text = write_results(run_eval(settings, methods, log=log), args.out)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s; results in {args.out}/results.json and {args.out}/table.md")
    return 0

"""``testbed research-eval``: train and measure the registered research methods on one split model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from testbed.cli.commands.train import LazyHelp
from testbed.cli.help import HelpFormatter, example
from testbed.cli.progress import add_quiet, enabled, ticking

__all__ = ["add_arguments", "build_parser", "parse_seeds", "register", "run"]

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
    p.add_argument("--seeds", default=None, metavar="LIST",
                   help="comma list of seeds (e.g. 0,1,2): run every method once per seed (into --out/seed-N) "
                        "and write the mean ± sample sd over the seeds (replaces --seed)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of each learned method")
    p.add_argument("--tabular", default="breast_cancer",
                   help="scikit-learn table for softquant's tabular rows, 1-6 bits: breast_cancer, wine, iris "
                        "(accuracy) or diabetes (regression: MSE and R²); '' = skip")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="directory for checkpoints, results.json and table.md")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    add_quiet(p)


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: a comma list of distinct seeds from 0 to 2**32 - 1 (a ConfigError naming the option)."""
    from testbed.errors import ConfigError

    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or not all(0 <= s < 2**32 for s in seeds):
        raise ConfigError("--seeds", text, "a comma list of distinct seeds from 0 to 2**32 - 1, e.g. 0,1,2")
    return seeds


def _command(args: argparse.Namespace) -> str:
    """The options that differ from their defaults, as a command line (for the table's header)."""
    defaults = argparse.ArgumentParser(add_help=False)
    add_arguments(defaults)
    base = vars(defaults.parse_args(["--out", ""]))
    words = ["research-eval"]
    for key, value in vars(args).items():
        if key not in base or key in ("out", "force") or value == base[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, list):
            words += [w for v in value for w in (flag, str(v))]
        elif value is True:
            words.append(flag)
        else:
            words += [flag, str(value) if value != "" else "''"]
    return " ".join([*words, "--out", args.out])


def run(args: argparse.Namespace) -> int:
    from testbed.cli.commands.train import check_common
    from testbed.io import claim_output
    from testbed.research import METHODS
    from testbed.research.evaluate import run_eval, write_results, write_seed_results
    from testbed.research.measure import EvalSettings
    from testbed.research.repro import isa_pinned

    methods = [METHODS.get(m, "--method").name for m in (args.method or METHODS.names())]
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    check_common(vars(args))
    claim = claim_output(args.out, args.force, "results.json")  # refuse before the training; locked until written
    t0 = time.perf_counter()

    def settings(seed: int, out: str) -> EvalSettings:
        return EvalSettings(out=out, model=args.model, weights=args.weights, split=args.split, dataset=args.dataset,
                            limit=args.limit, seed=seed, epochs=args.epochs, device=args.device,
                            threads=args.threads, tabular=args.tabular or None)

    with claim, ticking(enabled(args), "research-eval") as progress:
        def log(line: str) -> None:  # the steps, on stdout as before; the bar (stderr) names the last one
            progress.write(line, file=sys.stdout)
            progress.set_postfix_str(" ".join(line.split())[:60], refresh=False)

        if seeds is None:
            text = write_results(run_eval(settings(args.seed, args.out), methods, log=log), args.out)
        else:
            per_seed, seconds = {}, {}
            for seed in seeds:
                t_seed = time.perf_counter()
                sub = str(Path(args.out) / f"seed-{seed}")
                log(f"seed {seed}: training and measuring into {sub}")
                per_seed[seed] = run_eval(settings(seed, sub), methods, log=log)
                write_results(per_seed[seed], sub)
                seconds[seed] = round(time.perf_counter() - t_seed, 1)
            argv = _command(args)
            header = (f"`testbed {argv}`: {len(seeds)} seeds ({args.seeds}), mean ± sample standard deviation over "
                      f"the seeds; seconds per seed {json.dumps({str(k): v for k, v in seconds.items()})} "
                      f"({args.threads} torch thread(s), deterministic kernels, instruction set pinned: "
                      f"{isa_pinned()}). Each seed draws its own train/test split, initialisation and data order; "
                      f"per-seed tables in seed-N/table.md.")
            text = write_seed_results(per_seed, args.out, header,
                                      {"command": f"testbed {argv}", "seeds": seeds, "seconds_per_seed": seconds,
                                       "methods": methods, "threads": args.threads})
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s; results in {args.out}/results.json and {args.out}/table.md")
    return 0

"""``testbed optimize FILE``: which split point, codec and bit width to deploy for the scenario's fleet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from testbed.cli.help import HelpFormatter, example
from testbed.cli.progress import add_quiet

__all__ = ["register"]

DEFAULT_CODECS = ("quantize,lzma", "quantize,zstd", "quantize:granularity=channel,zstd")


def _candidates(model: str, splits: list[str] | None, codecs: list[str] | None, bits: list[int],
                max_batches: list[int] | None = None) -> list[Any]:
    from testbed.errors import ConfigError
    from testbed.run.optimize import Config, configs
    from testbed.split.codecs import normalize_spec
    from testbed.split.models import get_spec

    for b in bits:
        if not 1 <= b <= 8:
            raise ConfigError("--bits", b, "bit widths from 1 to 8")
    for b in max_batches or ():
        if not 1 <= b <= 1024:
            raise ConfigError("--max-batch", b, "largest batch sizes from 1 to 1024")
    chains = [[{n: p} for n, p in normalize_spec(text, f"codec[{i}]")]
              for i, text in enumerate(codecs or DEFAULT_CODECS)]
    points = get_spec(model, "model.name").select_points(splits)
    out = configs([p for p in points if p != "none"], chains, bits, max_batches or ())
    if "none" in points:  # everything on the node: nothing to encode (nor serve)
        out.append(Config("none", ()))
    return out


def _run(args: argparse.Namespace) -> int:
    from testbed.cli.progress import bar, enabled
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.errors import ConfigError
    from testbed.run.optimize import optimize, parse_constraints, parse_objective
    from testbed.run.optimize_output import format_table, write_result
    from testbed.run.parallel import check_workers
    from testbed.run.prepare import scenario_dir

    check_workers(args.workers, args.scheduler)
    objective = parse_objective(args.objective)
    slo, floor = parse_constraints(args.slo, args.min_agreement)
    if args.verify_pruned < 0:
        raise ConfigError("--verify-pruned", args.verify_pruned, "a number of pruned configurations >= 0")
    path = Path(args.file)
    raw = read_yaml(path)
    if args.set:
        raw = apply_overrides(raw, args.set)
    if not isinstance(raw.get("model"), dict) or "name" not in raw["model"]:
        raise ConfigError("model", raw.get("model"), "a model section: the optimiser chooses its split and codec")
    model = raw["model"]["name"]
    if args.group is not None:  # the group's own model (merged over the scenario's) decides its split points
        from testbed.run.capacity import resolve_groups

        if args.group == "all":
            raise ConfigError("--group", args.group, "one fleet group's name (the others keep their configuration)")
        own = raw["fleet"][resolve_groups(raw, [args.group])[args.group]].get("model")
        model = own.get("name", model) if isinstance(own, dict) else model
    candidates = _candidates(model, args.split, args.codec, args.bits, args.max_batch)
    state = None
    if args.out:
        import shutil

        from testbed.io import claim_output

        claim_output(args.out, args.force, marker="optimize.json").release()  # refuse early, before any run
        out = Path(args.out)
        state = out.parent / f".{out.name}.optimize-partial"  # finished configurations: a rerun resumes
        if args.force:
            shutil.rmtree(state, ignore_errors=True)
    with bar(enabled(args), total=len(candidates), desc="configurations", unit="config") as b:
        def step(kind: str, c: Any, row: dict[str, Any]) -> None:
            b.update(1)
            b.set_postfix_str(f"{c.label}: {kind}")

        result = optimize(raw, candidates, objective, slo, floor, base_dir=scenario_dir(path),
                          replications=args.replications, probe_duration=args.probe_duration,
                          verify_pruned=args.verify_pruned, on_step=step, state_dir=state,
                          workers=args.workers, scheduler=args.scheduler, group=args.group,
                          node_limit=args.node_limit)
    print(format_table(result))
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.out:
        written = write_result(result, args.out, force=True)
        if state is not None:
            import shutil

            shutil.rmtree(state, ignore_errors=True)
        print(f"wrote {written}")
    return 0 if result.best is not None else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "optimize", help="choose the split point, codec and bit width that best meet an objective",
        description="Screen every split point x codec chain x bit width with one node per fleet group (real "
                    "payload bytes and agreement from the cached pipeline; node and uplink load scaled to the "
                    "fleet), prune those that cannot meet the constraints, simulate the survivors with "
                    "replications, and recommend the best as a runnable scenario. With --out, finished "
                    "configurations are kept beside it, so a rerun after a stop resumes. Exit status 1 when no "
                    "configuration meets the constraints.",
        epilog=example("testbed optimize scenarios/tcl_setting.yaml --set fleet.0.count=100 --split stage2,stage4,"
                       "stage6 --bits 2 4 8 --slo 'p95 < 100 ms' --min-agreement 0.9 --out runs/opt"),
        formatter_class=HelpFormatter)
    p.add_argument("file", help="scenario YAML with a model section (its split and codec are what is searched)")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a field (repeatable)")
    p.add_argument("--split", action="append", metavar="POINTS",
                   help="split points to consider (repeatable, comma lists; default: all of the model's)")
    p.add_argument("--codec", action="append", metavar="SPEC",
                   help=f"codec chains (repeatable; default: {', '.join(DEFAULT_CODECS)})")
    p.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8], metavar="B",
                   help="bit widths for chains with a quantize stage")
    p.add_argument("--max-batch", type=int, nargs="+", metavar="B",
                   help="also search the server's largest batch (server.batching.max_batch) over these sizes")
    p.add_argument("--objective", default="max-agreement",
                   help="max-agreement, min-p95, min-payload, min-energy, or max-nodes (the largest node count "
                        "meeting --slo, searched per configuration)")
    p.add_argument("--node-limit", type=int, default=10_000,
                   help="max-nodes: the largest node count probed")
    p.add_argument("--slo", help="latency objective, e.g. 'p95 < 100 ms' (unfinished requests count as late)")
    p.add_argument("--min-agreement", type=float, default=None, help="top-1 agreement floor, e.g. 0.9")
    p.add_argument("--replications", type=int, default=None, help="per simulated configuration "
                   "(default: the scenario's)")
    p.add_argument("--probe-duration", default="20 s", help="simulated time of each one-node screening run")
    p.add_argument("--verify-pruned", type=int, default=2,
                   help="also simulate this many pruned configurations in full, to show they fail")
    p.add_argument("--group", metavar="NAME",
                   help="search only this fleet group's split and codec (the others keep theirs): agreement and "
                        "objective are its requests', the latency objective holds for every group")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes for the simulations")
    p.add_argument("--scheduler", help="a Dask distributed scheduler address (tcp://host:8786) to run the "
                                       "simulations on (screening runs here)")
    p.add_argument("--out", help="folder for table.csv, pareto.csv/.png, recommended.yaml, optimize.json")
    p.add_argument("--force", action="store_true", help="overwrite an earlier result in --out")
    add_quiet(p)
    p.set_defaults(func=_run)

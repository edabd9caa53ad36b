"""``testbed capacity FILE --slo "p95 < 200 ms"``: largest fleet meeting the objective per swept value."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from testbed.cli.help import example
from testbed.cli.progress import add_quiet, bar, enabled

__all__ = ["register"]


def _capacity(args: argparse.Namespace) -> int:
    import pandas as pd

    from testbed.config.load import apply_overrides, read_yaml
    from testbed.errors import ConfigError
    from testbed.io import json_text, refuse_existing_file, write_text
    from testbed.run.capacity import capacity_search, check_search, parse_slo

    slo = parse_slo(args.slo)
    check_search(args.start, args.limit)
    if args.out:  # refuse before the search spends its time
        if not args.out.endswith((".csv", ".json")):
            raise ConfigError("--out", args.out, "a file name ending in .csv or .json")
        refuse_existing_file(args.out, args.force)
    raw = read_yaml(args.file)
    if args.set:
        raw = apply_overrides(raw, args.set)
    base = Path(args.file).resolve().parent
    progress = bar(enabled(args), desc="capacity", unit="probe")

    def on_probe(values: dict[str, Any], n: int, x: float) -> None:
        line = " ".join([*(f"{k}={v}" for k, v in values.items()), f"{args.field}={n}:",
                         f"{slo.metric} = {x * 1e3:.1f} ms"])
        progress.update(1)
        progress.set_postfix_str(line)
        if args.verbose:
            progress.write(f"  {line}", file=sys.stdout)

    try:
        results = capacity_search(raw, slo, args.field, args.start, args.limit, base, on_probe=on_probe,
                                  groups=tuple(args.group or ()))
    finally:
        progress.close()
    rows = []
    for r in results:
        rows.append({**r.values, "capacity": r.capacity, f"{slo.metric}_at_capacity_ms": r.value_at_capacity * 1e3,
                     "first_failing": r.first_failing, f"{slo.metric}_at_failing_ms": r.value_at_failing * 1e3,
                     "saturating_station": r.saturating_station,
                     **{f"util_{k.replace(' ', '_')}_at_failing": v for k, v in r.utilisation.items()},
                     "probes": r.probes,
                     **({"binding_group": r.binding_group} if args.group else {})})
    table = pd.DataFrame(rows)
    per = ("" if not args.group else " for every fleet group" if "all" in args.group
           else f" for each of {', '.join(args.group)}")
    print(f"objective: {slo}{per}  (searching {args.field}; dropped or unfinished requests count as late)")
    print(f"capacity and first_failing in {args.field} units; *_ms latencies in milliseconds; util_* busy "
          "fractions (0..1) at the first failing size")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    for r in results:  # the run at capacity is a result: say what its summaries warned about
        where = ", ".join(f"{k}={v}" for k, v in r.values.items())
        for w in r.warnings:
            print(f"warning: at capacity {args.field}={r.capacity}{f' ({where})' if where else ''}: {w}",
                  file=sys.stderr)
    if args.out:
        write_text(args.out, table.to_csv(index=False) if args.out.endswith(".csv") else json_text(rows) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capacity", help="largest fleet meeting a latency objective (bisection)",
                       description="For each combination of the scenario's other swept values, the largest "
                                   "fleet size meeting the objective: doubling from --start, then bisection. "
                                   "Dropped, timed-out and unfinished requests count as infinitely late.",
                       epilog=example("testbed capacity scenarios/queueing.yaml --slo 'p95 < 200 ms' "
                                      "--out runs/capacity.csv"))
    p.add_argument("file", help="scenario YAML file")
    p.add_argument("--slo", required=True, help="objective, e.g. 'p95 < 200 ms' (p50|p90|p95|p99|max|mean, < or <=)")
    p.add_argument("--field", default="fleet.0.count", help="the fleet-size field to search")
    p.add_argument("--group", action="append", metavar="NAME",
                   help="the objective holds for this fleet group's own requests (repeatable; all: every group)")
    p.add_argument("--start", type=int, default=8, help="first fleet size probed (then doubled)")
    p.add_argument("--limit", type=int, default=100_000, help="largest fleet size tried")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a field (repeatable)")
    p.add_argument("--out", help="write the table (.csv or .json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--verbose", action="store_true", help="print every probe")
    add_quiet(p)
    p.set_defaults(func=_capacity)

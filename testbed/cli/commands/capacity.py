"""``testbed capacity FILE --slo "p95 < 200 ms"``: largest fleet meeting the objective per swept value."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    results = capacity_search(raw, slo, args.field, args.start, args.limit, base,
                              on_probe=(lambda v, n, x: print(f"  {v} {args.field}={n}: {slo.metric} = "
                                                              f"{x * 1e3:.1f} ms")) if args.verbose else None)
    rows = []
    for r in results:
        rows.append({**r.values, "capacity": r.capacity, f"{slo.metric}_at_capacity_ms": r.value_at_capacity * 1e3,
                     "first_failing": r.first_failing, f"{slo.metric}_at_failing_ms": r.value_at_failing * 1e3,
                     "saturating_station": r.saturating_station,
                     **{f"util_{k.replace(' ', '_')}_at_failing": v for k, v in r.utilisation.items()},
                     "probes": r.probes})
    table = pd.DataFrame(rows)
    print(f"objective: {slo}  (searching {args.field}; dropped or unfinished requests count as late)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if args.out:
        write_text(args.out, table.to_csv(index=False) if args.out.endswith(".csv") else json_text(rows) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capacity", help="largest fleet meeting a latency objective (bisection)")
    p.add_argument("file")
    p.add_argument("--slo", required=True, help="objective, e.g. 'p95 < 200 ms'")
    p.add_argument("--field", default="fleet.0.count", help="the fleet-size field to search")
    p.add_argument("--start", type=int, default=8, help="first fleet size probed (then doubled)")
    p.add_argument("--limit", type=int, default=100_000, help="largest fleet size tried")
    p.add_argument("--set", action="append", metavar="PATH=VALUE")
    p.add_argument("--out", help="write the table (.csv or .json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--verbose", action="store_true", help="print every probe")
    p.set_defaults(func=_capacity)

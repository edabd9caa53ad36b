"""``testbed sweep FILE --out DIR [--workers N | --scheduler ADDRESS]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from testbed.cli.help import example
from testbed.cli.progress import add_quiet, enabled

__all__ = ["register", "sweep_table"]

# columns of the final table, in summary.parquet's names and units
_SHOWN = ("latency_p50_s", "latency_p95_s", "latency_p95_all_s", "throughput_per_s", "completed_share",
          "drop_rate", "accuracy")


def _sweep(args: argparse.Namespace) -> int:
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.io import check_out_path
    from testbed.run.plots import sweep_warnings
    from testbed.run.prepare import scenario_dir
    from testbed.run.sweep import (
        CI_METRICS,
        check_previous,
        check_workers,
        input_files,
        plan,
        prepare_jobs,
        replication_notes,
        run_sweep,
    )

    check_workers(args.workers, args.scheduler)
    check_out_path(args.out)
    raw = read_yaml(args.file)
    if args.set:
        raw = apply_overrides(raw, args.set)
    jobs = plan(raw)
    prepared = prepare_jobs(jobs, scenario_dir(args.file))  # every cell checked before anything is written
    out = Path(args.out)
    if not args.force:  # refuse early, before the progress line; run_sweep checks again under the lock
        check_previous(out, raw, input_files(prepared), False)
    notes = replication_notes(raw)
    for line in notes:
        print(line, file=sys.stderr)
    print(f"{len(jobs)} runs ({len({j.cell for j in jobs})} cells x {max(j.replication for j in jobs) + 1} "
          f"replications) -> {out}")
    table = run_sweep(raw, out, workers=args.workers, scheduler=args.scheduler, progress=enabled(args),
                      prepared=prepared, force=args.force)
    text = sweep_table(table)
    if text:
        print(text)
    print(f"wrote {out / 'summary.parquet'} ({len(table)} rows; CIs for {', '.join(m for m in CI_METRICS if m in table)})")
    for line in sweep_warnings(out):
        if not any(line in note for note in notes):  # said before the sweep started
            print(f"warning: {line}", file=sys.stderr)
    return 0


def sweep_table(table: Any) -> str:
    """Mean over replications per cell of the headline figures, with a header line naming the units
    (the column names are summary.parquet's: ``_s`` in seconds, ``_per_s`` per second, shares 0..1)."""
    from testbed.run.sweep import swept_fields

    cols = swept_fields(table.columns)
    shown = [m for m in _SHOWN if m in table.columns]
    if not cols or not shown:
        return ""
    means = table.groupby(cols, sort=False, dropna=False)[shown].mean().reset_index()  # a null value is a cell too
    means.columns = [c.removeprefix("sweep.") for c in means.columns]
    body = means.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
    return ("mean over replications; latencies in seconds (_all_s: unfinished requests counted as infinitely late), "
            "throughput in requests/s, shares of the requests created in the window\n" + body)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a scenario's sweep grid x replications (resumable, parallel)",
                       description="Run every cell of the scenario's sweep: grid x replications (3 when the "
                                   "scenario does not set replications). Finished runs are kept in --out: "
                                   "after Ctrl-C or a crash the same command resumes.",
                       epilog=example("testbed sweep scenarios/queueing.yaml --out runs/sweep --workers 2"))
    p.add_argument("file", help="scenario YAML file with a sweep: section")
    p.add_argument("--out", required=True, help="directory for cells/, summary.parquet, sweep.yaml")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--scheduler", help="a Dask distributed scheduler address (tcp://host:8786); "
                                       "needs pip install -e '.[dask]'")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a field (repeatable)")
    p.add_argument("--force", action="store_true", help="replace results of a different sweep in --out")
    add_quiet(p)
    p.set_defaults(func=_sweep)

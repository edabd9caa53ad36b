"""``testbed sweep FILE --out DIR [--workers N | --scheduler ADDRESS]``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _sweep(args: argparse.Namespace) -> int:
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.io import check_out_path
    from testbed.run.prepare import scenario_dir
    from testbed.run.sweep import CI_METRICS, check_previous, check_workers, input_files, plan, prepare_jobs, run_sweep

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
    print(f"{len(jobs)} runs ({len({j.cell for j in jobs})} cells x {max(j.replication for j in jobs) + 1} "
          f"replications) -> {out}")
    table = run_sweep(raw, out, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet,
                      prepared=prepared, force=args.force)
    cols = [c for c in table.columns if c.startswith("sweep.")]
    shown = [m for m in ("latency_p50_s", "latency_p95_s", "throughput_per_s", "drop_rate", "accuracy")
             if m in table.columns]
    if cols and shown:
        means = table.groupby(cols, sort=False)[shown].mean().reset_index()
        print(means.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"wrote {out / 'summary.parquet'} ({len(table)} rows; CIs for {', '.join(m for m in CI_METRICS if m in table)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a scenario's sweep grid x replications (resumable, parallel)")
    p.add_argument("file")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--scheduler", help="a Dask distributed scheduler address (tcp://host:8786)")
    p.add_argument("--set", action="append", metavar="PATH=VALUE")
    p.add_argument("--force", action="store_true", help="replace results of a different sweep in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)

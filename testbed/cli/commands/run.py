"""``testbed run [FILE] [--out DIR] [--set path=value ...]`` and ``testbed validate FILE``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from testbed.cli.help import example

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from testbed.core.metrics import format_summary, format_warnings
    from testbed.io import claim_output, json_text
    from testbed.run.prepare import prepare
    from testbed.run.runner import run_scenario, write_run

    resolved, raw = prepare(args.file, args.set or None)
    # refuse early, before spending time on the run; the claim (a lock) is held until the set is written
    with claim_output(args.out, args.force) if args.out else contextlib.nullcontext():
        result = run_scenario(resolved)
        if args.out:
            write_run(result, raw, args.out, force=True)
    if args.json:
        print(json_text(result.summary))
    else:
        print(format_summary(result.summary))
        print()
        print(station_text(result.queues))
        if args.out:
            print(f"\nwrote {args.out}/requests.parquet, summary.json, queues.csv, scenario.yaml")
    for line in format_warnings(result.summary):  # stderr: --json keeps stdout pure JSON
        print(line, file=sys.stderr)
    return 0


def station_text(queues: Any) -> str:
    """The station table (``queues.csv``) under a header saying what its columns count."""
    return ("stations, time-weighted over the window: *_mean and in_station_peak / open_at_end in requests, "
            "busy_servers_mean in servers, utilisation = busy_servers_mean / servers (0..1)\n"
            + queues.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def _validate(args: argparse.Namespace) -> int:
    """Everything ``run`` (and ``sweep``, for a sweep grid) would need, checked the same way."""
    from testbed.run.prepare import prepare, scenario_dir
    from testbed.run.sweep import plan, prepare_jobs

    resolved, raw = prepare(args.file, args.set or None)
    jobs = plan(raw)
    if raw.get("sweep"):
        prepare_jobs(jobs, scenario_dir(args.file))
    sc = resolved.scenario
    grid = f", sweep of {len(jobs)} runs" if raw.get("sweep") else ""
    print(f"{args.file}: ok ({sc.name}: {sc.node_count} nodes in {len(sc.fleet)} group(s), link {sc.link.model}, "
          f"{sc.server.gpus} GPU(s){grid}; {len(resolved.files)} file(s) read)", file=sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario (the built-in default when no FILE is given)",
                       description="Simulate a scenario once and print its summary (keys ending _s in seconds) "
                                   "and station table; warnings (overload, unfinished requests, a short "
                                   "warm-up) go to stderr.",
                       epilog=example("testbed run scenarios/queueing.yaml --out runs/q1 "
                                      "--set link.datarate='2 MB/s'"))
    p.add_argument("file", nargs="?", help="scenario YAML file")
    p.add_argument("--out", help="directory for requests.parquet, summary.json, queues.csv, scenario.yaml")
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="override a field, e.g. --set link.datarate='2 MB/s' (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)

    v = sub.add_parser("validate", help="check a scenario file and report the first problem",
                       epilog=example("testbed validate scenarios/queueing.yaml"))
    v.add_argument("file", help="scenario YAML file")
    v.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a field (repeatable)")
    v.set_defaults(func=_validate)

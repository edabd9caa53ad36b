"""``testbed bench``: speed and memory of the simulator against a bare SimPy floor."""

from __future__ import annotations

import argparse
import json

from testbed.cli.help import example

__all__ = ["register"]


def _bench(args: argparse.Namespace) -> int:
    from testbed.run.bench import (
        check_scale,
        csma_bench,
        end_to_end_bench,
        long_run_bench,
        simulator_bench,
        sweep_bench,
    )

    check_scale(args.scale)
    if args.hours is not None:
        result = long_run_bench(args.hours, args.nodes)
    elif args.requests is not None:
        result = end_to_end_bench(args.requests, args.nodes)
    elif args.sweep:
        result = sweep_bench()
    else:
        result = csma_bench(scale=args.scale) if args.csma else simulator_bench(scale=args.scale)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<24} {v:,.3f}" if isinstance(v, float) else f"{k:<24} {v}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="simulator speed (requests/s vs a bare SimPy M/M/1) and memory",
                       epilog=example("testbed bench --scale 0.25 --json"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the 200 s benchmark to run")
    p.add_argument("--csma", action="store_true",
                   help="benchmark the 802.11 csma link instead (200 nodes, 25 kB payloads)")
    p.add_argument("--sweep", action="store_true",
                   help="a 16-cell sweep on 1 worker vs 2 (parallel efficiency, model-execution share)")
    p.add_argument("--requests", type=int, default=None,
                   help="end to end (build, simulate, write, summarise) at about this many requests, in a fresh "
                        "process: requests/s and peak resident memory per request beside the SimPy floor")
    p.add_argument("--hours", type=float, default=None,
                   help="long run: peak resident memory at 1/4, 1/2 and all of this many simulated hours")
    p.add_argument("--nodes", type=int, default=1000, help="fleet size of --requests and --hours (1 frame/s each)")
    p.set_defaults(func=_bench)

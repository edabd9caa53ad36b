"""``testbed report DIR [--out FILE.html] [--force]``: one self-contained HTML file for a run, a sweep
or a comparison folder."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from testbed.errors import TestbedError
    from testbed.run.capacity import parse_slo
    from testbed.run.report import write_report

    slo = parse_slo(args.slo) if args.slo else None
    try:
        path = write_report(Path(args.dir), args.out, force=args.force, slo=slo)
    except (OSError, ValueError, KeyError) as exc:  # a damaged folder (pyarrow's errors are ValueErrors)
        if isinstance(exc, TestbedError):
            raise
        first = (str(exc).splitlines() or [""])[0][:160]
        raise TestbedError(f"DIR: {args.dir!r} is not a readable run, sweep or comparison folder "
                           f"({type(exc).__name__}: {first})") from None
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML report of a run, a sweep or a comparison folder",
        description="Tables (summary with completion, intervals and warnings; the sweep's cells), every figure "
                    "as inline SVG and the scenario, in one HTML file that references nothing outside itself.",
        epilog="example: testbed report out/sweep --out sweep.html",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dir", help="output folder of testbed run, emulate, sweep or compare")
    p.add_argument("--out", help="HTML file to write (default: DIR/report.html)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--slo", help="draw a latency objective on the figures, e.g. 'p95 < 100 ms'")
    p.set_defaults(func=_report)

"""``testbed plot DIR [DIR ...]``: figures of a sweep, of a run, or comparing runs or sweeps."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from testbed.errors import ConfigError, TestbedError
    from testbed.run.capacity import parse_slo
    from testbed.run.plots import plot_dirs

    if args.dpi < 30 or args.dpi > 1200:
        raise ConfigError("--dpi", args.dpi, "a resolution from 30 to 1200 dots per inch")
    slo = parse_slo(args.slo) if args.slo else None
    formats = list(dict.fromkeys(args.format or ["png"]))
    try:
        paths = plot_dirs([Path(d) for d in args.dir], args.label, args.out, formats, args.dpi, slo)
    except (OSError, ValueError, KeyError) as exc:  # a damaged folder (pyarrow's errors are ValueErrors)
        if isinstance(exc, TestbedError):
            raise
        first = (str(exc).splitlines() or [""])[0][:160]
        where = " ".join(repr(d) for d in args.dir)
        raise TestbedError(f"DIR: {where} is not a readable sweep or run folder ({type(exc).__name__}: {first})"
                           ) from None
    for path in paths:
        print(path)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plot", help="figures of a sweep or a run folder, or comparing two runs or two sweeps",
        description="One DIR: a sweep (latency CDFs with tails, percentiles, p95 heatmap, breakdown, utilisation) "
                    "or a run (CDF with tail, breakdown, stations over time), written to DIR/plots. Several DIRs: "
                    "their CDFs (runs) or percentile lines (sweeps) overlaid. Each figure comes with its CSV.",
        epilog="example: testbed plot out/sweep --format pdf --format png --slo 'p95 < 100 ms'",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dir", nargs="+", help="a sweep or run output folder; two or more to compare")
    p.add_argument("--format", action="append", choices=("png", "svg", "pdf"),
                   help="file format, repeatable (default: png)")
    p.add_argument("--dpi", type=int, default=200, help="resolution of PNG files")
    p.add_argument("--slo", help="draw a latency objective, e.g. 'p95 < 100 ms'")
    p.add_argument("--label", action="append", help="name of each compared DIR, in order (repeatable)")
    p.add_argument("--out", help="folder for the figures (default DIR/plots; FIRST/plots/vs-SECOND when comparing)")
    p.set_defaults(func=_plot)

"""``testbed plot DIR``: figures of a sweep (PNG plus the CSV behind each) into DIR/plots."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from testbed.errors import TestbedError
    from testbed.run.plots import plot_sweep

    try:
        paths = plot_sweep(Path(args.dir))
    except (OSError, ValueError, KeyError) as exc:  # a damaged sweep folder (pyarrow's errors are ValueErrors)
        first = (str(exc).splitlines() or [""])[0][:160]
        raise TestbedError(f"DIR: {args.dir!r} is not a readable sweep folder ({type(exc).__name__}: {first})") from None
    for path in paths:
        print(path)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plot", help="plot a sweep directory: CDFs, percentiles, heatmap, breakdown, utilisation")
    p.add_argument("dir")
    p.set_defaults(func=_plot)

"""Progress bars of the long commands: on stderr, only when stderr is a terminal and ``--quiet`` is
not given, so they never mix into ``--json`` (or any) stdout and leave logs and pipes clean."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["add_quiet", "bar", "enabled", "ticking"]


def add_quiet(p: argparse.ArgumentParser) -> None:
    """The ``--quiet`` option of a command with a progress bar."""
    p.add_argument("--quiet", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")


def enabled(args: argparse.Namespace | None = None, stream: Any = None) -> bool:
    """Whether to draw a bar: ``stream`` (stderr) is a terminal and ``args.quiet`` is not set."""
    stream = sys.stderr if stream is None else stream
    if args is not None and getattr(args, "quiet", False):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def bar(on: bool, total: float | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> Any:
    """A tqdm bar on stderr (a disabled one, which does nothing, when ``on`` is False)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not on, file=sys.stderr, dynamic_ncols=True,
                leave=False, **kwargs)


@contextmanager
def ticking(on: bool, desc: str, total: float | None = None, unit: str = "s", scale: float = 1.0,
            interval: float = 0.5) -> Iterator[Any]:
    """A bar advanced by the clock while the body runs: elapsed wall seconds x ``scale`` (e.g. scenario
    seconds per wall second), capped at ``total``; without ``total``, elapsed time alone. Yields the bar
    (``bar.set_postfix_str`` may name the current step)."""
    b = bar(on, total=total, desc=desc, unit=unit,
            bar_format=None if total else "{desc}: {elapsed}{postfix}")
    stop = threading.Event()
    t0 = time.monotonic()

    def tick() -> None:
        while not stop.wait(interval):
            n = (time.monotonic() - t0) * scale
            b.n = round(min(n, total) if total else n, 1)
            b.refresh()

    thread = threading.Thread(target=tick, name="progress", daemon=True) if on else None
    if thread:
        thread.start()
    try:
        yield b
    finally:
        stop.set()
        if thread:
            thread.join()
        b.close()

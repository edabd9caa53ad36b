"""The ``testbed`` command line.

Each subcommand lives in a module of :mod:`testbed.cli.commands` that defines ``register(subparsers)``;
modules are discovered automatically, so adding a command touches no central file. User mistakes
(:class:`~testbed.errors.TestbedError`, and the few library errors that only a bad input file causes:
an unreadable path, non-UTF-8 text, invalid YAML) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import yaml

from testbed import __version__
from testbed.cli import commands
from testbed.cli.help import HelpFormatter
from testbed.errors import TestbedError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed", description="Simulate and emulate split DNN inference in IoT fleets.",
        formatter_class=HelpFormatter,
        epilog="examples:\n  testbed run scenarios/queueing.yaml --out runs/q1\n"
               "  testbed sweep scenarios/queueing.yaml --out runs/sweep --workers 2\n"
               "  testbed COMMAND --help   (options, defaults and an example of each command)")
    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for p in sub.choices.values():  # every command's help shows its defaults (and its example epilog)
        p.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (IsADirectoryError, NotADirectoryError, PermissionError, FileNotFoundError) as exc:
        # a path the user gave that the command could not open (most are caught at the source)
        print(f"error: {_clip(str(exc.filename or ''))}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"error: an input file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    except yaml.YAMLError as exc:
        print(f"error: not valid YAML: {_clip(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as exc:  # Ctrl-C; a sweep says how far it got (testbed.run.sweep.SweepInterrupted)
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

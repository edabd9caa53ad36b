"""Every command's --help shows an example and the defaults of its options; progress bars stay off
stdout and off when stderr is not a terminal."""

from __future__ import annotations

import argparse
import io

import pytest

from testbed.cli import build_parser
from testbed.cli.help import HelpFormatter


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _full(name: str, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser whose help is printed (train and research-eval build theirs on demand)."""
    if name == "train":
        from testbed.cli.commands.train import build_parser as full
        return full()
    if name == "research-eval":
        from testbed.cli.commands.research_eval import build_parser as full
        return full()
    return parser


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_has_an_example_and_shows_defaults(name):
    parser = _full(name, _commands()[name])
    text = parser.format_help()
    assert "example" in text.lower(), f"testbed {name} --help has no example"
    formatter = HelpFormatter(prog="testbed")
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or default is None or default is False or default is argparse.SUPPRESS
                or default == "" or isinstance(default, (list, tuple))):
            continue
        shown = formatter._get_help_string(action)
        assert "default" in shown.lower(), f"testbed {name} {action.option_strings[0]}: default {default!r} not shown"


def test_top_level_help_has_examples_and_version(capsys):
    from testbed import __version__
    from testbed.cli import main

    assert "example" in build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_a_default_is_printed_once():
    text = _commands()["capacity"].format_help()
    assert text.count("(default: 8)") == 1 and "(default: False)" not in text


def test_progress_is_off_without_a_terminal_or_with_quiet():
    from testbed.cli.progress import enabled

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not enabled(argparse.Namespace(quiet=False), io.StringIO())
    assert enabled(argparse.Namespace(quiet=False), Tty())
    assert not enabled(argparse.Namespace(quiet=True), Tty())


def test_ticking_bar_draws_on_stderr_only(monkeypatch, capsys):
    import sys
    import time

    from testbed.cli.progress import ticking

    with ticking(True, "work", total=10.0, scale=100.0, interval=0.01):
        time.sleep(0.1)
    out, err = capsys.readouterr()
    assert out == "" and "work" in err
    assert sys.stdout is not None

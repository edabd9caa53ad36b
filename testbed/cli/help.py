"""Help text of every command: defaults shown beside the options, one example in the epilog."""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter", "example"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and epilogs kept as written; an option's default appended to its help
    (``(default: X)``) unless the help already gives it, or it has none (None, False, a list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default is argparse.SUPPRESS
                or not action.option_strings or isinstance(default, (list, tuple)) or default == ""):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def example(*commands: str) -> str:
    """An epilog of example command lines."""
    head = "example:" if len(commands) == 1 else "examples:"
    return "\n  ".join([head, *commands])

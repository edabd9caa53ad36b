"""User-facing errors: one line naming the field, the value and what is allowed."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["ConfigError", "TestbedError"]


class TestbedError(Exception):
    """Base class for errors caused by user input; the CLI prints them in one line and exits 2."""


class ConfigError(TestbedError, ValueError):
    """A bad value in a scenario, profile or command-line override.

    ``path`` is the dotted field path (``fleet.0.arrivals.rate``), ``value`` what was given and
    ``allowed`` a short description of what would have been accepted.
    """

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        self.path, self.value, self.allowed = path, value, allowed
        where = _clip(str(path), 200) or "<scenario>"
        super().__init__(f"{where}: got {_short(value)}; {_clip(str(allowed), 600)}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 8, 8
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 120, 120, 40


def _short(value: Any, limit: int = 80) -> str:
    """A bounded repr of ``value``: it never walks or formats more than a small part of it (a huge
    or alias-expanded structure, a megabyte string), and the result has at most ``limit`` characters."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a user value whose repr fails must not hide the error it belongs to
        text = f"<{type(value).__name__}>"
    return _clip(" ".join(text.split()), limit)


def _clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."

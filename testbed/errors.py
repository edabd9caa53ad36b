"""User-facing errors: one line naming the field, the value and what is allowed."""

from __future__ import annotations

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
        where = path or "<scenario>"
        super().__init__(f"{where}: got {_short(value)}; {allowed}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

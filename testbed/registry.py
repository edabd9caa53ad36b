"""One generic registry for every pluggable kind (models, codec stages, links, arrival processes,
distributions, research methods, metrics).

A :class:`Registry` maps names to entries; registering a name twice is an error, and looking up an
unknown name raises :class:`~testbed.errors.ConfigError` listing what is available. Modelled on
torchvision's model registry and CompressAI's ``register_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from testbed.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in error messages, e.g. ``"link model"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a duplicate name is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        def deco(entry: T) -> T:
            return self.add(name, entry)
        return deco

    def get(self, name: str, path: str = "") -> T:
        """The entry for ``name``; an unknown name is a :class:`ConfigError` at ``path``."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(path or self.kind, name,
                              f"a known {self.kind}: {', '.join(self.names()) or '(none registered)'}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """Entries in registration order (the order a summary lists its metrics in)."""
        return list(self._entries.items())

"""One module per research method; each registers itself (see :mod:`testbed.research.registry`).

Every module of this package is imported by :func:`load_all` (called when :mod:`testbed.research`
is imported), so adding a method is adding a module here that calls ``register_method``.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["load_all"]


def load_all() -> list[str]:
    """Import every method module (registering its method and codec stages); returns their names."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names

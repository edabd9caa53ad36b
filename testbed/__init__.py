"""testbed: simulation and emulation of split DNN inference in IoT fleets.

Importing the package is light (no torch, no simpy); see ``docs/architecture.md`` for the layers.
The notebook API is :mod:`testbed.api` (``import testbed.api as tb``: ``tb.run``, ``tb.load_run``,
``tb.load_sweep``, ``tb.summarise``, ``tb.cdf``, ``tb.Run``, ``tb.Sweep``). Its names are also reachable
from here, loaded on first use, except ``run``, which is the :mod:`testbed.run` package: here it is
``testbed.simulate``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from testbed.errors import ConfigError, TestbedError

_API = {"Run": "Run", "Sweep": "Sweep", "cdf": "cdf", "load_run": "load_run", "load_sweep": "load_sweep",
        "simulate": "run", "summarise": "summarise"}

__all__ = ["ConfigError", "Run", "Sweep", "TestbedError", "__version__", "cdf", "load_run", "load_sweep", "simulate",
           "summarise"]


def __getattr__(name: str) -> Any:
    """The notebook API's names, imported from :mod:`testbed.api` when first asked for."""
    if name in _API:
        # imported by name, on first use: the package's own import (which every layer makes for
        # __version__) must not pull in the API's dependencies, nor make the layers depend on it
        api = importlib.import_module("testbed.api")
        return getattr(api, _API[name])
    raise AttributeError(f"module 'testbed' has no attribute {name!r}")

try:
    __version__ = version("testbed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

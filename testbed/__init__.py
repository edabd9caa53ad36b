"""testbed: simulation and emulation of split DNN inference in IoT fleets.

Importing the package is light (no torch, no simpy); see ``docs/architecture.md`` for the layers.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from testbed.errors import ConfigError, TestbedError

__all__ = ["ConfigError", "TestbedError", "__version__"]

try:
    __version__ = version("testbed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

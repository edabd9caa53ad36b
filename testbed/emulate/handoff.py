"""Hand a resolved scenario to the emulator's own child processes (server, and the nodes on the
kernel-shaped path), so they never open the scenario's files again.

The file is written by this process into its private temporary directory (mode 0600) and read by
the children it starts; it is never read from anywhere else (it is a pickle: trusted input only).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from testbed.config.resolve import Resolved

__all__ = ["load_resolved", "save_resolved"]


def save_resolved(res: Resolved, path: Path) -> Path:
    """Write ``res`` to ``path`` (readable by this user only)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        pickle.dump(res, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load_resolved(path: Path | str) -> Resolved:
    """The resolved scenario :func:`save_resolved` wrote."""
    with open(path, "rb") as f:
        res = pickle.load(f)
    if not isinstance(res, Resolved):
        raise TypeError(f"{path}: not a resolved scenario")
    return res

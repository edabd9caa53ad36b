"""Atomic writes of results: a file appears whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from testbed.errors import TestbedError

__all__ = [
    "OutputExistsError",
    "atomic_write",
    "prepare_out_dir",
    "write_json",
    "write_parquet",
    "write_text",
    "write_yaml",
]


class OutputExistsError(TestbedError):
    pass


def atomic_write(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path | str, text: str) -> Path:
    def write(p: Path) -> None:
        p.write_text(text)
    return atomic_write(path, write)


def write_json(path: Path | str, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_yaml(path: Path | str, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_parquet(path: Path | str, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def prepare_out_dir(out: Path | str, force: bool, marker: str = "summary.json") -> Path:
    """Create ``out``; refuse to reuse one holding earlier results unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out: {str(out)!r} exists and is not a directory; choose another path")
    if (out / marker).exists() and not force:
        raise OutputExistsError(f"--out: {str(out)!r} already holds results ({marker}); "
                                "pass --force to overwrite or choose another directory")
    out.mkdir(parents=True, exist_ok=True)
    return out

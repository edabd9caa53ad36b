"""Reading the files a scenario names, for :func:`testbed.config.resolve.resolve` only.

:class:`FileReader` turns a name as written in the scenario into a path (relative names against
the scenario's directory), reads each file once, records its sha256 and raises
:class:`~testbed.errors.ConfigError` naming the dotted field when a file is missing or malformed.
The parsers here take bytes, so each file is opened exactly once.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError

__all__ = ["FileReader", "parse_trace", "parse_values"]


class FileReader:
    """Reads files relative to ``base_dir`` (the working directory when None) and logs their hashes."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self.log: dict[str, str] = {}  # absolute path -> sha256, in reading order
        self._data: dict[str, bytes] = {}

    def path(self, name: str) -> Path:
        """``name`` as an absolute path (relative names against the base directory)."""
        p = Path(name).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p.resolve()

    def existing(self, name: str, field: str, what: str, directory: bool = False) -> Path:
        """The absolute path of ``name``, which must be an existing file (or directory)."""
        p = self.path(name)
        ok = p.is_dir() if directory else p.is_file()
        if not ok:
            where = f" (looked at {p})" if str(p) != name else ""
            raise ConfigError(field, name, f"an existing {what}{where}")
        return p

    def read(self, name: str, field: str, what: str) -> tuple[Path, bytes]:
        """The bytes of file ``name`` (read once per resolution; its sha256 logged)."""
        p = self.existing(name, field, what)
        key = str(p)
        if key not in self._data:
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise ConfigError(field, name, f"a readable {what} ({exc.strerror})") from None
            self._data[key] = data
            self.log[key] = hashlib.sha256(data).hexdigest()
        return p, self._data[key]

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.log.items())


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not a text file") from None


def parse_values(data: bytes, path: Path, column: str | None) -> tuple[float, ...]:
    """Numbers from one value per line, or a column (default the first) of a CSV/TSV file."""
    if path.suffix in (".csv", ".tsv"):
        import pandas as pd

        df = pd.read_csv(io.BytesIO(data), sep="," if path.suffix == ".csv" else "\t")
        col = column or df.columns[0]
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in {list(df.columns)}")
        vals = df[col].to_numpy(dtype=float)
    else:
        vals = np.loadtxt(io.StringIO(_text(data, path)), dtype=float, ndmin=1)
    return tuple(float(v) for v in vals)


def parse_trace(data: bytes, path: Path) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Trace timestamps (seconds) and, for a CSV with a ``node`` column, each one's node index."""
    if path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(io.BytesIO(data))
        if "time_s" not in df.columns:
            raise ValueError(f"a trace CSV needs a 'time_s' column (has {list(df.columns)})")
        nodes = tuple(int(n) for n in df["node"]) if "node" in df.columns else ()
        times = tuple(float(t) for t in df["time_s"])
    else:
        times = tuple(float(t) for t in np.loadtxt(io.StringIO(_text(data, path)), dtype=float, ndmin=1))
        nodes = ()
    if not times or min(times) < 0:
        raise ValueError("a trace must hold timestamps >= 0")
    return times, nodes

"""Reading the files a scenario names, for :func:`testbed.config.resolve.resolve` only.

:class:`FileReader` turns a name as written in the scenario into a path (relative names against
the scenario's directory), reads each file once, records its sha256 and raises
:class:`~testbed.errors.ConfigError` naming the dotted field when a file is missing or malformed.
The parsers here take bytes, so each file is opened exactly once.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from testbed.errors import ConfigError

__all__ = ["MAX_DATA_BYTES", "MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "FileReader", "load_yaml",
           "parse_rate_trace", "parse_trace", "parse_values", "read_limited"]

MAX_YAML_BYTES = 4 << 20
"""Largest scenario, profile or modes file read (4 MiB; real ones are a few kB)."""
MAX_DATA_BYTES = 64 << 20
"""Largest data file (empirical values, trace) read (64 MiB)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences in a YAML file."""
MAX_YAML_NODES = 1_000_000
"""Most values a YAML document may hold once its aliases are expanded (billion laughs stop here)."""


def read_limited(path: Path | str, limit: int, what: str, field: str | None = None) -> bytes:
    """The bytes of file ``path``, refused (one :class:`ConfigError` naming the file, or ``field``)
    when it is a directory, unreadable or larger than ``limit`` bytes; never reads past the limit."""
    p = Path(path)
    where = field or str(p)
    named = f" ({p})" if field else ""
    if p.is_dir():
        raise ConfigError(where, str(p), f"a {what}, not a directory")
    try:
        if p.exists() and not p.is_file():
            raise ConfigError(where, str(p), f"a {what} (a regular file, not a device or pipe)")
        size = p.stat().st_size
        if size > limit:
            raise ConfigError(where, f"{size} bytes", f"a {what} of at most {_mib(limit)}{named}")
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(where, str(p), f"a readable {what} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:  # grew while being read
        raise ConfigError(where, f"{len(data)} bytes", f"a {what} of at most {_mib(limit)}{named}")
    return data


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader with a nesting depth limit and a limit on the alias-expanded size."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlLimit(f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes.get(id(v), 1) for v in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            self._sizes[id(node)] = size
            if size > MAX_YAML_NODES:
                raise _YamlLimit(f"more than {MAX_YAML_NODES} values once its aliases are expanded",
                                 getattr(node, "start_mark", None))
        return node


class _YamlLimit(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def load_yaml(data: bytes | str, name: str, what: str = "YAML file") -> Any:
    """Parse YAML text with the safe loader, bounded in size, depth and alias expansion; every failure
    (binary data, bad syntax, a limit) is one :class:`ConfigError` naming ``name`` and the place."""
    if isinstance(data, bytes):
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(name, f"{len(data)} bytes", f"a {what} of at most {_mib(MAX_YAML_BYTES)}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(name, f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
                              f"a UTF-8 text {what} (this looks like a binary file)") from None
    else:
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(name, f"{len(data)} characters", f"a {what} of at most {_mib(MAX_YAML_BYTES)}")
        text = data
    if "\x00" in text:
        raise ConfigError(name, f"a NUL byte at offset {text.index(chr(0))}",
                          f"a UTF-8 text {what} (this looks like a binary file)")
    try:
        loader = _LimitedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
        raise ConfigError(name, where, f"not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(name, "nesting", f"a {what} nested at most {MAX_YAML_DEPTH} levels deep") from None


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
            data = read_limited(p, MAX_DATA_BYTES, what, field)
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
    out = tuple(float(v) for v in vals)
    _finite(out, "value")
    return out


def _finite(values: tuple[float, ...], what: str) -> None:
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{what} {i + 1} is {v}; every {what} must be a finite number")


def parse_rate_trace(data: bytes, path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A CSV of ``time_s`` and ``rate`` (a data rate like ``5 MB/s``, or bytes/s) -> (times, rates)."""
    import pandas as pd

    from testbed.units import parse_datarate

    df = pd.read_csv(io.BytesIO(data), dtype=str)
    if "time_s" not in df.columns or "rate" not in df.columns:
        raise ValueError(f"a rate trace CSV needs 'time_s' and 'rate' columns (has {list(df.columns)[:8]})")
    times = tuple(float(t) for t in df["time_s"])
    rates = tuple(parse_datarate(r) for r in df["rate"])
    _finite(times, "time")
    _finite(rates, "rate")
    if not times or times[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError("time_s must start at 0 and increase strictly")
    if min(rates) <= 0:
        raise ValueError("every rate must be above 0")
    return times, rates


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
    if not times:
        raise ValueError("a trace must hold timestamps >= 0")
    _finite(times, "timestamp")
    if min(times) < 0:
        raise ValueError("a trace must hold timestamps >= 0")
    return times, nodes

"""Streamed records: rows spilled while the simulation runs, then one chunked pass that writes
``requests.parquet`` in row groups and computes the summary, so no step holds every row.

During the run, :class:`~testbed.core.records.StreamingRecords` hands finished rows (in request order,
a bounded batch at a time) to a :class:`Spill`, which appends each column's raw bytes to its own file.
The Parquet file cannot be written then: a request's ``energy_idle_j`` is its node's idle energy over
the run divided by the node's frame count, known only at the end. :func:`write_requests` then reads
the spill :data:`ROW_GROUP` rows at a time, adds answers, energy and stage columns, writes each chunk
as one Parquet row group (``pyarrow.parquet.ParquetWriter``) and feeds the online summary
(:class:`~testbed.core.metrics.online.StreamSummary`).

A run of fewer than :data:`ROW_GROUP` requests gives a file byte for byte equal to
``with_stages(records).to_parquet(path, index=False)`` (one row group, the same schema and pandas
metadata); a longer one differs only in where its row groups end (same rows, order, values and types).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from testbed.core.energy import add_energy
from testbed.core.metrics import STAGES, with_stages
from testbed.core.metrics.online import StreamSummary
from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS, frame_of

__all__ = ["ROW_GROUP", "FileSeries", "Spill", "read_records", "write_requests"]

ROW_GROUP = 65536
"""Rows per Parquet row group (and per chunk of the summary pass)."""

_DTYPES: dict[str, np.dtype[Any]] = {**{name: np.dtype(np.float64) for name in FLOAT_COLUMNS},
                                     **{name: np.dtype(code) for name, code in INT_COLUMNS}}


class FileSeries:
    """A :class:`~testbed.core.metrics.online.LatencySeries` on disk: raw float64 appended to ``path``,
    read back by range, so the summary's latency series takes no memory however long the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115
        self.rows = 0

    def append(self, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=np.float64)
        self.file.write(data.tobytes())
        self.rows += len(data)

    def __len__(self) -> int:
        return self.rows

    def read(self, start: int, stop: int) -> np.ndarray:
        self.file.flush()
        stop = min(stop, self.rows)
        if stop <= start:
            return np.zeros(0)
        return np.fromfile(self.path, dtype=np.float64, count=stop - start, offset=start * 8)

    def remove(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class Spill:
    """A :data:`~testbed.core.records.RowSink` that appends each column to a raw file in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, BinaryIO] = {name: open(folder / f"{name}.bin", "wb") for name in _DTYPES}  # noqa: SIM115
        self.rows = 0

    def __call__(self, first: int, cols: dict[str, np.ndarray]) -> None:
        if first != self.rows:
            raise ValueError(f"rows out of order: {first} after {self.rows}")
        for name, f in self.files.items():
            f.write(np.ascontiguousarray(cols[name], dtype=_DTYPES[name]).tobytes())
        self.rows += len(cols["created_s"])

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def chunks(self, rows: int = ROW_GROUP) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(first request, int columns, float columns) of consecutive chunks of ``rows`` rows."""
        for first in range(0, self.rows, rows):
            m = min(rows, self.rows - first)
            cols = {name: np.fromfile(self.folder / f"{name}.bin", dtype=dt, count=m, offset=first * dt.itemsize)
                    for name, dt in _DTYPES.items()}
            yield (first, {name: cols[name] for name, _ in INT_COLUMNS}, {name: cols[name] for name in FLOAT_COLUMNS})

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def write_requests(spill: Spill, path: Path, summary: StreamSummary, *, group_names: tuple[str, ...],
                   window: tuple[float, float], frames: np.ndarray,
                   extend: Callable[[pd.DataFrame, np.ndarray], pd.DataFrame] | None = None,
                   row_group: int = ROW_GROUP) -> None:
    """Write ``requests.parquet`` from ``spill`` in row groups, feeding ``summary`` each chunk.

    ``extend(chunk, frames)`` adds per-request columns (answers, energy) before the stage columns;
    ``frames[node]`` is each node's frame count over the run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    try:
        chunks = spill.chunks(row_group)
        empty = ({name: np.zeros(0, dtype=np.dtype(code)) for name, code in INT_COLUMNS},
                 {name: np.zeros(0) for name in FLOAT_COLUMNS})
        for first, ints, floats in (chunks if spill.rows else iter([(0, *empty)])):
            df = frame_of(first, ints, floats, group_names, window)
            if extend is not None:
                df = extend(df, frames)
            df = with_stages(df)
            summary.add(df)
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def created_at(path: Path, window_end: float) -> Callable[[int], float]:
    """``i -> created_s`` of the ``i``-th completed request created before ``window_end`` in ``path``."""
    def lookup(i: int) -> float:
        import pyarrow.parquet as pq

        seen = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP, columns=["created_s", "status"]):
            created = batch.column(0).to_numpy(zero_copy_only=False)
            status = np.asarray(batch.column(1).to_pandas().astype(str))
            hit = created[(status == "ok") & (created < window_end)]
            if i < seen + len(hit):
                return float(hit[i - seen])
            seen += len(hit)
        raise IndexError(i)
    return lookup


def read_records(path: Path) -> pd.DataFrame:
    """The records of a streamed run as :func:`~testbed.run.runner.run_scenario` used to hold them
    (``requests.parquet`` without its stage columns)."""
    df = pd.read_parquet(path)
    return df.drop(columns=[c for c in (*STAGES, "latency_s") if c in df])


def energy_extension(power: Any, horizon: float) -> Callable[[pd.DataFrame, np.ndarray], pd.DataFrame]:
    """``extend`` for :func:`write_requests` adding :func:`~testbed.core.energy.add_energy`'s columns."""
    return lambda df, frames: add_energy(df, power, horizon, frames)

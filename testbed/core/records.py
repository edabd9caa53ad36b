"""Column-wise request records: one row per request, held in typed arrays (about 170 B a row).

Rows are created when a frame arrives at its node and filled in as the request crosses the
stations; :meth:`Records.to_frame` turns them into one immutable DataFrame row per request.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import pandas as pd

from testbed.config.schema import Scenario
from testbed.core.arrivals import expected_frames

__all__ = ["FLOAT_COLUMNS", "INT_COLUMNS", "STATUS", "Records", "expected_requests", "in_window_mask"]

STATUS = ("in_flight", "ok", "dropped_at_node", "dropped_at_server", "timed_out", "dropped_on_link")
"""Status codes; ``in_flight`` rows were still inside the system when the run ended."""

FLOAT_COLUMNS = (
    "created_s",         # frame captured at the node
    "head_start_s",      # node CPU starts the head
    "head_end_s",        # head done, encode starts
    "encode_end_s",      # payload handed to the radio (uplink queue)
    "tx_start_s",        # first bit on the air
    "tx_end_s",          # last bit on the air
    "server_arrival_s",  # after propagation latency
    "queued_s",          # after decode, enters the batch queue
    "batch_ready_s",     # a GPU was free and held for this batch to fill
    "batch_start_s",     # batch starts on the GPU
    "batch_end_s",
    "downlink_start_s",
    "downlink_end_s",
    "finished_s",        # result back at the node (or time of drop)
    "payload_bytes",
    "result_bytes",
    "radio_tx_j",        # csma link: the node's radio energy for this request (NaN otherwise):
    "radio_rx_j",        #   transmitting its PPDUs / receiving ACKs and its result,
    "radio_idle_j",      #   listening while its payload contends (testbed/sim/links/csma.py)
)
INT_COLUMNS = (("node", "i"), ("group", "h"), ("frame", "i"), ("image", "i"),
               ("batch_size", "h"), ("gpu", "b"), ("status", "b"), ("mode", "b"))

_NAN = float("nan")
_INT_FILL = {"image": -1, "gpu": -1}
"""Integer columns whose unset value is not 0 (filled ahead, so starting a row writes fewer cells)."""


def expected_requests(sc: Scenario) -> int:
    """Frames the fleet will generate (mean), to size the record arrays once."""
    total = 0.0
    for g in sc.fleet:
        total += g.count * expected_frames(g.arrivals, g.count, sc.duration)
    return int(total * 1.01 + 4 * math.sqrt(total) + 64)


class Records:
    """Typed, append-only columns; a request is its row index.

    Every column of :data:`FLOAT_COLUMNS` and :data:`INT_COLUMNS` is an attribute (a direct handle
    for the hot path, e.g. ``rec.created_s[rid]``); ``f`` and ``i`` hold the same arrays by name.
    """

    # float columns, NaN until set (meanings in FLOAT_COLUMNS)
    created_s: array[float]
    head_start_s: array[float]
    head_end_s: array[float]
    encode_end_s: array[float]
    tx_start_s: array[float]
    tx_end_s: array[float]
    server_arrival_s: array[float]
    queued_s: array[float]
    batch_ready_s: array[float]
    batch_start_s: array[float]
    batch_end_s: array[float]
    downlink_start_s: array[float]
    downlink_end_s: array[float]
    finished_s: array[float]
    payload_bytes: array[float]
    result_bytes: array[float]
    radio_tx_j: array[float]
    radio_rx_j: array[float]
    radio_idle_j: array[float]
    # integer columns, 0 until set (image and gpu -1)
    node: array[int]
    group: array[int]
    frame: array[int]
    image: array[int]
    batch_size: array[int]
    gpu: array[int]
    status: array[int]
    mode: array[int]

    def __init__(self, expected: int = 0, chunk: int = 16384) -> None:
        self.f: dict[str, array[float]] = {name: array("d") for name in FLOAT_COLUMNS}
        self.i: dict[str, array[int]] = {name: array(code) for name, code in INT_COLUMNS}
        for name, col in self.f.items():
            setattr(self, name, col)
        for name, icol in self.i.items():
            setattr(self, name, icol)
        self._chunk = chunk
        self._nan_block = array("d", [_NAN]) * chunk
        self._int_blocks = {(code, _INT_FILL.get(name, 0)): array(code, [_INT_FILL.get(name, 0)]) * chunk
                            for name, code in INT_COLUMNS}
        self.capacity = 0
        self.n = 0
        if expected > 0:  # one allocation when the row count is known in advance
            for col in self.f.values():
                col.extend(array("d", [_NAN]) * expected)
            for name, code in INT_COLUMNS:
                self.i[name].extend(array(code, [_INT_FILL.get(name, 0)]) * expected)
            self.capacity = expected

    def _grow(self) -> None:
        for col in self.f.values():
            col.extend(self._nan_block)
        for name, code in INT_COLUMNS:
            self.i[name].extend(self._int_blocks[code, _INT_FILL.get(name, 0)])
        self.capacity += self._chunk

    def new(self, node: int, group: int, frame: int, created_s: float) -> int:
        """Start a row (floats NaN, status in_flight, image and gpu -1) and return its index."""
        rid = self.n
        if rid == self.capacity:
            self._grow()
        self.n = rid + 1
        self.created_s[rid] = created_s
        self.node[rid] = node
        self.group[rid] = group
        self.frame[rid] = frame
        return rid

    def nbytes(self) -> int:
        """Bytes held by the columns (including the unused tail of the last chunk)."""
        return (sum(c.itemsize * len(c) for c in self.f.values())
                + sum(c.itemsize * len(c) for c in self.i.values()))

    def to_frame(self, group_names: tuple[str, ...] = (), window: tuple[float, float] | None = None) -> pd.DataFrame:
        """One row per request; times in seconds, sizes in bytes, status as a category; with a
        measurement ``window``, the bool column ``in_window`` (created in ``[warmup, duration)``: the
        rows every summary figure is computed over).

        The numeric columns are views of the record arrays (no copy): call this once the run
        is over. The arrays can no longer grow afterwards.
        """
        n = self.n
        data: dict[str, Any] = {"request": np.arange(n, dtype=np.int64)}
        ints = {name: np.frombuffer(icol, dtype=np.dtype(icol.typecode))[:n] for name, icol in self.i.items()}
        data.update(ints)
        data["status"] = pd.Categorical.from_codes(ints["status"].astype(np.int8),
                                                   dtype=pd.CategoricalDtype(list(STATUS)))
        if group_names:
            data["group_name"] = pd.Categorical.from_codes(ints["group"].astype(np.int16),
                                                           dtype=pd.CategoricalDtype(list(group_names)))
        for name, fcol in self.f.items():
            data[name] = np.frombuffer(fcol, dtype=np.float64)[:n]
        if window is not None:
            data["in_window"] = in_window_mask(data["created_s"], window)
        return pd.DataFrame(data, copy=False)


def in_window_mask(created_s: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Requests created in ``[t0, t1)``: the measurement window every summary figure is over."""
    t0, t1 = window
    created = np.asarray(created_s, dtype=float)
    return (created >= t0) & (created < t1)

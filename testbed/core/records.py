"""Column-wise request records: one row per request, held in typed arrays (about 170 B a row).

Rows are created when a frame arrives at its node and filled in as the request crosses the
stations; :meth:`Records.to_frame` turns them into one immutable DataFrame row per request.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from testbed.config.schema import Scenario
from testbed.core.arrivals import expected_frames

__all__ = ["FLOAT_COLUMNS", "INT_COLUMNS", "STATUS", "Records", "RowSink", "StreamingRecords", "expected_requests",
           "frame_of", "in_window_mask"]

STATUS = ("in_flight", "ok", "dropped_at_node", "dropped_at_server", "timed_out", "dropped_on_link", "server_failed",
          "cell_failed")
"""Status codes; ``in_flight`` rows were still inside the system when the run ended; ``server_failed``: lost
to a server outage (it was on the server when it went down, or no server was up to take it);
``cell_failed``: lost to its cell's outage (``fate: lost``)."""

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
               ("batch_size", "h"), ("gpu", "b"), ("status", "b"), ("mode", "b"),
               ("cell", "h"),     # the node's cell (index into Scenario.cell_names; 0 with one link)
               ("server", "h"),   # the server it was assigned to (Scenario.server_names); -1: none
                                  #   (ended before it was assigned, or answered on the node)
               ("retries", "b"),  # times it was sent to a server again after an outage
               ("config", "h"))   # its group's configuration (model, split, codec; summary "configs"); 0
                                  #   with one

_NAN = float("nan")
_INT_FILL = {"image": -1, "gpu": -1, "server": -1}
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
    # integer columns, 0 until set (image, gpu and server -1)
    node: array[int]
    group: array[int]
    frame: array[int]
    image: array[int]
    batch_size: array[int]
    gpu: array[int]
    status: array[int]
    mode: array[int]
    cell: array[int]
    server: array[int]
    retries: array[int]
    config: array[int]
    group_config: list[int] | None = None
    """Each group's configuration (a heterogeneous fleet), written into ``config`` as a row starts."""

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
        """Start a row (floats NaN, status in_flight, image, gpu and server -1) and return its index."""
        rid = self.n
        if rid == self.capacity:
            self._grow()
        self.n = rid + 1
        self.created_s[rid] = created_s
        self.node[rid] = node
        self.group[rid] = group
        self.frame[rid] = frame
        if self.group_config is not None:
            self.config[rid] = self.group_config[group]
        return rid

    def new_rows(self, node: np.ndarray, group: np.ndarray, frame: np.ndarray, created_s: np.ndarray) -> list[int]:
        """Start one row per element (as :meth:`new` for each, in order) and return their indices."""
        m = len(created_s)
        first = self.n
        while self.capacity < first + m:
            self._grow()
        self.n = first + m
        self._fill(np.arange(first, first + m), node, group, frame, created_s)
        return list(range(first, first + m))

    def _fill(self, rows: np.ndarray, node: np.ndarray, group: np.ndarray, frame: np.ndarray,
              created_s: np.ndarray) -> None:
        """Write the cells :meth:`new` writes, for many rows at once."""
        cols = [("created_s", created_s), ("node", node), ("group", group), ("frame", frame)]
        if self.group_config is not None:
            cols.append(("config", np.asarray(self.group_config)[group]))
        for name, values in cols:
            col = getattr(self, name)
            view = np.frombuffer(col, dtype=np.dtype(col.typecode))
            view[rows] = values
            del view  # (the array may grow again later: no view may outlive this call)

    def nbytes(self) -> int:
        """Bytes held by the columns (including the unused tail of the last chunk)."""
        return (sum(c.itemsize * len(c) for c in self.f.values())
                + sum(c.itemsize * len(c) for c in self.i.values()))

    def token(self, rid: int) -> int:
        """The request number row ``rid`` holds (the row index itself: rows are never reused here)."""
        return rid

    def to_frame(self, group_names: tuple[str, ...] = (), window: tuple[float, float] | None = None) -> pd.DataFrame:
        """One row per request; times in seconds, sizes in bytes, status as a category; with a
        measurement ``window``, the bool column ``in_window`` (created in ``[warmup, duration)``: the
        rows every summary figure is computed over).

        The numeric columns are views of the record arrays (no copy): call this once the run
        is over. The arrays can no longer grow afterwards.
        """
        n = self.n
        ints = {name: np.frombuffer(icol, dtype=np.dtype(icol.typecode))[:n] for name, icol in self.i.items()}
        floats = {name: np.frombuffer(fcol, dtype=np.float64)[:n] for name, fcol in self.f.items()}
        return frame_of(0, ints, floats, group_names, window)


RowSink = Callable[[int, dict[str, np.ndarray]], None]
"""Receives finished rows: ``sink(first_request, columns)``, every column of :data:`FLOAT_COLUMNS` and
:data:`INT_COLUMNS` as an array (copies) of consecutive requests from ``first_request`` on."""


class StreamingRecords(Records):
    """Records that hand finished rows to a sink while the run goes on, in request order, so only the
    rows still in flight (and a bounded batch of finished ones) are held.

    A row is a reusable slot: ``new`` takes a free slot (or a fresh one), and a flush passes the longest
    prefix of requests (in creation order) that are no longer in flight to ``sink`` and frees their
    slots. The request number a slot holds now is :meth:`token`. Flushes are looked for every
    ``flush_rows`` new rows (or as many as are held, whichever is more, so a request stuck in flight
    costs amortised constant work); :meth:`close` flushes everything left (in flight included).
    Rows are final once their status is set: every station writes a row's last cells in the event
    that ends it, and flushes happen only when a new request starts (a later event).
    """

    def __init__(self, sink: RowSink, flush_rows: int = 16384) -> None:
        super().__init__(0, chunk=flush_rows)
        self.sink, self.flush_rows = sink, flush_rows
        self.flushed = 0                  # requests passed to the sink
        self.pending = array("i")         # slots of requests flushed..n-1, in creation order
        self.request = array("q")         # request number each slot holds
        self._free: list[int] = []
        self._top = 0                     # slots handed out so far
        self._check_at = flush_rows

    def new(self, node: int, group: int, frame: int, created_s: float) -> int:
        """Start a row in a free slot and return the slot."""
        n = self.n
        if n >= self._check_at:
            self._flush(False)
        if self._free:
            rid = self._free.pop()
        else:
            rid = self._top
            if rid == self.capacity:
                self._grow()
                self.request.extend(array("q", [0]) * self._chunk)
            self._top = rid + 1
        self.pending.append(rid)
        self.request[rid] = n
        self.n = n + 1
        self.created_s[rid] = created_s
        self.node[rid] = node
        self.group[rid] = group
        self.frame[rid] = frame
        if self.group_config is not None:
            self.config[rid] = self.group_config[group]
        return rid

    def new_rows(self, node: np.ndarray, group: np.ndarray, frame: np.ndarray, created_s: np.ndarray) -> list[int]:
        """Start one row per element, in order (as :meth:`new` for each, but a flush is looked for once,
        before them all, so a call that crosses the check may take other free slots; the sink gets the same
        rows in the same order)."""
        m, n = len(created_s), self.n
        if n >= self._check_at:
            self._flush(False)
        free = self._free
        reused = free[:-m - 1:-1] if m else []  # popped from the end, as new() does
        del free[len(free) - len(reused):]
        fresh = m - len(reused)
        while self.capacity < self._top + fresh:
            self._grow()
            self.request.extend(array("q", [0]) * self._chunk)
        slots = reused + list(range(self._top, self._top + fresh))
        self._top += fresh
        self.pending.extend(array("i", slots))
        rows = np.asarray(slots, dtype=np.intp)
        request = np.frombuffer(self.request, dtype=np.int64)
        request[rows] = np.arange(n, n + m)
        del request
        self.n = n + m
        self._fill(rows, node, group, frame, created_s)
        return slots

    def token(self, rid: int) -> int:
        return self.request[rid]

    def held(self) -> int:
        """Rows held now (requests not yet passed to the sink)."""
        return len(self.pending)

    def close(self) -> None:
        """Pass every remaining row to the sink (the run is over: in-flight rows stay ``in_flight``)."""
        self._flush(True)

    def _flush(self, everything: bool) -> None:
        slots_all = np.frombuffer(self.pending, dtype=np.int32)
        if everything:
            k = len(slots_all)
        else:
            status = np.frombuffer(self.status, dtype=np.int8)
            open_ = np.flatnonzero(status[slots_all] == 0)
            k = int(open_[0]) if len(open_) else len(slots_all)
            del status
        if k:
            slots = slots_all[:k].copy()
            cols: dict[str, np.ndarray] = {}
            for name, col in self.f.items():
                view = np.frombuffer(col, dtype=np.float64)
                cols[name] = view[slots]
                view[slots] = _NAN
                del view
            for name, icol in self.i.items():
                iview = np.frombuffer(icol, dtype=np.dtype(icol.typecode))
                cols[name] = iview[slots]
                iview[slots] = _INT_FILL.get(name, 0)
                del iview
            del slots_all
            self.sink(self.flushed, cols)
            self.flushed += k
            self._free.extend(slots[::-1].tolist())  # popped in creation order of their last use
            del self.pending[:k]
        else:
            del slots_all
        self._check_at = self.n + max(self.flush_rows, len(self.pending))

    def to_frame(self, group_names: tuple[str, ...] = (), window: tuple[float, float] | None = None) -> pd.DataFrame:
        raise TypeError("streamed records are in the sink: read them from there")


def frame_of(first: int, ints: dict[str, np.ndarray], floats: dict[str, np.ndarray],
             group_names: tuple[str, ...] = (), window: tuple[float, float] | None = None) -> pd.DataFrame:
    """The records DataFrame of consecutive requests from ``first`` on, from their column arrays
    (:meth:`Records.to_frame`'s columns and order; the arrays are used without a copy)."""
    n = len(floats["created_s"])
    data: dict[str, Any] = {"request": np.arange(first, first + n, dtype=np.int64)}
    data.update(ints)
    data["status"] = pd.Categorical.from_codes(ints["status"].astype(np.int8),
                                               dtype=pd.CategoricalDtype(list(STATUS)))
    if group_names:
        data["group_name"] = pd.Categorical.from_codes(ints["group"].astype(np.int16),
                                                       dtype=pd.CategoricalDtype(list(group_names)))
    data.update(floats)
    if window is not None:
        data["in_window"] = in_window_mask(data["created_s"], window)
    return pd.DataFrame(data, copy=False)


def in_window_mask(created_s: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Requests created in ``[t0, t1)``: the measurement window every summary figure is over."""
    t0, t1 = window
    created = np.asarray(created_s, dtype=float)
    return (created >= t0) & (created < t1)

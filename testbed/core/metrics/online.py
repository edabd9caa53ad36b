"""The run summary from records that arrive in chunks (streamed runs), without holding every row.

:class:`StreamSummary` takes the records chunk by chunk, in request (creation) order, each chunk with
its stage columns (:func:`~testbed.core.metrics.stages.with_stages`), and gives the same keys, in the
same order, as :func:`~testbed.core.metrics.summary.summarize`. Counts, maxima and the percentiles
are exact and equal the in-memory summary's; means and utilisations are sums over chunks, equal to
it up to floating-point rounding (about 1e-15 relative).

Memory: constant. The percentiles, censored percentiles, batch-means intervals and MSER-5 need the
latency of every completed request created before the window's end (8 bytes each, in creation
order): a :class:`LatencySeries` keeps it, in memory (:class:`MemorySeries`) or on disk (streamed
runs, :class:`testbed.run.stream.FileSeries`). Up to :data:`IN_MEMORY` values it is read whole and
summarised as in memory; a longer one is summarised by chunked passes (:mod:`testbed.core.metrics.chunked`):
percentiles by exact selection, bit for bit numpy's, and means and MSER-5 summed chunk by chunk (equal
up to floating-point rounding). No sketch, no error bound to state.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from testbed.core.energy import ENERGY_COLUMNS
from testbed.core.metrics import chunked
from testbed.core.metrics.checks import run_warnings
from testbed.core.metrics.intervals import BATCHES, MSER_BATCH, batch_interval, batch_method, mser
from testbed.core.metrics.latency import _PERCENTILES, DROPPED, LATENCY_OVER, LOST, censored_statistic
from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput
from testbed.core.metrics.stages import STAGES
from testbed.core.records import STATUS

__all__ = ["IN_MEMORY", "ONLINE_METRICS", "LatencySeries", "MemorySeries", "NanMeans", "StreamSummary",
           "series_figures"]

IN_MEMORY = 1 << 22
"""Longest latency series (4,194,304 completed requests, 32 MiB) summarised whole in memory; beyond it,
in chunks."""

ONLINE_METRICS = ("counts", "latency", "latency_all", "latency_intervals", "stages", "utilisation", "answers",
                  "nestquant_modes", "energy")
"""Registered summary metrics :class:`StreamSummary` computes; a run with others is summarised in memory."""

_OK = STATUS.index("ok")


class LatencySeries(Protocol):
    """An append-only float64 series read back by range."""

    def append(self, values: np.ndarray) -> None: ...

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray: ...


class MemorySeries:
    """A :class:`LatencySeries` in memory (8 bytes a value)."""

    def __init__(self) -> None:
        self.values = array("d")

    def append(self, values: np.ndarray) -> None:
        self.values.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())

    def __len__(self) -> int:
        return len(self.values)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.frombuffer(self.values, dtype=np.float64)[start:stop].copy()


def series_figures(series: LatencySeries, qs: Sequence[float], total: int | None = None
                   ) -> tuple[float, list[float], list[float]]:
    """Mean and ``qs`` percentiles of a series of completed latencies and, with ``total`` (requests, the
    unfinished ones infinitely late), the censored percentiles (empty without): read whole up to
    :data:`IN_MEMORY` values, in chunked passes beyond (:mod:`testbed.core.metrics.chunked`; the same
    percentiles, the mean up to rounding). NaN where the series is empty."""
    k = len(series)
    if k > IN_MEMORY:
        read = series.read
        mean, pct = chunked.segment_mean(read, 0, k), chunked.percentiles(read, 0, k, qs)
        return mean, pct, (chunked.censored_percentiles(read, 0, k, total, qs) if total is not None else [])
    lat = series.read(0, k)
    mean, pct = (float(lat.mean()), [float(v) for v in np.percentile(lat, qs)]) if k else (math.nan, [math.nan] * len(qs))
    if total is None:
        return mean, pct, []
    every = np.concatenate([lat, np.full(total - k, np.inf)])
    return mean, pct, [censored_statistic(every, q) for q in qs]


class NanMeans:
    """NaN-skipping running means by name (pandas' ``Series.mean``)."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def add(self, name: str, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        keep = ~np.isnan(v)
        self.sum[name] = self.sum.get(name, 0.0) + float(v[keep].sum())
        self.count[name] = self.count.get(name, 0) + int(keep.sum())

    def get(self, name: str) -> float:
        n = self.count.get(name, 0)
        return self.sum[name] / n if n else math.nan

    def seen(self, name: str) -> bool:
        return self.count.get(name, 0) > 0


def _clipped(start: np.ndarray, end: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Length of each ``[start, end)`` inside ``[t0, t1]`` (NaN where an end is unknown)."""
    return np.clip(np.minimum(end, t1) - np.maximum(start, t0), 0.0, None)


class StreamSummary:
    """Feed chunks with :meth:`add`, then :meth:`result` (see the module docstring)."""

    def __init__(self, window: tuple[float, float], levels: Mapping[str, Mapping[str, float]] | None = None,
                 gpus: int = 1, nodes: int | None = None, series: LatencySeries | None = None) -> None:
        self.window, self.levels, self.gpus, self.nodes = window, levels, gpus, nodes
        self.status = np.zeros(len(STATUS), dtype=np.int64)  # window rows by status
        self.throughput = 0
        # latency of completed requests created before the window's end, in creation order
        self.series: LatencySeries = series if series is not None else MemorySeries()
        self.before = 0            # how many of them were created before the window
        self.means = NanMeans()       # over completed window rows
        self.tx = self.gpu = self.cpu = 0.0
        self.batch_rows = np.zeros(1, dtype=np.int64)  # rows of batches started in the window, by size
        self.node_busy = np.zeros(0)
        self.node_rows = np.zeros(0, dtype=np.int64)
        self.columns: set[str] = set()
        self.part_mode_window = False
        self.confident_agree = NanMeans()

    def add(self, chunk: pd.DataFrame) -> None:
        """The next consecutive requests (every row, whenever created), with stage columns."""
        t0, t1 = self.window
        self.columns.update(chunk.columns)
        codes = chunk["status"].cat.codes.to_numpy()
        created = chunk["created_s"].to_numpy(dtype=float)
        finished = chunk["finished_s"].to_numpy(dtype=float)
        ok = codes == _OK
        win = (created >= t0) & (created < t1)
        okw = ok & win
        self.status += np.bincount(codes[win], minlength=len(STATUS))
        self.throughput += int((ok & (finished >= t0) & (finished < t1)).sum())
        lat = chunk["latency_s"].to_numpy(dtype=float)
        self.before += int((ok & (created < t0)).sum())
        self.series.append(lat[ok & (created < t1)])
        m = self.means
        for name in (*STAGES, "payload_bytes", *(c for c in ENERGY_COLUMNS if c in chunk),
                     *(c for c in ("correct", "agree", "agree_top5", "agree_clean", "confident") if c in chunk)):
            m.add(name, chunk[name].to_numpy(dtype=float)[okw])
        if "mode" in chunk:
            mode = chunk["mode"].to_numpy()
            self.part_mode_window |= bool((mode[win] > 0).any())
            m.add("part_mode", (mode[okw] > 0).astype(float))
        if "confident" in chunk and "agree" in chunk:
            conf = chunk["confident"].to_numpy(dtype=float)[okw] == 1.0
            self.confident_agree.add("agree", chunk["agree"].to_numpy(dtype=float)[okw][conf])
        col = lambda name: chunk[name].to_numpy(dtype=float)  # noqa: E731
        self.tx += float(np.nansum(_clipped(col("tx_start_s"), col("tx_end_s"), t0, t1)))
        start, end = col("batch_start_s"), col("batch_end_s")
        size = chunk["batch_size"].to_numpy()
        batched = ~np.isnan(start) & ~np.isnan(end)
        self.gpu += float(np.sum(_clipped(start[batched], end[batched], t0, t1) / size[batched]))
        in_w = batched & (start >= t0) & (start < t1)
        counts = np.bincount(size[in_w].astype(np.int64), minlength=len(self.batch_rows))
        counts[: len(self.batch_rows)] += self.batch_rows
        self.batch_rows = counts
        busy = np.nan_to_num(_clipped(col("head_start_s"), col("encode_end_s"), t0, t1))
        self.cpu += float(busy.sum())
        node = chunk["node"].to_numpy().astype(np.int64)
        if len(node):
            k = max(len(self.node_busy), int(node.max()) + 1)
            self.node_busy = np.pad(self.node_busy, (0, k - len(self.node_busy)))
            self.node_rows = np.pad(self.node_rows, (0, k - len(self.node_rows)))
            self.node_busy += np.bincount(node, weights=busy, minlength=k)
            self.node_rows += np.bincount(node, minlength=k)

    def mser_index(self) -> int | float | None:
        """MSER-5's truncation (an index into the completed requests created before the window's end),
        None when still trending, NaN when too few."""
        n = len(self.series)
        if n < 4 * MSER_BATCH:
            return math.nan
        if n > IN_MEMORY:
            return chunked.mser(self.series.read, n)
        return mser(self.series.read(0, n))

    def _latency_parts(self, n: int, done: int) -> dict[str, dict[str, Any]]:
        """``latency``, ``latency_all`` and the intervals of ``latency_intervals`` (``n`` window requests,
        ``done`` of them completed: the series' last ``done`` values)."""
        total = len(self.series)
        if total > IN_MEMORY:
            return self._latency_parts_chunked(n, done)
        lat = self.series.read(self.before, total)
        keys = ("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_max_s")
        parts: dict[str, dict[str, Any]] = {}
        if len(lat):
            q = np.percentile(lat, _PERCENTILES)
            parts["latency"] = dict(zip(keys, (float(lat.mean()), *map(float, q), float(lat.max()))))
        else:
            parts["latency"] = dict.fromkeys(keys, math.nan)
        censored = np.concatenate([lat, np.full(n - done, np.inf)])
        la: dict[str, Any] = {"latency_over": LATENCY_OVER}
        for qq in _PERCENTILES:
            v = censored_statistic(censored, qq)
            la[f"latency_p{qq}_all_s"] = None if math.isinf(v) else v
        del censored
        parts["latency_all"] = la
        li: dict[str, Any] = {}
        for key, qv in (("latency_mean_s", None), ("latency_p95_s", 95.0)):
            li[f"{key}_run_ci_low"], li[f"{key}_run_ci_high"] = batch_interval(lat, qv)
        parts["latency_intervals"] = li
        return parts

    def _latency_parts_chunked(self, n: int, done: int) -> dict[str, dict[str, Any]]:
        """:meth:`_latency_parts` of a series longer than :data:`IN_MEMORY`, read in chunks."""
        read, a, b = self.series.read, self.before, len(self.series)
        if a == b:  # nothing completed in the window: the in-memory figures of an empty series
            return {"latency": dict.fromkeys(("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s",
                                              "latency_p99_s", "latency_max_s"), math.nan),
                    "latency_all": {"latency_over": LATENCY_OVER,
                                    **{f"latency_p{qq}_all_s": None if n else math.nan for qq in _PERCENTILES}},
                    "latency_intervals": {f"{k}_run_ci_{e}": math.nan for k in ("latency_mean_s", "latency_p95_s")
                                          for e in ("low", "high")}}
        top = -math.inf
        for c0 in range(a, b, chunked.CHUNK):
            top = max(top, float(read(c0, min(c0 + chunked.CHUNK, b)).max()))
        q = chunked.percentiles(read, a, b, _PERCENTILES)
        parts: dict[str, dict[str, Any]] = {"latency": dict(zip(
            ("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_max_s"),
            (chunked.segment_mean(read, a, b), *q, top)))}
        la: dict[str, Any] = {"latency_over": LATENCY_OVER}
        for qq, v in zip(_PERCENTILES, chunked.censored_percentiles(read, a, b, n, _PERCENTILES)):
            la[f"latency_p{qq}_all_s"] = None if math.isinf(v) else v
        parts["latency_all"] = la
        li: dict[str, Any] = {}
        for key, qv in (("latency_mean_s", None), ("latency_p95_s", 95.0)):
            li[f"{key}_run_ci_low"], li[f"{key}_run_ci_high"] = chunked.batch_interval(read, a, b, qv)
        parts["latency_intervals"] = li
        return parts

    def result(self, created_at: Callable[[int], float]) -> dict[str, Any]:
        """The summary; ``created_at(i)``: creation time of the ``i``-th completed request created before
        the window's end (looked up only when MSER-5 discards some)."""
        t0, t1 = self.window
        span = t1 - t0
        parts: dict[str, dict[str, Any]] = {}
        n = int(self.status.sum())
        done = int(self.status[_OK])
        by = {name: int(self.status[i]) for i, name in enumerate(STATUS)}
        c: dict[str, Any] = {"requests": n, "completed": done, "throughput_per_s": float(self.throughput) / span,
                             "offered_per_s": n / span,
                             "drop_rate": float(sum(by[k] for k in LOST) / n) if n else 0.0}
        for name in (*LOST, "in_flight"):
            c[name] = by[name]
        c["dropped"] = sum(c[name] for name in DROPPED)
        for name in ("completed", "dropped", *DROPPED, "timed_out", "in_flight"):
            c[f"{name}_share"] = c[name] / n if n else math.nan
        parts["counts"] = c
        parts.update(self._latency_parts(n, done))
        li = parts["latency_intervals"]
        li["run_ci_method"] = batch_method(BATCHES)
        d = self.mser_index()
        li["warmup_mser5_s"] = d if d is None or (isinstance(d, float) and math.isnan(d)) else (
            0.0 if d == 0 else float(created_at(int(d))))
        m = self.means
        parts["stages"] = {f"mean_{st}": m.get(st) if done else math.nan for st in STAGES}
        u: dict[str, Any] = {"link_utilisation": self.tx / span if self.levels is None else self.levels["uplink"]["busy"],
                             "gpu_utilisation": self.gpu / (span * self.gpus)}
        sizes = np.arange(len(self.batch_rows))
        batches = int(sum(int(r) // int(s) for r, s in zip(self.batch_rows[1:], sizes[1:])))
        u["mean_batch_size"] = float(self.batch_rows[1:].sum()) / batches if batches else math.nan
        if self.nodes:
            u["node_utilisation"] = self.cpu / (span * self.nodes)
        u["mean_payload_bytes"] = m.get("payload_bytes") if done else math.nan
        parts["utilisation"] = u
        a: dict[str, Any] = {}
        if "correct" in self.columns:
            a = {"accuracy": m.get("correct"), "agreement": m.get("agree") if done else math.nan}
            if "agree_top5" in self.columns:
                a["agreement_top5"] = m.get("agree_top5")
            if "agree_clean" in self.columns:  # corrupted frames: against the answer on the clean frame
                a["agreement_clean"] = m.get("agree_clean")
            if "confident" in self.columns:
                a["confident_share"] = m.get("confident")
                a["agreement_confident"] = self.confident_agree.get("agree")
        parts["answers"] = a
        parts["nestquant_modes"] = ({"part_mode_share": m.get("part_mode") if done else math.nan}
                                    if self.part_mode_window else {})
        order = ("energy_j", *[col for col in ENERGY_COLUMNS if col != "energy_j"])
        parts["energy"] = ({f"mean_{col}": m.get(col) if done else math.nan for col in order}
                           if "energy_j" in self.columns else {})
        out: dict[str, Any] = {}
        for name, _ in SUMMARY_METRICS.items():
            out.update(parts[name])
        empty = pd.DataFrame()
        out["warnings"] = run_warnings(out, SummaryInput(empty, empty, empty, self.window, self.levels, self.gpus,
                                                         self.nodes), self.busiest())
        return out

    def busiest(self) -> tuple[int, float] | None:
        """(node, busy fraction of its CPU over the window) of the busiest node (``busiest_node``)."""
        if not self.nodes or not self.node_rows.any():
            return None
        ids = np.flatnonzero(self.node_rows)
        i = int(ids[int(np.argmax(self.node_busy[ids]))])
        return i, float(self.node_busy[i]) / (self.window[1] - self.window[0])

"""Per fleet group figures of a heterogeneous fleet (groups of their own model, split or codec): each
group's requests, completions, latency and agreement, and the configuration it ran.

Not a registered summary metric (streamed runs summarise in chunks; this table is small): the runner
adds it to ``summary.json`` as ``by_group`` (with ``configs``, the configurations' labels) when the
groups run more than one configuration. Pure pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.metrics.latency import LOST
from testbed.core.metrics.online import LatencySeries, MemorySeries, NanMeans, series_figures

__all__ = ["GROUP_COLUMNS", "GroupAccumulator", "group_breakdown", "node_busy_share"]

GROUP_COLUMNS = ("group", "config", "status", "created_s", "finished_s", "payload_bytes", "agree",
                 "head_start_s", "encode_end_s", "energy_j")
"""The record columns :func:`group_breakdown` reads (``agree``, the node times and ``energy_j`` where
present)."""


def node_busy_share(head_start_s: np.ndarray, encode_end_s: np.ndarray, nodes: int, span_s: float) -> float:
    """Mean share of time a group's node CPUs spend on head and encode: the summed ``encode_end_s -
    head_start_s`` of its requests (those never started count 0) over ``nodes * span_s``."""
    if nodes <= 0 or span_s <= 0:
        return math.nan
    busy = np.nan_to_num(np.asarray(encode_end_s, dtype=float) - np.asarray(head_start_s, dtype=float), nan=0.0)
    return float(busy.sum()) / (nodes * span_s)


@dataclass
class _Stats:
    """What one group's row is made of (sums, counts and its latency percentiles)."""

    n: int = 0                      # requests created in the window
    k: int = 0                      # of them completed
    lost: int = 0                   # dropped or failed (LOST)
    lat_mean: float = math.nan
    pct: tuple[float, float, float] = (math.nan, math.nan, math.nan)      # p50/p95/p99, completed
    pct_all: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # the same, unfinished as inf
    payload: float = math.nan       # NaN-skipping means over completed requests
    energy: float | None = None     # None: no energy column
    agree: float | None = None      # None: no agree column
    busy_s: float | None = None     # summed head + encode seconds (None: no node-time columns)
    first_config: int = 0
    served: dict[int, int] = field(default_factory=dict)  # requests per configuration


def _row(name: str, st: _Stats, config_labels: Sequence[str], nodes: int | None, span: float) -> dict[str, Any]:
    """One group's row (see :func:`group_breakdown`) from its statistics."""
    def label(c: int) -> str:
        return config_labels[c] if c < len(config_labels) else str(c)

    n, k = st.n, st.k
    row: dict[str, Any] = {
        "group": name, "config": label(st.first_config), "requests": n,
        "completed_share": k / n if n else math.nan, "drop_rate": st.lost / n if n else math.nan,
        "latency_mean_s": st.lat_mean if k else math.nan,
        "latency_p50_s": st.pct[0], "latency_p95_s": st.pct[1], "latency_p99_s": st.pct[2],
        "mean_payload_bytes": st.payload if k else math.nan}
    for q, v in zip((50, 95, 99), st.pct_all):
        row[f"latency_p{q}_all_s"] = None if math.isinf(v) else v
    if st.energy is not None:
        row["mean_energy_j"] = st.energy if k else math.nan
    if nodes is not None and st.busy_s is not None:
        row["node_utilisation"] = st.busy_s / (nodes * span) if nodes > 0 and span > 0 else math.nan
    if len(st.served) > 1:  # an adaptive group: the share of its requests in each configuration
        row["config"] = "adaptive"
        row["config_share"] = {label(c): m / n for c, m in sorted(st.served.items())}
    if st.agree is not None:
        row["agreement"] = st.agree if k else math.nan
    return row


def group_breakdown(records: pd.DataFrame, window: tuple[float, float], group_names: Sequence[str],
                    config_labels: Sequence[str], group_nodes: Sequence[int] = ()) -> list[dict[str, Any]]:
    """One row per fleet group over the requests created in ``window``: its name, its configuration's
    label, requests, completed share, drop rate, latency mean and p50/p95/p99 over completed requests,
    p50/p95/p99 over all its requests with the unfinished ones infinitely late (``latency_p*_all_s``,
    None where that is reached, as in the summary), mean payload bytes, agreement and node energy per
    completed request (NaN where none; absent without the ``agree`` / ``energy_j`` column) and, given
    each group's node count, its nodes' CPU busy share (:func:`node_busy_share`). Held in memory; a
    streamed run uses :class:`GroupAccumulator` (the same rows, chunk by chunk)."""
    acc = GroupAccumulator(window, group_names, config_labels, group_nodes)
    acc.add(records)
    return acc.result()


class GroupAccumulator:
    """:func:`group_breakdown` over records that arrive in chunks (in creation order): sums and counts
    per group, and each group's completed latencies in a :class:`~testbed.core.metrics.online.LatencySeries`
    (``series(g)``; in memory by default), summarised as the run summary's series is (exact percentiles,
    in chunks beyond :data:`~testbed.core.metrics.online.IN_MEMORY`; means equal up to rounding)."""

    def __init__(self, window: tuple[float, float], group_names: Sequence[str], config_labels: Sequence[str],
                 group_nodes: Sequence[int] = (), series: Callable[[int], LatencySeries] | None = None) -> None:
        self.window, self.names, self.labels, self.nodes = window, list(group_names), config_labels, list(group_nodes)
        size = len(self.names)
        self.series = [series(g) if series is not None else MemorySeries() for g in range(size)]
        self.stats = [_Stats() for _ in range(size)]
        self.means = [NanMeans() for _ in range(size)]
        self.seen_config = [False] * size
        self.columns: set[str] = set()

    def add(self, chunk: pd.DataFrame) -> None:
        """The next requests (every row, whenever created), with at least :data:`GROUP_COLUMNS`' first
        five columns."""
        created = chunk["created_s"].to_numpy(dtype=float)
        rows = chunk.loc[(created >= self.window[0]) & (created < self.window[1])]
        self.columns.update(rows.columns)
        status = rows["status"].astype(str).to_numpy()
        group = rows["group"].to_numpy()
        lost = np.isin(status, list(LOST))
        for g in np.unique(group):
            g = int(g)
            if not 0 <= g < len(self.names):
                continue
            mine = group == g
            part, okm = rows.loc[mine], status[mine] == "ok"
            ok = part.loc[okm]
            st, m = self.stats[g], self.means[g]
            st.n += len(part)
            st.k += len(ok)
            st.lost += int(lost[mine].sum())
            lat = (ok["finished_s"] - ok["created_s"]).to_numpy(dtype=float)
            self.series[g].append(lat)
            for col in ("payload_bytes", "energy_j", "agree"):
                if col in ok:
                    m.add(col, ok[col].to_numpy(dtype=float))
            if "head_start_s" in part and "encode_end_s" in part:
                busy = node_busy_share(part["head_start_s"].to_numpy(), part["encode_end_s"].to_numpy(), 1, 1.0)
                st.busy_s = (st.busy_s or 0.0) + busy
            if "config" in part and len(part):
                served = part["config"].to_numpy()
                if not self.seen_config[g]:
                    st.first_config, self.seen_config[g] = int(served[0]), True
                values, counts = np.unique(served, return_counts=True)
                for c, cnt in zip(values, counts):
                    st.served[int(c)] = st.served.get(int(c), 0) + int(cnt)

    def result(self) -> list[dict[str, Any]]:
        span = self.window[1] - self.window[0]
        out = []
        for g, name in enumerate(self.names):
            st, m, series = self.stats[g], self.means[g], self.series[g]
            mean, pct, pct_all = series_figures(series, (50, 95, 99), st.n)
            if st.k:
                st.lat_mean, st.pct = mean, (pct[0], pct[1], pct[2])
            st.pct_all = (pct_all[0], pct_all[1], pct_all[2])
            st.payload = m.get("payload_bytes")
            st.energy = m.get("energy_j") if "energy_j" in self.columns else None
            st.agree = m.get("agree") if "agree" in self.columns else None
            if "head_start_s" in self.columns and "encode_end_s" in self.columns and st.busy_s is None:
                st.busy_s = 0.0
            nodes = int(self.nodes[g]) if g < len(self.nodes) else None
            out.append(_row(name, st, self.labels, nodes, span))
        return out

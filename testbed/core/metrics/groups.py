"""Per fleet group figures of a heterogeneous fleet (groups of their own model, split or codec): each
group's requests, completions, latency and agreement, and the configuration it ran.

Not a registered summary metric (streamed runs summarise in chunks; this table is small): the runner
adds it to ``summary.json`` as ``by_group`` (with ``configs``, the configurations' labels) when the
groups run more than one configuration. Pure pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.metrics.latency import LOST, censored_statistic

__all__ = ["GROUP_COLUMNS", "group_breakdown", "node_busy_share"]

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


def group_breakdown(records: pd.DataFrame, window: tuple[float, float], group_names: Sequence[str],
                    config_labels: Sequence[str], group_nodes: Sequence[int] = ()) -> list[dict[str, Any]]:
    """One row per fleet group over the requests created in ``window``: its name, its configuration's
    label, requests, completed share, drop rate, latency mean and p50/p95/p99 over completed requests,
    p50/p95/p99 over all its requests with the unfinished ones infinitely late (``latency_p*_all_s``,
    None where that is reached, as in the summary), mean payload bytes, agreement and node energy per
    completed request (NaN where none; absent without the ``agree`` / ``energy_j`` column) and, given
    each group's node count, its nodes' CPU busy share (:func:`node_busy_share`)."""
    created = records["created_s"].to_numpy(dtype=float)
    rows = records.loc[(created >= window[0]) & (created < window[1])]
    status = rows["status"].astype(str).to_numpy()
    group = rows["group"].to_numpy()
    out: list[dict[str, Any]] = []
    for g, name in enumerate(group_names):
        mine = group == g
        part, st = rows.loc[mine], status[mine]
        ok = part.loc[st == "ok"]
        n, k = len(part), len(ok)
        lat = (ok["finished_s"] - ok["created_s"]).to_numpy(dtype=float)
        p50, p95, p99 = (map(float, np.percentile(lat, (50, 95, 99))) if k else (math.nan,) * 3)
        config = int(part["config"].iloc[0]) if n and "config" in part else 0
        row: dict[str, Any] = {
            "group": name, "config": config_labels[config] if config < len(config_labels) else str(config),
            "requests": n, "completed_share": k / n if n else math.nan,
            "drop_rate": float(np.isin(st, list(LOST)).mean()) if n else math.nan,
            "latency_mean_s": float(lat.mean()) if k else math.nan,
            "latency_p50_s": p50, "latency_p95_s": p95, "latency_p99_s": p99,
            "mean_payload_bytes": float(ok["payload_bytes"].mean()) if k else math.nan}
        every = np.where(st == "ok", (part["finished_s"] - part["created_s"]).to_numpy(dtype=float), np.inf)
        for q in (50, 95, 99):
            v = censored_statistic(every, q)
            row[f"latency_p{q}_all_s"] = None if math.isinf(v) else v
        if "energy_j" in rows:
            row["mean_energy_j"] = float(ok["energy_j"].mean()) if k else math.nan
        if g < len(group_nodes) and "head_start_s" in rows and "encode_end_s" in rows:
            row["node_utilisation"] = node_busy_share(part["head_start_s"].to_numpy(), part["encode_end_s"].to_numpy(),
                                                      int(group_nodes[g]), window[1] - window[0])
        served = part["config"].to_numpy() if n and "config" in part else np.zeros(0, dtype=int)
        if len(np.unique(served)) > 1:  # an adaptive group: the share of its requests in each configuration
            row["config"] = "adaptive"
            values, counts = np.unique(served, return_counts=True)
            row["config_share"] = {config_labels[int(c)] if int(c) < len(config_labels) else str(int(c)): int(m) / n
                                   for c, m in zip(values, counts)}
        if "agree" in rows:
            row["agreement"] = float(ok["agree"].mean()) if k else math.nan
        out.append(row)
    return out

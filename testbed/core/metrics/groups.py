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

from testbed.core.metrics.latency import LOST

__all__ = ["GROUP_COLUMNS", "group_breakdown"]

GROUP_COLUMNS = ("group", "config", "status", "created_s", "finished_s", "payload_bytes", "agree")
"""The record columns :func:`group_breakdown` reads (``agree`` where present)."""


def group_breakdown(records: pd.DataFrame, window: tuple[float, float], group_names: Sequence[str],
                    config_labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per fleet group over the requests created in ``window``: its name, its configuration's
    label, requests, completed share, drop rate, latency mean and p50/p95/p99 over completed requests,
    mean payload bytes and agreement (NaN where none; no agreement without an ``agree`` column)."""
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

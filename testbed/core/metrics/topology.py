"""Per-cell and per-server figures of a topology run (several cells or servers).

Not a registered summary metric: a one-cell, one-server run's summary is unchanged, and the runner adds
these keys only when the scenario has a topology (``Scenario.topology``): ``by_cell`` and ``by_server``,
each a list of rows of one schema (so a sweep's summary table stores them), one per cell (server) in the
scenario's order, and ``local_share``.

``by_cell`` rows: ``cell`` (its name), ``requests``, ``completed_share``, ``drop_rate``, ``latency_mean_s``, ``latency_p95_s``
    Requests created in the window by the cell's nodes, and their outcome (latency over completed ones);
    ``cell_failed``: those lost to the cell's outages; ``uplink_utilisation``, ``downlink_utilisation``: the
    share of time each direction was transmitting (the simulator's monitors); ``down_share``: the share of
    the window the cell was down.
``by_server`` rows: ``server`` (its name), ``requests``, ``share``, ``latency_mean_s``, ``latency_p95_s``, ``mean_server_s``
    Requests of the window assigned to the server, their share of all the window's requests, end-to-end
    latency of the completed ones and their mean time from arrival at the server to the end of their
    batch (decode, queue and GPU); ``server_failed``: those lost to its outages, ``retried``: those sent
    again after an outage (counted at the server that finally had them); ``gpu_utilisation``: busy GPUs
    over the server's GPUs (monitors), ``down_share``: the share of the window it was down;
    ``mean_batch_size``: of the batches it started in the window.
``local_share``
    Requests of the window answered on their node by the local fallback (present when any was).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.metrics.latency import LOST

__all__ = ["TOPOLOGY_COLUMNS", "topology_summary"]

TOPOLOGY_COLUMNS = ("created_s", "finished_s", "status", "cell", "server", "batch_size", "batch_start_s",
                    "batch_end_s", "server_arrival_s", "retries")
"""The record columns :func:`topology_summary` reads."""


def _latency(rows: pd.DataFrame) -> tuple[float, float]:
    ok = rows[rows["status"].astype(str) == "ok"]
    lat = (ok["finished_s"] - ok["created_s"]).to_numpy(dtype=float)
    if not len(lat):
        return math.nan, math.nan
    return float(lat.mean()), float(np.percentile(lat, 95))


def topology_summary(records: pd.DataFrame, window: tuple[float, float], cell_names: Sequence[str],
                     server_names: Sequence[str],
                     units: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> dict[str, Any]:
    """The per-cell and per-server keys (module docstring) over requests created in ``window``;
    ``units`` is the simulator's ``meta`` with ``cells`` and ``servers`` monitor means (NaN without)."""
    t0, t1 = window
    created = records["created_s"].to_numpy(dtype=float)
    rows = records[(created >= t0) & (created < t1)]
    n = len(rows)
    status = rows["status"].astype(str)
    cells = (units or {}).get("cells", {})
    by_cell: list[dict[str, Any]] = []
    for c, name in enumerate(cell_names):
        mine = rows["cell"].to_numpy() == c
        part, st = rows[mine], status[mine]
        k = len(part)
        mean, p95 = _latency(part)
        monitors = cells.get(name, {})
        by_cell.append({
            "cell": name, "requests": k,
            "completed_share": float((st == "ok").mean()) if k else math.nan,
            "drop_rate": float(st.isin(list(LOST)).mean()) if k else math.nan,
            "latency_mean_s": mean, "latency_p95_s": p95,
            "cell_failed": int((st == "cell_failed").sum()),
            "uplink_utilisation": float(monitors.get("uplink_busy", math.nan)),
            "downlink_utilisation": float(monitors.get("downlink_busy", math.nan)),
            "down_share": float(monitors.get("down_share", math.nan))})
    servers = (units or {}).get("servers", {})
    by_server: list[dict[str, Any]] = []
    batches_all = records[records["batch_size"].to_numpy() > 0]
    for s, name in enumerate(server_names):
        part = rows[rows["server"].to_numpy() == s]
        mean, p95 = _latency(part)
        done = part[part["status"].astype(str) == "ok"]
        batches = batches_all[batches_all["server"].to_numpy() == s]
        start = batches["batch_start_s"].to_numpy(dtype=float)
        batches = batches[(start >= t0) & (start < t1)]
        # a batch of size b has b rows: weight each row 1/b to count batches
        count = float((1.0 / batches["batch_size"].to_numpy(dtype=float)).sum())
        monitors = servers.get(name, {})
        by_server.append({
            "server": name, "requests": len(part), "share": len(part) / n if n else math.nan,
            "latency_mean_s": mean, "latency_p95_s": p95,
            "mean_server_s": float((done["batch_end_s"] - done["server_arrival_s"]).mean()) if len(done) else math.nan,
            "server_failed": int((part["status"].astype(str) == "server_failed").sum()),
            "retried": int((part["retries"].to_numpy() > 0).sum()) if "retries" in part else 0,
            "gpu_utilisation": float(monitors.get("gpu_utilisation", math.nan)),
            "down_share": float(monitors.get("down_share", math.nan)),
            "mean_batch_size": len(batches) / count if len(batches) else math.nan})
    out: dict[str, Any] = {"by_cell": by_cell, "by_server": by_server}
    local = int(((rows["server"].to_numpy() == -1) & (status == "ok").to_numpy()).sum())
    if local:
        out["local_share"] = local / n
    return out

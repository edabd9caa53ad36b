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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.metrics.latency import LOST
from testbed.core.metrics.online import LatencySeries, MemorySeries, NanMeans, series_figures

__all__ = ["TOPOLOGY_COLUMNS", "TopologyAccumulator", "topology_summary"]

TOPOLOGY_COLUMNS = ("created_s", "finished_s", "status", "cell", "server", "batch_size", "batch_start_s",
                    "batch_end_s", "server_arrival_s", "retries")
"""The record columns :func:`topology_summary` reads."""


class _Unit:
    """Counts, sums and the completed latencies of one cell's or one server's requests."""

    def __init__(self, series: LatencySeries) -> None:
        self.series = series
        self.n = self.ok = self.lost = self.cell_failed = self.server_failed = self.retried = 0
        self.server_time = NanMeans()
        self.batch_rows = 0
        self.batch_weight = 0.0  # sum of 1 / batch size over the rows of batches started in the window

    def latency(self) -> tuple[float, float]:
        """Mean and p95 of the completed latencies (exact; chunked beyond IN_MEMORY)."""
        mean, (p95,), _ = series_figures(self.series, (95,))
        return mean, p95


def topology_summary(records: pd.DataFrame, window: tuple[float, float], cell_names: Sequence[str],
                     server_names: Sequence[str],
                     units: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> dict[str, Any]:
    """The per-cell and per-server keys (module docstring) over requests created in ``window``;
    ``units`` is the simulator's ``meta`` with ``cells`` and ``servers`` monitor means (NaN without).
    Held in memory; a streamed run feeds :class:`TopologyAccumulator` chunk by chunk."""
    acc = TopologyAccumulator(window, cell_names, server_names)
    acc.add(records)
    return acc.result(units)


class TopologyAccumulator:
    """:func:`topology_summary` over records that arrive in chunks (in creation order): counts and sums
    per cell and server, and each one's completed latencies in a :class:`LatencySeries` (``series(kind,
    index)``, ``kind`` ``"cell"`` or ``"server"``; in memory by default)."""

    def __init__(self, window: tuple[float, float], cell_names: Sequence[str], server_names: Sequence[str],
                 series: Callable[[str, int], LatencySeries] | None = None) -> None:
        self.window, self.cell_names, self.server_names = window, list(cell_names), list(server_names)
        make = series or (lambda kind, i: MemorySeries())
        self.cells = [_Unit(make("cell", c)) for c in range(len(self.cell_names))]
        self.servers = [_Unit(make("server", s)) for s in range(len(self.server_names))]
        self.n = self.local = 0
        self.has_retries = False

    def add(self, chunk: pd.DataFrame) -> None:
        t0, t1 = self.window
        created = chunk["created_s"].to_numpy(dtype=float)
        win = (created >= t0) & (created < t1)
        status = chunk["status"].astype(str).to_numpy()
        ok, lost = status == "ok", np.isin(status, list(LOST))
        lat = (chunk["finished_s"] - chunk["created_s"]).to_numpy(dtype=float)
        cell, server = chunk["cell"].to_numpy(), chunk["server"].to_numpy()
        retries = chunk["retries"].to_numpy() if "retries" in chunk else None
        self.has_retries |= retries is not None
        self.n += int(win.sum())
        self.local += int((win & (server == -1) & ok).sum())
        for c, u in enumerate(self.cells):
            mine = win & (cell == c)
            u.n += int(mine.sum())
            u.ok += int((mine & ok).sum())
            u.lost += int((mine & lost).sum())
            u.cell_failed += int((mine & (status == "cell_failed")).sum())
            u.series.append(lat[mine & ok])
        size = chunk["batch_size"].to_numpy()
        start = chunk["batch_start_s"].to_numpy(dtype=float)
        batched = (size > 0) & (start >= t0) & (start < t1)
        arrival, end = chunk["server_arrival_s"].to_numpy(dtype=float), chunk["batch_end_s"].to_numpy(dtype=float)
        for s, u in enumerate(self.servers):
            mine = win & (server == s)
            u.n += int(mine.sum())
            u.ok += int((mine & ok).sum())
            u.server_failed += int((mine & (status == "server_failed")).sum())
            if retries is not None:
                u.retried += int((mine & (retries > 0)).sum())
            u.series.append(lat[mine & ok])
            u.server_time.add("s", (end - arrival)[mine & ok])
            rows = batched & (server == s)
            u.batch_rows += int(rows.sum())
            u.batch_weight += float((1.0 / size[rows].astype(float)).sum())

    def result(self, units: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> dict[str, Any]:
        n = self.n
        cells = (units or {}).get("cells", {})
        by_cell: list[dict[str, Any]] = []
        for name, u in zip(self.cell_names, self.cells):
            mean, p95 = u.latency()
            monitors = cells.get(name, {})
            by_cell.append({
                "cell": name, "requests": u.n,
                "completed_share": u.ok / u.n if u.n else math.nan,
                "drop_rate": u.lost / u.n if u.n else math.nan,
                "latency_mean_s": mean, "latency_p95_s": p95,
                "cell_failed": u.cell_failed,
                "uplink_utilisation": float(monitors.get("uplink_busy", math.nan)),
                "downlink_utilisation": float(monitors.get("downlink_busy", math.nan)),
                "down_share": float(monitors.get("down_share", math.nan))})
        servers = (units or {}).get("servers", {})
        by_server: list[dict[str, Any]] = []
        for name, u in zip(self.server_names, self.servers):
            mean, p95 = u.latency()
            monitors = servers.get(name, {})
            by_server.append({
                "server": name, "requests": u.n, "share": u.n / n if n else math.nan,
                "latency_mean_s": mean, "latency_p95_s": p95,
                "mean_server_s": u.server_time.get("s") if u.ok else math.nan,
                "server_failed": u.server_failed,
                "retried": u.retried if self.has_retries else 0,
                "gpu_utilisation": float(monitors.get("gpu_utilisation", math.nan)),
                "down_share": float(monitors.get("down_share", math.nan)),
                "mean_batch_size": u.batch_rows / u.batch_weight if u.batch_rows else math.nan})
        out: dict[str, Any] = {"by_cell": by_cell, "by_server": by_server}
        if self.local:
            out["local_share"] = self.local / n
        return out

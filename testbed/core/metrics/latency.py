"""Completion counts, end-to-end latency percentiles and the mean of each stage (completed requests)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput
from testbed.core.metrics.stages import STAGES

__all__ = ["counts", "latency", "stage_means"]

LOST = ("dropped_at_node", "dropped_at_server", "timed_out", "dropped_on_link")


@SUMMARY_METRICS.register("counts")
def counts(s: SummaryInput) -> dict[str, Any]:
    """Requests created in the window, completions, throughput, offered load and each status."""
    df, t0, t1 = s.records, *s.window
    status = s.window_rows["status"].astype(str)
    n = len(s.window_rows)
    out: dict[str, Any] = {
        "requests": n,
        "completed": len(s.ok),
        # completions per second during the window (whenever the request was created)
        "throughput_per_s": float(((df["status"] == "ok") & (df["finished_s"] >= t0)
                                   & (df["finished_s"] < t1)).sum()) / s.span,
        "offered_per_s": n / s.span,
        "drop_rate": float(status.isin(list(LOST)).mean()) if n else 0.0,
    }
    for name in (*LOST, "in_flight"):
        out[name] = int((status == name).sum())
    return out


@SUMMARY_METRICS.register("latency")
def latency(s: SummaryInput) -> dict[str, Any]:
    """Mean, p50/p90/p95/p99 and max of ``latency_s`` over completed requests created in the window."""
    lat = s.ok["latency_s"].to_numpy()
    keys = ("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_max_s")
    if not len(lat):
        return dict.fromkeys(keys, math.nan)
    q = np.percentile(lat, [50, 90, 95, 99])
    return dict(zip(keys, (float(lat.mean()), *map(float, q), float(lat.max()))))


@SUMMARY_METRICS.register("stages")
def stage_means(s: SummaryInput) -> dict[str, Any]:
    """Mean time of each stage over completed requests created in the window."""
    return {f"mean_{stage}": float(s.ok[stage].mean()) if len(s.ok) else math.nan for stage in STAGES}

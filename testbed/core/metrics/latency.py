"""Completion counts and shares, end-to-end latency percentiles (over completed requests, and with
every request that did not complete counted as infinitely late), their within-run intervals and the
MSER-5 warm-up, and the mean of each stage (completed requests)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from testbed.core.metrics.intervals import BATCHES, MSER_BATCH, batch_interval, batch_method, mser
from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput
from testbed.core.metrics.stages import STAGES

__all__ = ["DROPPED", "LATENCY_OVER", "LOST", "censored_statistic", "counts", "latency", "latency_all", "latency_intervals",
           "latency_or_inf", "mser_warmup", "stage_means"]

DROPPED = ("dropped_at_node", "dropped_at_server", "dropped_on_link", "server_failed", "cell_failed")
"""Statuses of requests dropped by a station (the cause is the station; ``*_failed``: its outage)."""
LOST = ("dropped_at_node", "dropped_at_server", "timed_out", "dropped_on_link", "server_failed", "cell_failed")
"""Statuses of requests that ended without an answer (``drop_rate`` is their share)."""
LATENCY_OVER = "completed requests created in the window"
"""What ``latency_*_s`` (and ``mean_<stage>``) are computed over, stored as ``latency_over``."""
_PERCENTILES = (50, 90, 95, 99)
Method = Literal["linear", "lower", "higher", "midpoint", "nearest"]
"""numpy percentile methods :func:`censored_statistic` accepts (``capacity`` uses ``higher``)."""


def latency_or_inf(rows: pd.DataFrame) -> np.ndarray:
    """``latency_s`` of completed rows, ``inf`` for every other row (dropped, timed out, in flight)."""
    return np.where(rows["status"].astype(str) == "ok", rows["latency_s"].to_numpy(dtype=float), np.inf)


def censored_statistic(lat: np.ndarray, q: float | None, method: Method = "linear") -> float:
    """Mean (``q`` None) or ``q``-th percentile of latencies where ``inf`` marks a request that never
    completed: ``inf`` when the statistic reaches one (any for the mean), NaN for no requests.

    Where only finite values are involved the result equals ``np.percentile(lat, q, method=method)``
    (numpy would give NaN when interpolating towards ``inf``)."""
    lat = np.asarray(lat, dtype=float)
    n = len(lat)
    if not n:
        return math.nan
    finite = np.isfinite(lat)
    if q is None:
        return float(np.mean(lat)) if finite.all() else math.inf
    k = int(finite.sum())
    if k == n:
        return float(np.percentile(lat, q, method=method))
    if k == 0:
        return math.inf
    # the (fractional) rank the method reads; it needs a value beyond the k finite ones -> inf
    pos = float(np.percentile(np.arange(n, dtype=float), q, method=method))
    if math.ceil(pos) >= k:
        return math.inf
    return float(np.percentile(np.where(finite, lat, lat[finite].max()), q, method=method))


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
    # every request created in the window ends in exactly one of these; the shares add up to 1
    out["dropped"] = sum(out[name] for name in DROPPED)
    for name in ("completed", "dropped", *DROPPED, "timed_out", "in_flight"):
        out[f"{name}_share"] = out[name] / n if n else math.nan
    return out


@SUMMARY_METRICS.register("latency")
def latency(s: SummaryInput) -> dict[str, Any]:
    """Mean, p50/p90/p95/p99 and max of ``latency_s`` over completed requests created in the window."""
    lat = s.ok["latency_s"].to_numpy()
    keys = ("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_max_s")
    if not len(lat):
        return dict.fromkeys(keys, math.nan)
    q = np.percentile(lat, _PERCENTILES)
    return dict(zip(keys, (float(lat.mean()), *map(float, q), float(lat.max()))))


@SUMMARY_METRICS.register("latency_all")
def latency_all(s: SummaryInput) -> dict[str, Any]:
    """What ``latency_*_s`` are over, and p50/p90/p95/p99 over every request created in the window with
    the ones that did not complete counted as infinitely late (``None`` where that is reached)."""
    lat = latency_or_inf(s.window_rows)
    out: dict[str, Any] = {"latency_over": LATENCY_OVER}
    for q in _PERCENTILES:
        v = censored_statistic(lat, q)
        out[f"latency_p{q}_all_s"] = None if math.isinf(v) else v
    return out


@SUMMARY_METRICS.register("latency_intervals")
def latency_intervals(s: SummaryInput) -> dict[str, Any]:
    """Within-run 95% intervals of the mean and p95 latency (batch means over the window by creation
    time, :func:`~testbed.core.metrics.intervals.batch_interval`) and the MSER-5 warm-up: the creation
    time before which MSER-5 would discard completed requests (from time 0; None when the latency is
    still trending at the end, NaN when there are too few)."""
    ok = s.ok.sort_values("created_s", kind="stable")
    lat = ok["latency_s"].to_numpy(dtype=float)
    out: dict[str, Any] = {}
    for key, q in (("latency_mean_s", None), ("latency_p95_s", 95.0)):
        out[f"{key}_run_ci_low"], out[f"{key}_run_ci_high"] = batch_interval(lat, q)
    out["run_ci_method"] = batch_method(BATCHES)
    out["warmup_mser5_s"] = mser_warmup(s.records, s.window[1])
    return out


def mser_warmup(records: pd.DataFrame, end: float) -> float | None:
    """Creation time of the first completed request MSER-5 keeps, over the requests created in ``[0,
    end)`` in creation order: 0.0 when nothing is discarded, None when no truncation in the first half
    of the series steadies it (still trending), NaN with fewer than ``4 * MSER_BATCH`` completions."""
    done = records[(records["status"].astype(str) == "ok") & (records["created_s"] < end)]
    done = done.sort_values("created_s", kind="stable")
    if len(done) < 4 * MSER_BATCH:
        return math.nan
    d = mser((done["finished_s"] - done["created_s"]).to_numpy(dtype=float))
    if d is None:
        return None
    return 0.0 if d == 0 else float(done["created_s"].iloc[d])


@SUMMARY_METRICS.register("stages")
def stage_means(s: SummaryInput) -> dict[str, Any]:
    """Mean time of each stage over completed requests created in the window."""
    return {f"mean_{stage}": float(s.ok[stage].mean()) if len(s.ok) else math.nan for stage in STAGES}

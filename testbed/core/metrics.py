"""Metrics as pure functions of the request records (one row per request).

Stage durations are derived from the per-stage timestamps; summaries count the requests created
inside the measurement window ``[warmup, duration)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["STAGES", "with_stages", "in_window", "summarize", "queue_table", "format_summary",
           "batch_table", "percentile_ci"]

STAGES = ("node_queue_s", "head_s", "encode_s", "link_wait_s", "tx_s", "propagation_s", "decode_s",
          "server_queue_s", "batch_wait_s", "tail_s", "downlink_s")
"""Stages a completed request's latency is made of, in order; they add up to ``latency_s``."""


def with_stages(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with one duration column per stage and the end-to-end ``latency_s``."""
    out = df.copy()
    ready = np.fmax(df["queued_s"], df["batch_ready_s"])
    out["node_queue_s"] = df["head_start_s"] - df["created_s"]
    out["head_s"] = df["head_end_s"] - df["head_start_s"]
    out["encode_s"] = df["encode_end_s"] - df["head_end_s"]
    out["link_wait_s"] = df["tx_start_s"] - df["encode_end_s"]
    out["tx_s"] = df["tx_end_s"] - df["tx_start_s"]
    out["propagation_s"] = df["server_arrival_s"] - df["tx_end_s"]
    out["decode_s"] = df["queued_s"] - df["server_arrival_s"]
    out["server_queue_s"] = ready - df["queued_s"]
    out["batch_wait_s"] = df["batch_start_s"] - ready
    out["tail_s"] = df["batch_end_s"] - df["batch_start_s"]
    out["downlink_s"] = df["finished_s"] - df["batch_end_s"]
    out["latency_s"] = df["finished_s"] - df["created_s"]
    return out


def in_window(df: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """Requests created in ``[t0, t1)``."""
    t0, t1 = window
    return df[(df["created_s"] >= t0) & (df["created_s"] < t1)]


def batch_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per GPU batch: gpu, start, end, size."""
    b = df.dropna(subset=["batch_start_s"])
    b = b[b["batch_end_s"].notna()]
    return (b.groupby(["gpu", "batch_start_s"], observed=True, sort=True)
             .agg(batch_end_s=("batch_end_s", "first"), size=("batch_size", "first"))
             .reset_index())


def _overlap(start: pd.Series, end: pd.Series, window: tuple[float, float]) -> float:
    t0, t1 = window
    lo, hi = np.maximum(start.to_numpy(), t0), np.minimum(end.to_numpy(), t1)
    return float(np.clip(hi - lo, 0.0, None).sum())


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (e.g. one value per replication)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    q = float(t.ppf(0.5 + level / 2, n - 1))
    m, s = float(np.mean(values)), float(np.std(values, ddof=1))
    return (m - q * s / math.sqrt(n), m + q * s / math.sqrt(n))


def summarize(df: pd.DataFrame, window: tuple[float, float], levels: Mapping[str, Mapping[str, float]] | None = None,
              gpus: int = 1, nodes: int | None = None) -> dict[str, Any]:
    """Headline figures for one run (requests created in ``window``)."""
    t0, t1 = window
    span = t1 - t0
    w = with_stages(in_window(df, window))
    status = w["status"].astype(str)
    ok = w[status == "ok"]
    lat = ok["latency_s"].to_numpy()
    n = len(w)
    out: dict[str, Any] = {
        "requests": n,
        "completed": int(len(ok)),
        # completions per second during the window (whenever the request was created)
        "throughput_per_s": float(((df["status"] == "ok") & (df["finished_s"] >= t0)
                                   & (df["finished_s"] < t1)).sum()) / span,
        "offered_per_s": n / span,
        "drop_rate": float((status.isin(["dropped_at_node", "dropped_at_server", "timed_out",
                                         "dropped_on_link"])).mean()) if n else 0.0,
    }
    for s in ("dropped_at_node", "dropped_at_server", "timed_out", "dropped_on_link", "in_flight"):
        out[s] = int((status == s).sum())
    if len(lat):
        q = np.percentile(lat, [50, 90, 95, 99])
        out.update(latency_mean_s=float(lat.mean()), latency_p50_s=float(q[0]), latency_p90_s=float(q[1]),
                   latency_p95_s=float(q[2]), latency_p99_s=float(q[3]), latency_max_s=float(lat.max()))
    else:
        out.update({k: math.nan for k in ("latency_mean_s", "latency_p50_s", "latency_p90_s",
                                          "latency_p95_s", "latency_p99_s", "latency_max_s")})
    for stage in STAGES:
        out[f"mean_{stage}"] = float(ok[stage].mean()) if len(ok) else math.nan
    # utilisation from the records, over the window (all requests, whenever created)
    out["link_utilisation"] = _overlap(df["tx_start_s"], df["tx_end_s"], window) / span if levels is None \
        else levels["uplink"]["busy"]
    batches = batch_table(df)
    gpu_busy = _overlap(batches["batch_start_s"], batches["batch_end_s"], window)
    out["gpu_utilisation"] = gpu_busy / (span * gpus)
    in_w = batches[(batches["batch_start_s"] >= t0) & (batches["batch_start_s"] < t1)]
    out["mean_batch_size"] = float(in_w["size"].mean()) if len(in_w) else math.nan
    if nodes:
        out["node_utilisation"] = _overlap(df["head_start_s"], df["encode_end_s"], window) / (span * nodes)
    out["mean_payload_bytes"] = float(ok["payload_bytes"].mean()) if len(ok) else math.nan
    if "correct" in w:
        out["accuracy"] = float(ok["correct"].mean()) if ok["correct"].notna().any() else math.nan
        out["agreement"] = float(ok["agree"].mean()) if len(ok) else math.nan
    if "mode" in w and (w["mode"] > 0).any():
        out["part_mode_share"] = float((ok["mode"] > 0).mean()) if len(ok) else math.nan
    if "energy_j" in w:
        for col in ("energy_j", "energy_compute_j", "energy_radio_j", "energy_idle_j"):
            out[f"mean_{col}"] = float(ok[col].mean()) if len(ok) else math.nan
    return out


def queue_table(levels: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Time-weighted number in station and waiting, per station (over the window)."""
    rows = []
    for station, d in levels.items():
        rows.append({"station": station, "mean_in_station": d["in_station"], "mean_waiting": d["waiting"],
                     "busy": d["busy"], "peak_in_station": d.get("peak_in_station", math.nan),
                     "open_at_end": d.get("open_at_end", math.nan)})
    return pd.DataFrame(rows)


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if key.endswith("per_s"):
            return f"{value:.1f}/s"
        if key.endswith("_s"):
            return f"{value * 1e3:.2f} ms"
        return f"{value:.3f}"
    return str(value)


def format_summary(summary: Mapping[str, Any], queues: pd.DataFrame | None = None) -> str:
    """A plain-text table of a summary (and of the queue table)."""
    width = max(len(k) for k in summary)
    lines = [f"{k:<{width}}  {_fmt(k, v)}" for k, v in summary.items()]
    if queues is not None:
        lines += ["", queues.to_string(index=False, float_format=lambda x: f"{x:.3f}")]
    return "\n".join(lines)

"""Stage durations and windows: pure functions of the request records (one row per request)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from testbed.core.records import in_window_mask

__all__ = ["STAGES", "batch_table", "in_window", "overlap", "with_stages"]

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
    """Requests created in ``[t0, t1)`` (the rows whose ``in_window`` column is true)."""
    return df[in_window_mask(df["created_s"].to_numpy(), window)]


def batch_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per GPU batch: gpu, start, end, size."""
    b = df.dropna(subset=["batch_start_s"])
    b = b[b["batch_end_s"].notna()]
    return (b.groupby(["gpu", "batch_start_s"], observed=True, sort=True)
             .agg(batch_end_s=("batch_end_s", "first"), size=("batch_size", "first"))
             .reset_index())


def overlap(start: pd.Series, end: pd.Series, window: tuple[float, float]) -> float:
    """Total length of the intervals ``[start, end)`` inside ``window`` (NaN intervals count zero)."""
    t0, t1 = window
    lo, hi = np.maximum(start.to_numpy(), t0), np.minimum(end.to_numpy(), t1)
    return float(np.nansum(np.clip(hi - lo, 0.0, None)))

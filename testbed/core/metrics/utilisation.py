"""Station utilisation over the window: link, GPUs (with the mean batch size) and node CPUs."""

from __future__ import annotations

import math
from typing import Any

from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput
from testbed.core.metrics.stages import batch_table, overlap

__all__ = ["utilisation"]


@SUMMARY_METRICS.register("utilisation")
def utilisation(s: SummaryInput) -> dict[str, Any]:
    """Busy fractions from the records (all requests, whenever created) or the link's own monitor."""
    df, (t0, t1) = s.records, s.window
    out: dict[str, Any] = {}
    out["link_utilisation"] = (overlap(df["tx_start_s"], df["tx_end_s"], s.window) / s.span if s.levels is None
                               else s.levels["uplink"]["busy"])
    batches = batch_table(df)
    out["gpu_utilisation"] = overlap(batches["batch_start_s"], batches["batch_end_s"], s.window) / (s.span * s.gpus)
    in_w = batches[(batches["batch_start_s"] >= t0) & (batches["batch_start_s"] < t1)]
    out["mean_batch_size"] = float(in_w["size"].mean()) if len(in_w) else math.nan
    if s.nodes:
        out["node_utilisation"] = overlap(df["head_start_s"], df["encode_end_s"], s.window) / (s.span * s.nodes)
    out["mean_payload_bytes"] = float(s.ok["payload_bytes"].mean()) if len(s.ok) else math.nan
    return out

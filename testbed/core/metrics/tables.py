"""Tables and intervals: the queue table, replication intervals, the printed summary."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from testbed.core.metrics.intervals import replication_interval

__all__ = ["format_summary", "format_warnings", "percentile_ci"]


percentile_ci = replication_interval
"""Former name of :func:`testbed.core.metrics.intervals.replication_interval` (the interval is of a mean)."""


def _fmt(key: str, value: Any) -> str:
    key = re.sub(r"(_run)?_ci_(low|high)$", "", key)  # an interval is in its metric's unit
    if value is None:  # JSON's null: a statistic no finite value reaches
        if key.endswith("_all_s"):
            return "inf (beyond the run: counts requests that never completed)"
        if key == "warmup_mser5_s":
            return "none (latency still trending)"
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if key.endswith("per_s"):
            return f"{value:.1f}/s"
        if key.endswith("_s"):  # in the key's unit (seconds), as in summary.json
            return f"{value:.6f} s"
        return f"{value:.3f}"
    return str(value)


def format_summary(summary: Mapping[str, Any], queues: pd.DataFrame | None = None) -> str:
    """A plain-text table of a summary (and of the queue table); the warnings are left to
    :func:`format_warnings`."""
    shown = {k: v for k, v in summary.items() if k != "warnings"}
    width = max(len(k) for k in shown)
    lines = [f"{k:<{width}}  {_fmt(k, v)}" for k, v in shown.items()]
    if queues is not None:
        lines += ["", queues.to_string(index=False, float_format=lambda x: f"{x:.3f}")]
    return "\n".join(lines)


def format_warnings(summary: Mapping[str, Any]) -> list[str]:
    """The summary's warnings as printed lines (``warning: ...``), none when it has none."""
    return [f"warning: {w}" for w in summary.get("warnings") or ()]

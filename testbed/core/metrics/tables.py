"""Tables and intervals: the queue table, replication intervals, the printed summary."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["format_summary", "percentile_ci", "queue_table"]


def queue_table(levels: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Time-weighted number in station and waiting, per station (over the window)."""
    rows = []
    for station, d in levels.items():
        rows.append({"station": station, "mean_in_station": d["in_station"], "mean_waiting": d["waiting"],
                     "busy": d["busy"], "peak_in_station": d.get("peak_in_station", math.nan),
                     "open_at_end": d.get("open_at_end", math.nan)})
    return pd.DataFrame(rows)


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

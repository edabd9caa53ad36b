"""One run's summary: every registered summary metric over the measurement window, then its warnings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from testbed.core.metrics.checks import run_warnings
from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput
from testbed.core.metrics.stages import in_window, with_stages

__all__ = ["summarize"]


def summarize(df: pd.DataFrame, window: tuple[float, float], levels: Mapping[str, Mapping[str, float]] | None = None,
              gpus: int = 1, nodes: int | None = None) -> dict[str, Any]:
    """Headline figures for one run (requests created in ``window``), metric by metric, and a
    ``warnings`` list (:func:`~testbed.core.metrics.checks.run_warnings`; empty when all is well)."""
    rows = with_stages(in_window(df, window))
    ok = rows[rows["status"].astype(str) == "ok"]
    s = SummaryInput(df, rows, ok, window, levels, gpus, nodes)
    out: dict[str, Any] = {}
    for _, metric in SUMMARY_METRICS.items():
        out.update(metric(s))
    out["warnings"] = run_warnings(out, s)
    return out

"""Answers: accuracy against labels and top-1 agreement with the unsplit model (completed requests),
and the share of NestQuant part-bit heads (Xie et al., arXiv:2506.17870)."""

from __future__ import annotations

import math
from typing import Any

from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput

__all__ = ["answers", "nestquant_modes"]


@SUMMARY_METRICS.register("answers")
def answers(s: SummaryInput) -> dict[str, Any]:
    """``accuracy`` (NaN where unlabelled) and ``agreement`` when the records carry answers."""
    if "correct" not in s.window_rows:
        return {}
    ok = s.ok
    return {"accuracy": float(ok["correct"].mean()) if ok["correct"].notna().any() else math.nan,
            "agreement": float(ok["agree"].mean()) if len(ok) else math.nan}


@SUMMARY_METRICS.register("nestquant_modes")
def nestquant_modes(s: SummaryInput) -> dict[str, Any]:
    """Share of completed requests served by a part-bit head, when any frame used one."""
    w = s.window_rows
    if "mode" not in w or not (w["mode"] > 0).any():
        return {}
    return {"part_mode_share": float((s.ok["mode"] > 0).mean()) if len(s.ok) else math.nan}

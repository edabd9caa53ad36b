"""Answers over completed requests: accuracy against labels, top-1 agreement with the unsplit model,
top-5 agreement (the unsplit model's answer among the split model's five best) and top-1 agreement on
the frames the unsplit model is confident about; and the share of NestQuant part-bit heads (Xie et
al., arXiv:2506.17870)."""

from __future__ import annotations

import math
from typing import Any

from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput

__all__ = ["CONFIDENT", "RANDOM_WEIGHTS_NOTE", "answers", "nestquant_modes"]

CONFIDENT = 0.5
"""Frames the unsplit model answers with at least this top-1 probability count as confident."""

RANDOM_WEIGHTS_NOTE = ("random weights: accuracy, agreement and compressed sizes are not meaningful "
                       "(a random network gives nearly every image the same class); use weights: pretrained")
"""The one line every output made with seeded random weights carries."""


@SUMMARY_METRICS.register("answers")
def answers(s: SummaryInput) -> dict[str, Any]:
    """``accuracy`` (NaN where unlabelled) and ``agreement`` when the records carry answers;
    ``agreement_clean`` (against the unsplit model on the clean frame) when the frames were corrupted."""
    if "correct" not in s.window_rows:
        return {}
    ok = s.ok
    out = {"accuracy": float(ok["correct"].mean()) if ok["correct"].notna().any() else math.nan,
           "agreement": float(ok["agree"].mean()) if len(ok) else math.nan}
    if "agree_top5" in ok:  # the unsplit model's answer among the split model's five best
        out["agreement_top5"] = float(ok["agree_top5"].mean()) if ok["agree_top5"].notna().any() else math.nan
    if "agree_clean" in ok:  # corrupted frames: the unsplit model's answer on the clean frame
        out["agreement_clean"] = float(ok["agree_clean"].mean()) if ok["agree_clean"].notna().any() else math.nan
    if "confident" in ok:  # frames the unsplit model answers with probability >= CONFIDENT
        confident = ok[ok["confident"] == 1.0]
        out["confident_share"] = float(ok["confident"].mean()) if ok["confident"].notna().any() else math.nan
        out["agreement_confident"] = float(confident["agree"].mean()) if len(confident) else math.nan
    return out


@SUMMARY_METRICS.register("nestquant_modes")
def nestquant_modes(s: SummaryInput) -> dict[str, Any]:
    """Share of completed requests served by a part-bit head, when any frame used one."""
    w = s.window_rows
    if "mode" not in w or not (w["mode"] > 0).any():
        return {}
    return {"part_mode_share": float((s.ok["mode"] > 0).mean()) if len(s.ok) else math.nan}

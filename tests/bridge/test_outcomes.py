"""Agreement per request: top-1, top-5 and on confident frames, from the pipeline table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from testbed.bridge.cache import PipelineTable
from testbed.bridge.outcomes import add_live_outcomes, add_outcomes
from testbed.core.metrics.outcomes import answers
from testbed.core.metrics.registry import SummaryInput
from testbed.split.pipeline import agreement


def _table() -> PipelineTable:
    """Three images: the split model is right, right only in its top 5, wrong; the unsplit model
    is confident about the first two."""
    images = pd.DataFrame({
        "image": [0, 1, 2], "payload_bytes": [10, 20, 30], "prediction": [7, 3, 9],
        "top5_0": [7, 3, 9], "top5_1": [1, 5, 8], "top5_2": [2, 6, 1], "top5_3": [4, 0, 2], "top5_4": [5, 2, 4],
        "reference": [7, 5, 3], "reference_confidence": [0.9, 0.6, 0.2], "label": [-1, -1, -1]})
    return PipelineTable(images, 1, 1, (), {})


def test_per_request_agreement_columns() -> None:
    df = pd.DataFrame({"image": [0, 1, 2, 1, -1]})
    out = add_outcomes(df, _table())
    assert out["agree"].tolist()[:4] == [1.0, 0.0, 0.0, 0.0] and math.isnan(out["agree"].iloc[4])
    assert out["agree_top5"].tolist()[:4] == [1.0, 1.0, 0.0, 1.0]
    assert out["confident"].tolist()[:4] == [1.0, 1.0, 0.0, 1.0] and math.isnan(out["confident"].iloc[4])
    assert out["correct"].isna().all()  # unlabelled


def _live(image: list[int], top5: list[list[int]]) -> pd.DataFrame:
    """Emulated records: the live server's five best per request (-1 padded), top-1 first."""
    df = pd.DataFrame({"image": image, "prediction": [t[0] for t in top5]})
    for j in range(5):
        df[f"top5_{j}"] = [t[j] for t in top5]
    return df


def test_live_answers_carry_top1_top5_and_confidence() -> None:
    df = _live([0, 1, 2, 1, 2, -1], [[7, 1, 2, 4, 5], [5, 3, 6, 0, 2], [9, 8, 1, 2, 4], [3, 4, -1, -1, -1],
                                     [-1] * 5, [-1] * 5])
    out = add_live_outcomes(df, _table())
    assert out["agree"].tolist()[:4] == [1.0, 1.0, 0.0, 0.0] and out["confident"].tolist()[:4] == [1.0, 1.0, 0.0, 1.0]
    # the unsplit model's answer among the live five best: as add_outcomes computes it from the table
    assert out["agree_top5"].tolist()[:4] == [1.0, 1.0, 0.0, 0.0]
    assert out.iloc[4:][["agree", "agree_top5", "confident"]].isna().all().all()  # unanswered; no image
    assert out["cached_prediction"].tolist() == [7, 3, 9, 3, 9, -1]


def test_live_agree_top5_equals_the_simulated_one_for_the_same_answers() -> None:
    table = _table()
    images = [0, 1, 2, 1, 0]
    rows = table.images.set_index("image").loc[images]
    live = _live(images, rows[[f"top5_{j}" for j in range(5)]].to_numpy().tolist())
    live["prediction"] = rows["prediction"].to_numpy()
    sim = add_outcomes(pd.DataFrame({"image": images}), table)
    emu = add_live_outcomes(live, table)
    for col in ("agree", "agree_top5", "confident", "correct"):
        assert emu[col].equals(sim[col]), col


def test_summary_agreement_figures() -> None:
    rows = add_outcomes(pd.DataFrame({"image": [0, 1, 2, 1]}), _table())
    s = SummaryInput(rows, rows, rows, (0.0, 1.0), None, 1, None)
    out = answers(s)
    assert out["agreement"] == pytest.approx(0.25) and out["agreement_top5"] == pytest.approx(0.75)
    assert out["confident_share"] == pytest.approx(0.75)
    assert out["agreement_confident"] == pytest.approx(1 / 3)


def test_pipeline_agreement_summary() -> None:
    top5 = np.array([[7, 1, 2, 4, 5], [3, 5, 6, 0, 2], [9, 8, 1, 2, 4]])
    got = agreement(np.array([7, 3, 9]), top5, np.array([7, 5, 3]), np.array([0.9, 0.6, 0.2]))
    assert got == {"top1_agreement": pytest.approx(1 / 3), "top5_agreement": pytest.approx(2 / 3),
                   "confident_frames": 2, "confident_agreement": pytest.approx(0.5)}


def test_clean_reference_of_corrupted_frames() -> None:
    """With a corrupted dataset the table also holds the unsplit model's answer on the clean frame:
    ``agree_clean`` per request and ``agreement_clean`` in the summary; without one, neither."""
    table = _table()
    images = table.images.assign(reference_clean=[7, 3, 1], corruption="gaussian_noise", severity=5)
    corrupted = PipelineTable(images, 1, 1, (), {})
    rows = add_outcomes(pd.DataFrame({"image": [0, 1, 2, 1, -1]}), corrupted)
    assert rows["agree"].tolist()[:4] == [1.0, 0.0, 0.0, 0.0]  # against the same (corrupted) frame
    assert rows["agree_clean"].tolist()[:4] == [1.0, 1.0, 0.0, 1.0] and math.isnan(rows["agree_clean"].iloc[4])
    s = SummaryInput(rows, rows, rows, (0.0, 1.0), None, 1, None)
    assert answers(s)["agreement_clean"] == pytest.approx(0.75)
    live = add_live_outcomes(_live([0, 1], [[7, 1, 2, 4, 5], [3, 5, 6, 0, 2]]), corrupted)
    assert live["agree_clean"].tolist() == [1.0, 1.0]
    plain = add_outcomes(pd.DataFrame({"image": [0, 1]}), table)
    assert "agree_clean" not in plain and "agreement_clean" not in answers(SummaryInput(plain, plain, plain,
                                                                                       (0.0, 1.0), None, 1, None))

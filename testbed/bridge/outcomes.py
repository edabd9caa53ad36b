"""The outcome join: per-request answers from the pipeline table (simulation) or the live server
(emulation), compared with the labels and the unsplit model's answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from testbed.bridge.cache import PipelineTable
from testbed.core.metrics.outcomes import CONFIDENT

__all__ = ["add_live_outcomes", "add_outcomes"]


def _column(img: pd.DataFrame, name: str, idx: np.ndarray, valid: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(len(idx), fill, dtype=float)
    out[valid] = img[name].to_numpy(dtype=float)[idx[valid]]
    return out


def _answers(df: pd.DataFrame, img: pd.DataFrame, pred: np.ndarray, valid: np.ndarray) -> pd.DataFrame:
    """``correct``, ``agree`` (top-1 equals the unsplit model's on the same frame), ``confident`` (the
    unsplit model's top-1 probability is at least 0.5) and, when the dataset corrupts its frames,
    ``agree_clean`` (top-1 equals the unsplit model's on the clean frame) per request."""
    idx = df["image"].to_numpy()
    ref, lab = _column(img, "reference", idx, valid, -1), _column(img, "label", idx, valid, -1)
    conf = _column(img, "reference_confidence", idx, valid, math.nan)
    out = df.copy()
    out["correct"] = np.where(valid & (lab >= 0), (pred == lab).astype(float), math.nan)
    out["agree"] = np.where(valid, (pred == ref).astype(float), math.nan)
    out["confident"] = np.where(valid & ~np.isnan(conf), (conf >= CONFIDENT).astype(float), math.nan)
    if "reference_clean" in img.columns:
        clean = _column(img, "reference_clean", idx, valid, -1)
        out["agree_clean"] = np.where(valid, (pred == clean).astype(float), math.nan)
    return out


def _agree_top5(img: pd.DataFrame, idx: np.ndarray, valid: np.ndarray, top5: np.ndarray) -> np.ndarray:
    """1.0 where the unsplit model's answer is among ``top5`` (``[N, 5]``), NaN where not ``valid``."""
    ref = _column(img, "reference", idx, valid, -1)
    return np.where(valid, (top5 == ref[:, None]).any(axis=1).astype(float), math.nan)


def add_outcomes(df: pd.DataFrame, table: PipelineTable) -> pd.DataFrame:
    """Records with ``correct`` (prediction equals label; NaN where unlabelled), ``agree`` (prediction
    equals the unsplit model's on the same frame; ``agree_clean``: on the clean frame, for corrupted
    datasets), ``agree_top5`` (the unsplit model's answer among the split model's
    five best) and ``confident`` per request, joined on the image index."""
    img = table.images.set_index("image")
    idx = df["image"].to_numpy()
    valid = idx >= 0
    pred = _column(img, "prediction", idx, valid, -1)
    out = _answers(df, img, pred, valid)
    top5 = np.stack([_column(img, f"top5_{j}", idx, valid, -2) for j in range(5)], axis=1)
    out["agree_top5"] = _agree_top5(img, idx, valid, top5)
    return _add_corruptions(out, img, idx, valid)


def _add_corruptions(out: pd.DataFrame, img: pd.DataFrame, idx: np.ndarray, valid: np.ndarray) -> pd.DataFrame:
    """``corruption`` (name; "" where no image) and ``severity`` (NaN where none) of each request's
    frame, joined on the image index, when the dataset corrupts its frames."""
    if "corruption" not in img.columns:
        return out
    names = img["corruption"].to_numpy(dtype=object)
    out["corruption"] = np.where(valid, names[np.clip(idx, 0, None)], "").astype(str)
    out["severity"] = _column(img, "severity", idx, valid, math.nan)
    return out


def add_live_outcomes(df: pd.DataFrame, table: PipelineTable) -> pd.DataFrame:
    """Records of an emulation (with the live server's ``prediction`` and ``top5_0`` .. ``top5_4``
    per request; -1 where unanswered) with ``correct``, ``agree`` and ``agree_top5`` as
    :func:`add_outcomes` gives them, and ``cached_prediction`` (the pipeline's answer for the same
    image, which the emulated answer should equal)."""
    img = table.images.set_index("image")
    idx = df["image"].to_numpy()
    pred = df["prediction"].to_numpy()
    valid = (idx >= 0) & (pred >= 0)
    out = _answers(df, img, pred.astype(float), valid)
    top5 = np.stack([df[f"top5_{j}"].to_numpy(dtype=float) for j in range(5)], axis=1)
    out["agree_top5"] = _agree_top5(img, idx, valid, top5)
    out["cached_prediction"] = np.where(idx >= 0, img["prediction"].to_numpy()[np.clip(idx, 0, None)], -1)
    return _add_corruptions(out, img, idx, idx >= 0)

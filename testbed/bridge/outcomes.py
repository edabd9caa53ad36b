"""The outcome join: per-request answers from the pipeline table (simulation) or the live server
(emulation), compared with the labels and the unsplit model's answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from testbed.bridge.cache import PipelineTable

__all__ = ["add_live_outcomes", "add_outcomes"]


def add_outcomes(df: pd.DataFrame, table: PipelineTable) -> pd.DataFrame:
    """Records with ``correct`` (prediction equals label; NaN where unlabelled) and ``agree``
    (prediction equals the unsplit model's) per request, joined on the image index."""
    img = table.images.set_index("image")
    idx = df["image"].to_numpy()
    valid = idx >= 0
    pred = np.full(len(df), -1)
    ref = np.full(len(df), -1)
    lab = np.full(len(df), -1)
    pred[valid] = img["prediction"].to_numpy()[idx[valid]]
    ref[valid] = img["reference"].to_numpy()[idx[valid]]
    lab[valid] = img["label"].to_numpy()[idx[valid]]
    out = df.copy()
    out["correct"] = np.where(valid & (lab >= 0), (pred == lab).astype(float), math.nan)
    out["agree"] = np.where(valid, (pred == ref).astype(float), math.nan)
    return out


def add_live_outcomes(df: pd.DataFrame, table: PipelineTable) -> pd.DataFrame:
    """Records of an emulation (with the live server's ``prediction`` per request) with ``correct``
    and ``agree`` as :func:`add_outcomes` gives them, and ``cached_prediction`` (the pipeline's answer
    for the same image, which the emulated answer should equal)."""
    img = table.images.set_index("image")
    idx = df["image"].to_numpy()
    pred = df["prediction"].to_numpy()
    valid = (idx >= 0) & (pred >= 0)
    ref = np.full(len(df), -1)
    lab = np.full(len(df), -1)
    ref[valid] = img["reference"].to_numpy()[idx[valid]]
    lab[valid] = img["label"].to_numpy()[idx[valid]]
    out = df.copy()
    out["correct"] = np.where(valid & (lab >= 0), (pred == lab).astype(float), math.nan)
    out["agree"] = np.where(valid, (pred == ref).astype(float), math.nan)
    out["cached_prediction"] = np.where(idx >= 0, img["prediction"].to_numpy()[np.clip(idx, 0, None)], -1)
    return out

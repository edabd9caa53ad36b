"""Node energy per request, from the node profile's power figures (pure DataFrame functions).

A node draws ``idle`` watts all the time; computing adds ``busy - idle`` during head and encode;
the radio adds ``radio_tx`` while its payload is on the air and ``radio_rx`` while its result comes
back (with the ``csma`` link, the link's own per-request radio accounting is used instead). Each request is charged its own compute and radio energy plus an equal share of its node's
idle energy over the run (so the charges of a node's requests add up to its total energy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ENERGY_COLUMNS", "NodePower", "add_energy"]

ENERGY_COLUMNS = ("energy_compute_j", "energy_radio_j", "energy_idle_j", "energy_j")


@dataclass(frozen=True)
class NodePower:
    idle_w: float
    busy_w: float
    radio_tx_w: float = 0.0
    radio_rx_w: float = 0.0


def add_energy(df: pd.DataFrame, power: Mapping[int, NodePower], horizon_s: float,
               frames: np.ndarray | None = None) -> pd.DataFrame:
    """Records with the energy columns added; ``power`` maps group index to the group's power.
    ``frames[node]``: each node's frame count over the whole run, when ``df`` holds only some of its
    rows (a chunk of streamed records); by default counted in ``df``."""
    out = df.copy()
    groups = df["group"].to_numpy()
    get = lambda attr: np.array([getattr(power[g], attr) if g in power else np.nan for g in groups])  # noqa: E731
    compute_s = np.nan_to_num((df["encode_end_s"] - df["head_start_s"]).to_numpy())
    tx_s = np.nan_to_num((df["tx_end_s"] - df["tx_start_s"]).to_numpy())
    rx_s = np.nan_to_num((df["downlink_end_s"] - df["downlink_start_s"]).to_numpy())
    out["energy_compute_j"] = (get("busy_w") - get("idle_w")) * compute_s
    out["energy_radio_j"] = get("radio_tx_w") * tx_s + get("radio_rx_w") * rx_s
    if "radio_tx_j" in df and df["radio_tx_j"].notna().any():
        # the csma link accounts the radio itself (transmitting, receiving, listening while contending)
        radio = df[["radio_tx_j", "radio_rx_j", "radio_idle_j"]].sum(axis=1, min_count=1)
        out["energy_radio_j"] = np.where(radio.notna(), radio, out["energy_radio_j"])
    per_row = (df.groupby("node")["node"].transform("size").to_numpy() if frames is None
               else np.asarray(frames)[df["node"].to_numpy()])
    out["energy_idle_j"] = get("idle_w") * horizon_s / per_row
    out["energy_j"] = out["energy_compute_j"] + out["energy_radio_j"] + out["energy_idle_j"]
    return out

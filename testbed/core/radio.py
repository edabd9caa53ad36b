"""Nodes placed by position: which cell each node joins and at what PHY rate (pure, clock-free).

A node hears each cell's access point at a received power given by the log-distance path-loss model
(Rappaport, "Wireless Communications", 2nd ed., eq. 4.69): ``rssi = tx_power - (loss_at_1m + 10 n log10(d /
1 m))``; it joins the cell it hears best (the nearest one), and its rate is the first band of a table the
user supplies that its received power (or its distance) falls in: ``min_rssi_dbm`` bands (best first) or
``max_distance_m`` bands (nearest first), e.g. the MCS sensitivity table of a Wi-Fi chipset. A node no band
covers is out of range (an error naming it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Band", "PathLoss", "attach", "place_uniform", "rate_of"]


@dataclass(frozen=True)
class PathLoss:
    """Log-distance path loss: ``tx_power_dbm``, the loss at 1 m (dB) and the exponent ``n``."""

    tx_power_dbm: float = 20.0
    loss_at_1m_db: float = 40.0
    exponent: float = 3.0

    def rssi_dbm(self, distance_m: float) -> float:
        """Received power at ``distance_m`` (distances below 1 m count as 1 m)."""
        return self.tx_power_dbm - self.loss_at_1m_db - 10.0 * self.exponent * math.log10(max(distance_m, 1.0))


@dataclass(frozen=True)
class Band:
    """One row of the rate table: ``rate`` (bytes/s) from ``min_rssi_dbm`` up, or up to ``max_distance_m``."""

    rate: float
    min_rssi_dbm: float | None = None
    max_distance_m: float | None = None


def rate_of(distance_m: float, bands: Sequence[Band], path_loss: PathLoss | None) -> float | None:
    """The rate of the first band ``distance_m`` (or its received power) falls in; None out of range."""
    for band in bands:
        if band.max_distance_m is not None and distance_m <= band.max_distance_m:
            return band.rate
        if band.min_rssi_dbm is not None:
            if path_loss is None:
                raise ValueError("rssi bands need a path-loss model")
            if path_loss.rssi_dbm(distance_m) >= band.min_rssi_dbm:
                return band.rate
    return None


def attach(position: Sequence[float], cells: Sequence[Sequence[float]], allowed: Sequence[int] | None = None
           ) -> tuple[int, float]:
    """The cell ``position`` joins (the nearest among ``allowed``, all when None; ties to the lower index)
    and its distance in metres."""
    best, best_d = -1, math.inf
    for c in (allowed if allowed is not None else range(len(cells))):
        d = math.dist(position, cells[c])
        if d < best_d:
            best, best_d = c, d
    if best < 0:
        raise ValueError("no cell to attach to")
    return best, best_d


def place_uniform(count: int, low: Sequence[float], high: Sequence[float], rng: np.random.Generator
                  ) -> list[tuple[float, float]]:
    """``count`` positions uniform in the rectangle ``[low, high]`` (x, y in metres)."""
    xy = rng.uniform(np.asarray(low, dtype=float), np.asarray(high, dtype=float), size=(count, 2))
    return [(float(x), float(y)) for x, y in xy]

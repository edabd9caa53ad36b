"""Placement by position (testbed.core.radio): log-distance path loss, rate bands, the nearest cell."""

from __future__ import annotations

import math

import numpy as np
import pytest

from testbed.core.radio import Band, PathLoss, attach, place_uniform, rate_of


def test_log_distance_path_loss() -> None:
    pl = PathLoss(tx_power_dbm=20, loss_at_1m_db=40, exponent=3)
    assert pl.rssi_dbm(1.0) == pytest.approx(-20.0)
    assert pl.rssi_dbm(10.0) == pytest.approx(-50.0)      # 30 dB per decade
    assert pl.rssi_dbm(100.0) == pytest.approx(-80.0)
    assert pl.rssi_dbm(0.2) == pl.rssi_dbm(1.0)           # closer than 1 m counts as 1 m


def test_rate_bands_by_power_and_by_distance() -> None:
    pl = PathLoss(20, 40, 3)
    rssi = [Band(8e6, min_rssi_dbm=-55), Band(3e6, min_rssi_dbm=-70), Band(1e6, min_rssi_dbm=-80)]
    assert rate_of(10.0, rssi, pl) == 8e6                 # -50 dBm
    assert rate_of(30.0, rssi, pl) == 3e6                 # -64.3 dBm
    assert rate_of(100.0, rssi, pl) == 1e6                # -80 dBm: on the edge, in
    assert rate_of(101.0, rssi, pl) is None
    dist = [Band(8e6, max_distance_m=10), Band(2e6, max_distance_m=40)]
    assert [rate_of(d, dist, None) for d in (0.0, 10.0, 10.5, 40.0, 41.0)] == [8e6, 8e6, 2e6, 2e6, None]
    with pytest.raises(ValueError):
        rate_of(5.0, rssi, None)


def test_nearest_cell_and_allowed_cells() -> None:
    aps = [(0.0, 0.0), (100.0, 0.0), (50.0, 50.0)]
    assert attach((10.0, 0.0), aps) == (0, 10.0)
    assert attach((90.0, 10.0), aps)[0] == 1
    assert attach((50.0, 0.0), aps)[0] == 0               # a tie goes to the lower index
    c, d = attach((10.0, 0.0), aps, allowed=[2])
    assert c == 2 and d == pytest.approx(math.dist((10, 0), (50, 50)))


def test_uniform_placement_stays_in_the_area() -> None:
    pts = place_uniform(1000, (10.0, -5.0), (20.0, 5.0), np.random.default_rng(1))
    xs, ys = np.array(pts).T
    assert xs.min() >= 10 and xs.max() <= 20 and ys.min() >= -5 and ys.max() <= 5
    assert abs(xs.mean() - 15) < 0.3 and abs(ys.mean()) < 0.3

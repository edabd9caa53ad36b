"""Nodes placed by position (fleet[].placement, radio, cells[].position): the cell they join and the rate
they send at, in the records."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from testbed.config.load import scenario_from_dict
from testbed.errors import ConfigError
from testbed.sim import Simulation


def placed(positions: list[list[float]] | None = None, area: list[list[float]] | None = None) -> dict:
    placement = {"positions": positions} if positions is not None else {"area": area}
    return {
        "seed": 0, "duration": "3 s", "drain": "5 s",
        "fleet": [{"name": "cams", "count": 3, "device": "pi4b", "payload": "10 kB", "placement": placement,
                   "arrivals": {"kind": "periodic", "rate": "1/s", "random_phase": False}}],
        "cells": [{"name": "a", "datarate": "1 MB/s", "position": [0, 0]},
                  {"name": "b", "datarate": "1 MB/s", "position": [100, 0]}],
        "servers": [{"name": "x", "device": "h100", "service": "1 ms"}],
        "radio": {"rates": [{"max_distance_m": 10, "rate": "10 MB/s"}, {"max_distance_m": 30, "rate": "2 MB/s"},
                            {"max_distance_m": 60, "rate": "500 kB/s"}]},
        "workload": {"result": "0 B"},
    }


def test_nodes_join_the_nearest_cell_at_their_distances_rate() -> None:
    sim = Simulation(scenario_from_dict(placed([[5, 0], [80, 0], [50, 0]])))
    df = sim.run().records
    assert sim.topology is not None
    assert sim.topology.node_cell == [0, 1, 0]              # 50 m from both: the first cell
    assert sim.topology.node_rates == [10e6, 2e6, 500e3]   # 5 m, 20 m, 50 m
    first = df[df["frame"] == 0].set_index("node")
    assert list(first["cell"]) == [0, 1, 0]
    # alone on their cells' air at t = 0 except nodes 0 and 2 (both in a): 10 kB at each one's rate
    air = (first["tx_end_s"] - first["tx_start_s"]).to_numpy()
    assert air == pytest.approx([0.001, 0.005, 0.02])


def test_power_bands_with_path_loss() -> None:
    raw = placed([[10, 0], [70, 0], [40, 0]])
    raw["radio"] = {"path_loss": {"tx_power_dbm": 20, "loss_at_1m_db": 40, "exponent": 3},
                    "rates": [{"min_rssi_dbm": -55, "rate": "8 MB/s"}, {"min_rssi_dbm": -75, "rate": "1 MB/s"}]}
    sim = Simulation(scenario_from_dict(raw))
    assert sim.topology is not None
    # -50 dBm at 10 m; 30 m from b: -64.3 dBm; 40 m from a: -68.1 dBm
    assert sim.topology.node_cell == [0, 1, 0] and sim.topology.node_rates == [8e6, 1e6, 1e6]


def test_a_group_with_a_cell_stays_in_it() -> None:
    raw = placed([[95, 0], [55, 0], [45, 0]])   # the last two are nearer a
    raw["fleet"][0]["cell"] = "b"
    sim = Simulation(scenario_from_dict(raw))
    assert sim.topology is not None
    assert sim.topology.node_cell == [1, 1, 1] and sim.topology.node_rates == [10e6, 500e3, 500e3]


def test_area_placement_is_seeded_and_out_of_range_is_an_error() -> None:
    raw = placed(area=[[0, -5], [20, 5]])
    raw["fleet"][0]["count"] = 20
    one, two = (Simulation(scenario_from_dict(raw)).topology for _ in range(2))
    assert one is not None and two is not None and one.positions == two.positions
    xs = np.array([p[0] for p in one.positions if p is not None])
    assert len(xs) == 20 and xs.min() >= 0 and xs.max() <= 20
    raw["seed"] = 1
    other = Simulation(scenario_from_dict(raw)).topology
    assert other is not None and other.positions != one.positions
    far = placed([[5, 0], [5, 70], [50, 0]])
    with pytest.raises(ConfigError, match=r"fleet\.0\.placement: got 'node 1 at \(5\.0, 70\.0\) m'"):
        Simulation(scenario_from_dict(far))


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.pop("radio"), r"fleet\.0\.placement"),
    (lambda r: r["cells"][1].pop("position"), r"fleet\.0\.placement.*missing: b"),
    (lambda r: r["fleet"][0]["placement"]["positions"].pop(), r"fleet\.0\.placement\.positions"),
    (lambda r: r["fleet"][0].update(datarate="1 MB/s"), r"fleet\.0\.datarate"),
    (lambda r: r["radio"]["rates"].reverse(), r"radio"),
    (lambda r: r["radio"]["rates"].append({"min_rssi_dbm": -80, "rate": "1 MB/s"}), r"radio"),
])
def test_placement_errors(change, field) -> None:
    raw = copy.deepcopy(placed([[5, 0], [80, 0], [50, 0]]))
    change(raw)
    with pytest.raises(ConfigError, match=field):
        scenario_from_dict(raw)

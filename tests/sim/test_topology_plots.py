"""The topology figure of a run folder: requests at each server and in each cell's uplink over time."""

from __future__ import annotations

from pathlib import Path

from testbed.config.load import scenario_from_dict
from testbed.run.plots import run_figures
from testbed.run.runner import run_scenario, write_run
from tests.sim.test_failures import scripted
from tests.sim.test_topology import one_cell


def test_topology_figure_has_a_line_per_server_and_cell(tmp_path: Path) -> None:
    raw = scripted("lost")
    out = write_run(run_scenario(scenario_from_dict(raw)), raw, tmp_path / "run")
    figs = run_figures(out)
    _, table = figs["topology"]
    assert {"in_server_x", "in_server_y", "in_uplink_a"} <= set(table.columns)
    down = (table["time_s"] > 1.1) & (table["time_s"] < 1.9)
    assert (table.loc[down, "in_server_x"] == 0).all() and table.loc[down, "in_server_y"].max() > 5
    raw = one_cell()
    plain = write_run(run_scenario(scenario_from_dict(raw)), raw, tmp_path / "plain")
    assert "topology" not in run_figures(plain)

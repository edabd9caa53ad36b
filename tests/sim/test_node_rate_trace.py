"""Per-node rate traces (fleet[].rate_trace): a node's uplink rate over time on a shared_fifo cell."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from testbed.config.load import scenario_from_dict
from testbed.errors import ConfigError
from testbed.sim import simulate


def two_groups() -> dict:
    group = {"count": 2, "device": "pi4b", "payload": {"dist": "uniform", "low": "2 kB", "high": "6 kB"},
             "arrivals": {"kind": "poisson", "rate": "20/s"}}
    return {
        "seed": 4, "duration": "4 s", "drain": "5 s",
        "fleet": [dict(group, name="walkers"), dict(group, name="still", datarate="2 MB/s")],
        "link": {"datarate": "1 MB/s", "latency": "1 ms"},
        "server": {"device": "h100", "service": "2 ms"},
        "workload": {"result": "100 B"},
    }


def test_a_constant_node_trace_gives_the_fixed_rate_records() -> None:
    plain = simulate(scenario_from_dict(two_groups())).records
    raw = two_groups()
    raw["fleet"][0]["rate_trace"] = {"time_s": [0, 1.5], "rate": ["1 MB/s", "1 MB/s"]}
    traced = simulate(scenario_from_dict(raw)).records
    pd.testing.assert_frame_equal(plain, traced)


def test_a_node_that_walks_away_sends_at_its_traces_rate() -> None:
    raw = two_groups()
    raw["fleet"][0]["rate_trace"] = {"time_s": [0, 2], "rate": ["1 MB/s", "100 kB/s"]}
    df = simulate(scenario_from_dict(raw)).records
    air = (df["tx_end_s"] - df["tx_start_s"]).to_numpy()
    size, start = df["payload_bytes"].to_numpy(), df["tx_start_s"].to_numpy()
    walker, still = df["group"].to_numpy() == 0, df["group"].to_numpy() == 1
    before, after = walker & (df["tx_end_s"].to_numpy() < 2.0), walker & (start >= 2.0)
    assert before.sum() > 20 and after.sum() > 20
    assert air[before] == pytest.approx(size[before] / 1e6)
    assert air[after] == pytest.approx(size[after] / 1e5)
    assert air[still] == pytest.approx(size[still] / 2e6)      # the other group keeps its own rate
    across = walker & (start < 2.0) & (df["tx_end_s"].to_numpy() > 2.0)
    for i in np.flatnonzero(across):  # bytes before 2 s at 1 MB/s, the rest at 100 kB/s
        assert air[i] == pytest.approx((2.0 - start[i]) + (size[i] - (2.0 - start[i]) * 1e6) / 1e5)


def test_node_traces_need_a_plain_shared_fifo_cell(tmp_path) -> None:
    from testbed.run.prepare import prepare_dict

    (tmp_path / "walk.csv").write_text("time_s,rate\n0,1 MB/s\n2,100 kB/s\n")
    raw = two_groups()
    raw["fleet"][0]["rate_trace"] = {"file": "walk.csv"}
    res = prepare_dict(raw, tmp_path)
    assert res.scenario.fleet[0].rate_trace.rate == (1e6, 1e5)
    for change in (lambda r: r["link"].update(model="fair_share"),
                   lambda r: r["link"].update(rate_trace={"time_s": [0], "rate": ["1 MB/s"]})):
        bad = copy.deepcopy(raw)
        change(bad)
        with pytest.raises(ConfigError, match=r"fleet\.0\.rate_trace"):
            prepare_dict(bad, tmp_path)

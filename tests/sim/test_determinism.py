from pathlib import Path

import pandas as pd

from testbed.config.load import apply_overrides, scenario_from_dict
from testbed.sim import simulate
from tests.conftest import base_scenario

DRAWS = ["created_s", "payload_bytes", "head_start_s"]


def test_same_seed_gives_byte_identical_records(tmp_path: Path) -> None:
    raw = base_scenario()
    raw["fleet"][0]["payload"] = {"dist": "lognormal", "median": "8 kB", "sigma": 0.4}
    paths = []
    for i in range(2):
        df = simulate(scenario_from_dict(raw)).records
        paths.append(tmp_path / f"r{i}.parquet")
        df.to_parquet(paths[-1], index=False)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = simulate(scenario_from_dict(apply_overrides(raw, {"seed": 4}))).records
    assert not other["created_s"].equals(df["created_s"])


def test_adding_a_node_keeps_the_other_nodes_draws() -> None:
    raw = base_scenario()
    raw["fleet"][0]["payload"] = {"dist": "exponential", "mean": "5 kB"}
    raw["fleet"][0]["head"] = {"dist": "uniform", "low": "5 ms", "high": "15 ms"}
    raw["fleet"].append(dict(raw["fleet"][0], name="far", count=3, datarate="200 kB/s"))
    before = simulate(scenario_from_dict(raw)).records
    bigger = apply_overrides(raw, {"fleet.0.count": 21})
    after = simulate(scenario_from_dict(bigger)).records

    def per_node(df: pd.DataFrame, group: int, node_in_group: int, first_index: int) -> pd.DataFrame:
        rows = df[(df["group"] == group) & (df["node"] == first_index + node_in_group)]
        return rows[[*DRAWS, "frame"]].assign(head=rows["head_end_s"] - rows["head_start_s"]) \
            .drop(columns=["head_start_s"]).reset_index(drop=True)

    for node in range(20):
        pd.testing.assert_frame_equal(per_node(before, 0, node, 0), per_node(after, 0, node, 0))
    for node in range(3):  # the second group's nodes shift index by one but draw the same
        pd.testing.assert_frame_equal(per_node(before, 1, node, 20), per_node(after, 1, node, 21))

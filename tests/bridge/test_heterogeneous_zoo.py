"""The example heterogeneous fleet (scenarios/heterogeneous_fleet.yaml) on the real pretrained Lite0
over 8 photos: new cameras split at stage4 with 8-bit features and zstd, old ones send a JPEG (split
input). Where the groups do not interact (each in its own cell with its own server) each group's
records are those of a homogeneous run of its configuration; where they share the link and the GPU,
each group's latency rises."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from testbed.config.load import read_yaml, scenario_from_dict
from testbed.run.runner import run_scenario

pytestmark = pytest.mark.zoo

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "heterogeneous_fleet.yaml"
COLUMNS = ["created_s", "payload_bytes", "head_end_s", "encode_end_s", "tx_start_s", "tx_end_s", "queued_s",
           "batch_start_s", "batch_end_s", "finished_s", "batch_size", "agree", "status"]


def _small() -> dict[str, Any]:
    raw = read_yaml(SCENARIO)
    raw.update(duration="20 s", warmup="2 s", dataset={"kind": "photos", "limit": 8, "seed": 1})
    for group in raw["fleet"]:
        group["count"] = 6
    return raw


def _separate(raw: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    link, server = out.pop("link"), out.pop("server")
    out["cells"] = [{"name": "c-new", **link}, {"name": "c-old", **link}]
    out["servers"] = [{"name": "s-new", **server}, {"name": "s-old", **server}]
    out["fleet"][0]["cell"], out["fleet"][1]["cell"] = "c-new", "c-old"
    out["assignment"] = {"policy": "static", "static": {"new-cams": "s-new", "old-cams": "s-old"}}
    return out


def _all_as(raw: dict[str, Any], g: int) -> dict[str, Any]:
    """Every group with group ``g``'s configuration (a homogeneous fleet)."""
    out = copy.deepcopy(raw)
    own = {k: out["fleet"][g][k] for k in ("model", "codec") if k in out["fleet"][g]}
    for group in out["fleet"]:
        group.pop("model", None), group.pop("codec", None)
        group.update(copy.deepcopy(own))
    return out


def _records(raw: dict[str, Any]) -> pd.DataFrame:
    return run_scenario(scenario_from_dict(raw), base_dir=SCENARIO.parent, stream=False).sim.records


def _group(df: pd.DataFrame, g: int) -> pd.DataFrame:
    return df.loc[df["group"] == g, COLUMNS].reset_index(drop=True)


def _latency(df: pd.DataFrame, g: int) -> float:
    ok = df[(df["group"] == g) & (df["status"] == "ok") & df["in_window"]]
    return float((ok["finished_s"] - ok["created_s"]).mean())


def test_heterogeneous_example_matches_homogeneous_runs_apart_and_is_slower_together() -> None:
    raw = _small()
    apart = _records(_separate(raw))
    for g in (0, 1):
        homogeneous = _records(_separate(_all_as(raw, g)))
        assert (homogeneous["config"] == 0).all()
        pd.testing.assert_frame_equal(_group(apart, g), _group(homogeneous, g))
    together = _records(raw)
    ok = together[together["status"] == "ok"]
    assert (ok["config"] == ok["group"]).all() and (ok.groupby(["batch_start_s", "gpu"])["config"].nunique() == 1).all()
    for g in (0, 1):
        assert _latency(together, g) > _latency(apart, g)

"""Per-group datasets (``fleet[].dataset``): each distinct dataset is one pipeline cache entry, and a
group draws its frames from its own entry's rows (e.g. "night" cameras with noisy, dark frames beside
clean ones; GroupNL's corruption setting, Ding, Xie et al., IEEE TMC 2026, arXiv:2506.12335)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from testbed.bridge import cache as C
from testbed.bridge.outcomes import add_outcomes
from testbed.bridge.workload import PipelineWorkload, group_images
from testbed.config.load import scenario_from_dict
from testbed.config.resolve import as_resolved
from testbed.config.schema import Scenario
from testbed.core.charges import StageCost
from testbed.core.metrics.corruptions import corruption_breakdown
from testbed.errors import ConfigError
from tests.conftest import base_scenario

_MODEL = {"name": "resnet18", "weights": "random", "split": "layer2"}
_NIGHT = {"kind": "photos", "limit": 6, "corruption": {"name": "gaussian_noise", "severity": 5}}
_FOG = {"kind": "photos", "limit": 5, "corruption": {"name": "fog", "severity": [1, 2]}}


def _scenario(*group_datasets: dict[str, Any] | None, dataset: dict[str, Any] | None = None) -> Scenario:
    raw = base_scenario(model=_MODEL, codec=[{"quantize": {"bits": 8}}], dataset=dataset or {"kind": "photos",
                                                                                               "limit": 4})
    group = raw["fleet"][0]
    raw["fleet"] = [{**group, "name": f"g{i}", "count": 2, **({"dataset": ds} if ds is not None else {})}
                    for i, ds in enumerate(group_datasets)]
    return scenario_from_dict(raw)


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The cache under tmp_path; an entry's table is made up (payload bytes name its dataset: 1000 x
    the dataset's limit + the image) instead of running the model; the datasets built are recorded."""
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path))
    calls: list[dict[str, Any]] = []

    def fake(sc: Scenario) -> C.PipelineTable:
        ds = C.dataset_arg(sc)
        calls.append(ds)
        n = int(ds["limit"])
        images = C._images_table(1000 * n + np.arange(n), np.arange(n) % 3, np.tile(np.arange(5), (n, 1)),
                                 np.zeros(n, dtype=int), np.full(n, 0.9), np.full(n, -1),
                                 np.ones(n, dtype=int) if "corruption" in ds else None)
        return C.PipelineTable(images, 100, 100, (StageCost("element", "quantize"),), {"codec": "quantize:bits=8"})

    monkeypatch.setattr(C, "_run_split", fake)
    return calls


def test_without_group_datasets_the_table_is_the_scenarios(built: list[dict[str, Any]]) -> None:
    sc = _scenario(None, None)
    table = C.pipeline_table(sc)
    assert built == [{"name": "photos", "limit": 4}]
    assert "group_images" not in table.meta and "dataset" not in table.images
    assert group_images(table, 2) == [(0, 4), (0, 4)]


def test_two_groups_with_different_corruptions_draw_from_different_tables(built: list[dict[str, Any]]) -> None:
    sc = _scenario(_NIGHT, _FOG, None, _NIGHT)
    datasets, of_group = C.group_datasets(sc)
    assert of_group == [0, 1, 2, 0] and len(datasets) == 3  # the repeated night dataset is one entry
    table = C.pipeline_table(sc)
    assert [d.get("corruption") for d in built] == [_NIGHT["corruption"], _FOG["corruption"], None]
    assert table.meta["group_images"] == [[0, 6], [6, 5], [11, 4], [0, 6]]
    assert table.images["image"].tolist() == list(range(15))
    assert table.images["dataset"].tolist() == [0] * 6 + [1] * 5 + [2] * 4
    # the clean group's rows: corruption "none", severity 0, its clean reference is its reference
    clean = table.images[table.images["dataset"] == 2]
    assert (clean["corruption"] == "none").all() and (clean["severity"] == 0).all()
    assert (clean["reference_clean"] == clean["reference"]).all()
    assert set(table.images.loc[table.images["dataset"] == 0, "corruption"]) == {"gaussian_noise"}

    work = PipelineWorkload(as_resolved(sc), table)
    for g, (lo, n) in enumerate([(0, 6), (6, 5), (11, 4), (0, 6)]):
        draw = work.frame_drawer(g, 0, np.random.default_rng(g))
        frames = [draw() for _ in range(200)]
        images = {f[0] for f in frames}
        assert images == set(range(lo, lo + n)), g  # every frame of its own table, none of another's
        assert all(f[1] == 1000 * n + (f[0] - lo) for f in frames)  # the payload of that table's row

    again = C.pipeline_table(sc)  # cached: nothing rebuilt
    assert len(built) == 3 and again.images.equals(table.images)


def test_a_group_dataset_equal_to_the_scenarios_shares_its_entry(built: list[dict[str, Any]]) -> None:
    sc = _scenario({"kind": "photos", "limit": 4}, _NIGHT)
    table = C.pipeline_table(sc)
    assert len(built) == 2 and table.meta["group_images"] == [[0, 4], [4, 6]]


def test_per_corruption_breakdown_of_joined_records(built: list[dict[str, Any]]) -> None:
    table = C.pipeline_table(_scenario(_NIGHT, None))
    rec = pd.DataFrame({"image": [0, 1, 2, 6, 7, 8], "status": pd.Categorical(["ok"] * 5 + ["dropped"]),
                        "created_s": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    out = corruption_breakdown(add_outcomes(rec, table), (0.0, 10.0))
    assert [(r["corruption"], r["severity"]) for r in out] == [("gaussian_noise", None), ("gaussian_noise", 5),
                                                                ("none", None), ("none", 0)]
    night, clean = out[0], out[2]
    assert night["requests"] == 3 and clean["requests"] == 2  # the dropped request is not counted
    # predictions 0, 1, 2 (image % 3) against reference 0 and, for the night frames, clean reference 1
    assert night["agreement"] == pytest.approx(1 / 3) and night["agreement_clean"] == pytest.approx(1 / 3)
    assert out[1] == {**night, "severity": 5}
    assert clean["agreement"] == clean["agreement_clean"] == pytest.approx(0.5)
    assert corruption_breakdown(rec.assign(agree=1.0), (0.0, 10.0)) == []


def test_group_dataset_paths_resolve_against_the_scenario(tmp_path: Path) -> None:
    from testbed.config.resolve import resolve

    (tmp_path / "night").mkdir()
    sc = _scenario({"kind": "photos", "path": "night"}, None)
    res = resolve(sc, tmp_path)
    assert res.scenario.fleet[0].dataset is not None
    assert res.scenario.fleet[0].dataset.path == str((tmp_path / "night").resolve())
    with pytest.raises(ConfigError, match=r"fleet\.1\.dataset\.path"):
        resolve(_scenario(None, {"kind": "photos", "path": "missing"}), tmp_path)

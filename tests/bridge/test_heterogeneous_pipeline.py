"""Heterogeneous fleets on the pipeline side (issue 16): groups of their own ``model`` and ``codec``
(e.g. new cameras splitting Lite0 at stage4 with 8-bit features, old ones sending JPEG at split
``input``). Each distinct (model, codec, dataset) is one pipeline cache entry; each group's frames,
head and encode charges come from its own entry and its node profile, and the server's decode and
batch times from the server profile for that configuration's codec, model and split.

The entries' tables are made up (no model runs): payload bytes name the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from testbed.bridge import cache as C
from testbed.bridge.check import check_model
from testbed.bridge.workload import PipelineWorkload, group_configs
from testbed.config.load import scenario_from_dict
from testbed.config.profiles import load_profile
from testbed.config.resolve import as_resolved
from testbed.config.schema import Scenario
from testbed.core.charges import StageCost, codec_time, head_figure, tail_table
from testbed.core.workload import configs_of
from testbed.errors import ConfigError
from testbed.run.runner import run_scenario
from tests.bridge.fake_pipeline import PAYLOAD_BASE, fake_runs
from tests.conftest import base_scenario

_LITE = {"name": "efficientnet_lite0", "weights": "random", "split": "stage4"}
_Q8 = [{"quantize": {"bits": 8}}]
_JPEG = [{"image": {"format": "jpeg", "quality": 80}}]


def _scenario(*groups: dict[str, Any], **top: Any) -> Scenario:
    raw = base_scenario(model=_LITE, codec=_Q8, dataset={"kind": "photos", "limit": 4}, duration="20 s",
                        warmup="2 s", **top)
    raw["server"].pop("service")
    base = raw["fleet"][0]
    raw["fleet"] = [{**base, "name": f"g{i}", "count": 3, **{k: v for k, v in g.items()}} for i, g in enumerate(groups)]
    for group in raw["fleet"]:
        group.pop("head"), group.pop("encode"), group.pop("payload")
    return scenario_from_dict(raw)


def _old(**extra: Any) -> dict[str, Any]:
    return {"model": {"split": "input"}, "codec": _JPEG, **extra}


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    return fake_runs(tmp_path, monkeypatch, lambda split, n: np.arange(n) % 2)


def test_group_models_merge_over_the_scenarios_and_name_one_configuration_each() -> None:
    sc = _scenario({}, _old(), {"dataset": {"kind": "photos", "limit": 3}}, _old())
    assert sc.group_model(1) == sc.model.model_copy(update={"split": "input"})  # type: ignore[union-attr]
    configs, models = group_configs(sc)
    assert configs.of_group == (0, 1, 0, 1) and configs.queue == (0, 1)
    assert [m.split for m in models] == ["stage4", "input", "stage4", "input"]
    assert configs.labels == ("efficientnet_lite0@stage4[random] quantize(bits=8)",
                              "efficientnet_lite0@input[random] image(format=jpeg,quality=80)")
    entries, of_group = C.group_entries(sc)
    assert of_group == [0, 1, 2, 1] and len(entries) == 3  # a dataset of its own is an entry, not a config


def test_each_group_draws_its_own_entry_and_is_charged_for_its_own_configuration(built: list[Any]) -> None:
    sc = _scenario({}, _old(), {"dataset": {"kind": "photos", "limit": 3}})
    res = as_resolved(sc)
    table = C.pipeline_table(sc)
    assert built == [("stage4", "q8", 4), ("input", "jpeg", 4), ("stage4", "q8", 3)]
    assert len(table.parts) == 3 and table.part_of_group == (0, 1, 2)
    work = PipelineWorkload(res, table)
    assert configs_of(work) is work and work.configs.of_group == (0, 1, 0)
    pi, h100 = load_profile("pi4b"), load_profile("h100")
    points = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "features", "logits")
    for g, (lo, n, split, cost) in enumerate([(0, 4, "stage4", "quantize"), (4, 4, "input", "jpeg"),
                                             (8, 3, "stage4", "quantize")]):
        draw = work.frame_drawer(g, 0, np.random.default_rng(g))
        frames = [draw() for _ in range(200)]
        assert {f[0] for f in frames} == set(range(lo, lo + n))
        assert all(f[1] == PAYLOAD_BASE[split] + 100 * n + f[0] - lo for f in frames)
        elements = 3 * 224 * 224 if split == "input" else 80 * 14 * 14
        head = head_figure(pi, "efficientnet_lite0", split, points).median
        encode = codec_time(pi, (StageCost("element", cost),), elements, elements, "encode")
        assert {(f[2], f[3]) for f in frames} == {(head, encode)}
    assert head_figure(pi, "efficientnet_lite0", "input").median == 0.0
    for k, (split, cost) in enumerate([("stage4", "quantize"), ("input", "jpeg")]):
        elements = 3 * 224 * 224 if split == "input" else 80 * 14 * 14
        assert work.config_decode(0, k).mean() == codec_time(h100, (StageCost("element", cost),), elements,
                                                             elements, "decode")
        bt = work.queue_batch_time(0, k, np.random.default_rng(0))
        assert [bt(b) for b in (1, 8)] == [tail_table(h100, "efficientnet_lite0", split)[b] for b in (1, 8)]


def test_a_heterogeneous_run_serves_each_group_with_its_configuration(built: list[Any]) -> None:
    sc = _scenario({}, _old())
    mem = run_scenario(sc, stream=False)
    df = mem.sim.records
    ok = df[df["status"] == "ok"]
    assert (ok["config"] == ok["group"]).all()
    assert (ok.groupby(["batch_start_s", "gpu"])["config"].nunique() == 1).all()
    assert set(ok.loc[ok["group"] == 1, "payload_bytes"]) <= {50_400.0 + i for i in range(4)}
    s = mem.summary
    assert s["configs"] == list(group_configs(sc)[0].labels)
    rows = {r["group"]: r for r in s["by_group"]}
    assert rows["g0"]["config"] == s["configs"][0] and rows["g1"]["config"] == s["configs"][1]
    for g, name in enumerate(("g0", "g1")):
        mine = ok[(ok["group"] == g) & ok["in_window"]]
        assert rows[name]["latency_mean_s"] == pytest.approx(float((mine["finished_s"] - mine["created_s"]).mean()))
        assert rows[name]["agreement"] == pytest.approx(float(mine["agree"].mean()))
    streamed = run_scenario(sc)  # the streamed summary reads the same per-group figures back
    pd.testing.assert_frame_equal(pd.DataFrame(streamed.summary["by_group"]), pd.DataFrame(s["by_group"]))
    homogeneous = run_scenario(_scenario({}, {}), stream=False).summary
    assert "by_group" not in homogeneous and "configs" not in homogeneous
    assert (homogeneous["requests"], homogeneous["latency_mean_s"]) != (s["requests"], s["latency_mean_s"])


@pytest.mark.parametrize(("group", "field"), [
    ({"model": {"split": "nowhere"}}, "fleet.1.model.split"),
    ({"model": {"name": "no_such_net"}}, "fleet.1.model.name"),
    ({"codec": [{"image": {"format": "jpeg"}}]}, "fleet.1.codec.0.image"),
    ({"codec": [{"no_such_stage": {}}]}, "fleet.1.codec"),
    ({"model": {"split": "none"}, "codec": []}, "fleet.1.model.split"),  # offloading and local groups mixed
])
def test_a_groups_bad_model_or_codec_is_one_line_naming_its_field(group: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_model(as_resolved(_scenario({}, group)))
    assert err.value.path.startswith(field) and "\n" not in str(err.value)


def test_a_group_model_without_a_scenario_model_is_refused() -> None:
    raw = base_scenario()
    raw["fleet"][0]["codec"] = _Q8
    with pytest.raises(ConfigError, match=r"fleet\.0\.codec"):
        scenario_from_dict(raw)
    raw["fleet"][0]["extra_key"] = 1
    with pytest.raises(ConfigError):
        scenario_from_dict(raw)

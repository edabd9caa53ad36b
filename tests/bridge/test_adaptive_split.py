"""Adaptive split at run time (issue 16): a fleet group lists several configurations (``fleet[].adaptive``)
and a policy that chooses one per frame from what the node observes; each configuration has its own
pipeline entry, charges and server queue, and each record says which configuration served it.

The entries' tables are made up (no model runs): payload bytes name the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from testbed.bridge import cache as C
from testbed.bridge.check import check_model
from testbed.bridge.workload import PipelineWorkload, group_configs, slot_configs
from testbed.config.load import scenario_from_dict
from testbed.config.resolve import as_resolved
from testbed.config.schema import Scenario
from testbed.errors import ConfigError
from testbed.run.runner import run_scenario
from tests.bridge.fake_pipeline import fake_runs
from tests.conftest import base_scenario

_LITE = {"name": "efficientnet_lite0", "weights": "random", "split": "stage4"}
_Q8 = [{"quantize": {"bits": 8}}]
_JPEG = [{"image": {"format": "jpeg", "quality": 80}}]
_CONFIGS = [{"model": {"split": "input"}, "codec": _JPEG}, {}]  # the JPEG first (largest), then stage4 q8
_POLICY = {"signal": "uplink_backlog", "up": 150_000, "down": 30_000, "hold_s": "100 ms"}


def _raw(adaptive: dict[str, Any] | None = None, *, plain: bool = False, **top: Any) -> dict[str, Any]:
    raw = base_scenario(model=_LITE, codec=_Q8, dataset={"kind": "photos", "limit": 4}, duration="20 s",
                        warmup="2 s", **top)
    raw["server"].pop("service")
    base = {k: v for k, v in raw["fleet"][0].items() if k not in ("head", "encode", "payload")}
    raw["fleet"] = [{**base, "name": "adaptive", "count": 4, "arrivals": {"kind": "periodic", "rate": "10/s"},
                     "adaptive": adaptive or {"configs": _CONFIGS, "policy": _POLICY}}]
    if plain:
        raw["fleet"].append({**base, "name": "plain", "count": 2})
    return raw


def _scenario(adaptive: dict[str, Any] | None = None, **kw: Any) -> Scenario:
    return scenario_from_dict(_raw(adaptive, **kw))


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    # JPEG (split "input") always agrees with the unsplit model, 8 bits at stage 4 on every other image
    return fake_runs(tmp_path, monkeypatch,
                     lambda split, n: np.zeros(n, dtype=int) if split == "input" else 1 - np.arange(n) % 2)


def test_configurations_merge_over_the_scenarios_model_and_each_is_an_entry_and_a_configuration() -> None:
    sc = _scenario(plain=True)
    (m0, c0), (m1, c1) = sc.group_variants(0)
    assert sc.model is not None
    assert m0 == sc.model.model_copy(update={"split": "input"}) and tuple(c0) == tuple(_JPEG)
    assert m1 == sc.model and c1 == sc.codec
    assert sc.group_variants(1) == ((sc.model, sc.codec),)
    configs, models, of_slot = slot_configs(sc)
    assert of_slot == [0, 1, 1] and configs.of_group == (0, 1) and configs.queue == (0, 1)
    assert [m.split for m in models] == ["input", "stage4", "stage4"]
    assert [m.split for m in group_configs(sc)[1]] == ["input", "stage4"]
    entries, of = C.group_entries(sc)
    assert len(entries) == 2 and of == [0, 1, 1]


def test_a_frame_is_the_same_photo_whichever_configuration_serves_it(built: list[Any]) -> None:
    sc = _scenario(plain=True)
    work = PipelineWorkload(as_resolved(sc), C.pipeline_table(sc))
    assert work.variant_configs == [(0, 1), (1,)]
    frames = [[work.adaptive_drawer(0, 0, np.random.default_rng(5))(k) for _ in range(50)] for k in (0, 1)]
    assert [f[0] for f in frames[0]] == [f[0] - 4 for f in frames[1]]  # JPEG rows 0-3, stage4 rows 4-7
    assert {f[1] for f in frames[0]} <= {50_400.0 + i for i in range(4)}
    assert {f[1] for f in frames[1]} <= {10_400.0 + i for i in range(4)}
    assert frames[0][0][2] == 0.0 < frames[1][0][2]  # no head at split input; Lite0 to stage4 at stage4
    plain = [work.frame_drawer(1, 0, np.random.default_rng(1))() for _ in range(50)]
    assert {f[0] for f in plain} <= set(range(4, 8))


def test_a_run_switches_under_backlog_and_records_which_configuration_served_each_frame(built: list[Any]) -> None:
    sc = _scenario(link={"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms",
                         "rate_trace": {"time_s": [0, 8, 14], "rate": ["2 MB/s", "0.4 MB/s", "2 MB/s"]}})
    mem = run_scenario(sc, stream=False)
    df = mem.sim.records
    ok = df[df["status"] == "ok"]
    served = ok["config"].to_numpy()
    assert set(served) == {0, 1}
    jpeg = ok["payload_bytes"].to_numpy() >= 50_000
    assert (jpeg == (served == 0)).all()  # each record's payload is its configuration's
    assert ((ok["image"].to_numpy() < 4) == (served == 0)).all()
    assert (ok.groupby(["batch_start_s", "gpu"])["config"].nunique() == 1).all()  # a batch never mixes
    t = ok["created_s"].to_numpy()
    assert served[(t > 9) & (t < 14)].mean() > served[t < 7].mean()  # smaller payloads while the link is slow
    row = mem.summary["by_group"][0]
    assert row["config"] == "adaptive" and sum(row["config_share"].values()) == pytest.approx(1.0)
    again = run_scenario(sc, stream=False).sim.records
    pd.testing.assert_frame_equal(df, again)  # deterministic
    streamed = run_scenario(sc)
    pd.testing.assert_frame_equal(pd.DataFrame(streamed.summary["by_group"]), pd.DataFrame(mem.summary["by_group"]))


def test_the_rtt_signal_steps_down_on_a_slow_link(built: list[Any]) -> None:
    sc = _scenario({"configs": _CONFIGS, "policy": {"signal": "rtt", "up": 0.2, "down": 0.1}},
                   link={"model": "shared_fifo", "datarate": "0.3 MB/s", "latency": "1 ms"})
    ok = run_scenario(sc, stream=False).sim.records.query("status == 'ok'")
    assert set(ok["config"]) == {0, 1}


def test_the_queue_signal_offloads_more_when_the_nodes_cpu_falls_behind(built: list[Any]) -> None:
    raw = _raw({"configs": [{}, *_CONFIGS[:1]], "policy": {"signal": "queue", "up": 2, "down": 0}})
    raw["fleet"][0]["arrivals"] = {"kind": "poisson", "rate": "60/s"}  # faster than Lite0 to stage4 on a Pi 4B
    raw["link"]["datarate"] = "50 MB/s"
    ok = run_scenario(scenario_from_dict(raw), stream=False).sim.records.query("status == 'ok'")
    assert set(ok["config"]) == {0, 1}
    assert (ok.loc[ok["config"] == 1, "head_end_s"] == ok.loc[ok["config"] == 1, "head_start_s"]).all()


@pytest.mark.parametrize(("adaptive", "field"), [
    ({"configs": _CONFIGS, "policy": _POLICY, "extra": 1}, "fleet.0.adaptive"),
    ({"configs": _CONFIGS[:1], "policy": _POLICY}, "fleet.0.adaptive.configs"),
    ({"configs": _CONFIGS, "policy": {**_POLICY, "down": 200_000}}, "fleet.0.adaptive.policy"),
    ({"configs": _CONFIGS, "policy": {**_POLICY, "signal": "battery"}}, "fleet.0.adaptive.policy.signal"),
    ({"configs": [{}, {}], "policy": _POLICY}, "fleet.0.adaptive.configs"),
    ({"configs": [{}, {"model": {"split": "none"}, "codec": []}], "policy": _POLICY}, "fleet.0.adaptive.configs"),
    ({"configs": [{}, {"modle": {}}], "policy": _POLICY}, "fleet.0.adaptive.configs.1"),
])
def test_bad_adaptive_sections_are_one_line_naming_the_field(adaptive: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        _scenario(adaptive)
    assert err.value.path.startswith(field) and "\n" not in str(err.value)


def test_a_bad_configuration_model_is_named_by_validate() -> None:
    sc = _scenario({"configs": [{}, {"model": {"split": "nowhere"}}], "policy": _POLICY})
    with pytest.raises(ConfigError) as err:
        check_model(as_resolved(sc))
    assert err.value.path.startswith("fleet.0.adaptive.configs.1.model.split")


def test_uplink_backlog_is_refused_on_a_csma_link_whose_drops_the_node_is_not_told_of() -> None:
    raw = _raw()
    raw["link"]["model"] = "csma"
    with pytest.raises(ConfigError, match=r"fleet\.0\.adaptive\.policy\.signal"):
        scenario_from_dict(raw)
    raw["fleet"][0]["adaptive"]["policy"] = {**_POLICY, "signal": "rtt", "up": 0.2, "down": 0.1}
    assert scenario_from_dict(raw).fleet[0].adaptive is not None


def test_adaptive_needs_a_model_and_no_group_model_or_nestquant() -> None:
    raw = base_scenario()
    raw["fleet"][0]["adaptive"] = {"configs": [{}, {}], "policy": _POLICY}
    with pytest.raises(ConfigError, match=r"fleet\.0\.adaptive"):
        scenario_from_dict(raw)
    raw = _raw()
    raw["fleet"][0]["model"] = {"split": "stage4"}
    with pytest.raises(ConfigError, match=r"fleet\.0\.model"):
        scenario_from_dict(raw)


def test_the_emulator_refuses_an_adaptive_group_naming_it() -> None:
    from testbed.emulate.compute import check_emulable

    with pytest.raises(ConfigError, match=r"fleet\.0\.adaptive"):
        check_emulable(as_resolved(_scenario()))


def test_the_optimiser_refuses_an_adaptive_group_naming_it() -> None:
    from testbed.run.optimize import Config, Objective, optimize

    with pytest.raises(ConfigError, match=r"fleet\.0\.adaptive"):
        optimize(_raw(), [Config("stage4", ({"quantize": {"bits": 8}},))], Objective("agreement", "agreement", True),
                 None, None)

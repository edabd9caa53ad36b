"""A scenario runs a GroupNL head (``model.head``): the pipeline loads it, the cache key holds it and
the node's head time is the profile's scaled by the head's MACs (arXiv:2506.12335)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.bridge.cache import pipeline_key, pipeline_table
from testbed.bridge.workload import workload_for
from testbed.config.load import scenario_from_dict
from testbed.config.resolve import resolve
from testbed.research.train import TrainOptions, train_method

pytestmark = pytest.mark.zoo


def _scenario(head: str | None) -> dict[str, object]:
    model: dict[str, object] = {"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage2"}
    if head:
        model["head"] = head
    return {"duration": 5.0, "model": model, "dataset": {"kind": "photos", "limit": 4},
            "fleet": [{"count": 1, "device": "pi4b", "arrivals": {"kind": "periodic", "rate": 1.0}}],
            "link": {"model": "shared_fifo", "datarate": 5e6}, "server": {"device": "h100"}}


def test_groupnl_head_in_a_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "g.pt"
    train_method("groupnl", TrainOptions(out=str(ckpt), model="efficientnet_lite0", split="stage2",
                                         dataset="photos", limit=4, device="cpu"), {"epochs": 0})
    root = Path(__file__).resolve().parents[2]
    plain = resolve(scenario_from_dict(_scenario(None)), root / "scenarios")
    gnl = resolve(scenario_from_dict(_scenario(str(ckpt))), root / "scenarios")
    assert pipeline_key(plain.scenario)[0] != pipeline_key(gnl.scenario)[0]
    table = pipeline_table(gnl.scenario)
    meta = table.meta
    assert 0 < meta["head_macs"] < meta["original_head_macs"]
    h_plain = workload_for(plain)._heads[0].mean()
    h_gnl = workload_for(gnl)._heads[0].mean()
    assert h_gnl == pytest.approx(h_plain * meta["head_macs"] / meta["original_head_macs"])


@pytest.mark.parametrize("stream", [True, False])
def test_night_and_day_groups_give_agreement_by_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           stream: bool) -> None:
    """Two groups, one on noisy frames (its own ``dataset``), one on the scenario's clean frames: the
    summary's ``by_corruption`` has both, and the records say which frame had which corruption."""
    from testbed.run.runner import run_scenario

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    raw = _scenario(None)
    day = raw["fleet"][0]  # type: ignore[index]
    night = {**day, "name": "night", "dataset": {"kind": "photos", "limit": 3,  # type: ignore[dict-item]
                                                 "corruption": {"name": "gaussian_noise", "severity": [1, 5]}}}
    raw["fleet"] = [night, {**day, "name": "day"}]  # type: ignore[dict-item]
    res = resolve(scenario_from_dict(raw), tmp_path)
    out = run_scenario(res, stream=stream)
    by = {(r["corruption"], r["severity"]): r for r in out.summary["by_corruption"]}
    assert {c for c, _ in by} == {"gaussian_noise", "none"}
    assert {s for c, s in by if c == "gaussian_noise"} <= {None, 1, 5} and {s for c, s in by if c == "none"} == {None, 0}
    clean = by[("none", None)]
    assert clean["agreement"] == clean["agreement_clean"] == 1.0  # the original head, clean frames
    rec = out.records
    groups = rec["group"].to_numpy()  # 0: night, 1: day
    assert set(rec.loc[(groups == 0) & (rec["image"] >= 0), "corruption"]) == {"gaussian_noise"}
    assert set(rec.loc[(groups == 1) & (rec["image"] >= 0), "corruption"]) == {"none"}
    assert (rec.loc[groups == 0, "image"] < 3).all() and (rec.loc[groups == 1, "image"] >= 3).all()

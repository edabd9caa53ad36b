"""``testbed train groupnl``: distillation of a GroupNL head, deterministic for a seed, a checkpoint
the pipeline loads as ``model.head`` (Ding, Xie et al., IEEE TMC 2026, arXiv:2506.12335)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from testbed.research.common import load_checkpoint
from testbed.research.registry import METHODS
from testbed.research.train import TrainOptions, train_method

pytestmark = pytest.mark.zoo

_P = {"ratio": 2, "groups": 4, "epochs": 1, "batch_size": 4}


def _opts(out: Path, seed: int = 0) -> TrainOptions:
    return TrainOptions(out=str(out), model="efficientnet_lite0", split="stage2", dataset="photos", limit=9,
                        seed=seed, device="cpu", threads=1)


def test_registered() -> None:
    assert "groupnl" in METHODS.names()


def test_two_runs_with_one_seed_give_identical_checkpoints(tmp_path: Path) -> None:
    s1 = train_method("groupnl", _opts(tmp_path / "a.pt"), _P)
    train_method("groupnl", _opts(tmp_path / "b.pt"), _P)
    a, b = load_checkpoint(tmp_path / "a.pt", "groupnl"), load_checkpoint(tmp_path / "b.pt", "groupnl")
    assert a["state"].keys() == b["state"].keys()
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k
    assert a["extra"]["history"] == b["extra"]["history"]
    assert s1["head_macs"] < s1["original_head_macs"] and s1["head_params"] < s1["original_head_params"]
    assert not torch.are_deterministic_algorithms_enabled()  # restored
    c = train_method("groupnl", _opts(tmp_path / "c.pt", seed=1), _P)
    assert c["loss"] != s1["loss"]


def test_checkpoint_loads_as_the_pipeline_head(tmp_path: Path) -> None:
    from testbed.split.models import load_head, split_model

    train_method("groupnl", _opts(tmp_path / "g.pt"), {**_P, "epochs": 0})
    head, _ = split_model("efficientnet_lite0", "stage2", "pretrained")
    gnl = load_head(str(tmp_path / "g.pt"), "efficientnet_lite0", "stage2", head)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert gnl(x).shape == head(x).shape
    from testbed.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.head"):
        load_head(str(tmp_path / "g.pt"), "efficientnet_lite0", "stage3", head)


def test_ratio_one_is_the_original_head_and_the_structure_is_recorded(tmp_path: Path) -> None:
    """``--ratio 1`` (the baseline fine-tuned the same way) starts as the original head, exactly; the
    checkpoint records what rebuilds the GroupNL structure (keep_first, keep_last) and the options."""
    from testbed.split.models import load_head, split_model

    train_method("groupnl", _opts(tmp_path / "r1.pt"), {**_P, "ratio": 1, "epochs": 0})
    head, _ = split_model("efficientnet_lite0", "stage2", "pretrained")
    same = load_head(str(tmp_path / "r1.pt"), "efficientnet_lite0", "stage2", head)
    for k, v in head.state_dict().items():
        assert torch.equal(same.state_dict()[k], v), k
    blob = load_checkpoint(tmp_path / "r1.pt", "groupnl")
    assert blob["config"]["keep_first"] is False and blob["config"]["keep_last"] is True
    assert blob["extra"]["options"]["ratio"] == 1 and blob["extra"]["limit"] == 9

"""``testbed validate`` checks everything ``testbed run`` needs (testbed.bridge.check): the model and
split, the weights name, the codec chain, the dataset, and the profiles' figures for them, so a
scenario that validates does not fail at run time on its configuration."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.cli import main
from testbed.config.load import apply_overrides
from testbed.errors import ConfigError
from testbed.run.prepare import prepare_dict
from tests.conftest import base_scenario

REPO = Path(__file__).resolve().parents[2]


def model_raw(**over: Any) -> dict[str, Any]:
    raw = base_scenario(duration="5 s", warmup="1 s", model={"name": "resnet18", "split": "layer1"},
                        codec=[{"quantize": {"bits": 4}}, {"zlib": {}}], dataset={"kind": "samples"})
    del raw["server"]["service"]  # the tail table comes from the server profile
    for g in raw["fleet"]:
        del g["head"], g["encode"], g["payload"]
    return apply_overrides(raw, over)


def save_profile(tmp_path: Path, source: str, name: str, edit: Any) -> None:
    data = yaml.safe_load((REPO / "nodes" / f"{source}.yaml").read_text())
    data["name"] = name
    edit(data)
    (tmp_path / "nodes").mkdir(exist_ok=True)
    (tmp_path / "nodes" / f"{name}.yaml").write_text(yaml.safe_dump(data))


def test_a_model_scenario_with_every_figure_validates():
    res = prepare_dict(model_raw())
    assert res.scenario.model is not None and res.scenario.model.split == "layer1"


@pytest.mark.parametrize("over,needle", [
    ({"model.name": "resnet1"}, "model.name: got 'resnet1'"),
    ({"model.split": "layer9"}, "model.split: got 'layer9'"),
    ({"model.weights": "IMAGENET1K_V9"}, "model.weights: got 'IMAGENET1K_V9'"),
    ({"codec": [{"quantize": {"bits": 12}}]}, "codec.0.quantize.bits"),
    ({"codec": [{"gzipx": {}}]}, "codec.0"),
    ({"codec": [{"image": {"format": "png"}}]}, "codec.0.image: got {'format': 'png', 'quality': 90}; "
                                                 "image encodings apply to split 'input' only"),
    ({"codec": [{"image": {"quality": 0}}], "model.split": "input"}, "codec.0.image.quality"),
    ({"dataset": {"kind": "imagefolder"}}, "dataset.path: got None"),
    ({"dataset": {"kind": "pictures"}}, "dataset.name: got 'pictures'"),
    ({"codec": [{"quantize": {"bits": 4}}, {"lzma": {"preset": 9}}]}, "fleet.0.device: got 'pi4b'; a profile with "
                                                                      "the figures this run charges (codec"),
    ({"model.split": "layer4"}, "server.device: got 'h100'; a profile with the figures this run charges "
                                "(model.split"),
])
def test_what_run_needs_is_checked(over, needle):
    with pytest.raises(ConfigError) as info:
        prepare_dict(model_raw(**over))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_profile_figures_are_checked_unless_the_scenario_gives_the_time(tmp_path):
    save_profile(tmp_path, "pi4b", "bare", lambda d: d["models"].pop("resnet18"))
    save_profile(tmp_path, "h100", "notail", lambda d: d["models"]["resnet18"]["tail"].pop("layer1"))
    raw = model_raw(**{"fleet.0.device": "bare"})
    with pytest.raises(ConfigError, match=r"fleet\.0\.device: got 'bare'; .*has figures for: .*resnet50"):
        prepare_dict(raw, tmp_path)
    prepare_dict(apply_overrides(raw, {"fleet.0.head": "20 ms"}), tmp_path)  # given: not charged from the profile
    raw = model_raw(**{"server.device": "notail"})
    with pytest.raises(ConfigError, match=r"server\.device: got 'notail'; .*tail tables for resnet18"):
        prepare_dict(raw, tmp_path)
    prepare_dict(apply_overrides(raw, {"server.service": {"table": {1: "3 ms"}}}), tmp_path)
    prepare_dict(apply_overrides(raw, {"model.split": "none", "codec": []}), tmp_path)  # nothing offloaded


def test_learned_stage_needs_its_checkpoint(tmp_path):
    raw = model_raw(codec=[{"autoencoder": {"checkpoint": "ae.pt"}}, {"quantize": {"bits": 2}}])
    with pytest.raises(ConfigError, match=r"codec\.0\.autoencoder\.checkpoint: got 'ae\.pt'; an existing checkpoint"):
        prepare_dict(raw, tmp_path)


def test_validate_command_reports_what_run_would_fail_on(tmp_path, capsys, monkeypatch):
    raw = copy.deepcopy(model_raw(**{"model.split": "layer4"}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path.parent)
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
    assert "server.device" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "s.yaml"), "--set", "model.split=layer1"]) == 0
    assert "ok" in capsys.readouterr().out

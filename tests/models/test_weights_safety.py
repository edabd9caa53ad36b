"""torchvision weights come from the hub cache without unpickling: hash-checked, ``weights_only``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from testbed.cli import main
from testbed.split.models import weights as W
from testbed.split.models.weights import WeightsError, load_model

_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


class _Boom:
    """Unpickling this creates ``marker`` (what a poisoned cache file would do, more harmfully)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.marker,))


def _poison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / _FILE
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"fc.weight": _Boom(str(marker))}, cached)
    return cached, marker


def test_poisoned_hub_file_is_refused_by_its_hash_without_running_code(tmp_path, monkeypatch, capsys) -> None:
    cached, marker = _poison(tmp_path, monkeypatch)
    code = main(["payloads", "--model", "resnet18", "--weights", "IMAGENET1K_V1", "--split", "layer2",
                 "--limit", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(cached) in err and "could not be fetched" not in err


def test_weights_only_even_when_the_hash_matches(tmp_path, monkeypatch) -> None:
    """A file whose hash prefix matches (32 bits can be brute-forced) is still not unpickled."""
    cached, marker = _poison(tmp_path, monkeypatch)
    monkeypatch.setattr(W, "_sha256", lambda path: "f37072fd" + "0" * 56)
    with pytest.raises(WeightsError) as info:
        load_model("resnet18", "IMAGENET1K_V1")
    assert not marker.exists()
    assert str(cached) in str(info.value) and "could not be fetched" not in str(info.value)


def test_a_valid_cached_state_dict_loads_strictly(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / _FILE
    cached.parent.mkdir(parents=True)
    state = load_model("resnet18", "random", seed=3).state_dict()
    torch.save(state, cached)
    monkeypatch.setattr(W, "_sha256", lambda path: "f37072fd" + "0" * 56)
    model = load_model("resnet18", "IMAGENET1K_V1")
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_missing_weights_offline_say_they_could_not_be_fetched(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError, match="could not be fetched"):
        load_model("resnet18", "IMAGENET1K_V1")

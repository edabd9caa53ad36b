"""Head and tail compose to the full model for every registered model and split point."""

from __future__ import annotations

import functools
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from testbed.errors import ConfigError
from testbed.split.models import (
    INPUT,
    MODELS,
    NONE,
    WeightsError,
    feature_table,
    get_spec,
    load_model,
    model_names,
    register_model,
    split_loaded,
    split_model,
)

HEAVY = {"vit_b_16", "efficientnet_v2_s", "convnext_tiny", "ssdlite320_mobilenet_v3_large"}


@functools.cache
def _model(name: str) -> nn.Module:
    return load_model(name, "random", seed=0)


@functools.cache
def _input(name: str) -> torch.Tensor:
    spec = get_spec(name)
    side = spec.crop if spec.fixed_input else 64
    batch = 1 if name in HEAVY else 2
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
    return x.sigmoid() if spec.task == "detection" else x


@functools.cache
def _reference(name: str) -> Any:
    with torch.inference_mode():
        return _model(name)(_input(name))


def _assert_same(name: str, out: Any, ref: Any) -> None:
    if get_spec(name).task == "detection":
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            assert r["boxes"].shape[0] > 0
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(o[key], r[key], rtol=1e-5, atol=1e-5)
    else:
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


CASES = [(m, p) for m in model_names() for p in get_spec(m).split_points]


def test_registry_has_the_required_models() -> None:
    required = {"resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_v2_s", "convnext_tiny", "vit_b_16"}
    assert required <= set(model_names())
    assert get_spec("resnet50").split_points == ("input", "stem", "layer1", "layer2", "layer3", "layer4", "none")


@pytest.mark.zoo
@pytest.mark.parametrize(("name", "point"), CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_head_tail_compose_to_full_model(name: str, point: str) -> None:
    head, tail = split_loaded(name, _model(name), point)
    x = _input(name)
    with torch.inference_mode():
        feats = head(x)
        out = tail(feats)
    _assert_same(name, out, _reference(name))
    if point == INPUT:
        assert torch.equal(feats, x)
    if point not in (INPUT, NONE):
        # the tensor at the split has the shape `testbed models` reports for this input size
        side = x.shape[-1]
        (info,) = [f for f in feature_table([name], side) if f.point == point]
        assert tuple(feats.shape[1:]) == info.shape
        assert info.elements == feats[0].numel()


@pytest.mark.zoo
def test_split_model_builds_and_splits() -> None:
    head, tail = split_model("resnet18", "layer2", weights="random", seed=0)
    x = _input("resnet18")
    with torch.inference_mode():
        torch.testing.assert_close(tail(head(x)), _reference("resnet18"), rtol=1e-5, atol=1e-5)
        assert head(x).shape[1:] == (128, 8, 8)
    head, tail = split_model("resnet18", NONE)
    with torch.inference_mode():
        assert torch.equal(tail(x), x)  # identity tail


def test_unknown_model_and_point_name_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"model: got 'resnet1'; a known model: .*resnet18, resnet50, "):
        get_spec("resnet1")
    with pytest.raises(ConfigError, match=r"split: got 'layer5'; split points of resnet18: input, stem"):
        split_loaded("resnet18", _model("resnet18"), "layer5")


def test_models_live_in_the_generic_registry_and_names_are_unique() -> None:
    assert set(MODELS.names()) == set(model_names())
    assert model_names()[:2] == ["resnet18", "resnet50"]  # registration order, as `testbed models` lists them
    with pytest.raises(ValueError, match="model 'resnet18' is already registered"):
        register_model(get_spec("resnet18"))


@pytest.mark.zoo
def test_random_weights_are_seeded_and_leave_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = (load_model("resnet18", "random", s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(_param(a, "conv1.weight"), _param(b, "conv1.weight"))
    assert not torch.equal(_param(a, "conv1.weight"), _param(c, "conv1.weight"))
    assert not a.training


def _param(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_parameter(name)


@pytest.mark.zoo
def test_checkpoint_path_is_loaded_weights_only(tmp_path: Path) -> None:
    src = load_model("resnet18", "random", seed=7)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pth"
    torch.save(src.state_dict(), plain)
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, wrapped)
    for path in (plain, wrapped):
        m = load_model("resnet18", str(path))
        assert torch.equal(_param(m, "fc.weight"), _param(src, "fc.weight"))
    torch.save(load_model("mobilenet_v3_large").state_dict(), tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="does not fit ResNet"):
        load_model("resnet18", str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot read weights file .*junk\.pt as a plain state dict"):
        load_model("resnet18", str(tmp_path / "junk.pt"))
    with pytest.raises(ConfigError, match="existing checkpoint file"):
        load_model("resnet18", str(tmp_path / "missing.pt"))


@pytest.mark.zoo
def test_named_weights_unavailable_give_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torchvision.models._api as api

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        load_model("resnet18", "IMAGENET1K_V1")
    msg = str(info.value)
    assert "\n" not in msg and "resnet18.IMAGENET1K_V1" in msg and "not cached" in msg
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        load_model("resnet18", "IMAGENET9K")


def test_feature_table_lists_every_point_with_element_counts() -> None:
    rows = feature_table(["resnet50"])
    got = {r.point: (r.shape, r.elements) for r in rows}
    assert got["layer4"] == ((2048, 7, 7), 100352)
    assert got["input"] == ((3, 224, 224), 150528)
    assert [r.point for r in rows] == list(get_spec("resnet50").split_points)
    assert all(r.float32_bytes == 4 * r.elements for r in rows)

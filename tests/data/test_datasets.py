"""Bundled photos, digits and ImageFolder trees load with each model's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from testbed.errors import ConfigError
from testbed.split.data import IMAGENET_MEAN, Preprocess, load_dataset, parse_dataset, preprocess_for


def test_sample_photos_are_real_and_normalized() -> None:
    d = load_dataset("samples")
    assert len(d) >= 6 and d.labels is None
    assert d.images.shape[1:] == (3, 224, 224) and d.images.dtype == torch.float32
    assert {"skimage:astronaut", "skimage:chelsea", "sklearn:china"} <= set(d.names)
    # ImageNet normalization: roughly zero mean, unit spread, and photos differ from each other
    assert abs(float(d.images.mean())) < 1.0 and 0.5 < float(d.images.std()) < 2.0
    assert not torch.equal(d.images[0], d.images[1])
    assert len(load_dataset("samples", limit=2)) == 2


def test_digits_have_labels_and_three_channels() -> None:
    d = load_dataset("digits", limit=25)
    assert d.images.shape == (25, 3, 224, 224)
    assert d.labels is not None and d.labels.tolist()[:10] == list(range(10))
    # grey digits repeated to RGB: identical channels once un-normalized
    torch.testing.assert_close(d.images[:, 0] * 0.229 + 0.485, d.images[:, 1] * 0.224 + 0.456, atol=1e-5, rtol=0)
    assert d.classes == [str(i) for i in range(10)]


def _tree(root: Path, classes: tuple[str, ...] = ("cat", "ant", "bee"), per_class: int = 3,
          size: tuple[int, int] = (40, 30)) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    (root / "ant" / "notes.txt").write_text("not an image")


def test_imagefolder_labels_follow_sorted_folders(tmp_path: Path) -> None:
    _tree(tmp_path)
    d = load_dataset(f"imagefolder:{tmp_path}", Preprocess(crop=32, resize=36))
    assert d.classes == ["ant", "bee", "cat"] and len(d) == 9
    assert d.images.shape == (9, 3, 32, 32)
    assert d.classes is not None and d.labels is not None
    assert [n.split("/")[0] for n in d.names] == [d.classes[i] for i in d.labels.tolist()]
    small = load_dataset({"name": "imagefolder", "path": str(tmp_path), "limit": 4}, Preprocess(crop=32, resize=36))
    assert small.labels is not None and small.labels.tolist() == [0, 1, 2, 0]  # round-robin over classes
    assert len(load_dataset(str(tmp_path), Preprocess(crop=32, resize=36))) == 9  # a bare directory path


def test_preprocessing_per_model_and_weights() -> None:
    p = preprocess_for("resnet50")
    assert (p.crop, p.resize, p.mean) == (224, 256, IMAGENET_MEAN)
    # named weights bring torchvision's transforms (read from the enum, nothing downloaded)
    assert (preprocess_for("efficientnet_v2_s", "DEFAULT").crop, preprocess_for("resnet50", "IMAGENET1K_V2").resize) \
        == (384, 232)
    det = preprocess_for("ssdlite320_mobilenet_v3_large")
    assert det.crop == 320 and det.mean is None
    x = det(torch.full((3, 300, 451), 255, dtype=torch.uint8))
    assert x.shape == (3, 320, 320) and float(x.max()) == 1.0


@pytest.mark.parametrize(("value", "path", "allowed"), [
    ("cifar", "dataset", "samples, digits, imagefolder"),
    ({"name": "digits", "size": 3}, "dataset.size", "name, path, limit"),
    ("imagefolder:/no/such/dir", "dataset.path", "existing directory"),
    ("imagefolder", "dataset.path", "root directory"),
])
def test_bad_dataset_specs(value: object, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(value)
    assert info.value.path == path and allowed in str(info.value)


def test_limit_must_be_positive() -> None:
    for bad in (0, -3, "5", 2.5, True):
        with pytest.raises(ConfigError, match=r"dataset\.limit"):
            parse_dataset({"name": "digits", "limit": bad})
    with pytest.raises(ConfigError, match=r"dataset\.limit: got 0"):
        parse_dataset("digits", limit=0)
    assert parse_dataset({"name": "digits", "limit": 3}, limit=5).limit == 5  # the argument wins


def test_empty_imagefolder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ConfigError, match="class folders holding images"):
        load_dataset(f"imagefolder:{tmp_path}")

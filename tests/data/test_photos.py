"""The ``photos`` dataset: bundled photographs or a user's folder, varied by a seed, label-free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from testbed.errors import ConfigError
from testbed.split.data import load_dataset, parse_dataset
from testbed.split.data.photos import BUNDLED_PHOTOS, Variation, bundled_photos, vary


def test_bundled_photographs_load_offline() -> None:
    photos = dict(bundled_photos())
    assert {"skimage:chelsea", "skimage:coffee", "sklearn:china", "matplotlib:grace_hopper"} <= set(photos)
    assert len(photos) >= 10 and set(photos) <= set(BUNDLED_PHOTOS)
    assert all(p.dtype == np.uint8 and p.ndim in (2, 3) for p in photos.values())


def test_frames_are_seeded_distinct_and_recorded() -> None:
    a = load_dataset({"name": "photos", "limit": 14})
    b = load_dataset({"name": "photos", "limit": 14})
    other = load_dataset({"name": "photos", "limit": 14, "seed": 1})
    assert len(a) == 14 and a.labels is None
    assert torch.equal(a.images, b.images) and a.names == b.names          # the same seed, the same frames
    assert not torch.equal(a.images, other.images)                         # another seed, other frames
    assert a.names[0].startswith("skimage:astronaut#0 crop=(") and "flip=" in a.names[0] and "gain=" in a.names[0]
    assert a.names[12].startswith("skimage:astronaut#12")                  # sources in turn
    assert not torch.equal(a.images[0], a.images[12])                      # same photo, another variation


def test_frame_i_does_not_depend_on_how_many_are_asked_for() -> None:
    few = load_dataset({"name": "photos", "limit": 3})
    more = load_dataset({"name": "photos", "limit": 5})
    assert torch.equal(few.images, more.images[:3]) and few.names == more.names[:3]


def test_variation_stays_inside_the_photo_and_keeps_exposure_bounded() -> None:
    rng = np.random.default_rng(0)
    photo = np.full((300, 400, 3), 100, dtype=np.uint8)
    for _ in range(200):
        v = Variation.draw(300, 400, rng)
        x, y, w, h = v.box
        assert x >= 0 and y >= 0 and x + w <= 400 and y + h <= 300
        assert 0.35 * 0.99 <= w * h / (300 * 400) <= 1.0 and 0.8 <= v.gain <= 1.25
    v = Variation((10, 20, 100, 50), flip=True, gain=1.2)
    frame = vary(photo, v)
    assert frame.shape == (50, 100, 3) and int(frame[0, 0, 0]) == 120


def test_a_folder_of_unlabelled_photos_flat_or_nested(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    (tmp_path / "day" / "cam1").mkdir(parents=True)
    for i, rel in enumerate(("a.png", "day/b.jpg", "day/cam1/c.bmp")):
        Image.fromarray(rng.integers(0, 255, (60 + i, 80, 3), dtype=np.uint8)).save(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    d = load_dataset({"name": "photos", "path": str(tmp_path), "limit": 6})
    assert [n.split("#")[0] for n in d.names] == ["a.png", "day/b.jpg", "day/cam1/c.bmp"] * 2
    with pytest.raises(ConfigError, match=r"dataset\.path"):
        load_dataset({"name": "photos", "path": str(tmp_path / "missing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holding images"):
        load_dataset({"name": "photos", "path": str(tmp_path / "empty")})


def test_bad_counts_and_seeds_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.limit.*at most"):
        load_dataset({"name": "photos", "limit": 10**6})
    with pytest.raises(ConfigError, match=r"dataset\.seed"):
        parse_dataset({"name": "photos", "seed": -1})


def test_validate_refuses_more_frames_than_the_loader_takes() -> None:
    from testbed.run.prepare import prepare_dict
    from tests.test_pipeline_workload import split_raw

    raw = split_raw(**{"dataset": {"kind": "photos", "limit": 10**6}})
    with pytest.raises(ConfigError, match=r"dataset\.limit.*at most 4096"):
        prepare_dict(raw)

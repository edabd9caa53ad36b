"""Corrupted camera frames: deterministic under a seed, equal to the reference implementation
(``imagecorruptions.corrupt``) with the same RNG state, the global RNG left untouched."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.errors import ConfigError
from testbed.split.data import load_dataset
from testbed.split.data.corrupt import (
    CORRUPTIONS,
    Corruption,
    corrupt_frame,
    frame_corruption,
    parse_corruption,
    seed_kwargs,
)

pytest.importorskip("imagecorruptions")


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
                                  "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                                  "elastic_transform", "pixelate", "jpeg_compression"])
def test_equals_the_reference_with_the_same_rng_state(name: str) -> None:
    from imagecorruptions import corrupt

    img = _frame()
    ours = corrupt_frame(img, name, 3, seed=1234)
    saved = np.random.get_state()
    try:
        np.random.set_state(np.random.RandomState(1234).get_state())
        ref = corrupt(img, corruption_name=name, severity=3, **seed_kwargs(name, 1234))
        ref = np.asarray(np.clip(ref, 0, 255), dtype=np.uint8)
    finally:
        np.random.set_state(saved)
    assert np.array_equal(ours, ref)
    assert ours.shape == img.shape and ours.dtype == np.uint8


def test_deterministic_and_the_global_rng_is_left_alone() -> None:
    img = _frame(1)
    before = np.random.get_state()
    a = corrupt_frame(img, "gaussian_noise", 5, seed=7)
    b = corrupt_frame(img, "gaussian_noise", 5, seed=7)
    c = corrupt_frame(img, "gaussian_noise", 5, seed=8)
    after = np.random.get_state()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_draws_per_frame() -> None:
    c = parse_corruption({"name": ["gaussian_noise", "fog"], "severity": [1, 2, 3, 4, 5]})
    assert c == Corruption(("gaussian_noise", "fog"), (1, 2, 3, 4, 5))
    draws = [frame_corruption(c, 3, i) for i in range(40)]
    assert draws == [frame_corruption(c, 3, i) for i in range(40)]
    assert {d[0] for d in draws} == {"gaussian_noise", "fog"} and {d[1] for d in draws} == {1, 2, 3, 4, 5}
    assert frame_corruption(Corruption(("snow",), (2,)), 0, 5)[:2] == ("snow", 2)
    assert len(CORRUPTIONS) >= 15


@pytest.mark.parametrize("bad", [{"name": "rain"}, {"name": "fog", "severity": 6}, {"name": "fog", "x": 1},
                                 {"severity": 2}])
def test_bad_specs(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.corruption"):
        parse_corruption(bad)


def test_photos_dataset_corrupts_and_names_each_frame() -> None:
    spec = {"name": "photos", "limit": 3, "seed": 2, "corruption": {"name": ["gaussian_noise", "brightness"],
                                                                     "severity": [2, 4]}}
    a, b = load_dataset(spec), load_dataset(spec)
    clean = load_dataset({"name": "photos", "limit": 3, "seed": 2})
    assert np.array_equal(a.images.numpy(), b.images.numpy())
    assert not np.array_equal(a.images.numpy(), clean.images.numpy())
    for i, name in enumerate(a.names):
        c, s, _ = frame_corruption(parse_corruption(spec["corruption"]), 2, i)  # type: ignore[arg-type]
        assert name.endswith(f"corruption={c} severity={s}") and name.startswith(clean.names[i])


def test_clean_reference_under_strong_noise() -> None:
    """The unsplit model under Gaussian noise (severity 5) on the photos: against itself on the same
    corrupted frame it agrees always (the old reference); against its answer on the clean frame
    (``reference_clean``) it does not, and the clean frames are kept beside the corrupted ones."""
    from testbed.split.pipeline import SplitPipeline

    pipe = SplitPipeline("efficientnet_lite0", "pretrained", device="cpu")
    data = pipe.dataset({"name": "photos", "limit": 16, "corruption": {"name": "gaussian_noise", "severity": 5}})
    clean = pipe.dataset({"name": "photos", "limit": 16})
    assert data.clean is not None and np.array_equal(data.clean.numpy(), clean.images.numpy())
    assert clean.clean is None
    r = pipe.run("none", None, data)
    assert r.reference_clean is not None and np.array_equal(r.reference_clean, pipe.reference(clean))
    s = r.summary()
    assert s["top1_agreement"] == 1.0 and s["reference_agreement_clean"] == s["agreement_clean"] < 1.0
    assert "agreement_clean" not in pipe.run("none", None, clean).summary()


def _photo_frame() -> np.ndarray:
    """A real camera frame: a 72 x 96 crop of the photos dataset's frame 0 (uint8 H x W x 3)."""
    from testbed.split.data.photos import Variation, bundled_photos, vary

    _, photo = bundled_photos()[0]
    frame = vary(photo, Variation.draw(photo.shape[0], photo.shape[1], np.random.default_rng(0)))
    return np.ascontiguousarray(frame[:72, :96])


@pytest.mark.parametrize("name", CORRUPTIONS[:15])
@pytest.mark.parametrize("severity", [1, 5])
def test_real_frames_equal_the_reference_at_both_ends_of_the_severity_scale(name: str, severity: int) -> None:
    """Every ImageNet-C family (glass blur included) on a real photograph, mildest and strongest: equal to
    ``imagecorruptions.corrupt`` under the same RNG state, and the same seed gives the same frame twice."""
    from imagecorruptions import corrupt

    img = _photo_frame()
    ours = corrupt_frame(img, name, severity, seed=99)
    assert np.array_equal(ours, corrupt_frame(img, name, severity, seed=99))
    saved = np.random.get_state()
    try:
        np.random.set_state(np.random.RandomState(99).get_state())
        ref = np.asarray(np.clip(corrupt(img, corruption_name=name, severity=severity, **seed_kwargs(name, 99)),
                                 0, 255), dtype=np.uint8)
    finally:
        np.random.set_state(saved)
    assert np.array_equal(ours, ref)
    if name != "jpeg_compression" or severity == 5:  # JPEG at quality 25 of a small crop may round back
        assert not np.array_equal(ours, img)

"""The ``photos`` dataset: real photographs with seeded, camera-like variation, label-free.

Sources: every camera photograph the installed packages ship (scikit-image's sample data,
scikit-learn's ``load_sample_images``, matplotlib's sample data), or every image under a folder the
user points at (``path``: flat or nested, any common format, no class folders needed). Frame ``i``
is a variation of source ``i mod n`` drawn from its own stream (``SeedSequence(seed, spawn_key=(i,))``):
a random crop (35-100% of the area, aspect 3:4 to 4:3), a horizontal flip with probability 1/2 and an
exposure gain in [0.8, 1.25]; its name records the source and the variation. So a scenario gets as
many distinct frames as it asks for (``limit``, default 64), frame ``i`` does not depend on how many
are asked for, and there are no labels: the reference answer is the unsplit model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import Tensor

from testbed.errors import ConfigError
from testbed.split.data.datasets import DATASETS, IMAGE_EXTENSIONS, DatasetSpec, Raw, to_chw

__all__ = ["BUNDLED_PHOTOS", "DEFAULT_FRAMES", "MAX_FRAMES", "Variation", "bundled_photos", "vary"]

DEFAULT_FRAMES = 64
MAX_FRAMES = 4096   # frames are held in memory (at most 256 px on the shorter side each)
_SHORT_SIDE = 256

BUNDLED_PHOTOS = (
    # scikit-image (mostly CC0 / public domain): colour photographs, then greyscale ones
    "skimage:astronaut", "skimage:chelsea", "skimage:coffee", "skimage:rocket", "skimage:stereo_motorcycle",
    "skimage:camera", "skimage:coins", "skimage:clock", "skimage:moon",
    # scikit-learn (CC-BY-2.0) and matplotlib (public domain)
    "sklearn:china", "sklearn:flower", "matplotlib:grace_hopper",
)
"""The camera photographs bundled with the installed packages (textures, microscopy, astronomy,
synthetic images and logos are left out)."""


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, name)()
    return np.asarray(arr[0] if isinstance(arr, tuple) else arr)  # stereo_motorcycle: the left view


def _file(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ConfigError("dataset.path", str(path), f"a readable image ({exc})") from None


def _sklearn(name: str) -> np.ndarray:
    import sklearn.datasets

    return _file(Path(sklearn.datasets.__file__).parent / "images" / f"{name}.jpg")


def _matplotlib(name: str) -> np.ndarray:
    import matplotlib.cbook

    return _file(Path(matplotlib.cbook.get_sample_data(f"{name}.jpg", asfileobj=False)))


_LOADERS: dict[str, Callable[[str], np.ndarray]] = {
    "skimage": _skimage, "sklearn": _sklearn, "matplotlib": _matplotlib}


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """The bundled photographs that load here (one that would need a download is skipped)."""
    out = []
    for source in BUNDLED_PHOTOS:
        package, name = source.split(":")
        try:
            out.append((source, _LOADERS[package](name)))
        except (ImportError, AttributeError, OSError, ConfigError):
            continue
    return out


def folder_photos(root: Path) -> list[tuple[str, np.ndarray]]:
    """Every image under ``root`` (recursively, sorted by relative path)."""
    if not root.is_dir():
        raise ConfigError("dataset.path", str(root), "an existing directory of photos (flat or nested)")
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError("dataset.path", str(root), f"a directory holding images ({', '.join(IMAGE_EXTENSIONS)})")
    return [(str(f.relative_to(root)), _file(f)) for f in files]


class Variation:
    """One frame's variation of a photograph: crop box (x, y, w, h), flip and exposure gain."""

    __slots__ = ("box", "flip", "gain")

    def __init__(self, box: tuple[int, int, int, int], flip: bool, gain: float) -> None:
        self.box, self.flip, self.gain = box, flip, gain

    @classmethod
    def draw(cls, height: int, width: int, rng: np.random.Generator) -> Variation:
        area = rng.uniform(0.35, 1.0) * height * width
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = min(width, max(1, round(math.sqrt(area * ratio))))
        h = min(height, max(1, round(math.sqrt(area / ratio))))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        flip = bool(rng.random() < 0.5)
        gain = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        return cls((x, y, w, h), flip, gain)

    def describe(self) -> str:
        x, y, w, h = self.box
        return f"crop=({x},{y},{w},{h}) flip={int(self.flip)} gain={self.gain:.3f}"


def vary(photo: np.ndarray, variation: Variation) -> np.ndarray:
    """The varied frame (uint8 ``H x W x 3``, at most 256 px on the shorter side)."""
    from PIL import Image

    rgb = to_chw(photo).numpy().transpose(1, 2, 0)
    x, y, w, h = variation.box
    frame = rgb[y:y + h, x:x + w]
    if variation.flip:
        frame = frame[:, ::-1]
    frame = np.clip(np.rint(frame.astype(np.float32) * variation.gain), 0, 255).astype(np.uint8)
    short = min(frame.shape[:2])
    if short > _SHORT_SIDE:
        scale = _SHORT_SIDE / short
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        frame = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.Resampling.BILINEAR))
    return frame


def _photos(spec: DatasetSpec) -> Raw:
    frames = DEFAULT_FRAMES if spec.limit is None else spec.limit
    if frames > MAX_FRAMES:
        raise ConfigError("dataset.limit", frames, f"at most {MAX_FRAMES} frames (each held in memory)")
    sources = folder_photos(Path(spec.path)) if spec.path else bundled_photos()
    if not sources:
        raise ConfigError("dataset", "photos", "photographs to load (none of the bundled ones could be read)")
    images: list[Tensor] = []
    names: list[str] = []
    for i in range(frames):
        name, photo = sources[i % len(sources)]
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(i,)))
        variation = Variation.draw(photo.shape[0], photo.shape[1], rng)
        images.append(to_chw(vary(photo, variation)))
        names.append(f"{name}#{i} {variation.describe()}")
    return images, None, names, None


DATASETS.add("photos", _photos)

"""Datasets of real images: scikit-image/scikit-learn sample photos, sklearn digits, ImageFolder trees.

Each loader returns uint8 ``[3, H, W]`` images (sizes may differ) and integer labels or None;
:func:`load_dataset` applies a model's :class:`~testbed.split.data.preprocess.Preprocess` and stacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from testbed.errors import ConfigError
from testbed.registry import Registry
from testbed.split.data.corrupt import Corruption, corrupt_frames, parse_corruption
from testbed.split.data.preprocess import Preprocess

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "SAMPLE_PHOTOS",
    "Dataset",
    "DatasetSpec",
    "Raw",
    "dataset_names",
    "load_dataset",
    "parse_dataset",
    "to_chw",
]

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DatasetSpec:
    """``name`` is a registered dataset (``samples``, ``digits``, ``imagefolder`` with ``path``,
    ``photos``); ``limit`` caps the count (for ``photos``: the number of frames); ``seed`` draws the
    variations of datasets that make frames (``photos``) and each frame's ``corruption`` draw
    (:mod:`testbed.split.data.corrupt`; None: clean frames)."""

    name: str
    path: str | None = None
    limit: int | None = None
    seed: int = 0
    corruption: Corruption | None = None


@dataclass(frozen=True)
class Dataset:
    """Preprocessed images ``[N, 3, S, S]``, labels ``[N]`` (or None) and per-image names; ``clean``:
    the same frames before their corruption, preprocessed alike, when the dataset corrupts them (else
    None), so the unsplit model's answer on the clean frame can be the reference."""

    images: Tensor
    labels: Tensor | None
    names: list[str]
    classes: list[str] | None = None
    clean: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


Raw = tuple[list[Tensor], list[int] | None, list[str], list[str] | None]


def _samples(spec: DatasetSpec) -> Raw:
    """Natural photos bundled with scikit-image (``camera`` is greyscale) and scikit-learn (china,
    flower); no labels."""
    import skimage.data

    images, names = [], []
    for name in SAMPLE_PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            arr = loader()
        except Exception:  # a photo that needs a download (pooch) is skipped offline
            continue
        images.append(to_chw(arr))
        names.append(f"skimage:{name}")
    for path in _sklearn_sample_files():
        from PIL import Image

        with Image.open(path) as im:
            images.append(to_chw(np.asarray(im.convert("RGB"))))
        names.append(f"sklearn:{path.stem}")
    return images, None, names, None


def _sklearn_sample_files() -> list[Path]:
    """The JPEGs behind ``sklearn.datasets.load_sample_images`` (found without importing sklearn)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"
    return sorted(folder.glob("*.jpg"))


def _digits(spec: DatasetSpec) -> Raw:
    """scikit-learn's 8x8 handwritten digits, scaled to 0..255 and repeated to 3 channels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.images) if spec.limit is None else min(spec.limit, len(d.images))
    images = [to_chw(np.round(d.images[i] * (255.0 / 16.0)).astype(np.uint8)) for i in range(n)]
    return images, [int(t) for t in d.target[:n]], [f"digits:{i}" for i in range(n)], [str(c) for c in d.target_names]


def _imagefolder(spec: DatasetSpec) -> Raw:
    """``root/<class>/<image>`` trees (e.g. TinyImageNet-200 train); labels index the sorted class names."""
    from PIL import Image

    if not spec.path:
        raise ConfigError("dataset.path", spec.path, "the root directory of an ImageFolder tree")
    root = Path(spec.path)
    if not root.is_dir():
        raise ConfigError("dataset.path", spec.path, "an existing directory with one sub-directory per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((f, label))
    if not files:
        raise ConfigError("dataset.path", spec.path, f"class folders holding images ({', '.join(IMAGE_EXTENSIONS)})")
    if spec.limit is not None:
        files = _spread(files, spec.limit)
    images = []
    for f, _ in files:
        with Image.open(f) as im:
            images.append(to_chw(np.asarray(im.convert("RGB"))))
    return images, [lab for _, lab in files], [str(f.relative_to(root)) for f, _ in files], classes


def _spread(files: list[tuple[Path, int]], limit: int) -> list[tuple[Path, int]]:
    """Take ``limit`` files round-robin over classes, so a small limit still covers many classes."""
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in files:
        by_class.setdefault(item[1], []).append(item)
    out: list[tuple[Path, int]] = []
    depth = 0
    while len(out) < limit and any(depth < len(v) for v in by_class.values()):
        for items in by_class.values():
            if depth < len(items) and len(out) < limit:
                out.append(items[depth])
        depth += 1
    return out


DATASETS: Registry[Callable[[DatasetSpec], Raw]] = Registry("dataset")
"""Dataset loaders by name; a loader returns uint8 images, labels or None, names and class names."""
DATASETS.add("samples", _samples)
DATASETS.add("digits", _digits)
DATASETS.add("imagefolder", _imagefolder)


def dataset_names() -> list[str]:
    """Registered dataset names, in registration order."""
    return [name for name, _ in DATASETS.items()]


def _known() -> str:
    return f"one of {', '.join(dataset_names())} (imagefolder:/path for a folder tree)"


def _limit(value: object, path: str) -> int | None:
    """A positive integer count (or None), whatever the YAML held."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{path}.limit", value, "a positive integer")
    return value


def parse_dataset(value: Any, limit: int | None = None, path: str = "dataset") -> DatasetSpec:
    """Accept ``"samples"``, ``"digits"``, ``"imagefolder:/root"``, a directory path, a dict
    ``{name, path, limit}`` or a :class:`DatasetSpec`; ``limit`` overrides the spec's."""
    if isinstance(value, DatasetSpec):
        spec = value
    elif isinstance(value, dict):
        unknown = set(value) - {"name", "path", "limit", "seed", "corruption"}
        if unknown:
            raise ConfigError(f"{path}.{sorted(unknown)[0]}", value[sorted(unknown)[0]],
                              "keys name, path, limit, seed, corruption")
        seed = value.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{path}.seed", seed, "an integer >= 0")
        spec = DatasetSpec(str(value.get("name", "")), value.get("path"), _limit(value.get("limit"), path), seed,
                           parse_corruption(value.get("corruption"), f"{path}.corruption"))
    elif isinstance(value, str):
        name, sep, rest = value.partition(":")
        if not sep and Path(value).is_dir():
            spec = DatasetSpec("imagefolder", value)
        else:
            spec = DatasetSpec(name, rest or None)
    else:
        raise ConfigError(path, value, _known())
    if spec.name not in DATASETS:
        raise ConfigError(f"{path}.name" if isinstance(value, dict) else path, spec.name, _known())
    if limit is not None:
        spec = dataclasses.replace(spec, limit=_limit(limit, path))
    _limit(spec.limit, path)
    return spec


def load_dataset(value: Any, preprocess: Preprocess | None = None, limit: int | None = None) -> Dataset:
    """Load and preprocess a dataset (default preprocessing: ImageNet 256/224).

    Labels are the dataset's own class indices (digits 0-9, ImageFolder's sorted folders); they
    only measure accuracy for models whose output classes match, e.g. a checkpoint trained on it.
    """
    spec = parse_dataset(value, limit)
    images, labels, names, classes = DATASETS.get(spec.name, "dataset.name")(spec)
    if spec.limit is not None:
        images, names = images[:spec.limit], names[:spec.limit]
        labels = labels[:spec.limit] if labels is not None else None
    prep = preprocess or Preprocess()
    clean = None
    if spec.corruption is not None:  # before preprocessing, as a camera would deliver the frame
        clean = torch.stack([prep(img) for img in images])
        done = corrupt_frames([img.permute(1, 2, 0).numpy() for img in images], spec.corruption, spec.seed)
        images = [torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))) for f, _, _ in done]
        names = [f"{n} corruption={c} severity={s}" for n, (_, c, s) in zip(names, done)]
    batch = torch.stack([prep(img) for img in images])
    return Dataset(batch, torch.tensor(labels, dtype=torch.int64) if labels is not None else None, names, classes,
                   clean)


def to_chw(arr: np.ndarray) -> Tensor:
    """HxW, HxWx3 or HxWx4 (alpha dropped) uint8 -> uint8 [3, H, W]."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        a = a[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

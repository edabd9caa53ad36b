"""Corrupted camera frames: the ImageNet-C corruption families at severities 1-5, applied to each frame
before the head (``dataset: {kind: photos, corruption: {name: gaussian_noise, severity: 3}}``).

The corruptions are those of Hendrycks and Dietterich (ICLR 2019) as the ``imagecorruptions`` package
implements them (installed from the maintained ``imagecorruptions-imaug`` distribution; import name
``imagecorruptions``): Gaussian, shot and impulse noise; defocus, glass, motion and zoom blur; snow,
frost, fog; brightness, contrast, elastic transform, pixelate, JPEG; and the extra speckle noise,
Gaussian blur, spatter, saturate. ``name`` and ``severity`` are each one value or a list to draw from
per frame; frame ``i``'s draw and its noise come from its own stream,
``SeedSequence(seed, spawn_key=(i, CORRUPTION_KEY))``, so they do not depend on how many frames are asked
for. Each frame's name records its corruption and severity.

The package draws its noise from numpy's global RNG. :func:`corrupt_frame` contains that: under a lock,
it saves the global state, sets it to ``RandomState(frame_seed)``'s, calls ``imagecorruptions.corrupt``
and restores the saved state in a ``finally``, so the caller's global RNG is left as it was and the
result equals ``imagecorruptions.corrupt`` run after ``np.random.set_state(RandomState(s).get_state())``.
``impulse_noise`` and ``glass_blur`` also take ``seed=s`` (:func:`seed_kwargs`): impulse noise is drawn by
scikit-image from its own generator, which would otherwise be seeded from fresh entropy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.errors import ConfigError

__all__ = ["CORRUPTIONS", "CORRUPTION_KEY", "Corruption", "corrupt_frame", "corrupt_frames", "frame_corruption",
           "parse_corruption", "seed_kwargs"]

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
"""The corruption names (the first 15 are ImageNet-C's benchmark set)."""

CORRUPTION_KEY = 7  # second spawn-key element of a frame's corruption stream (frame i: (i, 7))
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Corruption:
    """Corruption names and severities a frame's corruption is drawn from (one of each: fixed)."""

    names: tuple[str, ...]
    severities: tuple[int, ...]

    def to_arg(self) -> dict[str, Any]:
        """JSON form (the dataset argument and the pipeline cache key)."""
        return {"name": list(self.names) if len(self.names) > 1 else self.names[0],
                "severity": list(self.severities) if len(self.severities) > 1 else self.severities[0]}


def parse_corruption(value: Any, path: str = "dataset.corruption") -> Corruption | None:
    """``{name: str | [str], severity: int | [int]}`` (severity defaults to 3), or None."""
    if value is None or isinstance(value, Corruption):
        return value
    if not isinstance(value, dict):
        raise ConfigError(path, value, "{name: <corruption or list>, severity: <1-5 or list>}")
    unknown = set(value) - {"name", "severity"}
    if unknown:
        raise ConfigError(f"{path}.{sorted(unknown)[0]}", value[sorted(unknown)[0]], "keys name, severity")
    names = value.get("name")
    names_t = tuple(names) if isinstance(names, (list, tuple)) else (names,)
    if not names_t or any(n not in CORRUPTIONS for n in names_t):
        raise ConfigError(f"{path}.name", names, f"one or a list of: {', '.join(CORRUPTIONS)}")
    sev = value.get("severity", 3)
    sev_t = tuple(sev) if isinstance(sev, (list, tuple)) else (sev,)
    if not sev_t or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in sev_t):
        raise ConfigError(f"{path}.severity", sev, "an integer from 1 to 5 or a list of them")
    return Corruption(tuple(str(n) for n in names_t), tuple(int(s) for s in sev_t))


def frame_corruption(c: Corruption, seed: int, index: int) -> tuple[str, int, int]:
    """Frame ``index``'s corruption name, severity and the seed of its noise (its own stream)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, CORRUPTION_KEY)))
    name = c.names[int(rng.integers(len(c.names)))] if len(c.names) > 1 else c.names[0]
    severity = c.severities[int(rng.integers(len(c.severities)))] if len(c.severities) > 1 else c.severities[0]
    return name, severity, int(rng.integers(2**32))


_OWN_SEED = ("impulse_noise", "glass_blur")  # these take a ``seed`` argument (impulse: scikit-image's own RNG)


def seed_kwargs(name: str, seed: int) -> dict[str, int]:
    """``{"seed": seed}`` for the corruptions that take their own seed (without it scikit-image's
    impulse noise is drawn from fresh entropy), else nothing."""
    return {"seed": seed} if name in _OWN_SEED else {}


def corrupt_frame(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``imagecorruptions.corrupt(image, corruption_name=name, severity=severity)`` (uint8 ``H x W x 3``)
    with numpy's global RNG at ``RandomState(seed)``'s state, restored afterwards (see the module doc)."""
    from imagecorruptions import corrupt

    if name not in CORRUPTIONS:
        raise ConfigError("dataset.corruption.name", name, f"one of {', '.join(CORRUPTIONS)}")
    img = np.ascontiguousarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    with _LOCK:
        saved = np.random.get_state()
        try:
            np.random.set_state(np.random.RandomState(seed).get_state())
            out = corrupt(img, corruption_name=name, severity=severity, **seed_kwargs(name, seed))
        finally:
            np.random.set_state(saved)
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def corrupt_frames(images: Sequence[np.ndarray], c: Corruption, seed: int) -> list[tuple[np.ndarray, str, int]]:
    """Each frame corrupted by its draw (see :func:`frame_corruption`): (frame, name, severity)."""
    out = []
    for i, img in enumerate(images):
        name, severity, s = frame_corruption(c, seed, i)
        out.append((corrupt_frame(img, name, severity, s), name, severity))
    return out

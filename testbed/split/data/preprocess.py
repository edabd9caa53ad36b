"""Per-model image preprocessing (resize, center crop, normalize), as torchvision's presets do."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "preprocess_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, center-crop ``crop`` x ``crop``, scale to [0, 1]
    and normalize with ``mean``/``std`` (``None`` leaves [0, 1], as detectors expect).

    Mirrors ``torchvision.transforms._presets.ImageClassification``.
    """

    crop: int = 224
    resize: int = 256
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    interpolation: str = "bilinear"

    def __call__(self, image: Tensor) -> Tensor:
        """``image``: uint8 ``[3, H, W]`` -> float32 ``[3, crop, crop]``."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        mode = InterpolationMode(self.interpolation)
        x = F.resize(image, [self.resize], interpolation=mode, antialias=True)
        x = F.center_crop(x, [self.crop, self.crop])
        x = x.to(torch.float32) / 255.0
        if self.mean is not None and self.std is not None:
            x = F.normalize(x, list(self.mean), list(self.std))
        return x

    def denormalize(self, x: Tensor) -> Tensor:
        """Back to [0, 1] pixels (for the uint8 size of the model input)."""
        if self.mean is None or self.std is None:
            return x
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return x * std + mean


def preprocess_for(model: str, weights: str = "random") -> Preprocess:
    """The preprocessing of ``model``: the named torchvision weights' transforms, else the ImageNet
    defaults at the model's crop size (random weights or a checkpoint), or the model's own scaling
    where it declares one (``ModelSpec.mean``/``std``, e.g. EfficientNet-Lite's TensorFlow scaling)."""
    from testbed.split.models.registry import get_spec
    from testbed.split.models.weights import is_checkpoint_path, weights_enum

    spec = get_spec(model)
    if spec.task == "detection":  # SSD normalizes inside the model; feed a fixed-size [0, 1] image
        return Preprocess(crop=spec.crop, resize=spec.resize, mean=None, std=None)
    if spec.pretrained is not None or weights == "random" or is_checkpoint_path(weights):
        return Preprocess(crop=spec.crop, resize=spec.resize, mean=spec.mean or IMAGENET_MEAN,
                          std=spec.std or IMAGENET_STD, interpolation=spec.interpolation)
    t = weights_enum(spec, weights).transforms()
    return Preprocess(crop=int(t.crop_size[0]), resize=int(t.resize_size[0]), mean=tuple(t.mean),
                      std=tuple(t.std), interpolation=t.interpolation.value)

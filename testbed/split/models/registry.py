"""Registry of splittable models: each entry decomposes a torchvision model into named stages.

A model is an ordered list of ``(boundary_name, module)`` stages whose sequential composition is
the full model's forward pass. Splitting after stage *k* gives a head (stages ``0..k``) and a tail
(the rest); the named boundaries are the split points, plus ``"input"`` (empty head) and
``"none"`` (empty tail, the whole model runs on the device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from testbed.errors import ConfigError
from testbed.registry import Registry

__all__ = ["INPUT", "MODELS", "NONE", "ModelSpec", "get_spec", "model_names", "register_model"]

INPUT = "input"
NONE = "none"

Task = Literal["classification", "detection"]
Decompose = Callable[[Any], list[tuple[str, nn.Module]]]  # takes the built (untyped) torchvision model


@dataclass(frozen=True)
class ModelSpec:
    """How to build, preprocess and split one model.

    ``decompose`` maps a built model to its named stages (the last stage's name is the output and
    is not a split point). ``resize``/``crop`` are the preprocessing used with random weights or a
    checkpoint (the ImageNet defaults); named torchvision weights bring their own transforms.

    A model that torchvision does not have gives ``build`` (called with ``build_kwargs``, returns the
    randomly initialised model), ``pretrained`` (returns the path of its pretrained state dict, for
    ``weights: pretrained`` or ``DEFAULT``) and its own input scaling ``mean``/``std`` and
    ``interpolation`` (used with any weights; ``None`` means the ImageNet mean/std).
    """

    name: str
    task: Task
    decompose: Decompose
    points: tuple[str, ...]
    crop: int = 224
    resize: int = 256
    fixed_input: bool = False  # True where the model only accepts ``crop x crop`` inputs
    build_kwargs: dict[str, object] = field(default_factory=dict)
    build: Callable[..., nn.Module] | None = None
    pretrained: Callable[[], Path] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str = "bilinear"

    def build_model(self, **kwargs: object) -> nn.Module:
        """The model with random weights: ``build`` where given, else torchvision's ``get_model``."""
        kw = {**self.build_kwargs, **kwargs}
        if self.build is not None:
            return self.build(**kw)
        from torchvision.models import get_model

        model: nn.Module = get_model(self.name, weights=None, **kw)
        return model

    @property
    def split_points(self) -> tuple[str, ...]:
        """All split points in pipeline order, ``input`` first and ``none`` last."""
        return (INPUT, *self.points, NONE)

    def select_points(self, given: Sequence[str] | None, path: str = "split") -> list[str]:
        """Split points named by ``given`` (each a point, a comma list or ``all``; None: ``all``), checked,
        in the order given without repeats. ``all`` is every split point (a detector's without ``none``)."""
        points: list[str] = []
        for item in given or ["all"]:
            for p in (x.strip() for x in item.split(",")):
                if p == "all":
                    points += [q for q in self.split_points if not (q == NONE and self.task == "detection")]
                elif p:
                    points.append(self.check_point(p, path))
        return list(dict.fromkeys(points))

    def check_point(self, point: str, path: str = "split") -> str:
        """Return ``point`` if it is one of this model's split points, else raise ConfigError."""
        if point not in self.split_points:
            raise ConfigError(path, point, f"split points of {self.name}: {', '.join(self.split_points)}")
        return point


MODELS: Registry[ModelSpec] = Registry("model")
"""The registered models (filled by :mod:`testbed.split.models.zoo`, imported by the package)."""


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS` (names are unique)."""
    return MODELS.add(spec.name, spec)


def model_names() -> list[str]:
    """Names of the registered models, in registration order."""
    return [name for name, _ in MODELS.items()]


def get_spec(name: str, path: str = "model") -> ModelSpec:
    """Look up a model by name; unknown names raise ConfigError listing the known ones."""
    return MODELS.get(name, path)

"""Split a registered model into head (device side) and tail (server side) at a named point."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from testbed.split.models.registry import INPUT, NONE, get_spec
from testbed.split.models.weights import load_model

__all__ = ["FeatureInfo", "feature_table", "model_stages", "split_loaded", "split_model"]


def model_stages(name: str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named stages of a built model; running them in order equals ``model(x)``."""
    return get_spec(name).decompose(model)


def split_loaded(name: str, model: nn.Module, point: str) -> tuple[nn.Module, nn.Module]:
    """Split an already-built ``model`` at ``point``; head and tail share its parameters.

    ``"input"`` gives an identity head (the raw image is sent), ``"none"`` an identity tail.
    """
    spec = get_spec(name)
    spec.check_point(point)
    stages = model_stages(name, model)
    cut = 0 if point == INPUT else len(stages) if point == NONE else 1 + [n for n, _ in stages].index(point)
    head = nn.Sequential(*(m for _, m in stages[:cut]))
    tail = nn.Sequential(*(m for _, m in stages[cut:]))
    return head.eval(), tail.eval()


def split_model(name: str, point: str, weights: str = "random", seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Build ``name`` (see :func:`~testbed.split.models.weights.load_model`) and split it at ``point``.

    ``tail(head(x))`` equals ``model(x)`` for inputs of the model's preprocessing size.
    """
    return split_loaded(name, load_model(name, weights, seed), point)


@dataclass(frozen=True)
class FeatureInfo:
    """Shape of one image's tensor at a split point (batch dimension dropped)."""

    model: str
    point: str
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        if not self.shape:  # a detector's output is a list of boxes, not a tensor
            return 0
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def float32_bytes(self) -> int:
        return 4 * self.elements


def feature_table(names: list[str] | None = None, size: int | None = None) -> list[FeatureInfo]:
    """Feature shape at every split point, traced on the ``meta`` device (no weights, no compute).

    ``size`` overrides the input side (default: each model's crop size, 224 or 320). The
    ``none`` point reports the output: logits for classifiers, nothing for detectors. Each model's
    trace is memoised (a sweep checks the same model for every cell).
    """
    return [f for name in names or _all_names() for f in _model_features(name, size)]


@functools.lru_cache(maxsize=64)
def _model_features(name: str, size: int | None) -> tuple[FeatureInfo, ...]:
    spec = get_spec(name)
    side = spec.crop if (size is None or spec.fixed_input) else size
    with torch.device("meta"):
        model = spec.build_model().eval()
        x = torch.empty(1, 3, side, side)
    out = [FeatureInfo(name, INPUT, tuple(x.shape[1:]))]
    with torch.no_grad():
        stages = model_stages(name, model)
        for point, stage in stages[:-1]:
            x = stage(x)
            out.append(FeatureInfo(name, point, tuple(x.shape[1:])))
        logits = stages[-1][1](x) if spec.task == "classification" else None
    out.append(FeatureInfo(name, NONE, tuple(logits.shape[1:]) if logits is not None else ()))
    return tuple(out)


def _all_names() -> list[str]:
    from testbed.split.models.registry import model_names

    return model_names()

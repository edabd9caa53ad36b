"""Options every research method's training takes (``testbed train`` and ``testbed research-eval``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TINY_MODEL", "TrainOptions"]

TINY_MODEL = "tiny_resnet"


@dataclass(frozen=True)
class TrainOptions:
    """``testbed train`` options shared by all methods (method-specific ones are the method's :class:`Option`)."""

    out: str
    model: str = TINY_MODEL
    weights: str = ""
    split: str = "layer1"
    dataset: str = "digits"
    limit: int | None = None
    seed: int = 0
    device: str | None = None
    threads: int | None = 1

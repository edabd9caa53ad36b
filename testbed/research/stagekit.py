"""What the learned codec stages of the research methods share: a checkpoint parameter, cached
loading, no side information, and the fine-tuned tail stored under ``tail.`` in the checkpoint.

A method's stage subclasses :class:`LearnedStage`, names its loader and declares its cost; it is
registered with :func:`~testbed.split.codecs.register_codec` in the method's own module. Learned
stages read their checkpoint with ``torch.load(weights_only=True)``. The checkpoint is a parameter of
the machine that runs the stage (:attr:`~testbed.split.codecs.Stage.local`): payload headers never
carry it, and a receiver decodes with its own chain (the scenario's codec), never a path it was sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from testbed.errors import ConfigError
from testbed.research.common import load_checkpoint
from testbed.split.codecs.base import TensorStage
from testbed.split.codecs.errors import PayloadError

__all__ = ["LearnedStage", "cached_checkpoint", "check_side", "no_side"]

Loader = Callable[[str, str], Any]


def cached_checkpoint(path: str, method: str, field: str, loader: Loader) -> Any:
    """``loader(path, field)``, cached by resolved path and modification time; a missing file is a
    :class:`ConfigError` at ``field``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(field, path, f"an existing {method} checkpoint file (from `testbed train {method}`)")
    return _load(str(p.resolve()), p.stat().st_mtime, loader, field)


@lru_cache(maxsize=32)
def _load(path: str, mtime: float, loader: Loader, field: str) -> Any:
    return loader(path, field)


def no_side(n: int) -> list[bytes]:
    return [b""] * n


def check_side(side: list[bytes], name: str) -> None:
    if any(side):
        raise PayloadError(f"{name}: unexpected side information in the payload")


@dataclass(frozen=True)
class LearnedStage(TensorStage):
    """A tensor stage whose parameters live in a ``testbed train`` checkpoint."""

    #: ``loader(path, field)``: the stage's loaded modules/tables (set by each subclass)
    loader: ClassVar[Loader]
    local: ClassVar[tuple[str, ...]] = ("checkpoint",)

    checkpoint: str = ""

    def validate(self, path: str) -> None:
        if not self.checkpoint:
            raise ConfigError(f"{path}.checkpoint", self.checkpoint, "the path of a checkpoint from `testbed train`")
        self.loaded(f"{path}.checkpoint")

    def loaded(self, field: str = "checkpoint") -> Any:
        """What :attr:`loader` returns for this stage's checkpoint (cached)."""
        return cached_checkpoint(self.checkpoint, self.name, field, type(self).loader)

    def tuned_tail(self, model: str, split: str, tail: Any) -> nn.Module | None:
        """The tail fine-tuned with this stage (``tail.*`` in the checkpoint) when the checkpoint was
        trained on ``model`` at ``split``; None otherwise."""
        blob = load_checkpoint(self.checkpoint, self.name)
        cfg, state = blob.get("config", {}), blob.get("state", {})
        tuned = {k[len("tail."):]: v for k, v in state.items() if k.startswith("tail.")}
        if not tuned or cfg.get("model") != model or cfg.get("split") != split:
            return None
        out = copy.deepcopy(tail)
        out.load_state_dict(tuned)
        return out

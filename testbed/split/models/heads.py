"""Replacement heads: a research method's trained head a scenario names (``model.head``).

A method that trains a head of its own (GroupNL, :mod:`testbed.research.methods.groupnl`) registers a
loader ``loader(path, model, split, head) -> nn.Module`` under its name; :func:`load_head` reads the
checkpoint's ``method`` field (``torch.load(weights_only=True)``) and calls that method's loader with
the model's original head. The model side never imports the methods: whoever runs a scenario imports
:mod:`testbed.research`, which registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from testbed.errors import ConfigError
from testbed.registry import Registry

__all__ = ["HEADS", "HeadLoader", "head_method", "load_head", "register_head"]

HeadLoader = Callable[[str, str, str, nn.Module], nn.Module]

HEADS: Registry[HeadLoader] = Registry("head method")


def register_head(method: str, loader: HeadLoader) -> HeadLoader:
    """Register ``loader`` for checkpoints written by research method ``method``."""
    return HEADS.add(method, loader)


def head_method(path: str, field: str = "model.head") -> str:
    """The research method that wrote checkpoint ``path`` (a :class:`ConfigError` at ``field`` when it
    is missing, unreadable or has no registered head loader)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(field, path, "an existing head checkpoint (from `testbed train groupnl`)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(field, path, f"a readable checkpoint ({type(exc).__name__})") from None
    method = blob.get("method") if isinstance(blob, dict) else None
    names = [n for n, _ in HEADS.items()]
    if method not in names:
        raise ConfigError(field, path, f"a head checkpoint of {', '.join(names) or 'a registered method'} "
                          f"(this one: {method!r})")
    return str(method)


def load_head(path: str, model: str, split: str, head: nn.Module, field: str = "model.head") -> nn.Module:
    """The trained head of checkpoint ``path`` for ``model`` at ``split`` (``head``: the original one)."""
    return HEADS.get(head_method(path, field), field)(path, model, split, head).eval()

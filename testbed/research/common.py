"""Shared helpers of the research methods: devices, seeding, checkpoints, compute counts.

Checkpoints are plain dicts of strings, numbers, lists and tensors saved with :func:`torch.save`
and read back with ``torch.load(..., weights_only=True)``::

    {"format": "testbed.research", "version": 1, "method": "autoencoder",
     "config": {...}, "state": {name: tensor}, "extra": {...}}
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from testbed.errors import ConfigError, TestbedError
from testbed.split.profiler import Compute, count_compute

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "Compute",
    "batches",
    "count_compute",
    "cpu_seconds_per_item",
    "load_checkpoint",
    "pick_device",
    "save_checkpoint",
    "seeded",
    "set_threads",
    "train_mode",
]

CHECKPOINT_FORMAT = "testbed.research"
_VERSION = 1


class CheckpointError(TestbedError):
    """A research checkpoint that is missing, unreadable or made by another method."""


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device", device, "cpu (no CUDA device is available here)")
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int | None) -> None:
    """Limit torch's CPU threads (the testbed shares small machines)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError("threads", threads, "a positive number of threads")
        torch.set_num_threads(threads)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (module construction) under ``seed`` without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train_mode(module: nn.Module, frozen_bn: bool = False) -> nn.Module:
    """``module.train()``; with ``frozen_bn`` its batch-norm layers stay in eval mode (running
    statistics untouched), as when fine-tuning a pretrained network on a few hundred frames."""
    module.train()
    if frozen_bn:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return module


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[Tensor]:
    """Index batches over ``range(n)``: shuffled with ``generator`` when given, else in order."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def save_checkpoint(path: str | Path, method: str, config: dict[str, Any], state: dict[str, Tensor],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a research checkpoint (tensors moved to the CPU); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "version": _VERSION, "method": method, "config": dict(config),
            "state": {k: v.detach().to("cpu").contiguous() for k, v in state.items()},
            "extra": dict(extra or {})}
    torch.save(blob, path)
    return path


def load_checkpoint(path: str | Path, method: str, field: str = "checkpoint") -> dict[str, Any]:
    """Read a research checkpoint with ``weights_only=True`` and check that ``method`` made it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(field, str(path), f"an existing {method} checkpoint file (from `testbed train {method}`)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {type(exc).__name__}: {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a testbed research checkpoint")
    if blob.get("method") != method:
        raise ConfigError(field, str(path), f"a {method} checkpoint (this one holds {blob.get('method')!r})")
    return blob


def cpu_seconds_per_item(fn: Callable[[Tensor], Any], x: Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall seconds of ``fn(x)`` divided by the batch size."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t0)
    return best / max(1, x.shape[0])


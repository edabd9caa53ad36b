"""``testbed train METHOD``: run a registered method's training/calibration entry.

Every method (see :mod:`testbed.research.registry`) takes the shared
:class:`~testbed.research.registry.TrainOptions` and its
own option values, writes a checkpoint to ``opts.out`` and returns a summary dict (loss history,
test accuracy, the codec chain that uses the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from testbed.research.common import pick_device, set_threads
from testbed.research.nets import SplitTask, evaluate_logits, load_split_task
from testbed.research.registry import METHODS, TrainOptions
from testbed.research.repro import isa_pinned, reproducible

__all__ = ["TABULAR_PREFIX", "TrainOptions", "eval_tail", "split_task", "train_method"]

TABULAR_PREFIX = "tabular:"


def split_task(o: TrainOptions, device: torch.device, split: str | None = None) -> SplitTask:
    """The split model and data named by the shared options (``split`` overrides ``o.split``)."""
    return load_split_task(o.model, o.weights, split or o.split, o.dataset, o.limit, o.seed, device=device)


def eval_tail(head: nn.Module, tail: nn.Module, task: SplitTask,
              mid: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """Test accuracy/agreement of ``tail(mid(head(x)))`` against the unsplit model."""
    with torch.no_grad():
        f = head(task.x_test)
        logits = tail(mid(f) if mid is not None else f)
    teacher = task.teacher_logits(task.x_test)
    return evaluate_logits(logits, task.y_test, teacher)


def train_method(method: str, o: TrainOptions, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run registered ``method`` with its option values ``params`` (defaults for the rest) and return
    its summary; an unknown method or an option it does not take is a ConfigError listing the choices."""
    entry = METHODS.get(method, "method")
    values = entry.params(params or {})
    set_threads(o.threads)
    device = pick_device(o.device)
    summary: dict[str, Any] = {"method": method, "checkpoint": o.out, "device": str(device),
                               "reproducible": {"deterministic_algorithms": True, "threads": o.threads,
                                                "cpu_isa_pinned": isa_pinned(), "seed": o.seed}}
    with reproducible(o.threads):
        summary.update(entry.train(o, values, device))
    return summary

"""Fixtures for the research-codec tests: a tiny synthetic split task (no dataset training)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from testbed.research.common import seeded
from testbed.research.nets import SplitTask, TinyResNet


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_task(n: int = 48, seed: int = 0) -> SplitTask:
    """An untrained tiny ResNet split after layer1 on ``n`` random 16x16 images with random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    with seeded(seed):
        net = TinyResNet()
    net.eval()
    head, tail = net.split("layer1")
    return SplitTask("tiny_resnet", "layer1", head, tail, x[: n - 16], y[: n - 16], x[n - 16:], y[n - 16:],
                     "labels", "random")


@pytest.fixture
def task() -> SplitTask:
    return make_task()


@pytest.fixture
def task_factory() -> Callable[..., SplitTask]:
    """``make_task`` itself, for tests that need several identical tasks."""
    return make_task

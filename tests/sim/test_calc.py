import numpy as np
import pytest

from testbed.core.calc import batch_decision, batch_time_fn, fifo_start, interpolate_table
from testbed.dists import Deterministic


def test_interpolation_between_and_beyond_measured_sizes() -> None:
    table = {1: 3.0, 8: 6.0, 32: 10.0}
    assert interpolate_table(table, 1) == 3.0
    assert interpolate_table(table, 4) == pytest.approx(3.0 + 3 * 3.0 / 7)
    assert interpolate_table(table, 20) == pytest.approx(8.0)
    assert interpolate_table(table, 64) == pytest.approx(10.0 + 32 * 4.0 / 24)
    assert interpolate_table({1: 2.0, 8: 2.5, 16: 2.0}, 64) == 2.0  # never below the last time


def test_batch_time_forms() -> None:
    f = batch_time_fn(table={1: 1.0, 3: 2.0})
    assert [f(1), f(2), f(3)] == [1.0, 1.5, 2.0]
    g = batch_time_fn(per_batch=1.0, per_item=0.5)
    assert g(4) == 3.0
    h = batch_time_fn(dist=Deterministic(0.7), rng=np.random.default_rng(0))
    assert h(1) == h(32) == 0.7


@pytest.mark.parametrize("queued,max_batch,max_delay,wait,take", [
    (0, 8, 0.0, 0.0, 0),      # nothing queued
    (3, 8, 0.0, 0.0, 3),      # no delay: take what is queued
    (12, 8, 0.0, 0.0, 8),     # capped at max_batch
    (3, 8, 0.005, 0.001, 0),  # incomplete batch keeps waiting
    (3, 8, 0.005, 0.005, 3),  # oldest waited max_delay: go
    (8, 8, 0.005, 0.0, 8),    # full batch goes at once
])
def test_batch_decision(queued: int, max_batch: int, max_delay: float, wait: float, take: int) -> None:
    assert batch_decision(queued, max_batch, max_delay, wait) == take


def test_fifo_start_is_lindleys_recursion() -> None:
    assert fifo_start(2.0, None) == 2.0
    assert fifo_start(2.0, 1.5) == 2.0 and fifo_start(2.0, 2.0) == 2.0
    assert fifo_start(2.0, 3.25) == 3.25

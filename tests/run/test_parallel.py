"""The shared executor of sweeps and the optimiser: every call once, each result with its position."""

import operator

import pytest

from testbed.errors import ConfigError
from testbed.run.parallel import check_workers, run_all


@pytest.mark.parametrize("workers", [1, 2])
def test_every_call_runs_once_and_comes_back_with_its_position(workers):
    calls = [(i, 3) for i in range(7)]
    got = dict(run_all(operator.pow, calls, workers=workers))
    assert got == {i: i**3 for i in range(7)}


def test_no_calls_start_nothing():
    assert list(run_all(operator.pow, [], workers=2)) == []


def test_a_failing_call_raises_in_the_caller():
    with pytest.raises(ZeroDivisionError):
        list(run_all(operator.truediv, [(1, 1), (1, 0)], workers=2))


@pytest.mark.parametrize("workers", [0, -1, 1025])
def test_worker_counts_out_of_range_are_named(workers):
    with pytest.raises(ConfigError, match="--workers"):
        check_workers(workers, None)

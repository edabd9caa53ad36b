"""Level.change_with is two Level.change calls in one: the same areas, values, peaks and last times."""

from __future__ import annotations

import random

import pytest

from testbed.core.monitor import Level


def _state(level: Level) -> tuple[float, float, int, int]:
    return level.area, level.last, level.value, level.peak


@pytest.mark.parametrize("seed", range(5))
def test_change_with_equals_two_changes(seed: int) -> None:
    rng = random.Random(seed)
    a1, b1, a2, b2 = Level(1.0, 5.0), Level(1.0, 5.0), Level(1.0, 5.0), Level(1.0, 5.0)
    now = 0.0
    for _ in range(300):
        now += rng.choice([0.0, rng.random() * 0.1])  # same-instant changes too, and times past the window
        da, db = rng.randint(-1, 2), rng.randint(-2, 2)
        a1.change(now, da)
        b1.change(now, db)
        a2.change_with(b2, now, da, db)
        assert _state(a1) == _state(a2) and _state(b1) == _state(b2)
    assert a1.mean(now) == a2.mean(now) and b1.mean(now) == b2.mean(now)


def test_change_with_outside_the_window() -> None:
    a, b = Level(2.0, 3.0), Level(2.0, 3.0)
    a.change_with(b, 1.0, 1, 2)      # before the window: nothing integrated yet
    a.change_with(b, 2.5, 1, -1)     # half the window at 1 and 2
    a.change_with(b, 4.0, -2, -1)    # after it: clipped at 3
    assert a.area == pytest.approx(0.5 * 1 + 0.5 * 2) and b.area == pytest.approx(0.5 * 2 + 0.5 * 1)
    assert (a.peak, b.peak) == (2, 2) and (a.value, b.value) == (0, 0)

"""A Tee's change_with moves its total too (as its change does), then the other level."""

from __future__ import annotations

from testbed.core.monitor import Level
from testbed.sim.topology import Tee


def test_tee_change_with_moves_its_total() -> None:
    total, other_total = Level(0.0, 10.0), Level(0.0, 10.0)
    a, b = Tee(0.0, 10.0, total), Tee(0.0, 10.0, other_total)
    a.change_with(b, 1.0, 2, 1)
    a.change_with(b, 3.0, -1, 1)
    assert (a.value, b.value, total.value, other_total.value) == (1, 2, 1, 2)
    assert total.area == a.area == 4.0 and other_total.area == b.area == 2.0
    assert (total.peak, other_total.peak) == (2, 2)


def test_a_plain_level_moving_with_a_tee_moves_the_tees_total() -> None:
    total = Level(0.0, 10.0)
    a, b = Level(0.0, 10.0), Tee(0.0, 10.0, total)
    a.change_with(b, 1.0, 1, 2)
    assert (a.value, b.value, total.value) == (1, 2, 2)

"""StayLevel (a level kept from whole stays) against Level fed the same stays change by change in time
order (at one instant: leaves of earlier stays, enters, leaves of stays that began then): the same
integral over the window (to rounding), value and peak; clipping at the window's edges, stays that never
end, zero-length stays, and the hand-over to a Level."""

from __future__ import annotations

import math

import numpy as np
import pytest

from testbed.core.monitor import Level, StayLevel


def _random_stays(rng: np.random.Generator, n: int, horizon: float, never: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stays entering uniformly in ``[0, horizon)`` (sorted), each lasting an exponential time; a
    share ``never`` of them never leave."""
    enter = np.sort(rng.uniform(0.0, horizon, n))
    leave = enter + rng.exponential(horizon / 20, n)
    leave[rng.random(n) < never] = math.inf
    return enter, leave


def _feed(level: Level, events: list[tuple[float, int]]) -> Level:
    for t, kind in events:
        level.change(t, -1 if kind else 1)
    return level


def _reference(enter: np.ndarray, leave: np.ndarray, t0: float, t1: float, until: float) -> Level:
    """Level fed the changes in time order; at one instant the leaves of earlier stays, then the enters,
    then the leaves of stays that began at that instant."""
    keyed = ([(float(t), 1, 0) for t in enter if t < until]
             + [(float(b), 2 if b == a else 0, 1) for a, b in zip(enter, leave) if b < until])
    return _feed(Level(t0, t1), [(t, kind) for t, _, kind in sorted(keyed)])


def _stay_level(enter: np.ndarray, leave: np.ndarray, t0: float, t1: float, untils: list[float]) -> StayLevel:
    """StayLevel fed over several ``count`` calls: each call the enters in ``[previous until, until)`` and
    the leaves of those same stays (in shuffled order), and ``add`` of those stays."""
    stay = StayLevel(t0, t1)
    rng = np.random.default_rng(99)
    lo = -math.inf
    for until in untils:
        mine = (enter >= lo) & (enter < until)
        e, lv = enter[mine], leave[mine]
        shuffled = rng.permutation(len(lv))
        stay.add(e, lv)
        stay.count(e, lv[shuffled], until, e[shuffled])
        lo = until
    return stay


@pytest.mark.parametrize("seed", range(4))
def test_stays_give_the_integral_value_and_peak_that_changes_give(seed: int) -> None:
    rng = np.random.default_rng(seed)
    enter, leave = _random_stays(rng, 400, 10.0)
    t0, t1 = 2.0, 8.0  # stays partly before, across and after the window
    untils = [*sorted(rng.uniform(0.0, 12.0, 7).tolist()), 12.0, 14.0]
    stay = _stay_level(enter, leave, t0, t1, untils)
    ref = _reference(enter, leave, t0, t1, untils[-1])
    assert stay.value == ref.value
    assert stay.peak == ref.peak
    now = untils[-1]
    mean = ref.mean(now)
    assert math.isclose(stay.area, ref.area, rel_tol=1e-9)
    level = Level(t0, t1)
    stay.into(level, now)
    assert math.isclose(level.mean(now), mean, rel_tol=1e-9)
    assert (level.value, level.peak) == (ref.value, ref.peak)
    assert stay.value == int(np.sum(leave >= now))  # those still inside: the stays that never left


@pytest.mark.parametrize("seed", range(3))
def test_the_value_and_peak_agree_after_every_call(seed: int) -> None:
    """Each count call leaves the value and peak that the changes before its ``until`` give."""
    rng = np.random.default_rng(100 + seed)
    enter, leave = _random_stays(rng, 200, 5.0, never=0.2)
    stay = StayLevel(0.0, 5.0)
    lo = -math.inf
    for until in [0.5, 0.5, 1.0, 2.5, 2.6, 4.0, 6.0, 9.0]:  # one call with no enters at all (0.5 again)
        mine = (enter >= lo) & (enter < until)
        stay.count(enter[mine], leave[mine], until, enter[mine])
        ref = _reference(enter, leave, 0.0, 5.0, until)
        assert (stay.value, stay.peak) == (ref.value, ref.peak), until
        lo = until


def test_the_window_clips_the_integral() -> None:
    stay = StayLevel(2.0, 6.0)
    enter = np.array([0.0, 1.0, 3.0, 5.0, 7.0, 0.5, 4.0])
    leave = np.array([1.0, 3.0, 4.0, 9.0, 8.0, 10.0, math.inf])
    stay.add(enter, leave)
    # [0,1) outside; [1,3) -> 1; [3,4) -> 1; [5,9) -> 1; [7,8) outside; [0.5,10) -> 4; [4,inf) -> 2
    assert stay.area == 1.0 + 1.0 + 1.0 + 4.0 + 2.0
    level = Level(2.0, 6.0)
    stay.into(level, 20.0)
    assert level.mean(20.0) == 9.0 / 4.0


def test_stays_that_never_leave_count_to_the_end() -> None:
    stay = StayLevel(0.0, 10.0)
    enter, leave = np.array([1.0, 2.0, 3.0]), np.array([math.inf, 4.0, math.inf])
    stay.add(enter, leave)
    stay.count(enter, leave, 5.0, enter)
    assert (stay.value, stay.peak) == (2, 3)
    stay.count(np.empty(0), np.empty(0), 1e9, np.empty(0))
    assert stay.value == 2
    assert stay.area == 9.0 + 2.0 + 7.0
    ref = _reference(enter, leave, 0.0, 10.0, 1e9)
    assert math.isclose(ref.mean(12.0), stay.area / 10.0, rel_tol=1e-12)


def test_zero_length_stays_count_in_the_peak() -> None:
    """A stay ``[t, t)`` leaves after the enters of its instant: it is in the peak, not in the integral."""
    stay = StayLevel(0.0, 10.0)
    enter, leave = np.array([1.0]), np.array([1.0])
    stay.add(enter, leave)
    stay.count(enter, leave, 2.0, enter)
    assert (stay.value, stay.peak, stay.area) == (0, 1, 0.0)
    # one stay [0, 2), then [1, 1) and [1, 3): three at 1 s, as Level fed enters first has it
    stay = StayLevel(0.0, 10.0)
    enter, leave = np.array([0.0, 1.0, 1.0]), np.array([2.0, 1.0, 3.0])
    stay.count(enter, leave, 5.0, enter)
    ref = _reference(enter, leave, 0.0, 10.0, 5.0)
    assert (stay.value, stay.peak) == (ref.value, ref.peak) == (0, 3)


def test_a_leave_at_the_instant_of_an_enter_comes_before_it() -> None:
    """An earlier stay leaving at an enter's instant is gone first: the peak never counts more requests
    than some order of that instant's changes leaves inside."""
    stay = StayLevel(0.0, 10.0)
    enter, leave = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    stay.count(enter[:1], leave[:1], 1.0, enter[:1])  # the leave at 1.0 is not due before 1.0
    assert (stay.value, stay.peak) == (1, 1)
    stay.count(enter[1:], leave[1:], 5.0, enter[1:])
    assert (stay.value, stay.peak) == (0, 1)
    ref = _reference(enter, leave, 0.0, 10.0, 5.0)
    assert (ref.value, ref.peak) == (0, 1)


def test_into_hands_over_the_integral_value_and_peak() -> None:
    stay = StayLevel(1.0, 3.0)
    enter, leave = np.array([0.0, 0.5, 2.0]), np.array([2.5, math.inf, 2.2])
    stay.add(enter, leave)
    stay.count(enter, leave, 2.4, enter)
    level = Level(1.0, 3.0)
    stay.into(level, 4.0)
    assert (level.value, level.peak, level.last) == (2, 3, 4.0)
    assert level.mean(4.0) == stay.area / 2.0 == pytest.approx((1.5 + 2.0 + 0.2) / 2.0, rel=1e-12)

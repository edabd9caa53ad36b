"""The reusable timeout: the same instants and event order as a new timeout per use; LATE timeouts
last at their instant; ``delay_to`` landing exactly on an instant (through a waypoint where it must)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from testbed.sim.alarm import Alarm, DelayLine, LateTimeout, delay_to


def _trace(reuse: bool) -> list[tuple[str, float]]:
    env, log = simpy.Environment(), []

    def ticker(name: str, gaps: list[float]) -> None:
        left = list(gaps)

        def fire(_event: simpy.Event) -> None:
            log.append((name, env.now))
            if left:
                arm(left.pop(0))

        alarm = Alarm(env, fire)

        def arm(delay: float) -> None:
            if reuse:
                alarm.set(delay)
            else:
                env.timeout(delay).callbacks.append(fire)

        arm(left.pop(0))

    ticker("a", [1.0, 1.0, 0.5, 0.0, 2.0])
    ticker("b", [2.0, 0.5, 0.0, 1.0, 1.0])  # ties with a at 2.0, 2.5 and 4.5: settled by scheduling order
    env.run()
    return log


def test_an_alarm_fires_when_and_in_the_order_a_new_timeout_would() -> None:
    assert _trace(reuse=True) == _trace(reuse=False)
    assert len(_trace(reuse=True)) == 10


def _line_trace(pooled: bool) -> list[tuple[str, int, float]]:
    """Pushes at several instants (some at once) into a line of 0.5 s, beside a ticker that ties with it."""
    env, log = simpy.Environment(), []
    line = DelayLine(env, 0.5, lambda item: log.append(("line", item, env.now)))

    def push(item: int) -> None:
        if pooled:
            line.push(item)
        else:
            env.timeout(0.5, item).callbacks.append(lambda e: log.append(("line", e.value, env.now)))

    def tick(k: int) -> None:
        log.append(("tick", k, env.now))
        if k < 8:
            env.timeout(0.5).callbacks.append(lambda _e: tick(k + 1))
        for j in range(k % 3):  # 0, 1 or 2 pushes per tick, after the tick's own timeout
            push(10 * k + j)

    env.timeout(0.25).callbacks.append(lambda _e: tick(0))
    env.timeout(0.5).callbacks.append(lambda _e: push(99))  # ties with the tick of 0.75 s at 1.0
    env.run()
    return log


def test_a_delay_line_fires_when_and_in_the_order_timeouts_would() -> None:
    pooled = _line_trace(pooled=True)
    assert pooled == _line_trace(pooled=False)
    assert sum(1 for name, _, _ in pooled if name == "line") == 1 + sum(k % 3 for k in range(9))


def test_a_delay_line_reuses_its_events_and_counts_what_is_in_flight() -> None:
    env, got = simpy.Environment(), []
    line = DelayLine(env, 1.0, got.append)
    line.push(1)
    line.push(2)
    assert len(line) == 2
    env.run(until=1.5)
    assert got == [1, 2] and len(line) == 0
    line.push(3)
    env.run()
    assert got == [1, 2, 3] and env.now == 2.5


def test_a_delay_line_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError):
        DelayLine(simpy.Environment(), -1.0, lambda _item: None)


# -- LATE timeouts ----------------------------------------------------------------------------------
def test_a_late_timeout_fires_after_a_normal_one_due_at_the_same_instant() -> None:
    env, log = simpy.Environment(), []
    LateTimeout(env, 1.0).callbacks.append(lambda _e: log.append("late"))  # scheduled first
    env.timeout(1.0).callbacks.append(lambda _e: log.append("normal"))
    env.timeout(0.5).callbacks.append(lambda _e: env.timeout(0.5).callbacks.append(
        lambda _e: log.append("normal later")))  # scheduled at 0.5 for 1.0, still before the LATE one
    env.run()
    assert log == ["normal", "normal later", "late"] and env.now == 1.0


def test_late_timeouts_at_one_instant_fire_in_scheduling_order() -> None:
    env, log = simpy.Environment(), []
    for k in range(5):
        LateTimeout(env, 2.0, k).callbacks.append(lambda e: log.append(e.value))
    env.run()
    assert log == [0, 1, 2, 3, 4]


def test_a_late_timeout_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError):
        LateTimeout(simpy.Environment(), -1e-9)


# -- delay_to ---------------------------------------------------------------------------------------
WAYPOINT = (0.0016819166096147186, 0.0037340160355732164)  # now, at: no delay from now lands on at


def _lands(now: float, at: float) -> bool:
    """Whether some delay ``d`` gives ``now + d == at`` (searched around ``at - now``, ulp by ulp)."""
    d = at - now
    for _ in range(64):
        d = math.nextafter(d, -math.inf)
    for _ in range(128):
        if now + d == at:
            return True
        d = math.nextafter(d, math.inf)
    return False


def _check(now: float, at: float) -> bool:
    """``delay_to(now, at)`` lands on ``at``, or on a waypoint in ``[now, at)`` from which it lands; True
    when it needed the waypoint."""
    d = delay_to(now, at)
    assert d >= 0
    t = now + d
    if t == at:
        return False
    assert now <= t < at, (now, at, t)
    d2 = delay_to(t, at)
    assert t + d2 == at, (now, at, t)
    return True


def test_delay_to_lands_exactly_across_scales() -> None:
    """Instants drawn as sums (``now`` plus a gap: a delay always lands) and drawn apart (``now`` a random
    fraction of ``at``: a few need a waypoint), from microseconds to days."""
    rng = np.random.default_rng(17)
    waypoints = 0
    for scale in (1e-6, 1e-3, 1.0, 10.0, 1e3, 1e5):
        for _ in range(1000):
            now = float(rng.uniform(0.0, scale))
            at = now + float(rng.exponential(scale / 10)) * float(rng.choice([1e-9, 1e-3, 1.0]))
            assert not _check(now, at), (now, at)
            at = float(rng.uniform(0.0, scale))
            now = at * float(rng.random())
            waypoint = _check(now, at)
            assert waypoint == (not _lands(now, at)), (now, at)  # a waypoint only where no delay lands
            waypoints += waypoint
    assert 0 < waypoints < 600  # some, but few (about 3% of pairs drawn apart)
    for now, at in [(0.0, 0.1), (0.1, 0.1), (0.25, math.nextafter(0.25, 1.0)), (0.0, 5e-324), (1e9, 1e9 + 1.0)]:
        assert not _check(now, at)


def test_delay_to_an_instant_no_delay_reaches_goes_through_a_waypoint() -> None:
    now, at = WAYPOINT
    assert not _lands(now, at)
    d = delay_to(now, at)
    t = now + d
    assert now <= t < at
    assert t + delay_to(t, at) == at


def test_delay_to_takes_a_waypoint_wherever_it_must() -> None:
    """``now`` in the binade below ``at``, both with an odd last mantissa bit: a sum that falls halfway
    rounds to even and can miss an odd ``at``. Pairs found by search; each lands in two steps."""
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(3000):
        e = int(rng.integers(-30, 20))
        at_m = int(rng.integers(2**52, 2**53)) | 1                 # odd mantissa in [2^52, 2^53)
        now_m = int(rng.integers(2**52, 2**53)) | 1
        at, now = math.ldexp(at_m, e - 52), math.ldexp(now_m, e - 53)  # now in the binade below at
        if _lands(now, at):
            assert not _check(now, at)
            continue
        found += 1
        assert _check(now, at)
    assert found > 300


def test_a_timeout_scheduled_with_delay_to_fires_at_the_instant() -> None:
    """The same on a SimPy clock: a timeout (again from a waypoint) fires at ``at`` exactly."""
    rng = np.random.default_rng(8)
    pairs = [WAYPOINT] + [(float(rng.uniform(0, 1)), float(rng.uniform(1, 3))) for _ in range(50)]
    for now, at in pairs:
        env, fired = simpy.Environment(initial_time=now), []

        def reach(_event: simpy.Event, at: float = at, env: simpy.Environment = env, fired: list = fired) -> None:
            if env.now < at:
                env.timeout(delay_to(env.now, at)).callbacks.append(reach)
            else:
                fired.append(env.now)

        env.timeout(delay_to(now, at)).callbacks.append(reach)
        env.run()
        assert fired == [at]

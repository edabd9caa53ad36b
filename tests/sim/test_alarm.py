"""The reusable timeout: the same instants and event order as a new timeout per use."""

from __future__ import annotations

import pytest
import simpy

from testbed.sim.alarm import Alarm, DelayLine


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

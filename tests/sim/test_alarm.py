"""The reusable timeout: the same instants and event order as a new timeout per use."""

from __future__ import annotations

import simpy

from testbed.sim.alarm import Alarm


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

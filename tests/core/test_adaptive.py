"""The adaptive-split controller (issue 16): per-frame choice of a configuration with hysteresis and a
hold time, from the node's queue, its undelivered uplink bytes or an EWMA of its round trips."""

from __future__ import annotations

import pytest

from testbed.core.adaptive import SplitController, SplitPolicy
from testbed.core.policy import NodePolicy


def test_steps_down_at_up_and_back_at_down_one_step_at_a_time() -> None:
    c = SplitController(SplitPolicy("queue", up=3, down=1), 3)
    assert [c.choose(t, q) for t, q in enumerate([0, 2, 3, 3, 3, 2, 2, 1, 1, 1, 0])] == \
        [0, 0, 1, 2, 2, 2, 2, 1, 0, 0, 0]
    assert c.switches == 4


def test_the_band_between_down_and_up_keeps_the_configuration() -> None:
    c = SplitController(SplitPolicy("queue", up=4, down=1), 2)
    assert c.choose(0.0, 4) == 1
    assert [c.choose(t, q) for t, q in ((1.0, 3), (2.0, 2), (3.0, 3))] == [1, 1, 1]  # hysteresis
    assert c.choose(4.0, 1) == 0


def test_it_backs_off_at_once_and_steps_back_up_only_after_the_hold_time() -> None:
    c = SplitController(SplitPolicy("queue", up=2, down=0, hold_s=1.0), 3)
    assert c.choose(0.0, 5) == 1
    assert c.choose(0.1, 5) == 2  # backing off is not held
    assert c.choose(0.5, 0) == 2 and c.choose(1.099, 0) == 2  # stepping back up is
    assert c.choose(1.1, 0) == 1
    assert c.choose(1.5, 0) == 1 and c.choose(2.1, 0) == 0
    assert c.switches == 4


def test_uplink_backlog_is_bytes_sent_minus_delivered() -> None:
    c = SplitController(SplitPolicy("uplink_backlog", up=100e3, down=20e3), 2)
    c.sent(60e3)
    assert c.choose(0.0, 0) == 0
    c.sent(50e3)
    assert c.signal(0) == 110e3 and c.choose(1.0, 0) == 1
    c.delivered(60e3)
    assert c.choose(2.0, 0) == 1  # 50 kB: inside the band
    c.delivered(50e3)
    assert c.signal(0) == 0.0 and c.choose(3.0, 0) == 0
    c.delivered(10.0)
    assert c.backlog == 0.0


def test_rtt_is_an_ewma_of_answered_round_trips() -> None:
    c = SplitController(SplitPolicy("rtt", up=0.2, down=0.05, alpha=0.5), 2)
    assert c.signal(0) == 0.0  # no answer yet
    c.answered(0.1)
    c.answered(0.3)
    assert c.signal(7) == pytest.approx(0.2)
    assert c.choose(0.0, 0) == 1


def test_same_inputs_give_the_same_choices() -> None:
    runs = []
    for _ in range(2):
        c = SplitController(SplitPolicy("queue", up=2, down=1, hold_s=0.3), 4)
        runs.append([c.choose(0.1 * t, (t * 7) % 5) for t in range(100)])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kwargs", [
    {"signal": "battery", "up": 2.0, "down": 1.0}, {"signal": "queue", "up": 1.0, "down": 1.0},
    {"signal": "queue", "up": 1.0, "down": -1.0}, {"signal": "queue", "up": 2.0, "down": 1.0, "hold_s": -1.0},
    {"signal": "rtt", "up": 2.0, "down": 1.0, "alpha": 0.0}])
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SplitPolicy(**kwargs)  # type: ignore[arg-type]


def test_node_policy_draws_each_frame_in_the_chosen_configuration() -> None:
    split = SplitController(SplitPolicy("queue", up=1, down=0), 2)
    drawn: list[int] = []

    def draw_in(k: int) -> tuple[int, float, float, float]:
        drawn.append(k)
        return 10 * k, 1000.0 / (k + 1), 0.01, 0.0

    policy = NodePolicy(lambda: (-1, 0.0, 0.0, 0.0), split=split, draw_in=draw_in, configs=(3, 5))
    assert policy.arrive(0)[0].value == "serve"
    assert policy.charges(0.0)[:2] == (0, 1000.0) and policy.config == 3
    policy.arrive(1)  # one waiting: at up
    assert policy.charges(0.1)[:2] == (10, 500.0) and policy.config == 5
    assert drawn == [0, 1]
    with pytest.raises(ValueError):
        NodePolicy(lambda: (-1, 0.0, 0.0, 0.0), split=split, configs=(3,))


def test_a_random_extra_hold_is_drawn_per_step_from_the_nodes_stream() -> None:
    import numpy as np

    policy = SplitPolicy("queue", up=2, down=0, hold_s=1.0, hold_jitter_s=4.0)
    holds = []
    for seed in (1, 2):
        c = SplitController(policy, 2, np.random.default_rng(seed))
        assert c.choose(0.0, 5) == 1  # backs off at once; the hold after this step is 1 s + U(0, 4 s)
        assert 1.0 <= c.hold <= 5.0
        holds.append(c.hold)
        assert c.choose(0.0 + c.hold - 1e-9, 0) == 1 and c.choose(holds[-1], 0) == 0
        assert c.hold != holds[-1]  # drawn again at this step
    assert holds[0] != holds[1]  # two nodes' streams: two different holds
    again = SplitController(policy, 2, np.random.default_rng(1))
    again.choose(0.0, 5)
    assert again.hold == holds[0]  # the same stream: the same hold
    with pytest.raises(ValueError, match="rng"):
        SplitController(policy, 2)
    with pytest.raises(ValueError, match="hold_jitter_s"):
        SplitPolicy("queue", up=2, down=0, hold_jitter_s=-1.0)

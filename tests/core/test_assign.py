"""Assignment policies (testbed.core.assign): pure decisions from loads, each policy's own stream."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from testbed.core.assign import (
    ASSIGNMENTS,
    AssignmentContext,
    Jsq,
    PowerOfTwo,
    RandomChoice,
    RecentRtt,
    RoundRobin,
    Static,
    falls_back,
)
from testbed.errors import ConfigError


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registry_names_and_unknown_policy() -> None:
    assert set(ASSIGNMENTS.names()) == {"static", "random", "round_robin", "jsq", "power_of_two"}
    with pytest.raises(ConfigError, match=r"assignment\.policy.*jsq"):
        ASSIGNMENTS.get("shortest", "assignment.policy")
    policy = ASSIGNMENTS.get("round_robin")(AssignmentContext(3, [0], rng()))
    assert [policy.choose(0, [0.0] * 3) for _ in range(4)] == [0, 1, 2, 0]


def test_static_follows_the_group_and_needs_every_group() -> None:
    p = Static([1, 0, 1])
    assert [p.choose(g, [9.0, 0.0]) for g in (0, 1, 2)] == [1, 0, 1]
    with pytest.raises(ValueError):
        Static([0, -1])


def test_random_is_uniform_and_ignores_loads() -> None:
    p = RandomChoice(4, rng(1))
    counts = Counter(p.choose(0, [0.0, 100.0, 100.0, 100.0]) for _ in range(40_000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(abs(c / 40_000 - 0.25) < 0.01 for c in counts.values())


def test_random_draws_are_its_streams_draws() -> None:
    p = RandomChoice(3, rng(7))
    assert [p.choose(0, []) for _ in range(5)] == rng(7).integers(0, 3, 1024).tolist()[:5]


def test_round_robin_cycles_over_all_requests() -> None:
    p = RoundRobin(2)
    assert [p.choose(g, [5.0, 0.0]) for g in (0, 1, 0, 0)] == [0, 1, 0, 1]


def test_jsq_takes_the_least_loaded_and_breaks_ties_at_random() -> None:
    p = Jsq(rng(2))
    assert p.choose(0, [2.0, 0.5, 1.0]) == 1
    ties = Counter(p.choose(0, [1.0, 3.0, 1.0]) for _ in range(10_000))
    assert set(ties) == {0, 2} and abs(ties[0] / 10_000 - 0.5) < 0.03


def test_power_of_two_never_takes_the_most_loaded_of_its_pair() -> None:
    p = PowerOfTwo(3, rng(3))
    loads = [0.0, 1.0, 2.0]
    counts = Counter(p.choose(0, loads) for _ in range(30_000))
    # each pair equally likely: server 0 wins 2 of 3 pairs, server 1 one, server 2 none
    assert counts[2] == 0
    assert counts[0] / 30_000 == pytest.approx(2 / 3, abs=0.02)
    assert PowerOfTwo(1, rng()).choose(0, [4.0]) == 0


def test_recent_rtt_forgets_old_samples() -> None:
    r = RecentRtt(1.0)
    assert r.mean(0.0) is None
    r.add(0.0, 0.2)
    r.add(0.5, 0.4)
    assert r.mean(0.9) == pytest.approx(0.3)
    assert r.mean(1.2) == pytest.approx(0.4)  # the sample of t=0 is older than the window
    assert r.mean(1.6) is None


def test_falls_back_on_either_threshold() -> None:
    assert falls_back(8, None, queue=8, rtt_s=None)
    assert not falls_back(7, None, queue=8, rtt_s=None)
    assert falls_back(0, 0.3, queue=None, rtt_s=0.2)
    assert not falls_back(0, 0.1, queue=8, rtt_s=0.2)
    assert not falls_back(100, None, queue=None, rtt_s=0.2)  # no recent round trip: offload


def test_policies_skip_servers_that_are_down() -> None:
    inf = float("inf")
    loads = [inf, 3.0, inf, 5.0]
    random = RandomChoice(4, rng(4))
    assert {random.choose(0, loads) for _ in range(200)} == {1, 3}
    rr = RoundRobin(4)
    assert [rr.choose(0, loads) for _ in range(4)] == [1, 3, 1, 3]
    two = PowerOfTwo(4, rng(5))
    assert {two.choose(0, loads) for _ in range(200)} == {1}  # the pair is always (1, 3)
    assert Jsq(rng()).choose(0, loads) == 1
    assert Static([2]).choose(0, loads) == 2  # the driver deals with a static server that is down
    assert RandomChoice(2, rng()).choose(0, [inf, inf]) in (0, 1)  # none up: the driver's case

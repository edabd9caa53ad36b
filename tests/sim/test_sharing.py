"""The ``fair_share`` link's arithmetic stays exact however long the link has been busy: against
hand-computed finish times after 10^6 s of traffic, and against an independent processor-sharing
reference (remaining work per flow) over a long run at load 0.85."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
import simpy

from testbed.core.monitor import Level
from testbed.sim.links.sharing import ProcessorSharing, SharingChannel


def _channel(horizon: float) -> tuple[simpy.Environment, SharingChannel, dict[int, float]]:
    env = simpy.Environment()
    done: dict[int, float] = {}
    ch = SharingChannel(env, start_col=array("d", [0.0] * 8), end_col=array("d", [0.0] * 8),
                        on_done=lambda rid: done.__setitem__(rid, env.now),
                        in_station=Level(0.0, horizon), busy=Level(0.0, horizon))
    return env, ch, done


def _at(env: simpy.Environment, t: float, ch: SharingChannel, rid: int, seconds: float) -> None:
    env.timeout(t).callbacks.append(lambda _e: ch.submit(rid, seconds))


def test_finish_times_after_a_million_busy_seconds_then_idle() -> None:
    # 1900 B and 1000 B at 1 MB/s on a link that carried one 10^6 s transmission: 2.0 and 2.9 ms
    env, ch, done = _channel(2e6)
    _at(env, 0.0, ch, 0, 1e6)
    _at(env, 1e6 + 1.0, ch, 1, 1.9e-3)
    _at(env, 1e6 + 1.0, ch, 2, 1.0e-3)
    env.run()
    assert done[0] == 1e6
    assert done[2] - (1e6 + 1.0) == pytest.approx(2.0e-3, abs=1e-9)
    assert done[1] - (1e6 + 1.0) == pytest.approx(2.9e-3, abs=1e-9)   # was 2.0 ms: finished with the other


def test_finish_times_while_busy_for_a_million_seconds() -> None:
    # a background transmission keeps the link busy throughout; three share, then two
    env, ch, done = _channel(4e6)
    _at(env, 0.0, ch, 0, 3e6)
    _at(env, 1e6, ch, 1, 1.9e-3)
    _at(env, 1e6, ch, 2, 1.0e-3)
    env.run(until=1e6 + 1.0)
    assert done[2] - 1e6 == pytest.approx(3.0e-3, abs=1e-9)
    assert done[1] - 1e6 == pytest.approx(3.0e-3 + 2 * 0.9e-3, abs=1e-9)


def reference_ps(arrivals: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Exact processor sharing by remaining work (no virtual time): O(n) per event, small numbers."""
    end = np.full(len(arrivals), np.nan)
    active: dict[int, float] = {}
    t, i = 0.0, 0
    while i < len(arrivals) or active:
        n = len(active)
        t_done = t + min(active.values()) * n if active else np.inf
        t_next = arrivals[i] if i < len(arrivals) else np.inf
        step = min(t_done, t_next) - t
        if n:
            for k in active:
                active[k] -= step / n
        t = min(t_done, t_next)
        if t_done <= t_next:
            first = min(active, key=active.__getitem__)
            floor = active[first]
            for k in [k for k, w in active.items() if w <= floor + 1e-12]:
                end[k] = t
                del active[k]
        else:
            active[i] = float(sizes[i])
            i += 1
    return end


def test_long_run_at_load_085_matches_the_exact_reference() -> None:
    # after 10^6 s of earlier traffic, 20,000 transmissions of 2.35 ms mean at load 0.85
    rng = np.random.default_rng(7)
    n, mean, t0 = 20_000, 2.35e-3, 1e6 + 1.0
    arrivals = np.cumsum(rng.exponential(mean / 0.85, n))
    sizes = rng.exponential(mean, n)
    ref = reference_ps(arrivals, sizes)
    env = simpy.Environment()
    got = np.full(n + 1, np.nan)
    ch = SharingChannel(env, start_col=array("d", [0.0] * (n + 1)), end_col=array("d", [0.0] * (n + 1)),
                        on_done=lambda rid: got.__setitem__(rid, env.now),
                        in_station=Level(0.0, 2e6), busy=Level(0.0, 2e6))
    _at(env, 0.0, ch, n, 1e6)
    for i in range(n):
        _at(env, t0 + float(arrivals[i]), ch, i, float(sizes[i]))
    env.run()
    err = (got[:n] - t0) - ref
    assert np.abs(err).max() < 1e-6            # before: up to 1 ms early (a tolerance of 1e-9 x V)
    assert (got[:n] - t0 >= arrivals + sizes - 1e-6).all()   # never faster than alone on the link


def test_the_arithmetic_alone_matches_the_reference() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    arrivals = np.cumsum(rng.exponential(1 / 0.85, n))
    sizes = rng.exponential(1.0, n)
    ref = reference_ps(arrivals, sizes)
    ps, now, got, i = ProcessorSharing(), 0.0, np.full(n, np.nan), 0
    while i < n or len(ps):
        delay = ps.next_delay()
        t_done = now + delay if delay is not None else np.inf
        if i < n and arrivals[i] < t_done:
            now = float(arrivals[i])
            ps.add(now, i, float(sizes[i]))
            i += 1
        else:
            now = t_done
            for rid in ps.complete(now):
                got[rid] = now
    assert np.abs(got - ref).max() < 1e-8


def test_equal_tags_finish_together_and_idle_resets_virtual_time() -> None:
    ps = ProcessorSharing()
    assert ps.add(0.0, 0, 1.0) and not ps.add(0.0, 1, 1.0)
    assert ps.next_delay() == pytest.approx(2.0)
    assert sorted(ps.complete(2.0)) == [0, 1]
    assert ps.next_delay() is None and ps.vtime == 0.0

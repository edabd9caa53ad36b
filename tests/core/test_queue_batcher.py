"""QueueBatcher: one batch queue per configuration (model and split); a batch never mixes queues."""

from __future__ import annotations

import numpy as np

from testbed.core.policy import Batcher, QueueBatcher


def _drive(b: Batcher, arrivals: list[tuple[float, int]], service: float) -> list[tuple[float, list[int], int]]:
    """Arrivals (time, rid) in order; every batch runs ``service`` s; returns (start, rids, queue) of each."""
    events: list[tuple[float, int, int]] = [(t, 0, rid) for t, rid in arrivals]  # (time, kind, rid or gpu)
    out: list[tuple[float, list[int], int]] = []
    while events:
        events.sort()
        now, kind, x = events.pop(0)
        if kind == 0:
            b.arrive(x, now)
        elif kind == 1:
            b.finish(x)
        else:
            b.timer_fired()
        batches, at = b.dispatch(now)
        for batch in batches:
            out.append((now, batch.rids, batch.queue))
            events.append((now + service, 1, batch.gpu))
        if at is not None:
            events.append((at, 2, -1))
    return out


def test_batches_never_mix_queues_and_every_request_is_served_once() -> None:
    rng = np.random.default_rng(0)
    n = 400
    queue_of = rng.integers(0, 3, n).tolist()
    times = np.cumsum(rng.exponential(0.001, n)).tolist()
    b = QueueBatcher(lambda rid: queue_of[rid], 3, gpus=2, max_batch=4, max_delay=0.002)
    out = _drive(b, list(zip(times, range(n))), 0.003)
    assert sorted(r for _, rids, _ in out for r in rids) == list(range(n))
    for _, rids, q in out:
        assert {queue_of[r] for r in rids} == {q} and 1 <= len(rids) <= 4
        assert rids == sorted(rids)  # FIFO within a queue
    assert sum(len(rids) > 1 for _, rids, _ in out) > 20
    assert b.live == 0 and b.counts == [0, 0, 0]


def test_one_queue_batches_as_the_plain_batcher() -> None:
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.exponential(0.001, 300)).tolist()
    kw = {"gpus": 2, "max_batch": 4, "max_delay": 0.002}
    plain = _drive(Batcher(**kw), list(zip(times, range(300))), 0.003)
    queued = _drive(QueueBatcher(lambda rid: 0, 1, **kw), list(zip(times, range(300))), 0.003)
    assert plain == queued


def test_the_oldest_ready_queue_goes_first_and_a_waiting_queue_sets_its_own_timer() -> None:
    queue_of = {1: 1, 2: 0, 3: 0, 4: 1}
    b = QueueBatcher(lambda rid: queue_of[rid], 2, gpus=1, max_batch=2, max_delay=0.010)
    for rid, t in ((1, 0.0), (2, 0.001), (3, 0.002)):
        b.arrive(rid, t)
    batches, at = b.dispatch(0.002)  # queue 0 is full (2, 3): it goes although queue 1's request is older
    assert [(x.rids, x.queue) for x in batches] == [([2, 3], 0)] and at is None
    b.finish(batches[0].gpu)
    batches, at = b.dispatch(0.005)  # queue 1 holds one request: it waits until 0.0 + max_delay
    assert batches == [] and at == 0.010
    b.arrive(4, 0.006)
    batches, _ = b.dispatch(0.006)
    assert [(x.rids, x.queue, x.ready) for x in batches] == [([1, 4], 1, 0.005)]


def test_expired_requests_leave_their_queue_and_the_bound_is_over_all_queues() -> None:
    b = QueueBatcher(lambda rid: rid % 2, 2, gpus=1, max_batch=4, max_delay=1.0, capacity=3)
    assert b.arrive(0, 0.0) and b.arrive(1, 0.0) and b.arrive(2, 0.0) and not b.arrive(3, 0.0)
    assert b.expire(0) and not b.expire(0) and b.counts == [1, 1]
    assert b.waiting_rids() == [1, 2]
    fresh = b.fresh(1)
    assert isinstance(fresh, QueueBatcher) and fresh.live == 0 and fresh.n_queues == 2
    batches, _ = b.dispatch(1.0)
    assert [(x.rids, x.queue) for x in batches] == [([2], 0)]  # heads of equal age: the lower queue first

"""The clock-free node-queue and batcher policies: exact decisions for hand-made sequences."""

from __future__ import annotations

import itertools

import pytest

from testbed.core.policy import Admission, Batcher, NodePolicy, NodeQueue


def test_node_queue_serves_queues_and_drops_newest() -> None:
    q = NodeQueue(capacity=2)
    assert q.arrive(0) == (Admission.SERVE, -1)
    assert q.arrive(1) == (Admission.QUEUED, -1)
    assert q.arrive(2) == (Admission.QUEUED, -1)
    assert q.arrive(3) == (Admission.REJECTED, 3)
    assert q.next() == 1 and q.next() == 2
    assert q.next() is None and not q.busy
    assert q.arrive(4) == (Admission.SERVE, -1)


def test_node_queue_drop_oldest_replaces_the_oldest_waiting_frame() -> None:
    q = NodeQueue(capacity=1, drop_oldest=True)
    assert q.arrive(0)[0] is Admission.SERVE
    assert q.arrive(1)[0] is Admission.QUEUED
    assert q.arrive(2) == (Admission.REPLACED, 1)
    assert q.next() == 2


def test_zero_capacity_drop_oldest_has_nothing_to_replace() -> None:
    q = NodeQueue(capacity=0, drop_oldest=True)
    assert q.arrive(0)[0] is Admission.SERVE
    assert q.arrive(1) == (Admission.REJECTED, 1)


def test_unbounded_queue_never_drops() -> None:
    q = NodeQueue()
    assert q.arrive(0)[0] is Admission.SERVE
    assert all(q.arrive(i)[0] is Admission.QUEUED for i in range(1, 1000))
    assert [q.next() for _ in range(999)] == list(range(1, 1000))


def test_node_policy_draws_one_frame_per_service_and_passes_the_queue_length() -> None:
    frames = itertools.count()
    seen: list[tuple[float, int]] = []

    class Controller:
        def charge(self, now: float, queue_length: int, head: float, encode: float) -> tuple[float, int]:
            seen.append((now, queue_length))
            return head / 2, 1

    p = NodePolicy(lambda: (next(frames), 10.0, 0.2, 0.1), controller=Controller())  # type: ignore[arg-type]
    p.arrive(0), p.arrive(1), p.arrive(2)
    c = p.begin(1.5)
    assert (c.image, c.payload, c.head, c.encode, c.mode) == (0, 10.0, 0.1, 0.1, 1)
    assert seen == [(1.5, 2)]
    assert NodePolicy(lambda: (7, 1.0, 0.2, 0.0)).begin(0.0).mode == 0


def _drain(b: Batcher, now: float, timer: float | None = None) -> list[tuple[int, list[int], float]]:
    """The batches started at ``now``; asserts the timer deadline the dispatch asks for."""
    batches, at = b.dispatch(now)
    assert at == pytest.approx(timer) if timer is not None else at is None
    return [(batch.gpu, batch.rids, batch.ready) for batch in batches]


def test_full_batch_goes_at_once_and_partial_waits_for_max_delay() -> None:
    b = Batcher(gpus=1, max_batch=3, max_delay=0.5)
    assert b.arrive(0, 0.0)
    assert _drain(b, 0.0, timer=0.5) == []  # the oldest's deadline, set once
    assert b.arrive(1, 0.1)
    assert _drain(b, 0.1) == []
    b.arrive(2, 0.2)
    assert _drain(b, 0.2) == [(0, [0, 1, 2], 0.0)]   # full: ready since the GPU started waiting
    b.arrive(3, 0.3)
    assert _drain(b, 0.3) == []  # the GPU is busy: no timer
    b.finish(0)
    assert _drain(b, 0.4) == []  # the timer for 0.5 is still pending
    b.timer_fired()
    assert _drain(b, 0.5, timer=0.8) == []
    b.timer_fired()
    assert _drain(b, 0.8) == [(0, [3], 0.4)]


def test_no_delay_takes_what_is_queued_across_gpus() -> None:
    b = Batcher(gpus=2, max_batch=2, max_delay=0.0)
    for rid in range(3):
        b.arrive(rid, 0.0)
    assert _drain(b, 0.0) == [(0, [0, 1], 0.0), (1, [2], 0.0)]
    assert b.batches == 2


def test_queue_bound_and_timeouts() -> None:
    b = Batcher(gpus=1, max_batch=4, max_delay=1.0, capacity=2, timeout=0.3)
    assert b.arrive(0, 0.0) and b.arrive(1, 0.1)
    assert not b.arrive(2, 0.2)             # bound: two waiting
    assert b.expire(0) and not b.expire(0)  # timed out once
    assert b.live == 1 and b.arrive(3, 0.35)
    assert _drain(b, 1.1) == [(0, [1, 3], 1.1)]
    assert not b.expire(1)                  # already on the GPU: not timed out

"""Clock-free decision rules shared by the simulator (SimPy) and the emulator (asyncio).

Neither class knows a clock: every method takes ``now`` (seconds, whatever the driver's time
base) and returns a decision; the driver records it and schedules what follows. Requests are
plain integer ids (the simulator's record rows; the emulator numbers its live requests).

:class:`NodeQueue` is a node's bounded frame queue in front of one CPU (admission with
``drop_newest``/``drop_oldest``, which frame is served next). :class:`NodePolicy` adds the
per-frame charges: the workload's frame drawer and, when the group switches heads, NestQuant's
:class:`~testbed.core.nestquant.ModeController` (Xie et al., arXiv:2506.17870).

:class:`Batcher` is the edge server's dynamic batcher, with the rules of common GPU inference
servers (NVIDIA Triton's dynamic batcher; Crankshaw et al., "Clipper", NSDI 2017): a free GPU
takes a full batch at once; with ``max_delay == 0`` it takes whatever is queued (up to
``max_batch``); otherwise an incomplete batch waits until it is full or its oldest request has
waited ``max_delay`` (:func:`testbed.core.calc.batch_decision`). An optional bound drops
arrivals and an optional timeout removes requests that waited too long for a GPU.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import NamedTuple

from testbed.core.adaptive import SplitController
from testbed.core.calc import batch_decision
from testbed.core.nestquant import ModeController
from testbed.core.workload import Frame

__all__ = ["Admission", "Batch", "Batcher", "Charge", "NodePolicy", "NodeQueue", "QueueBatcher"]


class Admission(Enum):
    """What became of an arriving frame."""

    SERVE = "serve"        # the CPU was idle: it starts on this frame now
    QUEUED = "queued"      # it waits for the CPU
    REPLACED = "replaced"  # queue full, drop_oldest: the oldest waiting frame was dropped for it
    REJECTED = "rejected"  # queue full, drop_newest: the arriving frame itself is dropped


_SERVE, _QUEUED, _REPLACED, _REJECTED = Admission.SERVE, Admission.QUEUED, Admission.REPLACED, Admission.REJECTED
# (module constants: an Enum member lookup costs more than the rest of arrive())


class NodeQueue:
    """One CPU and a FIFO of at most ``capacity`` waiting frames (None: unbounded)."""

    __slots__ = ("busy", "capacity", "drop_oldest", "waiting")

    def __init__(self, capacity: int | None = None, drop_oldest: bool = False) -> None:
        self.capacity, self.drop_oldest = capacity, drop_oldest
        self.waiting: deque[int] = deque()
        self.busy = False

    def arrive(self, rid: int) -> tuple[Admission, int]:
        """The decision for frame ``rid`` and the id of the frame dropped (-1 when none)."""
        if not self.busy:
            self.busy = True
            return _SERVE, -1
        waiting = self.waiting
        if self.capacity is None or len(waiting) < self.capacity:
            waiting.append(rid)
            return _QUEUED, -1
        if self.drop_oldest and waiting:
            oldest = waiting.popleft()
            waiting.append(rid)
            return _REPLACED, oldest
        return _REJECTED, rid

    def next(self) -> int | None:
        """The CPU finished a frame: the next frame to serve, or None (the CPU goes idle)."""
        if self.waiting:
            return self.waiting.popleft()
        self.busy = False
        return None


class Charge(NamedTuple):
    """A frame's draw and its charges as the node serves it."""

    image: int
    payload: float
    head: float
    encode: float
    mode: int  # NestQuant mode code (0 full, 1 part); 0 without switching


class NodePolicy(NodeQueue):
    """A node queue that also decides each served frame's charges.

    ``draw`` is the workload's frame drawer for this node (it must be called once per served frame,
    in service order, so simulation and emulation see the same frames); ``controller`` a NestQuant
    mode controller when the node's group switches heads.
    """

    __slots__ = ("config", "configs", "controller", "draw", "draw_in", "split")

    def __init__(self, draw: Callable[[], Frame], *, capacity: int | None = None, drop_oldest: bool = False,
                 controller: ModeController | None = None, split: SplitController | None = None,
                 draw_in: Callable[[int], Frame] | None = None, configs: tuple[int, ...] = ()) -> None:
        super().__init__(capacity, drop_oldest)
        self.draw, self.controller = draw, controller
        if split is not None and (draw_in is None or len(configs) != split.count):
            raise ValueError("an adaptive node needs draw_in and one configuration id per choice")
        self.split, self.draw_in, self.configs = split, draw_in, configs
        self.config = configs[0] if configs else 0  # the configuration of the frame served last

    def charges(self, now: float) -> tuple[int, float, float, float, int]:
        """The fields of :meth:`begin` as a plain tuple (the simulator's hot path). An adaptive node
        (``split``) chooses the frame's configuration first (``config`` says which; the frame is the same
        draw whichever it is) and draws it with ``draw_in``."""
        split = self.split
        if split is not None:
            k = split.choose(now, len(self.waiting))
            self.config = self.configs[k]
            assert self.draw_in is not None
            image, payload, head, encode = self.draw_in(k)
            return image, payload, head, encode, 0
        image, payload, head, encode = self.draw()
        if self.controller is None:
            return image, payload, head, encode, 0
        head, mode = self.controller.charge(now, len(self.waiting), head, encode)
        return image, payload, head, encode, mode

    def begin(self, now: float) -> Charge:
        """Charges of the frame the CPU starts at ``now`` (after :meth:`arrive` or :meth:`next`)."""
        return Charge._make(self.charges(now))


class Batch(NamedTuple):
    """A batch to start now on ``gpu``; ``ready`` is since when a free GPU waited for it to fill."""

    gpu: int
    rids: list[int]
    ready: float
    queue: int = 0  # the queue it was formed from (:class:`QueueBatcher`; 0 with one queue)


class Batcher:
    """Dynamic batching over ``gpus`` GPUs (see the module docstring).

    Drive it with :meth:`arrive`, :meth:`expire` (a request's timeout), :meth:`finish` when a GPU
    is done and :meth:`timer_fired`; after each, :meth:`dispatch` returns the batches to start now
    and whether to set a timer (and for when).
    """

    def __init__(self, *, gpus: int = 1, max_batch: int = 1, max_delay: float = 0.0,
                 capacity: int | None = None, timeout: float | None = None) -> None:
        self.max_batch, self.max_delay = max_batch, max_delay
        self.capacity, self.timeout = capacity, timeout
        self.free_gpus = list(range(gpus - 1, -1, -1))  # pop() gives GPU 0 first
        self.queue: deque[int] = deque()
        self.queued_at: dict[int, float] = {}  # waiting requests (not started, not timed out)
        self.hold: float | None = None         # since when a free GPU has been waiting for a batch
        self.timer_at: float | None = None
        self._new_timer: float | None = None
        self.batches = 0

    @property
    def live(self) -> int:
        """Requests waiting for a GPU."""
        return len(self.queued_at)

    def arrive(self, rid: int, now: float) -> bool:
        """Admit request ``rid`` (False: the queue bound drops it)."""
        if self.capacity is not None and len(self.queued_at) >= self.capacity:
            return False
        self.queue.append(rid)
        self.queued_at[rid] = now
        return True

    def expire(self, rid: int) -> bool:
        """``rid``'s timeout passed: True when it was still waiting (it is removed: timed out)."""
        return self.queued_at.pop(rid, None) is not None

    def dispatch(self, now: float) -> tuple[list[Batch], float | None]:
        """Everything free GPUs start at ``now``, and a deadline to set a timer for (or None).

        Call it after any change (an arrival, a timeout, a finished batch, a fired timer); the
        driver starts each batch and, when a deadline is returned, calls :meth:`timer_fired` then
        :meth:`dispatch` again at that time.
        """
        batches: list[Batch] = []
        free, queue, waiting = self.free_gpus, self.queue, self.queued_at
        while free:
            while queue and queue[0] not in waiting:  # timed-out requests at the front
                queue.popleft()
            if not queue:
                self.hold = None
                break
            queued_at = waiting[queue[0]]
            take = batch_decision(len(waiting), self.max_batch, self.max_delay, now - queued_at)
            if take == 0:
                if self.hold is None:
                    self.hold = now
                deadline = queued_at + self.max_delay
                if self.timer_at is None or self.timer_at < now or deadline < self.timer_at:
                    self.timer_at = self._new_timer = deadline
                break
            batches.append(self._take(take, now))
        at, self._new_timer = self._new_timer, None  # as take_timer(), inlined (hot path)
        return batches, at

    def _take(self, take: int, now: float) -> Batch:
        ready = self.hold if self.hold is not None else now
        self.hold = None
        queue, waiting = self.queue, self.queued_at
        rids: list[int] = []
        while len(rids) < take:
            rid = queue.popleft()
            if waiting.pop(rid, None) is not None:
                rids.append(rid)
        self.batches += 1
        return Batch(self.free_gpus.pop(), rids, ready)

    def take_timer(self) -> float | None:
        """A deadline the driver must set a timer for (once), or None (:meth:`dispatch` calls it)."""
        at, self._new_timer = self._new_timer, None
        return at

    def timer_fired(self) -> None:
        """A timer set from :meth:`dispatch` went off (then call :meth:`dispatch`)."""
        self.timer_at = None

    def finish(self, gpu: int) -> None:
        """``gpu`` finished its batch and is free again."""
        self.free_gpus.append(gpu)

    def waiting_rids(self) -> list[int]:
        """The requests waiting for a GPU, in arrival order."""
        return [rid for rid in self.queue if rid in self.queued_at]

    def fresh(self, gpus: int) -> Batcher:
        """An empty batcher over ``gpus`` GPUs with the same settings (a server back from an outage)."""
        return Batcher(gpus=gpus, max_batch=self.max_batch, max_delay=self.max_delay,
                       capacity=self.capacity, timeout=self.timeout)


class QueueBatcher(Batcher):
    """Dynamic batching with one queue per configuration a request needs (a heterogeneous fleet: one
    queue per model and split, as an inference server keeps one batcher per model): a batch is taken
    from one queue only, never mixing them. Each queue follows :class:`Batcher`'s rule on its own
    (full, or its oldest request waited ``max_delay``); among the queues ready at once, a free GPU takes
    the one whose oldest request arrived first (the lower queue on a tie). The queue bound (``capacity``) is over all queues.
    ``queue_of(rid)`` is request ``rid``'s queue (``0 .. queues - 1``).
    """

    def __init__(self, queue_of: Callable[[int], int], queues: int, *, gpus: int = 1, max_batch: int = 1,
                 max_delay: float = 0.0, capacity: int | None = None, timeout: float | None = None) -> None:
        super().__init__(gpus=gpus, max_batch=max_batch, max_delay=max_delay, capacity=capacity, timeout=timeout)
        self.queue_of, self.n_queues = queue_of, queues
        self.queues: list[deque[int]] = [deque() for _ in range(queues)]
        self.counts = [0] * queues  # waiting requests per queue
        self.of: dict[int, int] = {}  # waiting request -> its queue

    def arrive(self, rid: int, now: float) -> bool:
        if self.capacity is not None and len(self.queued_at) >= self.capacity:
            return False
        q = self.queue_of(rid)
        self.queue.append(rid)  # every arrival in order (what an outage hands back)
        self.queues[q].append(rid)
        self.queued_at[rid] = now
        self.of[rid] = q
        self.counts[q] += 1
        return True

    def expire(self, rid: int) -> bool:
        if self.queued_at.pop(rid, None) is None:
            return False
        self.counts[self.of.pop(rid)] -= 1
        return True

    def dispatch(self, now: float) -> tuple[list[Batch], float | None]:
        batches: list[Batch] = []
        waiting = self.queued_at
        while self.queue and self.queue[0] not in waiting:  # keep the arrival log short
            self.queue.popleft()
        while self.free_gpus:
            best, best_at, best_take, deadline = -1, 0.0, 0, None
            for q, queue in enumerate(self.queues):
                while queue and queue[0] not in waiting:  # timed-out requests at the front
                    queue.popleft()
                if not queue:
                    continue
                queued_at = waiting[queue[0]]
                take = batch_decision(self.counts[q], self.max_batch, self.max_delay, now - queued_at)
                if take == 0:
                    due = queued_at + self.max_delay
                    deadline = due if deadline is None else min(deadline, due)
                elif best < 0 or queued_at < best_at:
                    best, best_at, best_take = q, queued_at, take
            if best < 0:
                if deadline is None:
                    self.hold = None
                else:
                    if self.hold is None:
                        self.hold = now
                    if self.timer_at is None or self.timer_at < now or deadline < self.timer_at:
                        self.timer_at = self._new_timer = deadline
                break
            batches.append(self._take_from(best, best_take, now))
        at, self._new_timer = self._new_timer, None
        return batches, at

    def _take_from(self, q: int, take: int, now: float) -> Batch:
        ready = self.hold if self.hold is not None else now
        self.hold = None
        queue, waiting = self.queues[q], self.queued_at
        rids: list[int] = []
        while len(rids) < take:
            rid = queue.popleft()
            if waiting.pop(rid, None) is not None:
                del self.of[rid]
                rids.append(rid)
        self.counts[q] -= take
        self.batches += 1
        return Batch(self.free_gpus.pop(), rids, ready, q)

    def waiting_rids(self) -> list[int]:
        return [rid for rid in self.queue if rid in self.queued_at]

    def fresh(self, gpus: int) -> QueueBatcher:
        return QueueBatcher(self.queue_of, self.n_queues, gpus=gpus, max_batch=self.max_batch,
                            max_delay=self.max_delay, capacity=self.capacity, timeout=self.timeout)

"""The live server's batcher: the simulator's :class:`~testbed.core.policy.Batcher` driven by the
event loop's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from testbed.core.policy import Batch, Batcher

__all__ = ["LiveBatcher"]

CallAt = Callable[[float, Callable[[], None]], None]


class LiveBatcher:
    """Calls ``start(batch, now)`` for every batch the policy starts.

    ``call_at(t, fn)`` runs ``fn`` at time ``t`` (the server: a precise wait on the loop) and ``clock``
    gives the current time (default: the running loop's); a test may pass a virtual clock.
    """

    def __init__(self, batcher: Batcher, start: Callable[[Batch, float], None], call_at: CallAt,
                 clock: Callable[[], float] | None = None) -> None:
        self.batcher, self.start, self.call_at = batcher, start, call_at
        self.clock = clock or (lambda: asyncio.get_running_loop().time())

    def arrive(self, rid: int, now: float) -> bool:
        """Queue request ``rid`` at time ``now`` (False: the queue bound drops it)."""
        if not self.batcher.arrive(rid, now):
            return False
        self.dispatch(now)
        return True

    def expire(self, rid: int) -> bool:
        """``rid``'s timeout: True when it was still waiting (now timed out)."""
        return self.batcher.expire(rid)

    def finish(self, gpu: int) -> None:
        """``gpu`` is free again."""
        self.batcher.finish(gpu)
        self.dispatch(self.clock())

    def dispatch(self, now: float) -> None:
        batches, at = self.batcher.dispatch(now)
        for batch in batches:
            self.start(batch, now)
        if at is not None:
            self.call_at(at, lambda: self._timer(at))

    def _timer(self, at: float) -> None:
        self.batcher.timer_fired()
        self.dispatch(max(self.clock(), at))


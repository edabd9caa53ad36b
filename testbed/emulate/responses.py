"""The node side of the downlink: read the server's responses into the records, and count the
requests still open so the fleet knows when every one is accounted for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from testbed.core.records import STATUS, Records
from testbed.emulate.wire import BAD_PAYLOAD, DROPPED, OK, TIMED_OUT, FrameError, Response, read_frame, unpack_response

__all__ = ["ResponseReader"]

_STATUS = {OK: STATUS.index("ok"), DROPPED: STATUS.index("dropped_at_server"),
           TIMED_OUT: STATUS.index("timed_out"), BAD_PAYLOAD: STATUS.index("dropped_at_server")}
_IN_FLIGHT = STATUS.index("in_flight")


class ResponseReader:
    """Responses per node connection into ``rec``; ``open`` counts requests neither dropped nor answered.

    ``rel`` turns loop times into record times; ``kernel_latency`` is the nominal uplink latency when
    the kernel shapes the link (the air is not observable here: ``tx_end_s`` = arrival - latency),
    None when this process shapes it.
    """

    def __init__(self, rec: Records, rel: Callable[[float], float], stats: dict[str, Any],
                 kernel_latency: float | None = None) -> None:
        self.rec, self.rel, self.stats, self.kernel_latency = rec, rel, stats, kernel_latency
        self.top5: dict[int, tuple[int, ...]] = {}  # per answered request: its five best classes
        self.open = 0
        self._rid: dict[tuple[int, int], int] = {}
        self._all_done = asyncio.Event()
        self._deciding = True

    def open_one(self, node: int, frame: int, rid: int) -> None:
        self._rid[(node, frame)] = rid
        self.open += 1

    def finish_one(self) -> None:
        self.open -= 1
        if self.open == 0 and not self._deciding:
            self._all_done.set()

    async def wait_all(self, timeout: float) -> None:
        """Until every request is accounted for, or ``timeout`` wall seconds."""
        self._deciding = False
        if self.open == 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done.wait(), timeout)

    async def read(self, node: Any) -> None:
        """Read ``node``'s connection until it closes."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                body = await read_frame(node.reader)
                if body is None:
                    return
                self._record(node.index, unpack_response(body), loop.time())
        except (FrameError, ConnectionError, OSError):
            self.stats["connection_errors"] += 1

    def _record(self, node: int, r: Response, now: float) -> None:
        rec, rel = self.rec, self.rel
        rid = self._rid.get((node, r.request))
        if rid is None or rec.status[rid] != _IN_FLIGHT:
            return
        arrival, queued, ready, start, end, down = r.stamps
        rec.server_arrival_s[rid] = rel(arrival)
        if self.kernel_latency is not None:
            rec.tx_end_s[rid] = max(rec.tx_start_s[rid], rel(arrival) - self.kernel_latency)
        rec.status[rid] = _STATUS[r.status]
        if r.status == OK:
            rec.queued_s[rid] = rel(queued)
            rec.batch_ready_s[rid] = rel(ready)
            rec.batch_start_s[rid] = rel(start)
            rec.batch_end_s[rid] = rel(end)
            rec.downlink_start_s[rid] = rel(down)
            rec.downlink_end_s[rid] = rel(now)
            rec.finished_s[rid] = rel(now)
            rec.result_bytes[rid] = len(r.result)
            rec.batch_size[rid] = r.batch_size
            rec.gpu[rid] = r.gpu
            self.top5[rid] = r.top5
        else:
            rec.finished_s[rid] = rel(end)
        self.finish_one()

"""An application-level shaper for one shared link: real bytes leave at the link's rate.

All senders of a process share one :class:`LinkShaper`. A transmission is cut into chunks; each
chunk holds the link for ``len / rate`` seconds and is written to its socket when its last bit
would have left the air (store and forward), plus a propagation delay. ``fifo`` (the
``shared_fifo`` model) sends one transmission at a time in arrival order; ``fair`` (``fair_share``)
takes chunks round-robin from every active transmission, so n of them each progress at 1/n of
the rate (processor sharing at chunk granularity). The schedule is kept in nominal time, so late
wake-ups of the event loop do not accumulate into a slower link.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.emulate.clock import sleep_until

__all__ = ["DISCIPLINES", "LinkShaper", "Transmission"]

DISCIPLINES = {"shared_fifo": "fifo", "fair_share": "fair", "fifo": "fifo", "fair": "fair"}


@dataclass(eq=False)
class Transmission:
    """One message on the link; ``start`` is when its first slot began on the link's schedule and the
    end its last write (measured), so ``end - start`` is never shorter than its air time."""

    writer: asyncio.StreamWriter
    data: bytes | Callable[[float], bytes]
    rate: float
    latency: float
    submitted: float
    done: asyncio.Future[tuple[float, float]]
    offset: int = 0
    start: float = -1.0
    body: bytes = field(default=b"", repr=False)


class LinkShaper:
    """Shared link at ``rate`` bytes/s (``None``: unshaped, for the kernel-shaped path)."""

    def __init__(self, rate: float | None, discipline: str = "fifo",
                 latency: Callable[[], float] | None = None, slot: float = 0.002,
                 min_chunk: int = 1024, max_chunk: int = 65536) -> None:
        if discipline not in DISCIPLINES:
            raise ValueError(f"unknown sharing discipline {discipline!r}")
        self.rate, self.discipline = rate, DISCIPLINES[discipline]
        self.latency = latency or (lambda: 0.0)
        self.slot, self.min_chunk, self.max_chunk = slot, min_chunk, max_chunk
        self._jobs: deque[Transmission] = deque()
        self._wake = asyncio.Event()
        self._free = 0.0           # nominal time the link becomes free
        self._lines: dict[asyncio.StreamWriter, _DelayLine] = {}
        self._task: asyncio.Task[None] | None = None
        self.busy_s = 0.0
        self.bytes_sent = 0

    async def send(self, writer: asyncio.StreamWriter, data: bytes | Callable[[float], bytes],
                   rate: float | None = None) -> tuple[float, float]:
        """Queue ``data`` (or a function of the start time returning it) and wait until its last
        byte is written; returns (start, end) loop times. ``rate`` overrides the link rate (a slower node)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        rate = rate if rate is not None else self.rate
        if rate is None:  # unshaped: the kernel (tc) does it; only the propagation delay is added
            body = data(now) if callable(data) else data
            self.bytes_sent += len(body)
            line = self._line(writer)
            line.push(max(now + float(self.latency()), line.last), body)
            return now, now
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        job = Transmission(writer, data, rate, float(self.latency()), now, loop.create_future())
        self._jobs.append(job)
        self._wake.set()
        return await job.done

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def forget(self, writer: asyncio.StreamWriter) -> None:
        """Drop the delay line of a closed connection (its messages still queued leave the air and
        vanish: :meth:`_write` keeps nothing for a closing writer)."""
        line = self._lines.pop(writer, None)
        if line is not None:
            line.items.clear()
            if line.timer is not None:
                line.timer.cancel()

    @property
    def connections(self) -> int:
        """Connections the shaper holds state for."""
        return len(self._lines)

    def _chunk(self, rate: float) -> int:
        return int(min(self.max_chunk, max(self.min_chunk, rate * self.slot)))

    def _current(self) -> Transmission:
        """The transmission whose chunk goes next: the FIFO head, or the first message of the
        next sender in the round (one TCP stream cannot interleave its own messages)."""
        if self.discipline == "fifo":
            return self._jobs[0]
        writer = self._jobs[0].writer
        return next(j for j in self._jobs if j.writer is writer)

    def _advance(self, job: Transmission, finished: bool) -> None:
        if self.discipline == "fifo":
            if finished:
                self._jobs.popleft()
            return
        if finished:
            self._jobs.remove(job)
        # the next sender: rotate past every queued message of this one
        writer = job.writer
        mine = [j for j in self._jobs if j.writer is writer]
        others = [j for j in self._jobs if j.writer is not writer]
        self._jobs = deque(others + mine)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._current()
            now = loop.time()
            first = job.start < 0
            if first:
                job.body = job.data(now) if callable(job.data) else job.data
                slot_start = max(self._free, job.submitted)
            else:
                slot_start = self._free if self._free > 0 else now
            if slot_start < now - 0.05:  # the loop stalled for long: do not burst to catch up
                slot_start = now - 0.05
            if first:  # its first bit went on the air when the schedule says, however late the loop is
                job.start = slot_start
            n = min(self._chunk(job.rate), len(job.body) - job.offset)
            end = slot_start + n / job.rate
            await sleep_until(end)
            self._free = end
            self.busy_s += n / job.rate
            chunk = job.body[job.offset:job.offset + n]
            job.offset += n
            self._write(job, chunk, end)
            finished = job.offset >= len(job.body)
            self._advance(job, finished)
            if finished and not job.done.done():
                job.done.set_result((job.start, loop.time()))

    def _write(self, job: Transmission, chunk: bytes, end: float) -> None:
        """Deliver ``chunk`` after the propagation delay, in order per socket."""
        self.bytes_sent += len(chunk)
        if job.writer.is_closing():  # the connection is gone: the bytes leave the air and vanish
            self._lines.pop(job.writer, None)
            return
        line = self._line(job.writer)
        line.push(max(end + job.latency, line.last), chunk)

    def _line(self, writer: asyncio.StreamWriter) -> _DelayLine:
        line = self._lines.get(writer)
        if line is None:
            line = self._lines[writer] = _DelayLine(writer)
        return line


class _DelayLine:
    """Bytes for one socket, each released at its time, never out of order."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.items: deque[tuple[float, bytes]] = deque()
        self.last = 0.0
        self.timer: asyncio.Task[None] | None = None

    def push(self, at: float, chunk: bytes) -> None:
        self.last = at
        self.items.append((at, chunk))
        if self.timer is None:
            self._release()

    def _release(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.items and self.items[0][0] <= now:
            _safe_write(self.writer, self.items.popleft()[1])
        if self.items:
            self.timer = loop.create_task(self._wait(self.items[0][0]))

    async def _wait(self, at: float) -> None:
        await sleep_until(at)
        self._release()


def _safe_write(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    if not writer.is_closing():
        writer.write(chunk)

"""Precise waits on the event loop's clock (``CLOCK_MONOTONIC``, shared by every process).

asyncio's epoll selector rounds timeouts up to whole milliseconds, so a plain ``asyncio.sleep``
ends on average ~0.5-1 ms late; over the six or so waits of a request that adds up to several
milliseconds. :func:`sleep_until` sleeps to within ``SPIN`` of the target and then yields to the
loop (``sleep(0)``) until the target, so other tasks keep running while it closes the gap.
"""

from __future__ import annotations

import asyncio

__all__ = ["SPIN", "sleep_until"]

SPIN = 0.0015
"""Seconds before a target at which a wait stops sleeping and starts yielding."""


async def sleep_until(t: float, spin: float = SPIN) -> None:
    """Return at loop time ``t`` (at once when it has passed)."""
    loop = asyncio.get_running_loop()
    delay = t - loop.time()
    if delay > spin:
        await asyncio.sleep(delay - spin)
    while loop.time() < t:
        await asyncio.sleep(0)

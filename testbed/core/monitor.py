"""Time-weighted levels (queue lengths, busy servers) integrated online over a window."""

from __future__ import annotations

__all__ = ["Level"]


class Level:
    """A piecewise-constant level whose time integral is kept over ``[t0, t1]``.

    ``change(now, delta)`` must be called with non-decreasing ``now``. ``mean()`` is the
    time-weighted average over the window; ``peak`` the largest value ever reached.
    """

    __slots__ = ("area", "last", "peak", "t0", "t1", "value")

    def __init__(self, t0: float, t1: float) -> None:
        self.value = 0
        self.last = 0.0
        self.area = 0.0
        self.t0, self.t1 = t0, t1
        self.peak = 0

    def change(self, now: float, delta: int) -> None:
        value = self.value
        if value:
            last = self.last
            if self.t0 <= last and now <= self.t1:  # the common case: wholly inside the window
                self.area += value * (now - last)
            else:
                lo = last if last > self.t0 else self.t0
                hi = now if now < self.t1 else self.t1
                if hi > lo:
                    self.area += value * (hi - lo)
        self.last = now
        value += delta
        self.value = value
        if value > self.peak:
            self.peak = value

    def mean(self, now: float) -> float:
        """Time-weighted mean over the window, closing the current segment at ``now``."""
        self.change(now, 0)
        span = self.t1 - self.t0
        return self.area / span if span > 0 else 0.0

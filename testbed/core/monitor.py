"""Time-weighted levels (queue lengths, busy servers) integrated online over a window, and the
station table they give (``queues.csv``).

Columns of :func:`station_table`, one meaning each, every mean time-weighted over the window
``[warmup, duration)``:

``station``
    ``node`` (all node CPUs together), ``uplink``, ``server`` (the GPUs), ``downlink``.
``servers``
    How many requests the station serves at once: one CPU per node (the fleet size), one channel per
    link direction, the server's GPUs.
``in_station_mean``, ``waiting_mean``
    Mean number of requests in the station (waiting or in service) and waiting for service.
``busy_servers_mean``
    Mean number of busy servers (a link direction: the share of time it was transmitting).
``utilisation``
    ``busy_servers_mean / servers``, a fraction from 0 to 1 (the summary's ``*_utilisation``).
``in_station_peak``, ``open_at_end``
    Most requests ever in the station, and those still in it when the run ended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["STATION_COLUMNS", "Level", "StayLevel", "station_table"]

STATION_COLUMNS = ("station", "servers", "in_station_mean", "waiting_mean", "busy_servers_mean", "utilisation",
                   "in_station_peak", "open_at_end")
"""The columns of :func:`station_table` (``queues.csv``), in order."""


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

    def change_with(self, other: Level, now: float, delta: int, other_delta: int) -> None:
        """``self.change(now, delta)`` then ``other.change(now, other_delta)``: two levels that move at the
        same instant (a request entering a station and a server taking it, say)."""
        self.change(now, delta)
        other.change(now, other_delta)

    def mean(self, now: float) -> float:
        """Time-weighted mean over the window, closing the current segment at ``now``."""
        self.change(now, 0)
        span = self.t1 - self.t0
        return self.area / span if span > 0 else 0.0


def station_table(levels: Mapping[str, Mapping[str, float]], servers: Mapping[str, int]) -> pd.DataFrame:
    """One row per station (:data:`STATION_COLUMNS`, described in the module docstring) from the
    window means of its levels (``in_station``, ``waiting``, ``busy``, ``peak_in_station``,
    ``open_at_end``) and its number of ``servers``."""
    rows = []
    for station, d in levels.items():
        n = servers.get(station, 0)
        busy = float(d["busy"])
        rows.append({"station": station, "servers": int(n), "in_station_mean": float(d["in_station"]),
                     "waiting_mean": float(d["waiting"]), "busy_servers_mean": busy,
                     "utilisation": busy / n if n > 0 else math.nan,
                     "in_station_peak": float(d.get("peak_in_station", math.nan)),
                     "open_at_end": float(d.get("open_at_end", math.nan))})
    return pd.DataFrame(rows, columns=list(STATION_COLUMNS))


class StayLevel:
    """A level kept from whole stays instead of single changes, for a station computed ahead of the clock
    (:mod:`testbed.sim.front`): the number of requests whose stay ``[enter, leave)`` covers an instant.

    :meth:`add` takes stays in any order (``leave = inf``: never left); the time integral over ``[t0, t1]``
    is the sum of their overlaps with the window (the same quantity :class:`Level` integrates, summed in
    another order, so it agrees to rounding). :meth:`count` applies the enters and leaves due before a time
    in time order, for the value and the peak (at one instant: leaves of earlier stays, enters, then leaves
    of stays that began at that instant). :meth:`into`
    hands the result to a :class:`Level` (its mean, peak and value are then read as usual).
    """

    __slots__ = ("_leaves", "area", "peak", "t0", "t1", "value")

    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, t1
        self.area = 0.0
        self.value = 0
        self.peak = 0
        self._leaves = np.empty(0)  # leaves not yet counted (finite, at or after the last count's time)

    def add(self, enter: np.ndarray, leave: np.ndarray) -> None:
        """Stays ``[enter[i], leave[i])`` (their overlap with the window joins the integral)."""
        if len(enter):
            span = np.minimum(leave, self.t1) - np.maximum(enter, self.t0)
            self.area += float(span[span > 0].sum())

    def count(self, enters: np.ndarray, leaves: np.ndarray, until: float, since: np.ndarray) -> None:
        """Apply every change before ``until``: ``enters`` (sorted) are all the enters in ``[last until,
        until)``; ``leaves`` (any order, ``inf``: never) are the leaves of stays not given before, which
        began at ``since``. At one instant, stays that began earlier leave first, then the enters come,
        then the stays that began at that very instant leave (a stay of no length counts in the peak)."""
        finite = np.isfinite(leaves)
        instant = finite & (leaves == since)
        pending = np.concatenate((self._leaves, leaves[finite & ~instant]))
        due = np.sort(pending[pending < until])
        brief = np.sort(leaves[instant])
        self._leaves = pending[pending >= until]
        if len(enters):
            inside = (self.value + np.arange(1, len(enters) + 1) - np.searchsorted(due, enters, side="right")
                      - np.searchsorted(brief, enters, side="left"))
            self.peak = max(self.peak, int(inside.max()))
        self.value += len(enters) - len(due) - len(brief)

    def into(self, level: Level, now: float) -> None:
        """Make ``level`` hold this level's integral, value and peak as of ``now`` (the end of the run)."""
        level.area, level.value, level.last = self.area, self.value, now
        level.peak = max(level.peak, self.peak)

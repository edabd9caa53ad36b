"""Adaptive split at run time, clock-free and torch-free.

A node of an adaptive group (``fleet[].adaptive``) holds several configurations (model, split, codec),
ordered from the most accurate (largest payload) to the smallest. For each frame it starts, the
:class:`SplitController` reads one signal the node can observe and steps one configuration smaller
when the signal is at least ``up``, one larger when it is at most ``down``, and otherwise keeps its
configuration (the band between is the hysteresis). It backs off at once (one step per frame) but steps
back to a larger configuration only ``hold_s`` seconds after its last step (so a short lull does not
send it straight back into the congestion it just left), plus, with ``hold_jitter_s``, a uniform random
extra of up to that many seconds drawn at every step from the node's own stream: nodes that backed off
together (one congestion event seen by all) then try the larger configuration at different times
instead of all at once, as randomised back-off does in Ethernet and TCP (Metcalfe & Boggs 1976).
Like NestQuant's mode controller (:mod:`testbed.core.nestquant`) it decides from the node's own view:

- ``queue``: frames waiting for the node's CPU;
- ``uplink_backlog``: bytes the node handed to the uplink that are not yet delivered (it knows what it
  sent and what was acknowledged: :meth:`sent`, :meth:`delivered`);
- ``rtt``: an exponentially weighted mean (weight ``alpha``) of its answered frames' round trips
  (:meth:`answered`, seconds from capture to answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["SIGNALS", "SplitController", "SplitPolicy"]

SIGNALS = ("queue", "uplink_backlog", "rtt")


@dataclass(frozen=True)
class SplitPolicy:
    """Thresholds of :class:`SplitController` (units of the signal: frames, bytes or seconds)."""

    signal: Literal["queue", "uplink_backlog", "rtt"]
    up: float
    down: float
    hold_s: float = 0.0
    alpha: float = 0.2
    hold_jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)} (got {self.signal!r})")
        if not 0.0 <= self.down < self.up:
            raise ValueError(f"need 0 <= down < up (got down={self.down}, up={self.up})")
        if self.hold_s < 0.0 or self.hold_jitter_s < 0.0 or not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"need hold_s >= 0, hold_jitter_s >= 0 and 0 < alpha <= 1 (got {self.hold_s}, "
                             f"{self.hold_jitter_s}, {self.alpha})")


class SplitController:
    """Chooses each frame's configuration (0 = the largest) out of ``count``; see the module docstring."""

    __slots__ = ("backlog", "count", "hold", "level", "policy", "rng", "rtt", "since", "switches")

    def __init__(self, policy: SplitPolicy, count: int, rng: np.random.Generator | None = None) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1 (got {count})")
        if policy.hold_jitter_s > 0 and rng is None:
            raise ValueError("hold_jitter_s needs the node's random stream (rng)")
        self.policy, self.count, self.rng = policy, count, rng
        self.hold = policy.hold_s  # seconds after the last step before stepping back up
        self.level = 0            # the configuration frames are served in now
        self.since = float("-inf")  # when it last stepped
        self.switches = 0
        self.backlog = 0.0        # bytes sent and not yet delivered
        self.rtt: float | None = None  # EWMA of round trips (None: no answer yet)

    def sent(self, size: float) -> None:
        """The node handed ``size`` bytes to the uplink."""
        self.backlog += size

    def delivered(self, size: float) -> None:
        """``size`` bytes the node sent were delivered."""
        self.backlog = max(0.0, self.backlog - size)

    def answered(self, seconds: float) -> None:
        """A frame's answer came back ``seconds`` after it was captured."""
        a = self.policy.alpha
        self.rtt = seconds if self.rtt is None else (1.0 - a) * self.rtt + a * seconds

    def signal(self, queue_length: int) -> float:
        """The value the policy reads (``queue_length``: frames waiting on the node)."""
        kind = self.policy.signal
        if kind == "queue":
            return float(queue_length)
        if kind == "uplink_backlog":
            return self.backlog
        return self.rtt if self.rtt is not None else 0.0

    def choose(self, now: float, queue_length: int) -> int:
        """The configuration of the frame the node starts at ``now``."""
        p = self.policy
        value = self.signal(queue_length)
        if value >= p.up and self.level < self.count - 1:
            self.level += 1
        elif value <= p.down and self.level > 0 and now - self.since >= self.hold:
            self.level -= 1
        else:
            return self.level
        self.since = now
        self.switches += 1
        if p.hold_jitter_s > 0 and self.rng is not None:
            self.hold = p.hold_s + float(self.rng.uniform(0.0, p.hold_jitter_s))
        return self.level

"""NestQuant mode switching on a node (Xie et al., arXiv:2506.17870), torch-free.

A node holding an INT8 head that nests a lower-bit head switches between them by a policy on its
battery level and queue length (:func:`testbed.research.modes.choose_mode`, with hysteresis). The
part-bit head's compute charge is the full charge times ``compute_scale["part"]``; a switch pages the
low-order weight bits in or out (``switch_bytes``) at ``paging_rate`` bytes/s, charged to the frame
that triggers it. The battery drains at the idle power all the time and at the busy power while the
node computes.
"""

from __future__ import annotations

from typing import Any

from testbed.config.modes import FULL, NestQuantModes, NestQuantPolicy, choose_mode, switch_bytes
from testbed.config.profiles import Profile
from testbed.config.schema import NestQuantSpec

__all__ = ["MODE_CODES", "ModeController", "controller_for"]

MODE_CODES = {"full": 0, "part": 1}


class ModeController:
    """Decides each frame's head (full or part bits) and charges its compute and switching time."""

    def __init__(self, modes: NestQuantModes, policy: NestQuantPolicy, battery_j: float | None,
                 initial: float, paging_rate: float, idle_w: float, busy_w: float) -> None:
        self.modes, self.policy = modes, policy
        self.capacity = battery_j
        self.energy = (battery_j or 0.0) * initial
        self.paging_rate, self.idle_w, self.busy_w = paging_rate, idle_w, busy_w
        self.mode = FULL
        self.last = 0.0
        self.switches = 0

    @property
    def battery(self) -> float:
        """State of charge in [0, 1] (1 when no battery is modelled)."""
        if not self.capacity:
            return 1.0
        return max(0.0, self.energy / self.capacity)

    def charge(self, now: float, queue_length: int, head_s: float, encode_s: float) -> tuple[float, int]:
        """(head seconds to charge, mode code) for a frame starting now."""
        self.energy -= self.idle_w * (now - self.last)
        self.last = now
        target = choose_mode(self.battery, queue_length, self.mode, self.policy)
        extra = 0.0
        if target != self.mode:
            extra = switch_bytes(self.modes, self.mode, target) / self.paging_rate
            self.mode = target
            self.switches += 1
        head = head_s * self.modes.compute_scale[self.mode] + extra
        self.energy -= (self.busy_w - self.idle_w) * (head + encode_s)
        return head, MODE_CODES[self.mode]


def controller_for(spec: NestQuantSpec | None, modes: NestQuantModes | None, profile: Profile) -> ModeController | None:
    """The mode controller of one node of a group (None when the group does not switch heads);
    the battery drains at the node profile's idle and busy power."""
    if spec is None or modes is None:
        return None
    power = profile.power
    idle, busy = (power.idle.watts, power.busy.watts) if power is not None else (0.0, 0.0)
    policy: dict[str, Any] = dict(spec.policy)  # validated against NestQuantPolicy by the schema
    return ModeController(modes, NestQuantPolicy(**policy), spec.battery_j, spec.initial_battery,
                          spec.paging_rate, idle, busy)

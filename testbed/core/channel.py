"""Frame losses on a wireless link: the two-state Gilbert-Elliott channel (Gilbert, "Capacity of a
burst-noise channel", BSTJ 1960; Elliott, "Estimates of error rates for codes on burst-noise channels",
BSTJ 1963), per frame.

The channel is good or bad; a frame sent in the good state is lost with probability ``error_good``, in the
bad state with ``error_bad``; after each frame the state changes from good to bad with probability
``p_good_bad`` and from bad to good with ``p_bad_good``. Losses come in bursts (a mean bad spell lasts
``1 / p_bad_good`` frames) where a frame error rate of the same mean would lose frames independently.
Clock-free and pure: the caller supplies the uniform draws.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GilbertElliott"]


class GilbertElliott:
    """One link's channel state and its per-frame losses (see the module docstring)."""

    __slots__ = ("bad", "error_bad", "error_good", "p_bad_good", "p_good_bad")

    def __init__(self, p_good_bad: float, p_bad_good: float, error_good: float = 0.0, error_bad: float = 1.0,
                 bad: bool = False) -> None:
        for name, v in (("p_good_bad", p_good_bad), ("p_bad_good", p_bad_good), ("error_good", error_good),
                        ("error_bad", error_bad)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability (got {v})")
        if p_good_bad + p_bad_good <= 0:
            raise ValueError("p_good_bad and p_bad_good cannot both be 0")
        self.p_good_bad, self.p_bad_good = p_good_bad, p_bad_good
        self.error_good, self.error_bad, self.bad = error_good, error_bad, bad

    @property
    def bad_share(self) -> float:
        """The stationary probability of the bad state: ``p_good_bad / (p_good_bad + p_bad_good)``."""
        return self.p_good_bad / (self.p_good_bad + self.p_bad_good)

    @property
    def loss_rate(self) -> float:
        """The long-run share of frames lost."""
        b = self.bad_share
        return b * self.error_bad + (1 - b) * self.error_good

    def losses(self, u: Sequence[float]) -> int:
        """Frames lost among ``len(u) // 2`` sent one after another; ``u``: two uniforms in [0, 1) per
        frame (the loss draw, then the state change)."""
        lost = 0
        bad = self.bad
        for i in range(0, len(u) - 1, 2):
            if u[i] < (self.error_bad if bad else self.error_good):
                lost += 1
            bad = u[i + 1] >= self.p_bad_good if bad else u[i + 1] < self.p_good_bad
        self.bad = bad
        return lost

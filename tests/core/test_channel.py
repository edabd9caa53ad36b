"""The Gilbert-Elliott channel: its long-run loss rate and burst lengths are the Markov chain's."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.core.channel import GilbertElliott


def test_loss_rate_and_bursts_match_the_chain() -> None:
    ge = GilbertElliott(p_good_bad=0.02, p_bad_good=0.25, error_good=0.01, error_bad=0.8)
    u = np.random.default_rng(0).random(2 * 400_000).tolist()
    lost = np.array([ge.losses(u[i:i + 2]) for i in range(0, len(u), 2)])
    assert ge.bad_share == pytest.approx(0.02 / 0.27)
    assert lost.mean() == pytest.approx(ge.loss_rate, rel=0.05)
    # lost frames cluster: P(loss | previous lost) is far above the mean loss rate
    after_loss = lost[1:][lost[:-1] == 1].mean()
    assert after_loss > 3 * ge.loss_rate


def test_all_bad_or_all_good() -> None:
    always_bad = GilbertElliott(1.0, 0.0, error_bad=1.0, bad=True)
    assert always_bad.losses([0.5] * 20) == 10
    never = GilbertElliott(0.0, 1.0, error_good=0.0)
    assert never.losses([0.0, 0.0] * 5) == 0 and not never.bad
    with pytest.raises(ValueError):
        GilbertElliott(0.0, 0.0)
    with pytest.raises(ValueError):
        GilbertElliott(1.5, 0.1)


def test_a_batch_of_frames_steps_the_chain_once_per_frame() -> None:
    ge = GilbertElliott(p_good_bad=1.0, p_bad_good=1.0, error_good=0.0, error_bad=1.0)
    # good, bad, good, bad, ...: every second frame is lost
    assert ge.losses([0.5, 0.5] * 6) == 3 and not ge.bad

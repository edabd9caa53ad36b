"""Mahimahi packet-delivery traces (testbed.core.calc.DeliverySchedule): a FIFO link delivers exactly the
trace's opportunities, MTU bytes each, looping the trace."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.core.calc import DeliverySchedule


def test_backlog_uses_every_opportunity_once() -> None:
    ms = [1, 1, 3, 7, 7, 7, 10]           # 7 opportunities per 10 ms loop
    d = DeliverySchedule(ms, 1500)
    ends = [d.transmit(0.0, 1500) for _ in range(21)]  # a backlog of one-packet transmissions
    expected = [(m + 10 * loop) / 1000 for loop in range(3) for m in ms]
    assert ends == pytest.approx(expected)


def test_a_transmission_ends_at_the_opportunity_of_its_last_byte() -> None:
    d = DeliverySchedule([2, 4, 6, 8], 1000)
    assert d.transmit(0.0, 2500) == pytest.approx(0.006)   # 3 opportunities: 2, 4, 6 ms
    # 500 bytes were left in the 6 ms opportunity: a transmission starting then uses them
    assert d.transmit(0.006, 400) == pytest.approx(0.006)
    assert d.transmit(0.006, 200) == pytest.approx(0.008)  # 100 left at 6 ms, the rest at 8 ms
    # idle: the leftover of 8 ms and the opportunities before the start are lost
    assert d.transmit(0.0135, 1000) == pytest.approx(0.014)  # 14 ms = 6 ms in the second loop
    assert d.transmit(0.02, 0) == 0.02


def test_bytes_delivered_by_any_time_never_exceed_the_opportunities() -> None:
    rng = np.random.default_rng(0)
    ms = [*np.sort(rng.integers(0, 1000, 700)).tolist(), 1000]
    d = DeliverySchedule(ms, 1500)
    t, sent, ends = 0.0, 0.0, []
    for size, gap in zip(rng.integers(1, 20_000, 400), rng.exponential(0.01, 400)):
        t = max(t, ends[-1] if ends else 0.0) + float(gap) * (rng.random() < 0.3)
        end = d.transmit(t, float(size))
        sent += float(size)
        ends.append(end)
        opportunities = d.first_at_or_after(end + 1e-6)  # those at or before the end
        assert sent <= opportunities * 1500 + 1e-6
    # every end is an opportunity's time
    times = {round(d.time(k), 9) for k in range(10_000)}
    assert all(round(e, 9) in times for e in ends)


def test_bad_traces() -> None:
    with pytest.raises(ValueError):
        DeliverySchedule([], 1500)
    with pytest.raises(ValueError):
        DeliverySchedule([5, 3], 1500)
    with pytest.raises(ValueError):
        DeliverySchedule([0], 1500)

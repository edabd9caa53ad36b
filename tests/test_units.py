import math

import pytest

from testbed.units import parse_datarate, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text,seconds", [
    ("20 ms", 0.02), ("10 min", 600.0), ("1.5s", 1.5), ("250 us", 250e-6), ("2 h", 7200.0), (3, 3.0),
    ("1e-3 s", 1e-3), ("0", 0.0),
])
def test_durations(text, seconds):
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text,size", [("25 kB", 25_000), ("1 KiB", 1024), ("2 MB", 2e6), ("8 bit", 1.0),
                                       ("1 Mbit", 125_000), (100, 100)])
def test_sizes(text, size):
    assert math.isclose(parse_size(text), size)


@pytest.mark.parametrize("text,rate", [("5 MB/s", 5e6), ("40 Mbit/s", 5e6), ("40 Mbps", 5e6),
                                       ("1 MiB/s", 1024**2), ("8 kbit/ms", 1e6), (1000, 1000.0)])
def test_datarates(text, rate):
    assert math.isclose(parse_datarate(text), rate)


@pytest.mark.parametrize("text,rate", [("2/s", 2.0), ("120/min", 2.0), ("0.5 Hz", 0.5), (4, 4.0)])
def test_event_rates(text, rate):
    assert math.isclose(parse_rate(text), rate)


@pytest.mark.parametrize("bad", ["5 parsecs", "fast", "5 MB", True])
def test_bad_datarates_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_datarate(bad)


def test_bad_duration_unit_is_named():
    with pytest.raises(ValueError, match="fortnights"):
        parse_duration("2 fortnights")

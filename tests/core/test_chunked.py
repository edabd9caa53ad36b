"""Statistics of a series read in chunks (testbed.core.metrics.chunked) equal the in-memory ones: order
statistics and percentiles bit for bit numpy's, means, intervals and MSER-5 up to rounding; and a summary
whose latency series is longer than IN_MEMORY (made small here) equals the in-memory summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import chunked, intervals, summarize
from testbed.core.metrics import online as online_mod
from testbed.core.metrics.latency import censored_statistic
from testbed.core.metrics.online import StreamSummary
from testbed.run.runner import run_scenario
from testbed.run.stream import FileSeries, Spill, created_at, write_requests
from testbed.sim.world import Simulation
from tests.core.test_stream import busy

QS = [50, 90, 95, 99]
latencies = st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_subnormal=True),
                     min_size=1, max_size=400)


def _reader(x: np.ndarray):  # type: ignore[no-untyped-def]
    return lambda a, b: x[a:b]


@settings(max_examples=200, deadline=None)
@given(latencies, st.integers(0, 30))
def test_percentiles_are_numpys_bit_for_bit(values: list[float], unfinished: int) -> None:
    x = np.array(values)
    assert chunked.percentiles(_reader(x), 0, len(x), QS) == list(map(float, np.percentile(x, QS)))
    total = len(x) + unfinished
    expect = [censored_statistic(np.concatenate([x, np.full(unfinished, np.inf)]), q) for q in QS]
    assert chunked.censored_percentiles(_reader(x), 0, len(x), total, QS) == expect


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=300), st.data())
def test_order_statistics_of_segments_through_every_radix_pass(values: list[float], data: st.DataObject) -> None:
    x = np.array(values)
    a = data.draw(st.integers(0, len(x) - 1))
    b = data.draw(st.integers(a + 1, len(x)))
    r = data.draw(st.integers(0, b - a - 1))
    # collect=0: every 16-bit pass runs (down to the exact bit pattern); chunk=7: segments span chunks
    got = chunked.order_statistics(_reader(x), [(a, b, r), (0, len(x), 0)], chunk=7, collect=0)
    assert got == [float(np.sort(x[a:b])[r]), float(x.min())]


def test_a_rank_outside_its_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 3"):
        chunked.order_statistics(_reader(np.zeros(3)), [(0, 3, 3)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_and_mser_equal_the_in_memory_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trend = np.linspace(0.5, 0.0, 3000) ** 2  # a warm-up MSER-5 must find
    x = np.concatenate([trend + rng.exponential(0.05, 3000), rng.exponential(0.05, 20_000 + seed)])
    for q in (None, 95.0):
        got, expect = chunked.batch_interval(_reader(x), 0, len(x), q), intervals.batch_interval(x, q)
        assert got == pytest.approx(expect, rel=1e-12)
    assert chunked.mser(_reader(x), len(x), chunk=1001) == intervals.mser(x) > 0
    assert math.isnan(chunked.batch_interval(_reader(x[:50]), 0, 50, 95.0)[0])  # too few per batch


def test_a_long_series_is_summarised_in_chunks_as_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IN_MEMORY made smaller than the run's series: the chunked path (on disk, FileSeries) gives the
    in-memory summary's percentiles exactly and its means and intervals up to rounding."""
    monkeypatch.setattr(online_mod, "IN_MEMORY", 500)
    sc = scenario_from_dict(busy())
    held = run_scenario(sc, stream=False)
    spill = Spill(tmp_path / "spill")
    sim = Simulation(sc, sink=spill).run()
    spill.close()
    series = FileSeries(tmp_path / "latency.bin")
    acc = StreamSummary(sim.window, sim.levels, sim.gpus, nodes=sc.node_count, series=series)
    path = tmp_path / "requests.parquet"
    write_requests(spill, path, acc, group_names=("cams", "slow"), window=sim.window, frames=np.asarray(sim.frames))
    assert len(series) > 500
    summary = acc.result(created_at(path, sim.window[1]))
    expect = summarize(held.records, sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    for key in ("latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_max_s",
                "latency_p50_all_s", "latency_p95_all_s", "latency_p99_all_s", "warmup_mser5_s", "completed"):
        assert summary[key] == expect[key], key
    for key in ("latency_mean_s", "latency_mean_s_run_ci_low", "latency_mean_s_run_ci_high",
                "latency_p95_s_run_ci_low", "latency_p95_s_run_ci_high"):
        assert summary[key] == pytest.approx(expect[key], rel=1e-12), key
    assert [k for k in summary if k in expect] == [k for k in expect if k in summary]  # energy: not added here
    series.remove()
    assert not (tmp_path / "latency.bin").exists()

"""Streamed records: the same rows, files and summary as a run held in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import summarize, with_stages
from testbed.core.metrics.online import StreamSummary
from testbed.core.records import frame_of
from testbed.run.runner import run_scenario
from testbed.run.stream import Spill, created_at, write_requests
from testbed.sim.world import Simulation


def busy(link: str = "shared_fifo") -> dict:
    """Drops at the node (drop_oldest), server timeouts and drops, in flight at the end."""
    return {
        "name": "stream", "seed": 3, "duration": "20 s", "warmup": "2 s", "drain": "0.05 s",
        "fleet": [{"name": "cams", "count": 30, "device": "pi4b", "arrivals": {"kind": "poisson", "rate": "4/s"},
                   "head": {"dist": "exponential", "mean": "220 ms"}, "encode": "2 ms",
                   "payload": {"dist": "exponential", "mean": "5 kB"}, "queue": {"capacity": 3, "policy": "drop_oldest"}},
                  {"name": "slow", "count": 5, "device": "pi4b", "arrivals": {"kind": "periodic", "rate": "2/s"},
                   "head": "30 ms", "encode": "2 ms", "payload": "8 kB"}],
        "link": {"model": link, "datarate": "2 MB/s", "latency": {"dist": "exponential", "mean": "1 ms"}},
        "server": {"device": "h100", "batching": {"max_batch": 8, "max_delay": "5 ms"}, "queue_capacity": 20,
                   "timeout": "60 ms", "service": {"table": {1: "10 ms", 8: "75 ms"}}},
    }


@pytest.mark.parametrize("link", ["shared_fifo", "fair_share"])
def test_streamed_rows_equal_in_memory_rows(tmp_path: Path, link: str) -> None:
    sc = scenario_from_dict(busy(link))
    mem = Simulation(sc).run().records
    spill = Spill(tmp_path / "spill")
    sim = Simulation(sc, sink=spill)
    sim.rec.flush_rows = sim.rec._check_at = 97  # type: ignore[attr-defined]  # many small flushes
    result = sim.run()
    spill.close()
    assert result.streamed and len(result.records) == 0
    assert sim.rec.held() == 0  # type: ignore[attr-defined]
    names, window = ("cams", "slow"), result.window
    got = pd.concat([frame_of(first, ints, floats, names, window) for first, ints, floats in spill.chunks(1000)],
                    ignore_index=True)
    statuses = set(mem["status"].astype(str))
    assert {"ok", "dropped_at_node", "timed_out", "in_flight"} <= statuses  # the test covers them
    pd.testing.assert_frame_equal(got, mem)
    assert result.frames == list(mem.groupby("node").size().reindex(range(35), fill_value=0))


def test_streamed_run_equals_in_memory_run(tmp_path: Path) -> None:
    sc = scenario_from_dict(busy())
    streamed, held = run_scenario(sc, stream=True), run_scenario(sc, stream=False)
    assert streamed.requests_path is not None
    pd.testing.assert_frame_equal(streamed.records, held.records)
    assert list(streamed.summary) == list(held.summary)
    for key, value in held.summary.items():
        got = streamed.summary[key]
        if isinstance(value, float) and math.isfinite(value):
            assert got == pytest.approx(value, rel=1e-12, abs=1e-15), key
        else:
            assert got == value or (got != got and value != value), key
    pd.testing.assert_frame_equal(streamed.queues, held.queues)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    streamed.write_requests(a)
    held.write_requests(b)
    assert a.read_bytes() == b.read_bytes()  # fewer rows than a row group: the same file, byte for byte


def test_row_groups_keep_rows_and_summary(tmp_path: Path) -> None:
    """Many row groups: the same rows and (up to rounding) the same summary as in memory."""
    sc = scenario_from_dict(busy())
    held = run_scenario(sc, stream=False)
    spill = Spill(tmp_path / "spill")
    sim = Simulation(sc, sink=spill).run()
    spill.close()
    acc = StreamSummary(sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    path = tmp_path / "requests.parquet"
    frames = np.asarray(sim.frames)
    from testbed.core.energy import add_energy
    from testbed.run.runner import node_power

    power = node_power(held_res := __import__("testbed.config.resolve", fromlist=["as_resolved"]).as_resolved(sc))
    del held_res
    write_requests(spill, path, acc, group_names=("cams", "slow"), window=sim.window, frames=frames,
                   extend=lambda df, f: add_energy(df, power, sc.duration, f), row_group=500)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups > 3
    pd.testing.assert_frame_equal(pd.read_parquet(path), with_stages(held.records))
    summary = acc.result(created_at(path, sim.window[1]))
    expect = summarize(held.records, sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    assert summary["latency_p99_s"] == expect["latency_p99_s"]
    assert summary["warmup_mser5_s"] == expect["warmup_mser5_s"]
    assert summary["mean_energy_j"] == pytest.approx(expect["mean_energy_j"], rel=1e-12)
    assert summary["warnings"] == expect["warnings"]


def test_streamed_answers_include_agreement_on_the_clean_frame() -> None:
    """Corrupted frames: the streamed summary gives ``agreement_clean`` as the in-memory one does."""
    sc = scenario_from_dict(busy())
    sim = Simulation(sc).run()
    df = with_stages(sim.records)
    rng = np.random.default_rng(5)
    df["correct"] = np.nan
    df["agree"] = rng.integers(0, 2, len(df)).astype(float)
    df["agree_clean"] = np.where(rng.random(len(df)) < 0.1, np.nan, rng.integers(0, 2, len(df)))
    expect = summarize(df, sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    acc = StreamSummary(sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    for start in range(0, len(df), 400):  # consecutive chunks, as the spill hands them over
        acc.add(df.iloc[start:start + 400])
    ok_created = np.sort(df.loc[df["status"] == "ok", "created_s"].to_numpy())
    got = acc.result(lambda i: float(ok_created[i]))
    assert math.isfinite(expect["agreement_clean"])
    for key in ("agreement", "agreement_clean"):
        assert got[key] == pytest.approx(expect[key], rel=1e-12), key

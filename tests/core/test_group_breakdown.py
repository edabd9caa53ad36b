"""Per-group figures of a heterogeneous fleet (testbed.core.metrics.groups): each group's own requests only,
unfinished requests infinitely late in the ``_all_s`` percentiles, node busy share from head and encode times."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from testbed.core.metrics.groups import group_breakdown, node_busy_share


def _records() -> pd.DataFrame:
    # group 0: ten requests, all completed with latencies 0.01..0.10; group 1: four, one dropped
    lat0 = np.arange(1, 11) / 100
    created = np.concatenate([np.arange(10.0), np.arange(4.0)])
    finished = np.concatenate([created[:10] + lat0, created[10:] + np.array([0.2, 0.3, 0.4, 0.0])])
    return pd.DataFrame({
        "group": [0] * 10 + [1] * 4, "config": [0] * 10 + [1] * 4,
        "status": ["ok"] * 13 + ["dropped_at_node"], "created_s": created, "finished_s": finished,
        "payload_bytes": [100.0] * 10 + [400.0] * 4, "agree": [True] * 9 + [False] + [True] * 4,
        "head_start_s": created, "encode_end_s": created + np.concatenate([[0.5] * 10, [0.25] * 3, [np.nan]]),
        "energy_j": [1.0] * 10 + [2.0] * 4})


def test_each_group_is_summarised_over_its_own_requests() -> None:
    rows = group_breakdown(_records(), (0.0, 10.0), ["new", "old"], ["a", "b"], [1, 2])
    new, old = rows
    assert (new["group"], new["config"], new["requests"]) == ("new", "a", 10)
    assert new["latency_p95_s"] == pytest.approx(np.percentile(np.arange(1, 11) / 100, 95))
    assert new["latency_p95_all_s"] == pytest.approx(new["latency_p95_s"])  # every request completed
    assert new["agreement"] == pytest.approx(0.9) and new["mean_energy_j"] == 1.0
    assert new["node_utilisation"] == pytest.approx(10 * 0.5 / (1 * 10.0))
    assert old["requests"] == 4 and old["completed_share"] == 0.75 and old["drop_rate"] == 0.25
    assert old["latency_p50_all_s"] == pytest.approx(np.percentile([0.2, 0.3, 0.4, 0.4], 50))
    assert old["latency_p95_all_s"] is None  # the dropped request is reached: infinitely late
    assert old["mean_payload_bytes"] == 400.0 and old["mean_energy_j"] == 2.0
    assert old["node_utilisation"] == pytest.approx(3 * 0.25 / (2 * 10.0))  # the dropped one never started


def test_node_counts_are_optional_and_busy_share_refuses_empty_spans() -> None:
    rows = group_breakdown(_records(), (0.0, 10.0), ["new", "old"], ["a", "b"])
    assert "node_utilisation" not in rows[0]
    assert math.isnan(node_busy_share(np.zeros(1), np.ones(1), 0, 1.0))
    assert math.isnan(node_busy_share(np.zeros(1), np.ones(1), 1, 0.0))


def test_chunks_and_a_series_on_disk_give_the_in_memory_rows(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GroupAccumulator fed in chunks, each group's latencies in a file and summarised in chunked passes
    (IN_MEMORY made small): the same rows as group_breakdown held in memory (percentiles exactly)."""
    from testbed.core.metrics import online
    from testbed.core.metrics.groups import GroupAccumulator
    from testbed.run.stream import FileSeries

    rng = np.random.default_rng(3)
    n = 3000
    created = np.sort(rng.uniform(0, 100, n))
    ok = rng.random(n) < 0.9
    status = np.where(ok, "ok", np.where(rng.random(n) < 0.5, "dropped_at_node", "timed_out"))
    df = pd.DataFrame({
        "group": rng.integers(0, 3, n), "config": rng.integers(0, 2, n), "status": status, "created_s": created,
        "finished_s": created + rng.exponential(0.05, n), "payload_bytes": rng.uniform(1e3, 5e3, n),
        "agree": (rng.random(n) < 0.8).astype(float), "head_start_s": created,
        "encode_end_s": created + np.where(rng.random(n) < 0.05, np.nan, 0.02), "energy_j": rng.uniform(0, 1, n)})
    names, labels, nodes = ["a", "b", "c"], ["x", "y"], [4, 5, 6]
    expect = group_breakdown(df, (10.0, 90.0), names, labels, nodes)
    monkeypatch.setattr(online, "IN_MEMORY", 100)
    files = [FileSeries(tmp_path / f"g{g}.bin") for g in range(3)]
    acc = GroupAccumulator((10.0, 90.0), names, labels, nodes, series=files.__getitem__)
    for start in range(0, n, 257):
        acc.add(df.iloc[start:start + 257])
    got = acc.result()
    assert all(len(f) > 100 for f in files)  # the chunked path ran
    for g, e in zip(got, expect):
        assert list(g) == list(e)
        for key, value in e.items():
            if key.startswith("latency_p") or isinstance(value, (str, int, dict)) or value is None:
                assert g[key] == value, key
            else:
                assert g[key] == pytest.approx(value, rel=1e-12), key


def test_corruption_rows_from_chunks_equal_the_rows_in_memory() -> None:
    from testbed.core.metrics.corruptions import CorruptionAccumulator, corruption_breakdown

    rng = np.random.default_rng(5)
    n = 2000
    names = rng.choice(["none", "fog", "snow", ""], n)
    df = pd.DataFrame({
        "status": np.where(rng.random(n) < 0.9, "ok", "timed_out"), "created_s": np.sort(rng.uniform(0, 50, n)),
        "corruption": names, "severity": np.where(names == "none", 0, rng.integers(1, 6, n)).astype(float),
        "agree": (rng.random(n) < 0.7).astype(float), "agree_clean": np.where(rng.random(n) < 0.1, np.nan, 1.0)})
    expect = corruption_breakdown(df, (5.0, 45.0))
    acc = CorruptionAccumulator((5.0, 45.0))
    for start in range(0, n, 300):
        acc.add(df.iloc[start:start + 300])
    got = acc.result()
    assert [(r["corruption"], r["severity"], r["requests"]) for r in got] == \
        [(r["corruption"], r["severity"], r["requests"]) for r in expect]
    assert len(got) > 8 and {r["corruption"] for r in got} == {"none", "fog", "snow"}
    for g, e in zip(got, expect):
        assert g["agreement"] == pytest.approx(e["agreement"], rel=1e-12)
        assert g["agreement_clean"] == pytest.approx(e["agreement_clean"], rel=1e-12)
    assert CorruptionAccumulator((0.0, 1.0)).result() == [] and corruption_breakdown(df.drop(columns="agree"), (0, 1)) == []


def test_topology_rows_from_chunks_and_files_equal_the_rows_in_memory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.core.metrics import online
    from testbed.core.metrics.topology import TopologyAccumulator, topology_summary
    from testbed.run.stream import FileSeries

    rng = np.random.default_rng(7)
    n = 3000
    created = np.sort(rng.uniform(0, 100, n))
    status = rng.choice(["ok", "ok", "ok", "server_failed", "cell_failed", "timed_out"], n)
    size = rng.integers(0, 5, n)
    start = np.where(size > 0, created + 0.01, np.nan)
    df = pd.DataFrame({
        "created_s": created, "finished_s": created + rng.exponential(0.05, n), "status": status,
        "cell": rng.integers(0, 2, n), "server": rng.integers(-1, 3, n), "batch_size": size,
        "batch_start_s": start, "batch_end_s": start + 0.004, "server_arrival_s": created + 0.005,
        "retries": rng.integers(0, 2, n)})
    expect = topology_summary(df, (10.0, 90.0), ["a", "b"], ["x", "y", "z"])
    monkeypatch.setattr(online, "IN_MEMORY", 100)
    acc = TopologyAccumulator((10.0, 90.0), ["a", "b"], ["x", "y", "z"],
                              lambda kind, i: FileSeries(tmp_path / f"{kind}{i}.bin"))
    for s0 in range(0, n, 301):
        acc.add(df.iloc[s0:s0 + 301])
    got = acc.result()
    assert got.keys() == expect.keys() and expect["local_share"] > 0
    for key in ("by_cell", "by_server"):
        for g, e in zip(got[key], expect[key]):
            assert list(g) == list(e)
            for k, v in e.items():
                if k == "latency_p95_s" or isinstance(v, (str, int)):
                    assert g[k] == v or (v != v and g[k] != g[k]), (key, k)
                else:
                    assert g[k] == pytest.approx(v, rel=1e-12, nan_ok=True), (key, k)

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

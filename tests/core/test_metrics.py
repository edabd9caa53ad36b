"""Summary metrics: the registry, and figures that stay finite when frames are dropped."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from testbed.core.metrics import SUMMARY_METRICS, summarize
from testbed.core.records import STATUS
from testbed.errors import ConfigError


def _records() -> pd.DataFrame:
    """Two requests on one node: one served (head 0.1 s, encode 0.1 s), one dropped at the node."""
    nan = math.nan
    cols = {
        "request": [0, 1], "node": [0, 0], "group": [0, 0], "frame": [0, 1], "image": [-1, -1],
        "batch_size": [1, 0], "gpu": [0, -1], "mode": [0, 0],
        "status": pd.Categorical.from_codes([STATUS.index("ok"), STATUS.index("dropped_at_node")],
                                            categories=list(STATUS)),
        "created_s": [1.0, 1.05], "head_start_s": [1.0, nan], "head_end_s": [1.1, nan],
        "encode_end_s": [1.2, nan], "tx_start_s": [1.2, nan], "tx_end_s": [1.3, nan],
        "server_arrival_s": [1.3, nan], "queued_s": [1.3, nan], "batch_ready_s": [1.3, nan],
        "batch_start_s": [1.3, nan], "batch_end_s": [1.4, nan], "downlink_start_s": [1.4, nan],
        "downlink_end_s": [1.5, nan], "finished_s": [1.5, 1.05], "payload_bytes": [100.0, nan],
        "result_bytes": [8.0, nan],
    }
    return pd.DataFrame(cols)


def test_summary_lists_registered_metrics_in_order():
    names = [n for n, _ in SUMMARY_METRICS.items()]
    assert names[:6] == ["counts", "latency", "latency_all", "latency_intervals", "stages", "utilisation"]
    s = summarize(_records(), (0.0, 2.0), None, gpus=1, nodes=1)
    keys = list(s)
    assert keys.index("requests") < keys.index("latency_p50_s") < keys.index("latency_p95_all_s") < keys.index(
        "latency_p95_s_run_ci_low") < keys.index("mean_head_s") < keys.index("link_utilisation")
    assert keys[-1] == "warnings"


def test_utilisation_stays_finite_with_a_dropped_frame():
    s = summarize(_records(), (0.0, 2.0), None, gpus=1, nodes=1)
    assert s["dropped_at_node"] == 1 and s["completed"] == 1
    assert s["node_utilisation"] == pytest.approx(0.2 / 2.0)   # head + encode of the served frame
    assert s["link_utilisation"] == pytest.approx(0.1 / 2.0)
    assert s["gpu_utilisation"] == pytest.approx(0.1 / 2.0)
    assert np.isfinite([s["node_utilisation"], s["link_utilisation"], s["gpu_utilisation"]]).all()


def test_unknown_metric_lists_the_available_ones():
    with pytest.raises(ConfigError, match="latency"):
        SUMMARY_METRICS.get("p99.9", "metrics")


def test_a_duplicate_metric_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        SUMMARY_METRICS.add("latency", lambda s: {})

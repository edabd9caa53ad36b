"""Completion is first-class: counts and shares of every outcome, latency with the lost counted as
infinitely late, warnings for overload, unfinished requests and a short warm-up, and the ``in_window``
column that reproduces the summary's percentiles in pandas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.core.metrics import censored_statistic, format_summary, format_warnings, summarize
from testbed.core.records import FLOAT_COLUMNS, STATUS
from testbed.io import json_text
from tests.conftest import base_scenario


def _records(created: np.ndarray, latency: np.ndarray, status: list[str]) -> pd.DataFrame:
    """Records of requests created at ``created`` on one node; completed ones take ``latency``."""
    n = len(created)
    df = pd.DataFrame({c: np.full(n, np.nan) for c in FLOAT_COLUMNS})
    ok = np.array([s == "ok" for s in status])
    df["created_s"] = created
    df["finished_s"] = np.where(ok, created + latency, np.nan)
    for c in ("head_start_s", "head_end_s", "encode_end_s", "tx_start_s", "tx_end_s", "server_arrival_s",
              "queued_s", "batch_ready_s", "batch_start_s", "batch_end_s"):
        df[c] = np.where(ok, created, np.nan)   # every stage instantaneous except the downlink
    df["node"], df["group"], df["frame"], df["image"] = 0, 0, np.arange(n), -1
    df["batch_size"], df["gpu"], df["mode"] = 1, 0, 0
    df["status"] = pd.Categorical.from_codes([STATUS.index(s) for s in status], categories=list(STATUS))
    return df


def test_censored_statistic_is_numpys_percentile_until_it_reaches_a_lost_request() -> None:
    rng = np.random.default_rng(1)
    lat = rng.exponential(0.05, 1000)
    for q in (50.0, 95.0, 99.0):
        assert censored_statistic(lat, q) == np.percentile(lat, q)      # exactly, all completed
        assert censored_statistic(lat, q, "higher") == np.percentile(lat, q, method="higher")
    lost = np.r_[lat[:940], np.full(60, np.inf)]                         # 6% never completed
    assert censored_statistic(lost, 50.0) == np.percentile(lost[:940], 50.0 * 999 / 939)
    assert censored_statistic(lost, 95.0) == math.inf and censored_statistic(lost, 93.0) < math.inf
    assert censored_statistic(lost, None) == math.inf and math.isnan(censored_statistic(np.array([]), 50.0))
    # capacity's rule: the 'higher' rank, infinite when it is a lost request
    for q in (90.0, 93.0, 93.9, 94.0, 95.0):
        assert censored_statistic(lost, q, "higher") == np.percentile(lost, q, method="higher")


def test_shares_add_up_and_all_request_percentiles_count_the_lost_as_infinitely_late() -> None:
    created = np.arange(100) * 0.1
    status = ["ok"] * 90 + ["dropped_at_node"] * 4 + ["dropped_at_server"] * 2 + ["timed_out"] + ["in_flight"] * 3
    s = summarize(_records(created, np.full(100, 0.02), status), (0.0, 10.0), None, gpus=1, nodes=1)
    assert (s["requests"], s["completed"], s["dropped"], s["timed_out"], s["in_flight"]) == (100, 90, 6, 1, 3)
    assert s["dropped_at_node_share"] == 0.04 and s["dropped_at_server_share"] == 0.02
    assert s["completed_share"] + s["dropped_share"] + s["timed_out_share"] + s["in_flight_share"] == pytest.approx(1)
    assert s["latency_p50_s"] == pytest.approx(0.02) and s["latency_over"].startswith("completed")
    assert s["latency_p50_all_s"] == pytest.approx(0.02) and s["latency_p95_all_s"] is None
    assert any(w.startswith("unfinished: 3 of 100 requests") for w in s["warnings"])
    assert "lost: 7 of 100 requests created in the window (7.0%) got no answer (dropped at node 4.0%, dropped at " \
           "server 2.0%, timed out 1.0%)" in " ".join(s["warnings"])
    assert "latency_p95_all_s" in format_summary(s) and "inf" in format_summary(s)
    assert "warnings" not in format_summary(s)
    json.loads(json_text(s), parse_constant=lambda c: pytest.fail(f"{c} in summary JSON"))


def test_a_warm_up_shorter_than_mser5_suggests_is_warned() -> None:
    rng = np.random.default_rng(2)
    created = np.sort(rng.uniform(0.0, 600.0, 6000))
    latency = 0.05 + 2.0 * np.exp(-created / 30.0) + rng.exponential(0.01, len(created))  # slow start
    records = _records(created, latency, ["ok"] * len(created))
    short = summarize(records, (5.0, 600.0), None, gpus=1, nodes=1)
    assert 60.0 <= short["warmup_mser5_s"] <= 250.0
    assert [w for w in short["warnings"] if w.startswith("warm-up: MSER-5 suggests")]
    long = summarize(records, (300.0, 600.0), None, gpus=1, nodes=1)
    assert long["warnings"] == [] and long["warmup_mser5_s"] == short["warmup_mser5_s"]
    lo, hi = long["latency_mean_s_run_ci_low"], long["latency_mean_s_run_ci_high"]
    assert lo < long["latency_mean_s"] < hi and hi - lo < 0.005 and "batch means" in long["run_ci_method"]


def test_the_overloaded_run_warns_names_the_uplink_and_reports_its_unfinished_share() -> None:
    from testbed.run.runner import run_scenario

    raw = base_scenario(duration="30 s", warmup="2 s", drain="1 s")
    raw["link"]["datarate"] = "100 kB/s"                # 20 nodes x 10 kB/s offered: twice the link
    res = run_scenario(_prepare(raw))
    s = res.summary
    assert s["in_flight_share"] > 0.3 and s["latency_p95_all_s"] is None
    overload = [w for w in s["warnings"] if w.startswith("overload: uplink utilisation")]
    unfinished = [w for w in s["warnings"] if w.startswith("unfinished:")]
    assert len(overload) == 1 and len(unfinished) == 1 and "busiest station: uplink" in unfinished[0]
    assert f"({s['in_flight_share']:.1%})" in unfinished[0]
    assert format_warnings(s)[0].startswith("warning: overload: uplink")
    json.loads(json_text(s), parse_constant=lambda c: pytest.fail(f"{c} in summary JSON"))


def test_a_light_run_has_no_warnings() -> None:
    from testbed.run.runner import run_scenario

    s = run_scenario(_prepare(base_scenario(duration="30 s", warmup="5 s"))).summary
    assert s["warnings"] == [] and s["in_flight_share"] == 0.0
    assert s["latency_p95_all_s"] == s["latency_p95_s"]


def test_pandas_over_the_in_window_column_reproduces_the_summary(tmp_path: Path) -> None:
    from testbed.run.runner import run_scenario, write_run

    raw = base_scenario(duration="30 s", warmup="5 s")
    res = run_scenario(_prepare(raw))
    write_run(res, raw, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert df["in_window"].dtype == bool and (~df["in_window"]).any()   # the warm-up's requests are marked
    mine = df[df.in_window & (df.status == "ok")]["latency_s"]
    assert len(mine) == summary["completed"] and df["in_window"].sum() == summary["requests"]
    for q in (50, 90, 95, 99):
        assert mine.quantile(q / 100) == summary[f"latency_p{q}_s"]
    assert mine.mean() == pytest.approx(summary["latency_mean_s"], rel=1e-12)
    assert df[df.status == "ok"]["latency_s"].quantile(0.95) != summary["latency_p95_s"]  # what the flag fixes


def _prepare(raw: dict) -> object:
    from testbed.run.prepare import prepare_dict

    return prepare_dict(raw, None)

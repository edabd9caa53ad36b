"""``testbed plot``: every figure of a two-field sweep is written with the table behind it, and the
tables agree with the sweep's summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed import errors
from testbed.run.plots import plot_sweep
from testbed.run.sweep import run_sweep
from tests.conftest import base_scenario


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = base_scenario(duration="15 s", warmup="2 s")
    raw["sweep"] = {"fleet.0.count": [10, 5], "link.datarate": ["1 MB/s", "2 MB/s"]}  # x not in sorted order
    out = tmp_path_factory.mktemp("sweep") / "out"
    run_sweep(raw, out, progress=False)
    return out


def test_every_figure_is_written_with_its_table(sweep_dir: Path) -> None:
    written = plot_sweep(sweep_dir)
    names = ["latency_cdf_fleet_0_count", "latency_cdf_link_datarate", "percentiles", "p95_heatmap",
             "breakdown", "utilisation"]
    assert written == [sweep_dir / "plots" / f"{n}.png" for n in names]
    for n in names:
        assert (sweep_dir / "plots" / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (sweep_dir / "plots" / f"{n}.csv").stat().st_size > 0


def test_tables_agree_with_the_summary(sweep_dir: Path) -> None:
    plot_sweep(sweep_dir)
    summary = pd.read_parquet(sweep_dir / "summary.parquet").sort_values("cell")
    pct = pd.read_csv(sweep_dir / "plots" / "percentiles.csv").sort_values("cell")
    assert np.allclose(pct["latency_p95_s"], summary["latency_p95_s"])
    assert (pct["latency_p50_s"] <= pct["latency_p95_s"]).all() and (pct["latency_p95_s"] <= pct["latency_p99_s"]).all()
    heat = pd.read_csv(sweep_dir / "plots" / "p95_heatmap.csv", index_col=0)
    assert list(heat.columns) == ["10", "5"] and list(heat.index) == ["1 MB/s", "2 MB/s"]  # sweep order
    cell = summary[(summary["sweep.fleet.0.count"] == 5) & (summary["sweep.link.datarate"] == "2 MB/s")]
    assert heat.loc["2 MB/s", "5"] == pytest.approx(1e3 * float(cell["latency_p95_s"].iloc[0]))
    cdf = pd.read_csv(sweep_dir / "plots" / "latency_cdf_link_datarate.csv")
    for _, grp in cdf.groupby("value"):
        assert list(grp["percentile"]) == list(range(101))
        assert grp["latency_ms"].is_monotonic_increasing
    util = pd.read_csv(sweep_dir / "plots" / "utilisation.csv")
    assert util["offered_per_s"].is_monotonic_increasing
    assert util["link_utilisation"].between(0, 1).all()


def test_a_directory_without_a_sweep_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(errors.TestbedError, match=r"holds no summary\.parquet; run `testbed sweep"):
        plot_sweep(tmp_path)

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


def _fill_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every band the figures draw (matplotlib's fill_between)."""
    from matplotlib.axes import Axes

    calls: list[int] = []
    real = Axes.fill_between

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", spy)
    return calls


def test_one_replication_draws_no_band_and_says_why(sweep_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.run.plots import sweep_warnings

    calls = _fill_calls(monkeypatch)
    plot_sweep(sweep_dir)
    assert calls == []
    assert sweep_warnings(sweep_dir) == [
        "no confidence intervals: 1 replication per cell (set replications: 3 or more for Student-t intervals and bands)"]
    summary = pd.read_parquet(sweep_dir / "summary.parquet")
    assert summary["latency_p95_s_ci_low"].isna().all() and summary["ci_method"].str.startswith("none").all()


def test_an_older_table_with_two_replications_gets_no_band(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep written before the three-replication rule holds two-replication intervals: not drawn."""
    raw = base_scenario(duration="6 s", warmup="1 s")
    raw["sweep"] = {"fleet.0.count": [2, 4]}
    raw["replications"] = 2
    out = tmp_path / "old"
    run_sweep(raw, out, progress=False)
    table = pd.read_parquet(out / "summary.parquet")
    for col in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
        table[f"{col}_ci_low"], table[f"{col}_ci_high"] = table[col] * 0.5, table[col] * 1.5
    table.to_parquet(out / "summary.parquet", index=False)
    calls = _fill_calls(monkeypatch)
    plot_sweep(out)
    assert calls == []


def test_three_replications_draw_one_band_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.run.plots import sweep_warnings

    raw = base_scenario(duration="6 s", warmup="1 s")
    raw["sweep"] = {"fleet.0.count": [2, 4]}
    raw["replications"] = 3
    out = tmp_path / "three"
    table = run_sweep(raw, out, progress=False)
    assert table["latency_p95_s_ci_low"].notna().all() and (table["latency_p95_s_ci_low"] <= table["latency_p95_s_ci_high"]).all()
    calls = _fill_calls(monkeypatch)
    plot_sweep(out)
    assert len(calls) == 3            # p50, p95 and p99: one line (no second field), one band each
    assert sweep_warnings(out) == []


def test_the_cdf_levels_off_at_the_completed_share(tmp_path: Path) -> None:
    raw = base_scenario(duration="10 s", warmup="1 s", drain="0.5 s")
    raw["sweep"] = {"link.datarate": ["1 MB/s", "60 kB/s"]}   # 20 nodes x 10 kB/s: the second is overloaded
    out = tmp_path / "over"
    table = run_sweep(raw, out, progress=False).set_index("sweep.link.datarate")
    plot_sweep(out)
    cdf = pd.read_csv(out / "plots" / "latency_cdf_link_datarate.csv").groupby("value")["completed_share"].first()
    for rate in ("1 MB/s", "60 kB/s"):
        assert cdf[rate] == pytest.approx(table.loc[rate, "completed"] / table.loc[rate, "requests"])
    assert cdf["1 MB/s"] == 1.0 and cdf["60 kB/s"] < 0.9

"""``testbed plot``: every figure of a two-field sweep is written with the table behind it, and the
tables agree with the sweep's summary; formats, words for labels, the breakdown's legend order, single
runs, comparisons, and the user's matplotlib backend left alone."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from testbed import errors
from testbed.run.capacity import parse_slo
from testbed.run.plots import field_label, format_value, plot_dirs, plot_sweep, run_figures, sweep_figures
from testbed.run.sweep import run_sweep
from tests.conftest import base_scenario


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = base_scenario(duration="15 s", warmup="2 s")
    raw["sweep"] = {"fleet.0.count": [10, 5], "link.datarate": ["1 MB/s", "2 MB/s"]}  # x not in sorted order
    raw["replications"] = 1
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
    raw["replications"] = 1
    out = tmp_path / "over"
    table = run_sweep(raw, out, progress=False).set_index("sweep.link.datarate")
    plot_sweep(out)
    cdf = pd.read_csv(out / "plots" / "latency_cdf_link_datarate.csv").groupby("value")["completed_share"].first()
    for rate in ("1 MB/s", "60 kB/s"):
        assert cdf[rate] == pytest.approx(table.loc[rate, "completed"] / table.loc[rate, "requests"])
    assert cdf["1 MB/s"] == 1.0 and cdf["60 kB/s"] < 0.9


# -- figures made for papers ---------------------------------------------------------------------------------
_DOTTED = re.compile(r"\b[a-z_]+\.(\d+\.)?[a-z_]+\b")  # fleet.0.count, link.datarate


def _texts(fig: Figure) -> list[str]:
    """Every label, title, tick label and legend entry of ``fig``."""
    fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    out = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    return [t for t in out if t]


def test_formats_dpi_and_tables(sweep_dir: Path, tmp_path: Path) -> None:
    written = plot_sweep(sweep_dir, formats=("svg", "pdf", "png"), dpi=100, dest=tmp_path)
    stems = {p.stem for p in written}
    assert {"percentiles", "breakdown", "utilisation", "p95_heatmap"} <= stems
    for stem in stems:
        assert (tmp_path / f"{stem}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.csv").stat().st_size > 0
    from PIL import Image

    w, _ = Image.open(tmp_path / "breakdown.png").size
    assert w == pytest.approx(350, abs=2)            # one paper column (3.5 in) at 100 dpi
    with pytest.raises(errors.ConfigError, match="--format"):
        plot_sweep(sweep_dir, formats=("jpg",), dest=tmp_path)


def test_labels_are_words_with_units_never_field_paths(sweep_dir: Path) -> None:
    figs = sweep_figures(sweep_dir, slo=parse_slo("p95 < 50 ms"))
    for name, (fig, _) in figs.items():
        texts = _texts(fig)
        dotted = [t for t in texts if _DOTTED.search(t) and not re.fullmatch(r"[\d.\s]+", t)]
        assert not dotted, (name, dotted)
    words = " ".join(_texts(figs["percentiles"][0]))
    assert "nodes in fleet 'cams'" in words and "1 MB/s" in words and "SLO p95 < 50 ms" in words
    assert field_label("sweep.link.datarate", None, ["500 kB/s", "2 MB/s"]) == "uplink data rate (MB/s)"
    assert field_label("sweep.link.datarate_bytes_per_s") == "uplink data rate (B/s)"
    assert field_label("sweep.fleet.0.count", {"fleet": [{"name": "cameras"}]}) == "nodes in fleet 'cameras'"
    assert format_value("sweep.server.batching.max_delay", "0.002") == "2 ms"
    assert "." not in field_label("sweep.link.csma.cw_min")


def test_breakdown_legend_follows_the_stack_and_shows_the_p95(sweep_dir: Path) -> None:
    from matplotlib.container import BarContainer

    fig, table = sweep_figures(sweep_dir)["breakdown"]
    assert fig.get_figwidth() == pytest.approx(3.5)
    assert set(table["view"]) == {"mean", "p94-p96"}
    axes = fig.axes
    assert len(axes) == 2                               # mean and near-p95 composition
    stack = [c.get_label() for c in axes[0].containers if isinstance(c, BarContainer)]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == stack and stack[0] in ("node queue", "head")
    assert all(t.get_rotation() == 0 for t in axes[0].get_yticklabels())
    colours = [c.patches[0].get_facecolor() for c in axes[0].containers]
    assert all(a != b for a, b in itertools.pairwise(colours))     # neighbours differ
    near = table[table["view"] == "p94-p96"].drop(columns=["cell", "view"]).sum(axis=1)
    p95 = pd.read_parquet(sweep_dir / "summary.parquet").sort_values("cell")["latency_p95_s"]
    assert near.to_numpy() == pytest.approx(p95.to_numpy(), rel=0.05)   # the stages of the p95 requests


def test_accuracy_scatter_only_when_a_model_field_was_swept(sweep_dir: Path) -> None:
    assert "accuracy_payload_latency" not in sweep_figures(sweep_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from testbed.cli import main

    d = tmp_path_factory.mktemp("runs")
    fast = base_scenario(duration="6 s", warmup="1 s")
    slow = base_scenario(duration="6 s", warmup="1 s", drain="0.5 s")
    slow["link"]["datarate"] = "150 kB/s"              # 20 nodes x 10 kB/s: overloaded
    for name, raw in (("fast", fast), ("slow", slow)):
        (d / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        assert main(["run", str(d / f"{name}.yaml"), "--out", str(d / name)]) == 0
    return d / "fast", d / "slow"


def test_single_run_figures(runs: tuple[Path, Path], tmp_path: Path) -> None:
    figs = run_figures(runs[1], slo=parse_slo("p99 < 1 s"))
    assert list(figs) == ["latency_cdf", "breakdown", "timeline"]
    cdf = figs["latency_cdf"][1]
    assert cdf["completed_share"].iloc[0] < 0.9                  # overloaded: the CDF levels off below 1
    legend = " ".join(t.get_text() for lg in figs["latency_cdf"][0].legends for t in lg.get_texts())
    assert "not completed" in legend and "levels off" in legend and "SLO p99 < 1000 ms" in legend
    timeline = figs["timeline"][1]
    assert {"in_node", "in_uplink", "in_server", "in_downlink", "busy_uplink"} <= set(timeline.columns)
    assert timeline["busy_uplink"].iloc[len(timeline) // 2] > 0.95   # the saturated link
    assert timeline["in_uplink"].iloc[-5:].mean() > timeline["in_uplink"].iloc[:5].mean()  # its queue grows
    written = plot_dirs([runs[0]], formats=("png", "svg"), dest=tmp_path)
    assert {p.name for p in written} == {f"{n}.{f}" for n in ("latency_cdf", "breakdown", "timeline")
                                         for f in ("png", "svg")}


def test_two_runs_and_two_sweeps_are_overlaid(runs: tuple[Path, Path], sweep_dir: Path, tmp_path: Path) -> None:
    written = plot_dirs(list(runs), labels=["fast", "slow"], dest=tmp_path / "runs")
    assert [p.name for p in written] == ["latency_cdf.png"]
    table = pd.read_csv(tmp_path / "runs" / "latency_cdf.csv")
    shares = table.groupby("run")["completed_share"].first()
    assert shares["fast"] == 1.0 and shares["slow"] < 0.9
    written = plot_dirs([sweep_dir, sweep_dir], labels=["a", "b"], dest=tmp_path / "sweeps")
    assert [p.name for p in written] == ["percentiles.png"]
    assert set(pd.read_csv(tmp_path / "sweeps" / "percentiles.csv")["sweep"]) == {"a", "b"}
    with pytest.raises(errors.ConfigError, match="all runs or all sweeps"):
        plot_dirs([runs[0], sweep_dir])
    with pytest.raises(errors.ConfigError, match="--label"):
        plot_dirs(list(runs), labels=["only one"])


def test_the_backend_is_never_switched(runs: tuple[Path, Path]) -> None:
    """Drawing in a fresh interpreter whose backend is not Agg leaves it as it was (Jupyter's inline)."""
    code = ("import matplotlib; matplotlib.use('svg'); before = matplotlib.get_backend(); "
            f"import testbed.run.plots as p; figs = p.run_figures({str(runs[0])!r}); "
            "import sys; sys.exit(0 if matplotlib.get_backend() == before == 'svg' and 'matplotlib.pyplot' "
            "not in sys.modules else 1)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    before = matplotlib.get_backend()
    run_figures(runs[0])
    assert matplotlib.get_backend() == before


def test_plot_command(runs: tuple[Path, Path], sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    assert main(["plot", str(runs[0]), "--format", "svg", "--slo", "p95 < 100 ms"]) == 0
    assert (runs[0] / "plots" / "latency_cdf.svg").exists()
    assert main(["plot", str(runs[0]), str(runs[1]), "--label", "a", "--label", "b"]) == 0
    assert (runs[0] / "plots" / "vs-slow" / "latency_cdf.png").exists()
    capsys.readouterr()
    assert main(["plot", str(sweep_dir), "--slo", "p95 is small"]) == 2
    assert main(["plot", str(sweep_dir), "--dpi", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 2 and "--slo" in err and "--dpi" in err


def test_compare_shows_each_runs_unfinished_share(runs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from testbed.cli import main

    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "c"),
                 "--label-a", "fast", "--label-b", "slow"]) == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert r["unfinished_share_a"] == 0.0 and 0.1 < r["unfinished_share_b"] < 1
    assert r["completed_b"] < r["created_b"]
    assert f"slow: {r['completed_b']:,} of {r['created_b']:,}" in out and f"{r['unfinished_share_b']:.1%}" in out
    cdf = pd.read_csv(tmp_path / "c" / "latency_cdf.csv")
    top = cdf.groupby("run")["cdf"].max()
    assert top["fast"] == pytest.approx(1.0) and top["slow"] == pytest.approx(1 - r["unfinished_share_b"])


def test_a_run_with_corrupted_frames_gets_agreement_by_corruption(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """The corruption figure's table is the summary's breakdown (``corruption_breakdown``) of the records."""
    import shutil

    from testbed.core.metrics.corruptions import corruption_breakdown
    from testbed.run.plots import load_run_dir

    run = tmp_path / "corrupted"
    shutil.copytree(runs[0], run)
    rec = pd.read_parquet(run / "requests.parquet")
    rng = np.random.default_rng(2)
    rec["corruption"] = rng.choice(["none", "fog", "gaussian_noise"], len(rec))
    rec["severity"] = np.where(rec["corruption"] == "none", 0, rng.integers(1, 6, len(rec)))
    rec["agree"] = rng.integers(0, 2, len(rec)).astype(float)
    rec["agree_clean"] = rng.integers(0, 2, len(rec)).astype(float)
    rec.to_parquet(run / "requests.parquet")
    figs = run_figures(run)
    assert "corruption" in figs
    table = figs["corruption"][1]
    loaded = load_run_dir(run)
    expect = pd.DataFrame(corruption_breakdown(loaded.records, loaded.window))
    pd.testing.assert_frame_equal(table, expect)
    labels = [t.get_text() for t in figs["corruption"][0].axes[0].get_yticklabels()]
    assert {lab.split(" ")[0] for lab in labels} == {"none", "fog", "gaussian_noise"}

"""The notebook API (``import testbed.api as tb``; its names also on ``testbed``) and the example notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, base_scenario


def test_importing_testbed_stays_light_and_exposes_the_api():
    code = ("import sys, testbed; import testbed.api as tb; assert testbed.simulate is tb.run; "
            "assert testbed.load_sweep is tb.load_sweep and testbed.Run is tb.Run; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # never torch, and matplotlib only when a figure is drawn
    light = subprocess.run([sys.executable, "-c", "import sys, testbed; print('torch' in sys.modules, "
                            "'testbed.api' in sys.modules)"], capture_output=True, text=True, check=True).stdout
    assert light.strip() == "False False"


def test_run_in_memory_writes_nothing_and_matches_the_cli(tmp_path, monkeypatch):
    import testbed.api as tb

    monkeypatch.chdir(tmp_path)
    raw = base_scenario(duration="8 s", warmup="1 s")
    r = tb.run(raw, fleet__0__count=5, **{"link.datarate": "2 MB/s"})
    assert list(tmp_path.iterdir()) == []
    assert r.path is None and r.scenario["fleet"][0]["count"] == 5 and r.scenario["link"]["datarate"] == "2 MB/s"
    assert r.window == (1.0, 8.0) and isinstance(r.warnings, list)
    assert r.summarise()["latency_p95_s"] == r.summary["latency_p95_s"]
    assert list(r.queues.columns)[:3] == ["station", "servers", "in_station_mean"]
    figs = r.figures()
    assert set(figs) == {"latency_cdf", "timeline"}

    from testbed.cli import main

    f = tmp_path / "s.yaml"
    import yaml

    f.write_text(yaml.safe_dump(raw))
    assert main(["run", str(f), "--out", str(tmp_path / "cli"), "--set", "fleet.0.count=5",
                 "--set", "link.datarate=2 MB/s"]) == 0
    loaded = tb.load_run(tmp_path / "cli")
    assert loaded.summary["latency_p95_s"] == r.summary["latency_p95_s"]
    assert loaded.summary["completed"] == r.summary["completed"]
    pd.testing.assert_frame_equal(loaded.queues, r.queues, check_dtype=False)
    from_file = tb.run(f, fleet__0__count=5, link__datarate="2 MB/s")
    assert from_file.summary["latency_p95_s"] == r.summary["latency_p95_s"]


def test_load_run_and_summarise(tmp_path):
    import testbed.api as tb

    r = tb.run(base_scenario(duration="8 s", warmup="1 s"), out=tmp_path / "r")
    assert r.path == tmp_path / "r" and (tmp_path / "r" / "queues.csv").is_file()
    back = tb.load_run(tmp_path / "r")
    assert "in_window" in back.records and "tx_s" in back.records      # stage durations included
    w = back.in_window()
    assert len(w) == back.summary["requests"]
    s = tb.summarise(back.records, back.window)
    for key in ("requests", "completed", "latency_p50_s", "latency_p95_s", "latency_p95_all_s"):
        assert s[key] == back.summary[key]
    assert set(back.figures("p95 < 100 ms")) >= {"latency_cdf", "timeline"}
    from matplotlib.figure import Figure

    assert isinstance(tb.cdf([r, back], ["memory", "disk"]), Figure)


def test_load_sweep(tmp_path):
    import testbed.api as tb
    from testbed.run.sweep import run_sweep

    raw = base_scenario(duration="6 s", warmup="1 s")
    raw["sweep"] = {"link.datarate": ["1 MB/s", "2 MB/s"]}
    raw["replications"] = 3
    run_sweep(raw, tmp_path / "sw", progress=False)
    sw = tb.load_sweep(tmp_path / "sw")
    assert sw.fields == ["sweep.link.datarate"] and len(sw.table) == 6
    cells = sw.cells
    assert list(cells["sweep.link.datarate"]) == ["1 MB/s", "2 MB/s"]
    assert list(cells["sweep.link.datarate_bytes_per_s"]) == [1e6, 2e6]
    assert cells.loc[0, "latency_p95_s"] == pytest.approx(sw.table[sw.table["cell"] == 0]["latency_p95_s"].mean())
    one = sw.run(1, 2)
    assert one.summary["replication"] == 2 and len(sw.records(1, 2)) == len(one.records)
    assert sw.warnings == [] and sw.scenario["sweep"] == raw["sweep"]
    assert "percentiles" in sw.figures()
    from testbed.errors import TestbedError

    with pytest.raises(TestbedError, match="cell 7"):
        sw.run(7)


def _code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    """With nbclient and ipykernel installed the notebook runs in a kernel; otherwise its code cells
    run in order in one fresh namespace (working directory: a temporary folder)."""
    notebook = ROOT / "docs" / "notebook.ipynb"
    monkeypatch.chdir(tmp_path)
    try:
        import ipykernel  # type: ignore[import-not-found]  # noqa: F401
        import nbclient  # type: ignore[import-not-found]
        import nbformat  # type: ignore[import-not-found]
    except ImportError:
        import matplotlib

        matplotlib.use("Agg")  # headless; the API itself never switches the backend
        namespace: dict[str, object] = {"__name__": "__notebook__"}
        for source in _code_cells(notebook):
            exec(compile(source, str(notebook), "exec"), namespace)
        from matplotlib.figure import Figure

        assert isinstance(namespace["fig"], Figure)
    else:
        nb = nbformat.read(notebook, as_version=4)
        nbclient.NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "notebook-run" / "summary.json").is_file()

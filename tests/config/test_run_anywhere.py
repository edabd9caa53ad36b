"""Issue 11: a device profile saved in ``nodes/`` beside a scenario passed ``testbed validate`` but
``testbed run`` from another directory failed with "unknown device profile". Validate, run and
sweep now open the scenario the same way (:func:`testbed.run.prepare.prepare`), relative to the
scenario's directory, and read each file once per run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import testbed.config.files as files_module
from testbed.cli import main
from tests.conftest import base_scenario

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """tmp/nodes/mycam.yaml (a renamed copy of pi4b), tmp/nestquant/*.modes.json, tmp/trace.csv
    and tmp/s.yaml using them by relative name; the working directory is somewhere else."""
    (tmp_path / "nodes").mkdir()
    prof = yaml.safe_load((REPO / "nodes" / "pi4b.yaml").read_text())
    prof["name"] = "mycam"
    (tmp_path / "nodes" / "mycam.yaml").write_text(yaml.safe_dump(prof))
    (tmp_path / "nestquant").mkdir()
    shutil.copy(REPO / "scenarios" / "nestquant" / "digits_int8_int4.modes.json", tmp_path / "nestquant" / "m.json")
    (tmp_path / "trace.csv").write_text("time_s,node\n" + "".join(f"{0.1 * i:.1f},{i % 2}\n" for i in range(100)))
    raw = base_scenario(duration="10 s", warmup="1 s")
    raw["fleet"][0].update(device="mycam", count=4, nestquant={"modes": "nestquant/m.json", "battery_j": 50})
    raw["fleet"].append({"name": "replay", "count": 2, "device": "mycam", "head": "5 ms",
                         "arrivals": {"kind": "trace", "file": "trace.csv"}})
    raw["sweep"] = {"fleet.0.count": [2, 3]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


def test_validate_run_and_sweep_agree_from_another_directory(project, capsys):
    scenario = str(project / "s.yaml")
    assert main(["validate", scenario]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["run", scenario, "--out", str(project / "run")]) == 0
    df = pd.read_parquet(project / "run" / "requests.parquet")
    assert set(df["group"]) == {0, 1} and (df["status"] == "ok").any()
    summary = json.loads((project / "run" / "summary.json").read_text())
    assert "nestquant_accuracy" in summary and "mean_energy_j" in summary  # modes file and profile power
    assert main(["sweep", scenario, "--out", str(project / "sweep"), "--quiet"]) == 0
    table = pd.read_parquet(project / "sweep" / "summary.parquet")
    assert list(table["sweep.fleet.0.count"]) == [2, 2, 2, 3, 3, 3]  # 3 replications: a sweep's default
    inputs = json.loads((project / "sweep" / "inputs.json").read_text())
    assert set(inputs) == {str((project / p).resolve()) for p in ("nodes/mycam.yaml", "nestquant/m.json",
                                                                  "trace.csv")} | {str(REPO / "nodes" / "h100.yaml")}


def test_each_file_is_read_once_per_run(project, monkeypatch):
    reads: list[str] = []
    original = files_module.Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(files_module.Path, "read_bytes", counting)
    assert main(["run", str(project / "s.yaml"), "--json"]) == 0
    # the scenario itself is read through the same size-capped reader (once, like every file it names)
    assert sorted(reads) == ["h100.yaml", "m.json", "mycam.yaml", "s.yaml", "trace.csv"]


def test_a_sweep_with_a_bad_cell_writes_nothing(project, capsys):
    raw = yaml.safe_load((project / "s.yaml").read_text())
    raw["sweep"] = {"fleet.1.device": ["mycam", "nope"]}
    (project / "bad.yaml").write_text(yaml.safe_dump(raw))
    out = project / "bad"
    for argv in (["sweep", str(project / "bad.yaml"), "--out", str(out)], ["validate", str(project / "bad.yaml")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "fleet.1.device: got 'nope'" in err and "sweep cell 1: fleet.1.device='nope'" in err
    assert not out.exists()


def test_a_changed_input_file_makes_a_different_sweep(project, capsys):
    out = str(project / "sw")
    assert main(["sweep", str(project / "s.yaml"), "--out", out, "--quiet"]) == 0
    assert main(["sweep", str(project / "s.yaml"), "--out", out, "--quiet"]) == 0  # same inputs: resumes
    with (project / "trace.csv").open("a") as f:
        f.write("9.9,0\n")
    assert main(["sweep", str(project / "s.yaml"), "--out", out, "--quiet"]) == 2
    assert "input files changed" in capsys.readouterr().err

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from testbed.cli import main
from tests.conftest import base_scenario


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base_scenario(duration="20 s")))
    return path


def test_run_writes_results(tmp_path, scenario_file, capsys):
    out = tmp_path / "out"
    assert main(["run", str(scenario_file), "--out", str(out), "--set", "fleet.0.count=5"]) == 0
    printed = capsys.readouterr().out
    assert "latency_p95_s" in printed and "station" in printed
    df = pd.read_parquet(out / "requests.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] == int(((df.created_s >= 5) & (df.created_s < 20)).sum())
    ok = df[df.status == "ok"]
    assert {"latency_s", "link_wait_s", "tx_s", "server_queue_s", "batch_wait_s", "tail_s"} <= set(df.columns)
    assert (ok["latency_s"] - (ok["finished_s"] - ok["created_s"])).abs().max() < 1e-12
    assert yaml.safe_load((out / "scenario.yaml").read_text())["fleet"][0]["count"] == 5
    assert (out / "queues.csv").exists()
    assert not list(out.glob(".*.tmp"))


def test_run_refuses_to_overwrite(tmp_path, scenario_file, capsys):
    out = tmp_path / "out"
    assert main(["run", str(scenario_file), "--out", str(out)]) == 0
    before = (out / "summary.json").read_bytes()
    assert main(["run", str(scenario_file), "--out", str(out), "--set", "seed=9"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before
    assert main(["run", str(scenario_file), "--out", str(out), "--set", "seed=9", "--force"]) == 0
    assert (out / "summary.json").read_bytes() != before


def test_run_json(scenario_file, capsys):
    assert main(["run", str(scenario_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scenario"] == "test"


@pytest.mark.parametrize("text,needle", [
    ("name: [\n", "not valid YAML"),
    ("LINK", "unknown key"),
    ("NEG", "link.datarate"),
])
def test_user_mistakes_are_one_line_without_traceback(tmp_path, text, needle):
    raw = base_scenario()
    if text == "LINK":
        raw["link"]["speed"] = "5 MB/s"
        text = yaml.safe_dump(raw)
    elif text == "NEG":
        raw["link"]["datarate"] = "-5 MB/s"
        text = yaml.safe_dump(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for cmd in ("validate", "run"):
        proc = subprocess.run([sys.executable, "-m", "testbed.cli", cmd, str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_validate_ok(scenario_file, capsys):
    assert main(["validate", str(scenario_file)]) == 0
    assert "ok" in capsys.readouterr().out

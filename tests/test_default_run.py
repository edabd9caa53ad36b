"""`testbed run` without a file runs the pretrained EfficientNet-Lite0 on the bundled photos and prints
agreement measured with those weights (the README's first command)."""

from __future__ import annotations

import json

import pytest

from testbed.cli import main
from testbed.config.load import load_scenario


def test_default_scenario_uses_real_weights_and_photos() -> None:
    sc, _ = load_scenario()
    assert sc.model is not None and sc.model.name == "efficientnet_lite0" and sc.model.weights == "pretrained"
    assert sc.dataset is not None and sc.dataset.kind == "photos"


@pytest.mark.zoo
def test_default_run_prints_agreement_from_pretrained_weights(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--set", "duration=10 s", "--set", "warmup=1 s",
                 "--set", "dataset.limit=8", "--set", "fleet.0.count=5"]) == 0
    printed = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert "note" not in summary and "random weights" not in printed.out + printed.err
    assert summary["agreement"] is not None and 0.5 <= summary["agreement"] <= 1.0
    assert summary["agreement_top5"] >= summary["agreement"]
    assert any(line.split()[:1] == ["agreement"] for line in printed.out.splitlines())
    assert 5_000 < summary["mean_payload_bytes"] < 20_000  # 80x14x14 at 8 bits, zstd: real feature maps

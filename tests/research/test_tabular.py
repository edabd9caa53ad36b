"""Bitwise soft quantization (arXiv:2603.05172) on scikit-learn's tables, regression included: the
diabetes target, MSE/R^2, the untrained uniform grid, the rows through real payloads, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from testbed.cli import main
from testbed.research.methods.softquant import load_softquant, save_uniform_grid, tabular_rows
from testbed.research.nets import evaluate_logits, is_regression_table, tabular_tensors, task_loss
from testbed.research.repro import reproducible


def test_diabetes_is_a_standardized_regression_table() -> None:
    xtr, ytr, xte, yte = tabular_tensors("diabetes", seed=0)
    assert is_regression_table("diabetes") and not is_regression_table("wine")
    assert xtr.shape[1] == 10 and len(xtr) + len(xte) == 442
    assert ytr.dtype == torch.float32 and yte.dtype == torch.float32
    assert abs(float(ytr.mean())) < 1e-5 and float(ytr.std()) == pytest.approx(1.0, abs=1e-5)
    assert tabular_tensors("wine", seed=0)[1].dtype == torch.int64  # classification labels stay integers


def test_regression_loss_and_metrics() -> None:
    y = torch.tensor([1.0, -1.0, 2.0, 0.0])
    assert float(task_loss(y.unsqueeze(1) + 1, y, None)) == pytest.approx(1.0)
    perfect = evaluate_logits(y.unsqueeze(1), y, None)
    assert perfect == {"mse": 0.0, "r2": 1.0}
    mean = evaluate_logits(torch.full((4, 1), float(y.mean())), y, None)
    assert mean["r2"] == pytest.approx(0.0, abs=1e-6) and mean["mse"] == pytest.approx(float(y.var(unbiased=False)))


def test_uniform_grid_has_evenly_spaced_thresholds(tmp_path: Path) -> None:
    x = torch.linspace(-1, 1, 201).unsqueeze(1).repeat(1, 3)
    model = torch.nn.Linear(3, 1)
    save_uniform_grid(model, x, 3, str(tmp_path / "g.pt"))
    q, state, cfg = load_softquant(str(tmp_path / "g.pt"))
    t = q.thresholds().detach()
    gaps = t[..., 1:] - t[..., :-1]
    assert cfg["uniform_grid"] and t.shape == (3, 7)
    assert torch.allclose(gaps, gaps[..., :1].expand_as(gaps), atol=1e-5)
    assert torch.equal(state["weight"], model.weight.detach())  # the model is stored unchanged


def test_diabetes_rows_through_real_payloads(tmp_path: Path) -> None:
    (tmp_path / "again").mkdir()
    with reproducible(1):
        rows = tabular_rows("diabetes", 0, str(tmp_path), bits=(2,))
        again = tabular_rows("diabetes", 0, str(tmp_path / "again"), bits=(2,))
    assert [r.method for r in rows] == ["float32 features (no codec)", "uniform quantize", "uniform per-feature grid",
                                        "bitwise soft quantization"]
    for r in rows:
        assert r.section == "tabular:diabetes" and r.accuracy is None and r.agreement is None
        assert math.isfinite(r.extra["mse"]) and r.extra["mse"] > 0 and r.extra["r2"] < 1
    assert rows[0].body_bytes == 4 * 10
    assert rows[2].body_bytes == rows[3].body_bytes == math.ceil(10 * 2 / 8)  # exactly 2 bits per feature
    assert [r.extra["mse"] for r in rows] == [r.extra["mse"] for r in again]  # a seed fixes every number


def test_train_softquant_on_diabetes_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sq.pt"
    assert main(["train", "softquant", "--dataset", "tabular:diabetes", "--bits", "3", "--epochs", "2",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    m = summary["metrics"]
    assert set(m) == {"mse", "r2", "float_mse", "float_r2"} and m["mse"] > 0 and m["float_mse"] > 0
    assert load_softquant(str(out))[0].bits == 3


def test_research_eval_tabular_diabetes_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--seeds`` runs each seed into seed-N and aggregates; ``--tabular diabetes`` gives MSE rows."""
    out = tmp_path / "r"
    assert main(["research-eval", "--method", "base", "--method", "softquant", "--limit", "60", "--epochs", "1",
                 "--tabular", "diabetes", "--seeds", "0,1", "--out", str(out), "--quiet"]) == 0
    blob = json.loads((out / "results.json").read_text())
    assert blob["seeds"] == [0, 1] and set(blob["per_seed"]) == {"0", "1"}
    assert (out / "seed-0" / "table.md").is_file() and (out / "seed-1" / "results.json").is_file()
    rows = {(r["section"], r["method"], r["bits"]): r for r in blob["rows"]}
    sq = rows[("tabular:diabetes", "bitwise soft quantization", "6")]
    per = [r["extra"]["mse"] for s in ("0", "1") for r in blob["per_seed"][s]
           if r["section"] == "tabular:diabetes" and r["method"] == "bitwise soft quantization" and r["bits"] == "6"]
    assert sq["seeds"] == [0, 1] and sq["mse"] == pytest.approx(sum(per) / 2)
    assert sq["mse_sd"] == pytest.approx(abs(per[0] - per[1]) / math.sqrt(2))
    f = rows[("split", "float32 (no codec)", "32")]
    assert f["accuracy_sd"] is not None and len(f["accuracy_per_seed"]) == 2
    table = (out / "table.md").read_text()
    assert "`testbed research-eval --method base --method softquant --limit 60 --seeds 0,1 --epochs 1 --tabular " \
           "diabetes --quiet --out" in table
    assert "| tabular:diabetes | bitwise soft quantization | 6 |" in table

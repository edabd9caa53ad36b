"""A seed fixes every number: the same training run twice gives bit-identical checkpoints and metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from testbed.cli import main
from testbed.research.repro import PINNED_ENV, fingerprint, pin_cpu_isa, reproducible


def _blob(path: Path) -> dict[str, object]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(blob, dict)
    return blob


def _train_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str, args: list[str]
                 ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    summaries, blobs = [], []
    for run in ("a", "b"):
        out = tmp_path / f"{method}_{run}.pt"
        assert main(["train", method, *args, "--quiet", "--out", str(out)]) == 0
        summary = json.loads(capsys.readouterr().out)
        summary.pop("checkpoint")
        summary["codec"] = json.dumps(summary.get("codec")).replace(str(out), "CKPT")
        summaries.append(summary)
        blobs.append(_blob(out))
    return summaries, blobs


def test_fingerprint_tells_bits_apart() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "loss": [0.5, 0.25]}
    assert fingerprint(a) == fingerprint({"loss": [0.5, 0.25], "w": torch.tensor([1.0, 2.0])})
    assert fingerprint(a) != fingerprint({"w": torch.tensor([1.0, 2.0 + 2 ** -20]), "loss": [0.5, 0.25]})
    assert fingerprint(a) != fingerprint({"w": torch.tensor([1.0, 2.0], dtype=torch.float64), "loss": [0.5, 0.25]})


def test_reproducible_restores_settings() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    with reproducible(1):
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == before


def test_pin_cpu_isa_keeps_user_values() -> None:
    env = {"ONEDNN_MAX_CPU_ISA": "SSE41"}
    pin_cpu_isa(env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert all(env[k] == v for k, v in PINNED_ENV.items() if k != "ONEDNN_MAX_CPU_ISA")
    assert set(PINNED_ENV) <= set(os.environ) or "torch" in __import__("sys").modules


@pytest.mark.zoo
def test_train_twice_digits_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QCNet (tail fine-tuning) and soft quantization on digits: checkpoints and summaries equal."""
    base = tmp_path / "base.pt"
    assert main(["train", "base", "--epochs", "1", "--limit", "90", "--quiet", "--out", str(base)]) == 0
    capsys.readouterr()
    common = ["--weights", str(base), "--limit", "90", "--seed", "3", "--epochs", "1"]
    for method, extra in (("qcnet", []), ("softquant", ["--bits", "2"])):
        summaries, blobs = _train_twice(tmp_path, capsys, method, [*common, *extra])
        assert summaries[0] == summaries[1]
        assert fingerprint(blobs[0]) == fingerprint(blobs[1])
        assert summaries[0]["reproducible"]["deterministic_algorithms"] is True  # type: ignore[index]


@pytest.mark.zoo
def test_train_twice_real_model_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The pretrained EfficientNet-Lite0 on photos, label-free (distilled): the autoencoder and the
    entropy bottleneck trained twice with one seed are bit-identical, another seed differs."""
    common = ["--model", "efficientnet_lite0", "--split", "stage4", "--dataset", "photos", "--limit", "12",
              "--epochs", "1"]
    for method, extra in (("autoencoder", ["--bits", "2", "--no-finetune-tail"]), ("entropy", [])):
        summaries, blobs = _train_twice(tmp_path, capsys, method, [*common, "--seed", "1", *extra])
        assert summaries[0] == summaries[1]
        assert fingerprint(blobs[0]) == fingerprint(blobs[1])
        other = tmp_path / f"{method}_seed2.pt"
        assert main(["train", method, *common, "--seed", "2", *extra, "--quiet", "--out", str(other)]) == 0
        capsys.readouterr()
        assert fingerprint(_blob(other)["state"]) != fingerprint(blobs[0]["state"])

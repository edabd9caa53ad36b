"""``testbed train`` end to end on a few digits (a one-epoch base net), and its user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.config.modes import NestQuantModes, modes_path
from testbed.split.codecs import parse_chain
from testbed.split.codecs.chain import decode_payloads


def test_train_base_augq_nestquant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.pt"
    assert main(["train", "base", "--epochs", "1", "--limit", "120", "--out", str(base)]) == 0
    capsys.readouterr()
    augq = tmp_path / "augq.pt"
    assert main(["train", "augq", "--weights", str(base), "--limit", "120", "--bits", "2", "--samples", "8",
                 "--intervals", "4", "--out", str(augq)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["codec"][0] == {"augq": {"checkpoint": str(augq)}}
    chain = parse_chain(summary["codec"])
    import torch

    x = torch.rand(3, 32, 8, 8)
    assert decode_payloads(chain.encode(x), chain, tuple(x.shape[1:])).shape == x.shape
    nq = tmp_path / "nq.pt"
    assert main(["train", "nestquant", "--weights", str(base), "--limit", "120", "--part-bits", "3",
                 "--no-adaptive", "--out", str(nq)]) == 0
    modes = NestQuantModes.load(modes_path(nq))
    assert modes.part_bits == 3 and modes.compute_scale == {"full": 1.0, "part": 3 / 8}
    assert 0.0 <= modes.accuracy["part"] <= 1.0 and modes.switch_bytes > 0


def test_train_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "autoencoder", "--weights", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights:") and "missing.pt" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "base", "--split", "layer9", "--epochs", "1", "--limit", "20",
                 "--out", str(tmp_path / "b.pt")]) == 2
    assert "split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "jpeg", "--out", "x.pt"])

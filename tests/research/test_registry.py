"""The research method registry: what `testbed train` and `testbed research-eval` loop over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import testbed.research
from testbed.cli import main
from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research import METHODS
from testbed.research.nets import SplitTask
from testbed.research.registry import TrainOptions
from testbed.research.train import train_method
from testbed.split.codecs import CODECS, parse_chain

PAPERS = {"autoencoder": "10.1109/ACCESS.2025.3579107", "qcnet": "10.1109/ACCESS.2025.3627072",
          "softquant": "2603.05172", "augq": "Applied Intelligence 2025", "nestquant": "2506.17870",
          "groupnl": "2506.12335", "entropy": "Balle et al., ICLR 2018"}


def test_registry_lists_the_five_methods_and_the_baseline() -> None:
    assert set(METHODS.names()) == {*PAPERS, "base"}
    for name, cite in PAPERS.items():
        assert cite in METHODS.get(name).title
    learned = {s.name for name in METHODS.names() for s in METHODS.get(name).stages}
    assert learned == {"autoencoder", "qcnet", "softquant", "augq", "entropy", "rans"}
    assert all(CODECS.get(n) is not None for n in learned)  # registered by the method's own module


def test_unknown_method_lists_the_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match="augq, autoencoder, base, entropy, groupnl, nestquant, qcnet, softquant") as info:
        train_method("jpeg", TrainOptions(out=str(tmp_path / "x.pt")))
    assert info.value.path == "method"


def test_an_option_of_another_method_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"an option of qcnet \(--epochs, --quantizer, --feature-epochs\)"):
        train_method("qcnet", TrainOptions(out=str(tmp_path / "x.pt")), {"tcl_max": 3.0})
    assert METHODS.get("augq").params({"bits": 2})["bits"] == 2
    assert METHODS.get("augq").params({})["bits"] == 4 and METHODS.get("softquant").params({})["bits"] == 2


def test_train_help_and_errors_enumerate_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ok:
        main(["train", "--help"])
    assert ok.value.code == 0
    out = capsys.readouterr().out
    for name in METHODS.names():
        assert f"  {name} " in out
        for opt in METHODS.get(name).options:
            assert opt.flag in out
    with pytest.raises(SystemExit) as bad:
        main(["train", "jpeg", "--out", "x.pt"])
    assert bad.value.code == 2
    assert "augq" in capsys.readouterr().err


def test_research_eval_help_enumerates_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["research-eval", "--help"])
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in METHODS.names()) and "--method" in out
    assert main(["research-eval", "--method", "jpeg", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --method: got 'jpeg'") and "nestquant" in err


def test_research_eval_runs_the_chosen_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["research-eval", "--method", "base", "--limit", "60", "--tabular", "", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["section"] for r in rows] == ["split"] * 5 + ["input"]
    assert rows[0]["method"] == "float32 (no codec)" and rows[0]["payload_bytes"] == 4 * 32 * 8 * 8
    assert "| split | plain quantize + dequantize | 1 |" in (tmp_path / "table.md").read_text()


def test_builtin_stages_declare_their_cost() -> None:
    chain = parse_chain("quantize:bits=2,zstd:level=3")
    assert chain.costs((64, 56, 56)) == [StageCost("element", "quantize"), StageCost("element", "pack"),
                                         StageCost("bytes", "zstd:level=3")]
    assert parse_chain("float16,lzma").costs((8,))[0] == StageCost("element", "float16")
    with pytest.raises(ValueError, match="kind"):
        StageCost("seconds", "x")  # type: ignore[arg-type]


def test_learned_stages_declare_their_cost_and_tail(tmp_path: Path, task: SplitTask) -> None:
    from testbed.research.methods.qcnet import QCNetConfig, train_qcnet
    from testbed.research.methods.softquant import SoftQuantConfig, train_softquant

    qc = tmp_path / "qc.pt"
    train_qcnet(task, QCNetConfig(epochs=1), out=str(qc))
    chain = parse_chain([{"qcnet": {"checkpoint": str(qc)}}, {"binarize": {}}])
    cost = chain.costs((32, 8, 8))[0]
    # QCNet: nothing on the node; two residual blocks of 3x3 convs 32 -> 32 -> 32 on 8x8 on the server
    assert cost.kind == "macs" and cost.encode_macs == 0 and cost.decode_macs == 2 * 2 * 32 * 32 * 9 * 64
    tuned = chain.tensor_stages[0].tuned_tail("tiny_resnet", "layer1", task.tail)
    assert tuned is not None and tuned is not task.tail
    x = task.features(task.x_test)
    with torch.no_grad():
        assert not torch.equal(tuned(x), task.tail(x))  # the fine-tuned weights, not the model's own
    assert chain.tensor_stages[0].tuned_tail("tiny_resnet", "layer2", task.tail) is None
    sq = tmp_path / "sq.pt"
    train_softquant(task.tail, task.features(task.x_train), task.y_train, SoftQuantConfig(bits=2, epochs=1),
                    out=str(sq))
    stage = parse_chain([{"softquant": {"checkpoint": str(sq)}}]).tensor_stages[0]
    assert stage.cost((32, 8, 8)) == StageCost("macs", "softquant", 3 * 2048.0, 2048.0)
    assert stage.tuned_tail("tiny_resnet", "layer1", task.tail) is None  # no tail.* in a softquant checkpoint


def test_the_codec_kit_loads_without_its_plug_ins() -> None:
    code = ("import sys, testbed.split.codecs as c; "
            "assert 'testbed.research' not in sys.modules and 'autoencoder' not in c.codec_names(); "
            "import testbed.research; assert 'autoencoder' in c.codec_names(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_entry_point_loads_every_method_module_once() -> None:
    before = len(CODECS)
    assert testbed.research.methods.load_all() == ["augq", "autoencoder", "base", "entropy", "groupnl", "nestquant",
                                                  "qcnet", "softquant"]
    assert len(CODECS) == before  # a second load registers nothing twice

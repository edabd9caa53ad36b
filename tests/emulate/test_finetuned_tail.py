"""A learned codec's fine-tuned tail on the emulated server (issue 11: emulation decoded learned
codecs with the base tail, so a QCNet checkpoint predicted different classes emulated than
simulated). A QCNet checkpoint is trained tiny here on ResNet-18 (random weights) split after the
stem; the emulated server must run the checkpoint's tail and answer as the pipeline does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from emu_helpers import emu_scenario

from testbed.research.common import seeded
from testbed.research.methods.qcnet import QCNetConfig, train_qcnet
from testbed.research.nets import SplitTask
from testbed.run.prepare import prepare_dict
from testbed.split.models import load_model, split_loaded


def _checkpoint(path: Path) -> Path:
    head, tail = split_loaded("resnet18", load_model("resnet18", "random", 0), "stem")
    head.eval(), tail.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 32, 32, generator=g)
    y = torch.randint(0, 1000, (12,), generator=g)
    task = SplitTask("resnet18", "stem", head, tail, x[:8], y[:8], x[8:], y[8:], "labels", "random")
    with seeded(0):
        train_qcnet(task, QCNetConfig(hidden=4, blocks=1, epochs=2, batch_size=4, tail_lr=5e-2), out=str(path))
    return path


def test_emulated_server_runs_the_finetuned_tail_and_answers_as_the_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.bridge.cache import pipeline_table
    from testbed.emulate.compute import NodeCompute, ServerCompute, top1_first

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = _checkpoint(tmp_path / "qc.pt")
    raw = emu_scenario(model={"name": "resnet18", "weights": "random", "split": "stem", "seed": 0},
                       codec=[{"qcnet": {"checkpoint": str(ckpt)}}, {"binarize": {}}, {"zlib": {}}],
                       dataset={"kind": "samples", "limit": 2})
    del raw["server"]["service"]
    res = prepare_dict(raw)
    server = ServerCompute(res, "cpu")
    tuned = {k[len("tail."):]: v for k, v in torch.load(ckpt, weights_only=True)["state"].items()
             if k.startswith("tail.")}
    state = server.tail.state_dict()
    assert all(torch.equal(state[k], v) for k, v in tuned.items())              # the checkpoint's tail
    _, base = split_loaded("resnet18", load_model("resnet18", "random", 0), "stem")
    assert any(not torch.equal(base.state_dict()[k], v) for k, v in tuned.items())  # not the base one
    node = NodeCompute(res)
    payloads = [node.encode(node.head_features(i)) for i in range(2)]
    emulated = server.run_tail([server.decode(p) for p in payloads])
    table = pipeline_table(res.scenario).images.set_index("image")
    assert emulated[:, 0].tolist() == [int(table.loc[i, "prediction"]) for i in range(2)]
    cached = table.loc[[0, 1], [f"top5_{j}" for j in range(5)]].to_numpy()   # and the same five best
    assert emulated.tolist() == top1_first(table.loc[[0, 1], "prediction"].to_numpy(), cached).tolist()

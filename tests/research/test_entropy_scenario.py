"""A scenario runs the learned entropy-coded bottleneck end to end: the pipeline sends real rANS
payloads, the node is charged the encoder's MACs and the rANS operations, the server the decoder's."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.bridge.cache import pipeline_table
from testbed.bridge.workload import workload_for
from testbed.config.load import scenario_from_dict
from testbed.config.profiles import load_profile
from testbed.config.resolve import resolve
from testbed.core.charges import codec_time
from testbed.research.methods.entropy import RANS_OPS_PER_SYMBOL, load_entropy
from testbed.research.train import TrainOptions, train_method
from testbed.run.runner import run_scenario

pytestmark = pytest.mark.zoo


def test_entropy_bottleneck_in_a_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "eb.pt"
    train_method("entropy", TrainOptions(out=str(ckpt), model="efficientnet_lite0", split="stage4", dataset="photos",
                                         limit=12, device="cpu"), {"epochs": 1, "feature_epochs": 2})
    codec = [{"entropy": {"checkpoint": str(ckpt)}}, {"rans": {"checkpoint": str(ckpt)}}]
    raw = {"duration": 5.0, "model": {"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage4"},
           "codec": codec,
           "dataset": {"kind": "photos", "limit": 4},
           "fleet": [{"count": 1, "device": "pi4b", "arrivals": {"kind": "periodic", "rate": 1.0}}],
           "link": {"model": "shared_fifo", "datarate": 5e6}, "server": {"device": "h100"}}
    root = Path(__file__).resolve().parents[2]
    res = resolve(scenario_from_dict(raw), root / "scenarios")
    table = pipeline_table(res.scenario)
    sizes = table.images["payload_bytes"].to_numpy()
    assert (sizes > 0).all() and (sizes < 80 * 14 * 14 * 4).all()  # real entropy-coded bytes, far below float32
    kinds = [(c.kind, c.key) for c in table.costs]
    assert kinds == [("macs", "entropy"), ("macs", "rans")]
    code_elements = int(load_entropy(str(ckpt)).config["code_channels"]) * 14 * 14
    assert table.costs[1].encode_macs == RANS_OPS_PER_SYMBOL * code_elements
    node, server = load_profile("pi4b", root / "nodes"), load_profile("h100", root / "nodes")
    enc = codec_time(node, table.costs, table.elements, table.serialized_bytes, "encode")
    dec = codec_time(server, table.costs, table.elements, table.serialized_bytes, "decode")
    assert node.mac_rate is not None
    assert enc == pytest.approx((table.costs[0].encode_macs + table.costs[1].encode_macs) / node.mac_rate.ops_per_s)
    assert dec > 0
    assert workload_for(res).decode().mean() == pytest.approx(dec)
    out = run_scenario(res)
    assert out.summary["completed"] > 0

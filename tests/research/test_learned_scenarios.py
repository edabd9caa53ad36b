"""Each learned research stage in a scenario on the pretrained EfficientNet-Lite0 with photos: a tiny
checkpoint trained here (12 frames, one epoch), the pipeline sends real payloads whose sizes follow the
method's bits, and the node and server are charged from the device profiles.

Autoencoder + TCL (Berg et al., IEEE Access 2025, doi:10.1109/ACCESS.2025.3579107), QCNet (Sánchez
Leal et al., IEEE Access 2025, doi:10.1109/ACCESS.2025.3627072), bitwise soft quantization
(arXiv:2603.05172), AuGQ (Mujtaba et al., Applied Intelligence 2025) and NestQuant head switching
(Xie et al., arXiv:2506.17870). The entropy bottleneck and GroupNL have their own scenario tests.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from testbed.bridge.cache import PipelineTable, pipeline_table
from testbed.bridge.workload import workload_for
from testbed.config.load import scenario_from_dict
from testbed.config.modes import NestQuantModes, modes_path
from testbed.config.profiles import Profile, load_profile
from testbed.config.resolve import Resolved, resolve
from testbed.core.charges import StageCost, codec_time
from testbed.research.common import count_compute
from testbed.research.methods.autoencoder import load_autoencoder
from testbed.research.methods.qcnet import load_qcnet
from testbed.research.methods.softquant import SoftQuantStage
from testbed.research.train import TrainOptions, train_method
from testbed.run.runner import run_scenario
from testbed.split.codecs import parse_chain

pytestmark = pytest.mark.zoo

ROOT = Path(__file__).resolve().parents[2]
FEATURE = {"stage2": (24, 56, 56), "stage4": (80, 14, 14), "input": (3, 224, 224)}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))


def _train(method: str, split: str, out: Path, **params: Any) -> dict[str, Any]:
    return train_method(method, TrainOptions(out=str(out), model="efficientnet_lite0", split=split, dataset="photos",
                                             limit=12, device="cpu"), params)


def _scenario(split: str, codec: list[dict[str, Any]] | None, **fleet: Any) -> Resolved:
    raw: dict[str, Any] = {
        "duration": 5.0, "model": {"name": "efficientnet_lite0", "weights": "pretrained", "split": split},
        "dataset": {"kind": "photos", "limit": 4},
        "fleet": [{"count": 1, "device": "pi4b", "arrivals": {"kind": "periodic", "rate": 1.0}, **fleet}],
        "link": {"model": "shared_fifo", "datarate": 5e6}, "server": {"device": "h100"}}
    if codec is not None:
        raw["codec"] = codec
    return resolve(scenario_from_dict(raw), ROOT / "scenarios")


def _profiles() -> tuple[Profile, Profile]:
    return load_profile("pi4b", ROOT / "nodes"), load_profile("h100", ROOT / "nodes")


def _charges(table: PipelineTable) -> tuple[float, float]:
    node, server = _profiles()
    return (codec_time(node, table.costs, table.elements, table.serialized_bytes, "encode"),
            codec_time(server, table.costs, table.elements, table.serialized_bytes, "decode"))


def _runs(res: Resolved, table: PipelineTable) -> None:
    """The scenario runs, the workload's decode charge is the profile's, every frame is answered."""
    assert workload_for(res).decode().mean() == pytest.approx(_charges(table)[1])
    out = run_scenario(res)
    assert out.summary["completed"] > 0


def _rest(table: PipelineTable, skip: int) -> tuple[float, float]:
    """Node encode and server decode seconds of the stages after the first ``skip`` (non-learned ones)."""
    node, server = _profiles()
    rest = table.costs[skip:]
    return (codec_time(node, rest, table.elements, table.serialized_bytes, "encode"),
            codec_time(server, rest, table.elements, table.serialized_bytes, "decode"))


def test_autoencoder_tcl_in_a_scenario(tmp_path: Path) -> None:
    ckpt = tmp_path / "ae.pt"
    summary = _train("autoencoder", "stage4", ckpt, epochs=1, feature_epochs=1, bits=2, finetune_tail=False)
    res = _scenario("stage4", summary["codec"])
    table = pipeline_table(res.scenario)
    enc_mod, dec_mod, _, cfg = load_autoencoder(str(ckpt))
    code = int(cfg["code_channels"]) * 14 * 14
    sizes = table.images["payload_bytes"].to_numpy()
    # 2-bit codes of the 8-channel code, LZMA-coded: at most the packed codes plus header and container
    assert (sizes > 0).all() and (sizes <= math.ceil(2 * code / 8) + 160).all()
    assert [(c.kind, c.key) for c in table.costs] == [("macs", "autoencoder"), ("element", "quantize"),
                                                      ("element", "pack"), ("bytes", "lzma:preset=6")]
    x = torch.zeros(1, *FEATURE["stage4"])
    assert table.costs[0].encode_macs == count_compute(enc_mod, x).macs
    assert table.costs[0].decode_macs == count_compute(dec_mod, enc_mod(x)).macs
    node, server = _profiles()
    assert node.mac_rate is not None and server.mac_rate is not None
    enc, dec = _charges(table)
    rest_enc, rest_dec = _rest(table, 1)
    assert enc == pytest.approx(table.costs[0].encode_macs / node.mac_rate.ops_per_s + rest_enc)
    assert dec == pytest.approx(table.costs[0].decode_macs / server.mac_rate.ops_per_s + rest_dec)
    _runs(res, table)


def test_autoencoder_quantize_is_charged_on_the_code(tmp_path: Path) -> None:
    ckpt = tmp_path / "ae.pt"
    summary = _train("autoencoder", "stage4", ckpt, epochs=1, feature_epochs=1, bits=2, finetune_tail=False)
    table = pipeline_table(_scenario("stage4", summary["codec"]).scenario)
    code = int(load_autoencoder(str(ckpt))[3]["code_channels"]) * 14 * 14
    assert (table.elements, table.serialized_bytes) == (code, math.ceil(2 * code / 8))


def test_qcnet_in_a_scenario(tmp_path: Path) -> None:
    ckpt = tmp_path / "qc.pt"
    summary = _train("qcnet", "stage4", ckpt, epochs=1)
    res = _scenario("stage4", summary["codec"])
    table = pipeline_table(res.scenario)
    elements = math.prod(FEATURE["stage4"])
    assert table.elements == elements and table.serialized_bytes == math.ceil(elements / 8)  # 1 bit per element
    sizes = table.images["payload_bytes"].to_numpy()
    assert (sizes > 0).all() and (sizes < 4 * elements / 8).all()  # far below float32, about 1 bit per element
    assert [(c.kind, c.key) for c in table.costs] == [("macs", "qcnet"), ("element", "binarize"),
                                                      ("element", "pack"), ("bytes", "lzma:preset=6")]
    comp = load_qcnet(str(ckpt))[0]
    assert table.costs[0].encode_macs == 0  # QCNet costs the node nothing
    assert table.costs[0].decode_macs == count_compute(comp, torch.zeros(1, *FEATURE["stage4"])).macs > 0
    _, server = _profiles()
    assert server.mac_rate is not None
    enc, dec = _charges(table)
    rest_enc, rest_dec = _rest(table, 1)
    assert enc == pytest.approx(rest_enc)
    assert dec == pytest.approx(table.costs[0].decode_macs / server.mac_rate.ops_per_s + rest_dec)
    _runs(res, table)


def test_softquant_input_in_a_scenario(tmp_path: Path) -> None:
    ckpt = tmp_path / "sq.pt"
    summary = _train("softquant", "input", ckpt, epochs=1, bits=2, granularity="channel", finetune=True)
    res = _scenario("input", summary["codec"])
    table = pipeline_table(res.scenario)
    elements = math.prod(FEATURE["input"])
    assert table.elements == elements and table.serialized_bytes == math.ceil(2 * elements / 8)  # 2 bits a value
    sizes = table.images["payload_bytes"].to_numpy()
    assert (sizes > 0).all() and (sizes <= math.ceil(2 * elements / 8) + 400).all()
    assert [(c.kind, c.key) for c in table.costs] == [("macs", "softquant"), ("element", "pack"),
                                                      ("bytes", "lzma:preset=6")]
    assert table.costs[0].encode_macs == 3 * elements and table.costs[0].decode_macs == elements
    node, _ = _profiles()
    assert node.mac_rate is not None
    enc, _ = _charges(table)
    assert enc == pytest.approx(3 * elements / node.mac_rate.ops_per_s + _rest(table, 1)[0])
    # the server runs the network fine-tuned with the quantizer (stored in the checkpoint)
    from testbed.split.models import split_model

    _, tail = split_model("efficientnet_lite0", "input", "pretrained", 0)
    stage = parse_chain(summary["codec"]).tensor_stages[0]
    assert isinstance(stage, SoftQuantStage)
    tuned = stage.tuned_tail("efficientnet_lite0", "input", tail)
    assert tuned is not None and stage.tuned_tail("efficientnet_lite0", "stage4", tail) is None
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), tail.state_dict().values()))
    _runs(res, table)


def test_augq_in_a_scenario(tmp_path: Path) -> None:
    ckpt = tmp_path / "augq.pt"
    summary = _train("augq", "stage4", ckpt, bits=2, samples=8, intervals=4)
    res = _scenario("stage4", summary["codec"])
    table = pipeline_table(res.scenario)
    elements = math.prod(FEATURE["stage4"])
    assert table.serialized_bytes == math.ceil(2 * elements / 8)  # exactly 2-bit codes, packed
    sizes = table.images["payload_bytes"].to_numpy()
    assert (sizes > 0).all() and (sizes <= math.ceil(2 * elements / 8) + 400).all()
    assert [(c.kind, c.key) for c in table.costs] == [("element", "quantize"), ("element", "pack"),
                                                      ("bytes", "lzma:preset=6")]
    node, _ = _profiles()
    assert node.codecs is not None
    enc, dec = _charges(table)
    quantize = node.codecs.per_element["quantize"].median * elements
    assert enc == pytest.approx(quantize + _rest(table, 1)[0]) and enc > quantize > 0 and dec > 0
    _runs(res, table)


def test_nestquant_head_switching_in_a_scenario(tmp_path: Path) -> None:
    """The modes file of a NestQuant head trained on Lite0's stage2 drives the node: frames on the part-bit
    head are charged the profile's head time scaled by part_bits / 8, a switch pages the low-order bits."""
    ckpt = tmp_path / "nq.pt"
    _train("nestquant", "stage2", ckpt, part_bits=4, adaptive=False, samples=4)
    modes = NestQuantModes.load(modes_path(ckpt))
    assert modes.part_bits == 4 and modes.switch_bytes > 0 and modes.storage_bytes["nested"] > 0
    paging = 1e6
    res = _scenario("stage2", [{"quantize": {"bits": 8}}, {"lzma": {"preset": 6}}],
                    arrivals={"kind": "periodic", "rate": 40.0, "random_phase": False},
                    nestquant={"modes": str(modes_path(ckpt)), "paging_rate": paging,
                               "policy": {"queue_high": 2, "queue_low": 0}})
    table = pipeline_table(res.scenario)
    assert (table.images["payload_bytes"] > 0).all() and table.costs[0] == StageCost("element", "quantize")
    out = run_scenario(res)
    rec = out.records
    rec = rec[rec["head_end_s"].notna()]
    head = (rec["head_end_s"] - rec["head_start_s"]).to_numpy()
    mode = rec["mode"].to_numpy()
    assert (mode == 1).any() and (mode == 0).any()  # 40 frames/s overload the full-bit head: it switches
    steady = (rec["mode"].diff().fillna(0).to_numpy() == 0)
    full_t = head[(mode == 0) & steady]
    part_t = head[(mode == 1) & steady]
    assert full_t == pytest.approx([full_t[0]] * len(full_t))
    assert part_t == pytest.approx([full_t[0] * modes.compute_scale["part"]] * len(part_t))
    first_part = int((mode == 1).argmax())
    assert head[first_part] == pytest.approx(full_t[0] * 0.5 + modes.switch_bytes / paging)
    assert out.summary["part_mode_share"] > 0

"""The real pipeline inside the simulation: cache reuse and invalidation, real payloads, baselines."""

import numpy as np
import pytest

import testbed.split.pipeline as pipeline_module
from testbed.bridge.cache import pipeline_key, pipeline_table
from testbed.config.load import apply_overrides, scenario_from_dict
from testbed.run.runner import run_scenario
from tests.conftest import base_scenario


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def split_raw(**over) -> dict:
    raw = base_scenario(duration="20 s", warmup="2 s")
    for g in raw["fleet"]:
        for k in ("head", "encode", "payload"):
            g.pop(k, None)
    raw["fleet"][0]["count"] = 4
    raw["server"].pop("service")
    raw.update(model={"name": "resnet18", "weights": "random", "split": "stem"}, codec=[{"quantize": {"bits": 2}}, {"zlib": {}}],
               dataset={"kind": "samples", "limit": 4})
    return apply_overrides(raw, over)


def test_cache_reused_for_fleet_link_server_changes_and_invalidated_otherwise(monkeypatch):
    calls = []
    real = pipeline_module.run_pipeline
    monkeypatch.setattr(pipeline_module, "run_pipeline", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = run_scenario(scenario_from_dict(split_raw()))
    assert len(calls) == 1
    for over in ({"fleet.0.count": 9}, {"link.datarate": "3 MB/s"}, {"server.batching.max_batch": 2}, {"seed": 8}):
        run_scenario(scenario_from_dict(split_raw(**over)))
    assert len(calls) == 1
    key = pipeline_key(scenario_from_dict(split_raw()))[0]
    for over in ({"codec": [{"quantize": {"bits": 4}}, {"zlib": {}}]}, {"model.split": "layer1"},
                 {"dataset.limit": 3}, {"model.seed": 1}):
        assert pipeline_key(scenario_from_dict(split_raw(**over)))[0] != key
    run_scenario(scenario_from_dict(split_raw(**{"codec": [{"quantize": {"bits": 4}}, {"zlib": {}}]})))
    assert len(calls) == 2
    assert first.summary["agreement"] >= 0.0
    assert first.summary["note"].startswith("random weights: accuracy, agreement and compressed sizes are not")
    assert "agreement_top5" in first.summary and first.records["agree_top5"].notna().any()


def test_timing_only_runs_carry_no_random_weights_note():
    assert "note" not in run_scenario(scenario_from_dict(base_scenario(duration="5 s", warmup="1 s"))).summary


def test_requests_carry_real_payloads_and_charges():
    sc = scenario_from_dict(split_raw())
    table = pipeline_table(sc)
    result = run_scenario(sc)
    df = result.records
    ok = df[df["status"] == "ok"]
    sizes = table.images["payload_bytes"].to_numpy()
    assert set(ok["image"]) <= set(range(4)) and len(set(ok["image"])) == 4
    assert np.array_equal(ok["payload_bytes"].to_numpy(), sizes[ok["image"].to_numpy()])
    from testbed.config.profiles import load_profile
    from testbed.core.charges import head_time

    head = ok["head_end_s"] - ok["head_start_s"]
    assert np.allclose(head, head_time(load_profile("pi4b"), "resnet18", "stem"))
    assert (ok["encode_end_s"] - ok["head_end_s"]).gt(0).all()
    assert {"correct", "agree", "energy_j"} <= set(df.columns)
    assert ok["correct"].isna().all()  # the sample photos carry no ImageNet labels
    expected = (table.images["prediction"] == table.images["reference"]).to_numpy()[ok["image"].to_numpy()]
    assert np.array_equal(ok["agree"].to_numpy(), expected.astype(float))


def test_baselines_input_and_none():
    raw_input = split_raw(**{"model.split": "input", "codec": [{"image": {"format": "raw"}}],
                             "server.service": {"table": {1: "4 ms"}}})
    res = run_scenario(scenario_from_dict(raw_input))
    ok = res.records[res.records["status"] == "ok"]
    assert (ok["payload_bytes"] == 3 * 224 * 224).all()
    assert (ok["head_end_s"] == ok["head_start_s"]).all()
    assert res.summary["agreement"] == 1.0  # raw pixels: the server sees the captured image
    png = run_scenario(scenario_from_dict(apply_overrides(raw_input, {"codec": [{"image": {"format": "png"}}]})))
    assert png.summary["mean_payload_bytes"] < 3 * 224 * 224
    assert png.summary["agreement"] == 1.0  # lossless

    local = run_scenario(scenario_from_dict(split_raw(**{"model.split": "none", "codec": []})))
    ok = local.records[local.records["status"] == "ok"]
    assert ok["tx_start_s"].isna().all() and ok["batch_start_s"].isna().all()
    assert np.allclose(ok["finished_s"] - ok["created_s"] - (ok["head_start_s"] - ok["created_s"]),
                       ok["encode_end_s"] - ok["head_start_s"])
    assert local.summary["link_utilisation"] == 0.0


def test_image_codec_errors_name_the_field():
    from testbed.errors import ConfigError
    from testbed.run.prepare import prepare_dict

    with pytest.raises(ConfigError, match=r"codec\.0\.image\.format"):
        prepare_dict(split_raw(**{"model.split": "input", "codec": [{"image": {"format": "gif"}}]}))
    with pytest.raises(ConfigError, match=r"model\.split"):
        prepare_dict(split_raw(**{"model.split": "layer9"}))
    with pytest.raises(ConfigError, match=r"codec\.0\.quantize\.bits"):
        prepare_dict(split_raw(**{"codec": [{"quantize": {"bits": 12}}]}))


def test_learned_stage_charges_count_macs(tmp_path):
    from testbed.bridge.charges import stage_charges
    from testbed.research.common import save_checkpoint
    from testbed.research.methods.autoencoder import BottleneckDecoder, BottleneckEncoder
    from testbed.split.codecs import parse_chain

    enc, dec = BottleneckEncoder(64, 8), BottleneckDecoder(64, 8)
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in dec.state_dict().items()}}
    ckpt = tmp_path / "ae.pt"
    save_checkpoint(str(ckpt), "autoencoder", {"channels": 64, "code_channels": 8, "bits": 2}, state, {})
    chain = parse_chain([{"autoencoder": {"checkpoint": str(ckpt)}}, {"quantize": {"bits": 2}}, {"lzma": {}}])
    costs = stage_charges(chain, (64, 56, 56))
    assert [(c.kind, c.key) for c in costs] == [("macs", "autoencoder"), ("element", "quantize"),
                                                ("element", "pack"), ("bytes", "lzma:preset=6")]
    assert costs[0].encode_macs == 64 * 8 * 56 * 56  # the encoder's 1x1 convolution
    # the decoder: 1x1 expand (8 -> 64) and 3x3 refine (64 -> 64) on 56x56
    assert costs[0].decode_macs == (8 * 64 + 64 * 64 * 9) * 56 * 56


def test_fine_tuned_tail_of_a_learned_codec_is_used(tmp_path):
    import torch

    from testbed.research.common import save_checkpoint
    from testbed.research.methods.autoencoder import BottleneckDecoder, BottleneckEncoder
    from testbed.split.models import split_model
    from testbed.split.pipeline import run_pipeline

    _, tail = split_model("resnet18", "stem")
    tuned = {k: v.clone() for k, v in tail.state_dict().items()}
    bias = [k for k in tuned if k.endswith("bias")][-1]  # the classifier's bias
    tuned[bias] = torch.zeros_like(tuned[bias])
    tuned[bias][7] = 1e6                                   # a tail that always answers class 7
    enc, dec = BottleneckEncoder(64, 8), BottleneckDecoder(64, 8)
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in dec.state_dict().items()},
             **{f"tail.{k}": v for k, v in tuned.items()}}
    ckpt = tmp_path / "ae.pt"
    config = {"channels": 64, "code_channels": 8, "bits": 2, "model": "resnet18", "split": "stem"}
    save_checkpoint(str(ckpt), "autoencoder", config, state, {})
    codec = [{"autoencoder": {"checkpoint": str(ckpt)}}, {"quantize": {"bits": 2}}]
    res = run_pipeline("resnet18", "stem", codec, {"name": "samples", "limit": 2}, weights="random")
    assert (res.prediction == 7).all()
    assert not (res.reference == 7).all()  # the unsplit model keeps its own tail
    other = run_pipeline("resnet18", "layer1", [{"quantize": {"bits": 2}}], {"name": "samples", "limit": 2},
                         weights="random")
    assert not (other.prediction == 7).all()

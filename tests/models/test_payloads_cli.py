"""`testbed payloads` / `testbed models` end to end, and the run_pipeline API, on real photos."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from testbed.cli import main
from testbed.split.pipeline import run_pipeline


def _json(capsys, argv: list[str]) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_payloads_json_on_bundled_photos(capsys) -> None:
    rows = _json(capsys, ["payloads", "--model", "resnet18", "--weights", "random", "--split", "layer2,layer4",
                          "--split", "input",
                          "--codec", "float32", "--codec", "quantize:bits=8,lzma:preset=1", "--bits", "1", "8",
                          "--limit", "2", "--batch-size", "2", "--device", "cpu", "--json"])
    assert [(r["split"], r["codec"]) for r in rows] == [
        (s, c) for s in ("layer2", "layer4", "input")
        for c in ("float32", "quantize:bits=1,lzma:preset=1", "quantize:bits=8,lzma:preset=1")]
    by = {(r["split"], r["bits"]): r for r in rows}
    for split, elements in (("layer2", 128 * 28 * 28), ("layer4", 512 * 7 * 7), ("input", 3 * 224 * 224)):
        raw, one, eight = by[(split, None)], by[(split, 1)], by[(split, 8)]
        assert raw["elements"] == elements and raw["images"] == 2
        # float32: the payload is the tensor plus a small header; exact reconstruction
        assert 4 * elements < raw["payload_bytes_mean"] < 4 * elements + 64
        assert raw["snr_db_mean"] is None and raw["cosine_mean"] == pytest.approx(1.0)
        assert raw["top1_agreement"] == 1.0
        # 8 bits stay faithful; 1 bit + LZMA is far smaller than both
        assert eight["snr_db_mean"] > 30 and eight["cosine_mean"] > 0.999 and eight["top1_agreement"] == 1.0
        assert one["payload_bytes_mean"] < eight["payload_bytes_mean"] < raw["payload_bytes_mean"]
        assert one["payload_bytes_mean"] <= elements / 8 + 200
        assert one["payload_bytes_p95"] >= one["payload_bytes_mean"] * 0.999
        for r in (raw, one, eight):
            assert r["ratio_vs_float32"] == pytest.approx(4 * elements / r["payload_bytes_mean"])
            assert r["ratio_vs_input_uint8"] == pytest.approx(3 * 224 * 224 / r["payload_bytes_mean"])
            assert r["encode_ms_mean"] > 0 and r["decode_ms_mean"] > 0
            assert r["accuracy"] is None
    assert by[("input", 8)]["payload_bytes_mean"] == pytest.approx(3 * 224 * 224 / 0.25 / 4, rel=0.5)


@pytest.mark.zoo
def test_payloads_defaults_are_the_pretrained_lite0_on_the_photos(capsys) -> None:
    """The issue's command with no --weights/--dataset: real weights, real photos. float32 keeps every
    answer, 8 bits nearly all, 1 bit most of them lost; payload bytes come from the real feature maps."""
    rows = _json(capsys, ["payloads", "--model", "efficientnet_lite0", "--split", "stem", "--codec", "float32",
                          "--codec", "quantize,lzma", "--bits", "1", "8", "--limit", "16", "--json"])
    by = {r["bits"]: r for r in rows}
    assert all(r["weights"] == "pretrained" and r["images"] == 16 and "note" not in r for r in rows)
    assert by[None]["top1_agreement"] == 1.0 and by[None]["top5_agreement"] == 1.0
    assert by[8]["top1_agreement"] >= 0.9 and by[8]["top5_agreement"] >= 0.95
    assert by[1]["top1_agreement"] <= 0.5
    # the 1-bit map of real features does not collapse the way a random network's does
    assert 32 * 112 * 112 / 8 / 4 < by[1]["payload_bytes_mean"] < by[8]["payload_bytes_mean"] / 4


@pytest.mark.zoo
def test_payloads_images_and_smallest_payload_per_floor(capsys) -> None:
    out = _json(capsys, ["payloads", "--split", "stage6", "--codec", "float16", "--codec", "quantize", "--bits", "1",
                         "8", "--image", "raw", "--image", "jpeg:quality=75", "--limit", "8", "--floor", "0.9",
                         "--json"])
    rows = {r["codec"]: r for r in out["rows"]}
    assert rows["image:raw"]["payload_bytes_mean"] == 3 * 224 * 224 and rows["image:raw"]["top1_agreement"] == 1.0
    assert rows["image:jpeg(q=75)"]["payload_bytes_mean"] < 3 * 224 * 224 / 4
    picks = {e["split"]: e["0.9"] for e in out["smallest_keeping"]}
    stage6 = [r for r in out["rows"] if r["split"] == "stage6" and r["top1_agreement"] >= 0.9]
    assert picks["stage6"]["payload_bytes_mean"] == min(r["payload_bytes_mean"] for r in stage6)
    assert picks["input"]["codec"] in {"image:raw", "image:jpeg(q=75)"}


def test_payloads_table_and_pivot(capsys) -> None:
    assert main(["payloads", "--model", "resnet18", "--weights", "random",
                 "--split", "layer4", "--codec", "quantize,zstd",
                 "--bits", "2", "4", "--limit", "2", "--pivot"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| split | shape | quantize:bits=2,zstd:level=3 | quantize:bits=4,zstd:level=3 |"
    assert out[2].startswith("| layer4 | 512x7x7 | ")
    assert main(["payloads", "--model", "resnet18", "--weights", "random",
                 "--split", "layer3", "--codec", "binarize,lzma",
                 "--dataset", "digits", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "binarize,lzma:preset=6" in out and "256x14x14" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--split", "layer9"], "split: got 'layer9'; split points of efficientnet_lite0"),
    (["--codec", "quantize:bits=12"], "codec.0.quantize.bits: got 12"),
    (["--codec", "quantize", "--bits", "9"], "bits: got 9"),
    (["--dataset", "cifar"], "dataset: got 'cifar'"),
    (["--model", "alexnet"], "model: got 'alexnet'"),
])
def test_payloads_user_errors_are_one_line(capsys, argv: list[str], message: str) -> None:
    assert main(["payloads", "--limit", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_models_command_lists_points_and_elements(capsys) -> None:
    rows = _json(capsys, ["models", "--json"])
    names = {r["model"] for r in rows}
    assert {"resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_v2_s", "convnext_tiny", "vit_b_16"} <= names
    r50 = {r["split"]: r for r in rows if r["model"] == "resnet50"}
    assert r50["layer1"]["shape"] == [256, 56, 56] and r50["layer1"]["elements"] == 802816
    assert main(["models", "--model", "vit_b_16"]) == 0
    assert "197x768" in capsys.readouterr().out


def test_run_pipeline_per_image_arrays() -> None:
    res = run_pipeline("resnet18", "layer3", "quantize:bits=4,zlib", "digits", weights="random", seed=0,
                       batch_size=2, limit=3, device="cpu")
    for arr in (res.payload_bytes, res.prediction, res.reference, res.label, res.encode_s, res.decode_s,
                res.snr_db, res.cosine):
        assert isinstance(arr, np.ndarray) and arr.shape == (3,)
    assert res.label.tolist() == [0, 1, 2]
    assert (res.payload_bytes > res.header_bytes).all() and (res.encode_s > 0).all()
    assert all(math.isfinite(v) for v in res.snr_db) and (res.cosine > 0.9).all()
    s = res.summary()
    assert s["accuracy"] == float(np.mean(res.prediction == res.label))
    assert {"encode:quantize", "encode:pack", "encode:zlib", "decode:zlib"} <= set(res.stage_seconds)

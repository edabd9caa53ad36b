"""Join the real model pipeline to the simulator.

A scenario with a ``model`` runs its dataset once through head, codec, decode and tail (batched),
caches per-image payload bytes and predictions on disk under a key of everything that affects them
(model, weights, split, codec chain, dataset, software versions) and hands the simulator a
:class:`PipelineWorkload`: every frame draws an image, carries its real payload size, and is charged
head, encode, decode and tail times from the node and server device profiles. Runs that differ only
in fleet, link or server reuse the cache.

Baselines: split ``input`` sends the image (codec ``[{image: {format: raw|png|jpeg, quality: 90}}]``,
default raw uint8 pixels) and split ``none`` runs everything on the node (nothing is sent).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.dists import Deterministic, Dist
from testbed.errors import ConfigError
from testbed.io import write_json, write_parquet
from testbed.config.profiles import Profile, codec_time, head_figure, load_profile, spread_dist, tail_table
from testbed.config.schema import Scenario
from testbed.core.calc import batch_time_fn

__all__ = ["CACHE_VERSION", "cache_dir", "pipeline_key", "PipelineTable", "pipeline_table", "PipelineWorkload",
           "workload_for", "add_outcomes", "IMAGE_FORMATS"]

CACHE_VERSION = 2
IMAGE_FORMATS = ("raw", "png", "jpeg")


def cache_dir() -> Path:
    """``$TESTBED_CACHE_DIR`` or ``~/.cache/testbed/pipeline``."""
    return Path(os.environ.get("TESTBED_CACHE_DIR", Path.home() / ".cache" / "testbed" / "pipeline"))


def _image_codec(codec: tuple[dict[str, Any], ...]) -> dict[str, Any] | None:
    """The ``image`` stage's parameters when the codec is an image encoding, else None."""
    if len(codec) == 1 and "image" in codec[0]:
        params = dict(codec[0]["image"] or {})
        unknown = set(params) - {"format", "quality"}
        if unknown:
            raise ConfigError(f"codec.0.image.{sorted(unknown)[0]}", params[sorted(unknown)[0]], "keys format, quality")
        fmt = params.get("format", "raw")
        if fmt not in IMAGE_FORMATS:
            raise ConfigError("codec.0.image.format", fmt, f"one of {', '.join(IMAGE_FORMATS)}")
        q = params.get("quality", 90)
        if not isinstance(q, int) or not 1 <= q <= 100:
            raise ConfigError("codec.0.image.quality", q, "an integer from 1 to 100")
        return {"format": fmt, "quality": q}
    if any("image" in stage for stage in codec):
        raise ConfigError("codec", list(codec), "an image stage stands alone: [{image: {format: jpeg}}]")
    return None


def _dataset_arg(sc: Scenario) -> dict[str, Any]:
    ds = sc.dataset
    if ds is None:
        return {"name": "samples"}
    out: dict[str, Any] = {"name": ds.kind}
    if ds.path is not None:
        out["path"] = ds.path
    if ds.limit is not None:
        out["limit"] = ds.limit
    return out


def _fingerprint_path(path: str | None) -> Any:
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return [str(p.resolve()), len(files), max((f.stat().st_mtime_ns for f in files), default=0)]
    return str(p)


def pipeline_key(sc: Scenario) -> tuple[str, dict[str, Any]]:
    """Cache key (hex digest) and the description it hashes."""
    import torch
    import torchvision

    from testbed import __version__

    assert sc.model is not None
    ds = _dataset_arg(sc)
    desc = {
        "cache_version": CACHE_VERSION, "testbed": __version__, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "model": sc.model.name, "weights": sc.model.weights,
        "weights_file": _fingerprint_path(sc.model.weights) if sc.model.weights.endswith((".pt", ".pth")) else None,
        "weights_seed": sc.model.seed, "split": sc.model.split, "codec": json.loads(json.dumps(list(sc.codec))),
        "dataset": ds, "dataset_files": _fingerprint_path(ds.get("path")),
        "codec_files": [_fingerprint_path(str(params["checkpoint"])) for stage in sc.codec
                        for params in stage.values() if isinstance(params, dict) and params.get("checkpoint")],
    }
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]
    return digest, desc


@dataclass(frozen=True)
class PipelineTable:
    """Per-image results of one (model, split, codec, dataset) and what the charges need."""

    images: pd.DataFrame          # image, payload_bytes, prediction, reference, label
    elements: int                 # elements of one feature map (pixels x channels for input)
    serialized_bytes: int         # bytes entering the first lossless coder
    cost_keys: list[tuple[str, str]]
    meta: dict[str, Any]
    stage_macs: dict[str, tuple[float, float]] = None  # type: ignore[assignment]  # learned stages: (enc, dec) MACs


def _image_payloads(images: Any, fmt: str, quality: int, mean: Any, std: Any) -> tuple[list[bytes], Any]:
    """Encode preprocessed images back to uint8 pixels (raw/PNG/JPEG); returns payloads and the
    normalised tensors the server would decode."""
    import torch

    from testbed.split.imagecodec import decode_image, encode_image

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    pixels = ((images * s + m).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    payloads = [encode_image(px, fmt, quality) for px in pixels]
    decoded = np.stack([decode_image(p, fmt, px.shape) for p, px in zip(payloads, pixels)])
    x = torch.from_numpy(decoded).float() / 255
    return payloads, (x - m) / s


def _run_image_baseline(sc: Scenario, params: dict[str, Any]) -> PipelineTable:
    import torch

    from testbed.split.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset, preprocess_for
    from testbed.split.models import load_model

    assert sc.model is not None
    model = load_model(sc.model.name, sc.model.weights, sc.model.seed).eval()
    data = load_dataset(_dataset_arg(sc), preprocess_for(sc.model.name, sc.model.weights))
    prep = preprocess_for(sc.model.name, sc.model.weights)
    mean, std = getattr(prep, "mean", IMAGENET_MEAN), getattr(prep, "std", IMAGENET_STD)
    payloads, restored = _image_payloads(data.images, params["format"], params["quality"], mean, std)
    with torch.inference_mode():
        ref = torch.cat([model(data.images[i:i + 8]).argmax(1) for i in range(0, len(data), 8)]).numpy()
        pred = torch.cat([model(restored[i:i + 8]).argmax(1) for i in range(0, len(data), 8)]).numpy()
    label = data.labels.numpy() if data.labels is not None else np.full(len(data), -1)
    elements = int(np.prod(data.images.shape[1:]))
    keys = [] if params["format"] == "raw" else [("element", params["format"])]
    table = pd.DataFrame({"image": np.arange(len(data)), "payload_bytes": [len(p) for p in payloads],
                          "prediction": pred, "reference": ref, "label": label})
    return PipelineTable(table, elements, elements, keys, {"codec": f"image:{params['format']}"}, {})


def _run_split(sc: Scenario) -> PipelineTable:
    from testbed.split.codecs import parse_chain
    from testbed.split.pipeline import run_pipeline
    from testbed.split.profiler import codec_cost_keys

    assert sc.model is not None
    chain = parse_chain(list(sc.codec) or None, "codec")
    res = run_pipeline(sc.model.name, sc.model.split, list(sc.codec) or None, _dataset_arg(sc),
                       sc.model.weights, sc.model.seed, batch_size=8)
    elements = res.feature_elements
    bits = chain.bits or (16 if any(s.name == "float16" for s in chain.tensor_stages) else 32)
    keys, macs = stage_charges(chain, res.feature_shape) if list(sc.codec) else ([], {})
    if sc.model.split == "none":
        keys, macs = [], {}
    table = pd.DataFrame({"image": np.arange(len(res.payload_bytes)), "payload_bytes": res.payload_bytes,
                          "prediction": res.prediction, "reference": res.reference, "label": res.label})
    return PipelineTable(table, elements, -(-elements * bits // 8), keys, res.summary(), macs)


def stage_charges(chain: Any, feature_shape: tuple[int, ...]) -> tuple[list[tuple[str, str]], dict[str, tuple[float, float]]]:
    """How each stage of a chain is charged (see :func:`testbed.profiles.codec_time`).

    Learned stages are charged by their multiply-accumulates per image at the device's MAC rate:
    the TCL autoencoder's encoder on the node and decoder on the server, QCNet on the server only.
    Element-wise learned quantizers are charged like the uniform quantizer (AuGQ: an interval lookup
    and an affine map per element) or by their comparisons (soft quantization: ``2^b - 1`` per
    element to encode, one table lookup to decode).
    """
    import torch

    from testbed.split.profiler import codec_cost_keys

    keys: list[tuple[str, str]] = []
    macs: dict[str, tuple[float, float]] = {}
    elements = float(np.prod(feature_shape))
    x = torch.zeros(1, *feature_shape)
    for kind, key in codec_cost_keys(chain):
        stage = next((s for s in chain.tensor_stages if s.name == key), None)
        if stage is None or key in ("quantize", "binarize", "float16"):
            keys.append((kind, key))
            continue
        from testbed.research.common import count_compute
        from testbed.research.stages import cached_checkpoint

        if key == "autoencoder":
            enc, dec = cached_checkpoint(stage.checkpoint, "autoencoder", "checkpoint")[:2]
            code = enc(x)
            macs[key] = (count_compute(enc, x).macs, count_compute(dec, code).macs)
            x = code
        elif key == "qcnet":
            net = cached_checkpoint(stage.checkpoint, "qcnet", "checkpoint")[0]
            macs[key] = (0.0, count_compute(net, x).macs)
        elif key == "softquant":
            bits = stage.output_bits()
            macs[key] = ((2**bits - 1) * elements, elements)
        elif key == "augq":
            keys.append(("element", "quantize"))
            continue
        else:
            raise ConfigError("codec", key, "a stage the simulator knows how to charge "
                              "(quantize, binarize, float16, autoencoder, qcnet, softquant, augq)")
        keys.append(("macs", key))
    return keys, macs


def pipeline_table(sc: Scenario, refresh: bool = False) -> PipelineTable:
    """The cached per-image table for ``sc``'s model section, computing it on a miss."""
    if sc.model is None:
        raise ConfigError("model", None, "a model section is needed to run the real pipeline")
    key, desc = pipeline_key(sc)
    folder = cache_dir() / key
    if not refresh and (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        return PipelineTable(pd.read_parquet(folder / "images.parquet"), meta["elements"],
                             meta["serialized_bytes"], [tuple(k) for k in meta["cost_keys"]], meta["summary"],
                             {k: tuple(v) for k, v in meta.get("stage_macs", {}).items()})
    print(f"running {sc.model.name} split at {sc.model.split} over the dataset once (cached in {folder})",
          file=sys.stderr)
    params = _image_codec(sc.codec)
    if params is not None and sc.model.split != "input":
        raise ConfigError("codec.0.image", params, "image encodings apply to split 'input' only")
    table = _run_image_baseline(sc, params) if params is not None else (
        _run_image_baseline(sc, {"format": "raw", "quality": 90}) if sc.model.split == "input" and not sc.codec
        else _run_split(sc))
    write_parquet(folder / "images.parquet", table.images)
    write_json(folder / "meta.json", {"key": desc, "elements": table.elements,
                                      "serialized_bytes": table.serialized_bytes,
                                      "cost_keys": [list(k) for k in table.cost_keys],
                                      "stage_macs": {k: list(v) for k, v in (table.stage_macs or {}).items()},
                                      "summary": table.meta})  # meta.json last: marks the entry complete
    return table


class PipelineWorkload:
    """Frames draw a dataset image; charges come from the node and server profiles."""

    def __init__(self, scenario: Scenario, table: PipelineTable, base_dir: Path | None = None) -> None:
        assert scenario.model is not None
        self.sc, self.table = scenario, table
        self.payloads = table.images["payload_bytes"].to_numpy(dtype=float)
        self.offload = scenario.model.split != "none"
        self.node_profiles = [load_profile(g.device, base_dir) for g in scenario.fleet]
        self.server_profile = load_profile(scenario.server.device, base_dir)
        self._heads = [self._head_dist(i) for i in range(len(scenario.fleet))]
        self._encodes = [self._encode_dist(i) for i in range(len(scenario.fleet))]

    def _head_dist(self, group: int) -> Dist:
        g, m = self.sc.fleet[group], self.sc.model
        assert m is not None
        if g.head is not None:
            return g.head
        fig = head_figure(self.node_profiles[group], m.name, m.split)
        return spread_dist(fig.median, fig.iqr) if m.spread else Deterministic(fig.median)

    def _encode_dist(self, group: int) -> Dist:
        g = self.sc.fleet[group]
        if g.encode is not None:
            return g.encode
        t = self.table
        return Deterministic(codec_time(self.node_profiles[group], t.cost_keys, t.elements, t.serialized_bytes,
                                        "encode", t.stage_macs))

    def frame_drawer(self, group: int, node_in_group: int, rng: np.random.Generator) -> Callable[[], tuple[int, float, float, float]]:
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(rng.integers(2**63))).spawn(3)]
        n_images = len(self.payloads)
        images = _IntSampler(streams[0], n_images)
        head, encode = self._heads[group].sampler(streams[1]), self._encodes[group].sampler(streams[2])
        sizes = self.payloads.tolist()
        send = self.offload

        def draw() -> tuple[int, float, float, float]:
            i = images()
            return i, (sizes[i] if send else 0.0), head(), encode()
        return draw

    def result_drawer(self, rng: np.random.Generator) -> Callable[[], float]:
        return self.sc.workload.result.sampler(rng)

    def decode(self) -> Dist:
        if self.sc.server.decode != Deterministic(0.0):
            return self.sc.server.decode
        t = self.table
        return Deterministic(codec_time(self.server_profile, t.cost_keys, t.elements, t.serialized_bytes, "decode",
                                        t.stage_macs))

    def batch_time(self, rng: np.random.Generator) -> Callable[[int], float]:
        svc = self.sc.server.service
        if svc is not None:
            return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)
        m = self.sc.model
        assert m is not None
        if not self.offload:
            return lambda b: 0.0
        return batch_time_fn(table=tail_table(self.server_profile, m.name, m.split))


class _IntSampler:
    __slots__ = ("_rng", "_n", "_buf", "_i")

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self._rng, self._n, self._buf, self._i = rng, n, [], 0

    def __call__(self) -> int:
        if self._i >= len(self._buf):
            self._buf, self._i = self._rng.integers(0, self._n, 64).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]


def workload_for(scenario: Scenario, base_dir: Path | None = None) -> PipelineWorkload:
    """The pipeline workload of a scenario with a model section (running or reusing the cache)."""
    return PipelineWorkload(scenario, pipeline_table(scenario), base_dir)


def add_outcomes(df: pd.DataFrame, table: PipelineTable) -> pd.DataFrame:
    """Records with ``correct`` (prediction equals label; NaN where unlabelled) and ``agree``
    (prediction equals the unsplit model's) per request, joined on the image index."""
    img = table.images.set_index("image")
    idx = df["image"].to_numpy()
    valid = idx >= 0
    pred = np.full(len(df), -1)
    ref = np.full(len(df), -1)
    lab = np.full(len(df), -1)
    pred[valid] = img["prediction"].to_numpy()[idx[valid]]
    ref[valid] = img["reference"].to_numpy()[idx[valid]]
    lab[valid] = img["label"].to_numpy()[idx[valid]]
    out = df.copy()
    out["correct"] = np.where(valid & (lab >= 0), (pred == lab).astype(float), math.nan)
    out["agree"] = np.where(valid, (pred == ref).astype(float), math.nan)
    return out

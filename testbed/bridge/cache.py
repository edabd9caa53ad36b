"""The pipeline cache: a scenario's model section run once over its dataset, keyed safely.

A scenario with a ``model`` runs its dataset once through head, codec, decode and tail (batched);
per-image payload bytes and predictions are cached on disk under a key of everything that affects
them (model, weights, split, codec chain, dataset, software versions, checkpoint files). Runs that
differ only in fleet, link or server reuse the entry.

Baselines: split ``input`` sends the image (codec ``[{image: {format: raw|png|jpeg, quality: 90}}]``,
default raw uint8 pixels) and split ``none`` runs everything on the node (nothing is sent).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.bridge.charges import stage_charges
from testbed.config.frozen import thaw
from testbed.config.resolve import is_weights_file
from testbed.config.schema import DatasetSpec, Scenario
from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.io import write_json, write_parquet

__all__ = [
    "CACHE_VERSION",
    "IMAGE_FORMATS",
    "PipelineTable",
    "cache_dir",
    "dataset_arg",
    "group_datasets",
    "group_entries",
    "image_codec",
    "merge_tables",
    "pipeline_key",
    "pipeline_table",
]

CACHE_VERSION = 7  # 7: elements and serialized bytes of the tensor the serializer packs (after shape-changing learned stages), not of the split feature; 6: images.parquet holds reference_clean (the unsplit model on the clean frame) for corrupted datasets; 5: payload headers of learned stages carry no checkpoint path; 4: images.parquet holds top5_0..top5_4 and reference_confidence; 3: typed stage costs
IMAGE_FORMATS = ("raw", "png", "jpeg")


def cache_dir() -> Path:
    """``$TESTBED_CACHE_DIR`` or ``~/.cache/testbed/pipeline``."""
    return Path(os.environ.get("TESTBED_CACHE_DIR", Path.home() / ".cache" / "testbed" / "pipeline"))


def image_codec(codec: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
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


def dataset_arg(sc: Scenario) -> dict[str, Any]:
    ds = sc.dataset
    if ds is None:
        return {"name": "photos"}
    out: dict[str, Any] = {"name": ds.kind}
    if ds.path is not None:
        out["path"] = ds.path
    if ds.limit is not None:
        out["limit"] = ds.limit
    if ds.seed:
        out["seed"] = ds.seed  # (absent when 0: cache keys of existing scenarios are unchanged)
    if ds.corruption is not None:
        out["corruption"] = json.loads(json.dumps(thaw(ds.corruption)))
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
    """Cache key (hex digest) and the description it hashes. ``sc`` is a resolved scenario
    (:attr:`testbed.config.resolve.Resolved.scenario`): its weights, checkpoint and dataset paths
    are absolute, so the key does not depend on the working directory."""
    import torch
    import torchvision

    from testbed import __version__

    assert sc.model is not None
    ds = dataset_arg(sc)
    desc = {
        "cache_version": CACHE_VERSION, "testbed": __version__, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "model": sc.model.name, "weights": sc.model.weights,
        "weights_file": _fingerprint_path(sc.model.weights) if is_weights_file(sc.model.weights) else None,
        "weights_seed": sc.model.seed, "split": sc.model.split, "codec": json.loads(json.dumps(list(sc.codec))),
        "dataset": ds, "dataset_files": _fingerprint_path(ds.get("path")),
        **({"head": sc.model.head, "head_file": _fingerprint_path(sc.model.head)} if sc.model.head else {}),
        "codec_files": [_fingerprint_path(str(params["checkpoint"])) for stage in sc.codec
                        for params in stage.values() if isinstance(params, dict) and params.get("checkpoint")],
    }
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]
    return digest, desc


@dataclass(frozen=True)
class PipelineTable:
    """Per-image results of one (model, split, codec, dataset) and what the charges need."""

    images: pd.DataFrame          # image, payload_bytes, prediction, top5_0..4, reference, reference_confidence, label
    #                               (+ reference_clean, corruption, severity when the dataset corrupts its frames)
    elements: int                 # elements of one feature map (pixels x channels for input)
    serialized_bytes: int         # bytes entering the first lossless coder
    costs: tuple[StageCost, ...]  # how each codec stage is charged (empty: nothing to charge)
    meta: dict[str, Any]
    # a table joined from per-group entries (merge_tables): each entry's own table (its elements, bytes,
    # costs and meta: groups of different models, splits or codecs) and each group's index into them
    parts: tuple[PipelineTable, ...] = ()
    part_of_group: tuple[int, ...] = ()

    def meta_json(self, key: dict[str, Any]) -> dict[str, Any]:
        """The cache entry's ``meta.json`` (``key``: the description the cache key hashes)."""
        return {"key": key, "elements": self.elements, "serialized_bytes": self.serialized_bytes,
                "costs": [c.to_dict() for c in self.costs], "summary": self.meta}

    @classmethod
    def from_meta(cls, images: pd.DataFrame, meta: dict[str, Any]) -> PipelineTable:
        """Rebuild a table from its ``images.parquet`` and ``meta.json``."""
        return cls(images, int(meta["elements"]), int(meta["serialized_bytes"]),
                   tuple(StageCost.from_dict(c) for c in meta["costs"]), meta["summary"])


def _run_image_baseline(sc: Scenario, params: dict[str, Any]) -> PipelineTable:
    """The 'send the image' baseline through :meth:`SplitPipeline.run_image` (on the CPU)."""
    from testbed.split.pipeline import SplitPipeline

    assert sc.model is not None
    pipe = SplitPipeline(sc.model.name, sc.model.weights, sc.model.seed, "cpu")
    data = pipe.dataset(dataset_arg(sc))
    r = pipe.run_image(data, params["format"], params["quality"])
    elements = int(np.prod(data.images.shape[1:]))
    costs = () if params["format"] == "raw" else (StageCost("element", params["format"]),)
    table = _images_table(r.payload_bytes, r.prediction, r.top5, r.reference, r.reference_confidence, r.label,
                          r.reference_clean)
    return PipelineTable(table, elements, elements, costs, {"codec": f"image:{params['format']}"})


def _images_table(payload_bytes: Any, prediction: np.ndarray, top5: np.ndarray, reference: np.ndarray,
                  confidence: np.ndarray, label: np.ndarray,
                  reference_clean: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: payload bytes, the split model's top-1 and top-5, the unsplit model's
    top-1 and its confidence, the label (-1: none); with a corrupted dataset also ``reference_clean``,
    the unsplit model's top-1 on the frame before its corruption."""
    cols: dict[str, Any] = {"image": np.arange(len(prediction)), "payload_bytes": payload_bytes,
                            "prediction": prediction}
    cols.update({f"top5_{j}": top5[:, j] for j in range(5)})
    cols.update({"reference": reference, "reference_confidence": confidence, "label": label})
    if reference_clean is not None:
        cols["reference_clean"] = reference_clean
    return pd.DataFrame(cols)


def _run_split(sc: Scenario) -> PipelineTable:
    import testbed.research  # noqa: F401  (registers the learned codec stages of the research methods)
    from testbed.split.codecs import parse_chain
    from testbed.split.pipeline import run_pipeline

    assert sc.model is not None
    chain = parse_chain(list(sc.codec) or None, "codec")
    res = run_pipeline(sc.model.name, sc.model.split, list(sc.codec) or None, dataset_arg(sc),
                       sc.model.weights, sc.model.seed, batch_size=8, head=sc.model.head)
    bits = chain.bits or (16 if any(s.name == "float16" for s in chain.tensor_stages) else 32)
    charged = bool(sc.codec) and sc.model.split != "none"
    costs = tuple(stage_charges(chain, res.feature_shape)) if charged else ()
    # per-element stages and the packer work on what the tensor stages leave (an autoencoder's or entropy
    # bottleneck's code, not the split feature)
    elements = math.prod(chain.encoded_shape(tuple(res.feature_shape))) if charged else res.feature_elements
    table = _images_table(res.payload_bytes, res.prediction, res.top5, res.reference, res.reference_confidence,
                          res.label, res.reference_clean)
    return PipelineTable(table, elements, -(-elements * bits // 8), costs, res.summary())


_IMAGE_COLUMNS = ("image", "payload_bytes", "prediction", *(f"top5_{j}" for j in range(5)), "reference",
                  "reference_confidence", "label")


def _with_corruptions(sc: Scenario, table: PipelineTable) -> PipelineTable:
    """The table with ``corruption`` and ``severity`` per image when the dataset corrupts its frames
    (the same per-frame draws the dataset made: :func:`~testbed.split.data.corrupt.frame_corruption`)."""
    ds = dataset_arg(sc)
    if "corruption" not in ds:
        return table
    from testbed.split.data.corrupt import frame_corruption, parse_corruption

    c = parse_corruption(ds["corruption"])
    assert c is not None
    draws = [frame_corruption(c, int(ds.get("seed", 0)), int(i)) for i in table.images["image"]]
    images = table.images.assign(corruption=[d[0] for d in draws], severity=[d[1] for d in draws])
    return PipelineTable(images, table.elements, table.serialized_bytes, table.costs, table.meta)


def _read_entry(folder: Path) -> PipelineTable | None:
    """A complete cache entry, or None when it is unreadable, truncated or inconsistent (a crash
    while writing, a full disk, an edit by hand): the caller rebuilds it."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = pd.read_parquet(folder / "images.parquet")
        table = PipelineTable.from_meta(images, meta)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # ArrowInvalid is a ValueError
        return None
    if (not isinstance(meta, dict) or any(c not in images.columns for c in _IMAGE_COLUMNS) or images.empty
            or table.elements < 0 or table.serialized_bytes < 0
            or not (images["payload_bytes"].to_numpy() >= 0).all()):
        return None
    return table


def pipeline_table(sc: Scenario, refresh: bool = False) -> PipelineTable:
    """The cached per-image table for ``sc``'s model section, computing it on a miss.

    When fleet groups name datasets of their own (``fleet[].dataset``), each distinct dataset is one
    cache entry (the scenario with that dataset) and the result joins them (:func:`merge_tables`):
    group ``g`` draws its frames from its own dataset's rows (``meta["group_images"][g]``)."""
    if sc.model is None:
        raise ConfigError("model", None, "a model section is needed to run the real pipeline")
    entries, of_group = group_entries(sc)
    if len(entries) == 1 and (entries[0].model, entries[0].codec, entries[0].dataset) == (sc.model, sc.codec,
                                                                                          sc.dataset):
        return _entry(sc, refresh)
    tables = [_entry(entry, refresh) for entry in entries]
    merged = merge_tables(tables, [dataset_arg(entry) for entry in entries], of_group)
    return dataclasses.replace(merged, parts=tuple(tables), part_of_group=tuple(of_group))


def group_entries(sc: Scenario) -> tuple[list[Scenario], list[int]]:
    """The distinct pipeline cache entries the fleet groups draw from: each distinct (model, codec,
    dataset) of a group (its own ``model``, ``codec`` and ``dataset``, else the scenario's) as the
    scenario with those sections, in first-use order, and each group's index into them."""
    out: list[Scenario] = []
    keys: list[str] = []
    of_group: list[int] = []
    for g, group in enumerate(sc.fleet):
        ds = group.dataset if group.dataset is not None else sc.dataset
        for model, codec in sc.group_variants(g):  # an adaptive group: one slot per configuration
            entry = sc.model_copy(update={"model": model, "codec": codec, "dataset": ds})
            key = json.dumps([model.model_dump(mode="json"), json.loads(json.dumps(list(entry.codec))),
                              dataset_arg(entry)], sort_keys=True)
            if key not in keys:
                keys.append(key)
                out.append(entry)
            of_group.append(keys.index(key))
    return out, of_group


def group_datasets(sc: Scenario) -> tuple[list[DatasetSpec | None], list[int]]:
    """The distinct datasets the fleet groups draw from (a group's own ``dataset``, else the
    scenario's), in first-use order, and each group's index into them. Two specs are one dataset when
    their :func:`dataset_arg` forms are equal."""
    out: list[DatasetSpec | None] = []
    keys: list[str] = []
    of_group: list[int] = []
    for group in sc.fleet:
        ds = group.dataset if group.dataset is not None else sc.dataset
        key = json.dumps(dataset_arg(sc.model_copy(update={"dataset": ds})), sort_keys=True)
        if key not in keys:
            keys.append(key)
            out.append(ds)
        of_group.append(keys.index(key))
    return out, of_group


def merge_tables(tables: Sequence[PipelineTable], datasets: Sequence[dict[str, Any]],
                 of_group: Sequence[int]) -> PipelineTable:
    """One table of the per-entry ``tables`` (:func:`group_entries`), rows in order, images
    renumbered consecutively, with a ``dataset`` column (the index into ``datasets``). When any of them
    corrupts its frames, the clean ones get corruption ``"none"``, severity 0 and ``reference_clean``
    equal to ``reference``. ``meta`` is the first table's, plus ``datasets`` (each one's argument, first
    image and count) and ``group_images`` (each group's ``[first image, count]``)."""
    corrupted = any("corruption" in t.images.columns for t in tables)
    parts, spans, first = [], [], 0
    for d, t in enumerate(tables):
        img = t.images.assign(image=t.images["image"].to_numpy() + first, dataset=d)
        if corrupted and "corruption" not in img.columns:
            img = img.assign(corruption="none", severity=0, reference_clean=img["reference"])
        parts.append(img)
        spans.append((first, len(img)))
        first += len(img)
    images = pd.concat(parts, ignore_index=True)
    t0 = tables[0]
    meta = {**t0.meta, "datasets": [{"dataset": a, "first_image": f, "images": n}
                                    for a, (f, n) in zip(datasets, spans)],
            "group_images": [list(spans[d]) for d in of_group]}
    return PipelineTable(images, t0.elements, t0.serialized_bytes, t0.costs, meta)


def _entry(sc: Scenario, refresh: bool = False) -> PipelineTable:
    """The cached table of ``sc``'s model section over ``sc.dataset`` (computed on a miss)."""
    assert sc.model is not None
    key, desc = pipeline_key(sc)
    folder = cache_dir() / key
    if not refresh and (folder / "meta.json").exists():
        cached = _read_entry(folder)
        if cached is not None:
            return cached
        print(f"the pipeline cache entry {folder} is corrupt; rebuilding it", file=sys.stderr)
    print(f"running {sc.model.name} split at {sc.model.split} over the dataset once (cached in {folder})",
          file=sys.stderr)
    params = image_codec(sc.codec)
    if params is not None and sc.model.split != "input":
        raise ConfigError("codec.0.image", params, "image encodings apply to split 'input' only")
    table = _run_image_baseline(sc, params) if params is not None else (
        _run_image_baseline(sc, {"format": "raw", "quality": 90}) if sc.model.split == "input" and not sc.codec
        else _run_split(sc))
    table = _with_corruptions(sc, table)
    write_parquet(folder / "images.parquet", table.images)
    write_json(folder / "meta.json", table.meta_json(desc))  # meta.json last: marks the entry complete
    return table

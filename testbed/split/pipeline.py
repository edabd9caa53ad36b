"""Run real images through head -> codec -> decode -> tail and measure what goes on the wire.

Pure Python and torch (no SimPy), so the simulator can call :func:`run_pipeline` or
:class:`SplitPipeline` to obtain per-image payload sizes, predictions and codec timings.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from testbed.core.metrics.outcomes import CONFIDENT
from testbed.errors import ConfigError
from testbed.split.codecs import CodecChain, decode_payloads, parse_chain, read_frame
from testbed.split.data import Dataset, load_dataset, preprocess_for
from testbed.split.models import NONE, get_spec, load_model, split_loaded

__all__ = ["CONFIDENT", "PipelineResult", "SplitPipeline", "agreement", "default_device", "finetuned_tail", "run_pipeline"]


def default_device() -> torch.device:
    """Where the tail runs: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class PipelineResult:
    """Per-image measurements of one (model, split, codec) over a dataset.

    Arrays have one entry per image: ``payload_bytes`` (whole payload, header included),
    ``header_bytes``, ``prediction`` (top-1 of the split pipeline; for detectors the label of the
    best box, -1 when none), ``reference`` (same for the unsplit model, on the same frame),
    ``reference_clean`` (the unsplit model's top-1 on the frame before its corruption; None when the
    dataset does not corrupt its frames), ``label`` (-1 when
    unknown), ``encode_s``/``decode_s`` (codec wall time on this machine), ``head_s``/``tail_s``
    (batch time shared evenly), ``snr_db`` (feature SNR, inf when exact) and ``cosine``.
    """

    model: str
    split: str
    codec: str
    weights: str
    device: str
    feature_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    bits: int | None
    payload_bytes: np.ndarray
    header_bytes: np.ndarray
    prediction: np.ndarray
    reference: np.ndarray
    label: np.ndarray
    encode_s: np.ndarray
    decode_s: np.ndarray
    head_s: np.ndarray
    tail_s: np.ndarray
    snr_db: np.ndarray
    cosine: np.ndarray
    top5: np.ndarray                  # [N, 5] the split model's five best classes (-1: none)
    reference_confidence: np.ndarray  # [N] the unsplit model's top-1 softmax probability (NaN: none)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    head: str | None = None           # the trained replacement head's checkpoint (``model.head``), if any
    head_macs: int = 0                # per-image MACs of the head the nodes run
    original_head_macs: int = 0       # ... and of the model's own head
    head_params: int = 0
    original_head_params: int = 0
    reference_clean: np.ndarray | None = None  # [N] the unsplit model's top-1 on the clean frame (corrupted data)

    @property
    def feature_elements(self) -> int:
        return int(np.prod(self.feature_shape, dtype=np.int64))

    @property
    def float32_bytes(self) -> int:
        """Size of the raw float32 feature tensor of one image."""
        return 4 * self.feature_elements

    @property
    def input_uint8_bytes(self) -> int:
        """Size of the model-input image as uint8 pixels (3 x S x S), the no-split alternative."""
        return int(np.prod(self.input_shape, dtype=np.int64))

    def summary(self) -> dict[str, Any]:
        """Aggregates: mean/p95 payload, compression ratios, timings, fidelity, agreement, accuracy."""
        labelled = self.label >= 0
        mean_bytes = float(self.payload_bytes.mean())
        return {
            "model": self.model, "split": self.split, "codec": self.codec, "bits": self.bits,
            "weights": self.weights, "device": self.device, "images": int(self.payload_bytes.size),
            "feature_shape": list(self.feature_shape), "elements": self.feature_elements,
            "float32_bytes": self.float32_bytes,
            "payload_bytes_mean": mean_bytes,
            "payload_bytes_p95": float(np.percentile(self.payload_bytes, 95)),
            "header_bytes_mean": float(self.header_bytes.mean()),
            "ratio_vs_float32": self.float32_bytes / mean_bytes,
            "ratio_vs_input_uint8": self.input_uint8_bytes / mean_bytes,
            "encode_ms_mean": 1e3 * float(self.encode_s.mean()),
            "decode_ms_mean": 1e3 * float(self.decode_s.mean()),
            "head_ms_mean": 1e3 * float(self.head_s.mean()),
            "tail_ms_mean": 1e3 * float(self.tail_s.mean()),
            "snr_db_mean": float(np.mean(self.snr_db)),
            "cosine_mean": float(np.mean(self.cosine)),
            **agreement(self.prediction, self.top5, self.reference, self.reference_confidence),
            "accuracy": float(np.mean(self.prediction[labelled] == self.label[labelled])) if labelled.any() else None,
            "reference_accuracy": (float(np.mean(self.reference[labelled] == self.label[labelled]))
                                   if labelled.any() else None),
            **({"agreement_clean": float(np.mean(self.prediction == self.reference_clean)),
                "reference_agreement_clean": float(np.mean(self.reference == self.reference_clean))}
               if self.reference_clean is not None else {}),
            **({"head": self.head, "head_macs": self.head_macs, "original_head_macs": self.original_head_macs,
                "head_params": self.head_params, "original_head_params": self.original_head_params}
               if self.head else {}),
        }


class SplitPipeline:
    """A loaded model (and its preprocessing) that evaluates split points and codecs on datasets.

    The head runs on the CPU (the device side); the tail on ``device`` (default: CUDA if present).
    Reference predictions of the unsplit model are computed once per dataset, on the CPU.
    """

    def __init__(self, model: str, weights: str = "pretrained", seed: int = 0,
                 device: str | torch.device | None = None, head: str | None = None) -> None:
        self.head = head  # a trained replacement head (checkpoint path; :func:`~testbed.split.models.load_head`)
        self.spec = get_spec(model)
        self.name, self.weights = model, weights
        self.model = load_model(model, weights, seed)
        self.preprocess = preprocess_for(model, weights)
        self.device = torch.device(device) if device is not None else default_device()
        self._reference: dict[int, tuple[Tensor, np.ndarray, np.ndarray, np.ndarray | None]] = {}

    def dataset(self, spec: Any = "photos", limit: int | None = None) -> Dataset:
        """Load ``spec`` with this model's preprocessing."""
        return load_dataset(spec, self.preprocess, limit)

    def predict(self, out: Any) -> np.ndarray:
        """Top-1 class per image (for detectors: the label of the highest-scoring box, or -1)."""
        if self.spec.task == "detection":
            return np.array([int(d["labels"][int(d["scores"].argmax())]) if len(d["scores"]) else -1 for d in out])
        return out.argmax(dim=1).cpu().numpy()

    def answers(self, out: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-1 class, the five best classes ``[N, 5]`` (-1 past the number of classes) and the top-1
        softmax probability per image (detectors: top-5 all -1 and confidence NaN)."""
        top1 = self.predict(out)
        n = len(top1)
        if self.spec.task == "detection":
            return top1, np.full((n, 5), -1), np.full(n, np.nan)
        k = min(5, int(out.shape[1]))
        top5 = np.full((n, 5), -1)
        top5[:, :k] = out.topk(k, dim=1).indices.cpu().numpy()
        confidence = torch.softmax(out.float(), dim=1).amax(dim=1).cpu().numpy()
        return top1, top5, confidence

    def reference(self, data: Dataset, batch_size: int = 8) -> np.ndarray:
        """Predictions of the unsplit model (cached per dataset object)."""
        return self._reference_answers(data, batch_size)[0]

    def reference_confidence(self, data: Dataset, batch_size: int = 8) -> np.ndarray:
        """The unsplit model's top-1 softmax probability per image (cached with :meth:`reference`)."""
        return self._reference_answers(data, batch_size)[1]

    def reference_clean(self, data: Dataset, batch_size: int = 8) -> np.ndarray | None:
        """The unsplit model's top-1 on each frame before its corruption (``data.clean``); None when
        the dataset does not corrupt its frames (then :meth:`reference` is the clean answer)."""
        return self._reference_answers(data, batch_size)[2]

    def _reference_answers(self, data: Dataset,
                           batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Top-1 and confidence of the unsplit model on ``data.images`` and, where ``data.clean`` is
        set, its top-1 on the clean frames (cached per dataset object)."""
        key = id(data.images)
        cached = self._reference.get(key)
        if cached is None or cached[0] is not data.images:
            preds, confs, clean = [], [], []
            with torch.inference_mode():
                for start in range(0, len(data), batch_size):
                    top1, _, conf = self.answers(self.model(data.images[start:start + batch_size]))
                    preds.append(top1)
                    confs.append(conf)
                    if data.clean is not None:
                        clean.append(self.predict(self.model(data.clean[start:start + batch_size])))
            cached = self._reference[key] = (data.images, np.concatenate(preds), np.concatenate(confs),
                                             np.concatenate(clean) if data.clean is not None else None)
        return cached[1], cached[2], cached[3]

    def run(self, split: str, codec: Any, data: Dataset, batch_size: int = 8) -> PipelineResult:
        """Evaluate one split point and codec chain over ``data``."""
        return self.run_codecs(split, [codec], data, batch_size)[0]

    def run_codecs(self, split: str, codecs: Sequence[Any], data: Dataset,
                   batch_size: int = 8) -> list[PipelineResult]:
        """Evaluate several codec chains at one split point; the head runs once per batch."""
        self.spec.check_point(split)
        if split == NONE and self.spec.task == "detection":
            raise ConfigError("split", split, "a split point before the detector's output "
                              f"({', '.join(self.spec.split_points[:-1])})")
        if batch_size < 1:
            raise ConfigError("batch_size", batch_size, "a positive integer")
        chains = [c if isinstance(c, CodecChain) else parse_chain(c) for c in codecs]
        head, tail = split_loaded(self.name, self.model, split)
        costs: dict[str, int] = {}
        if self.head is not None:
            from testbed.split.models import load_head
            from testbed.split.profiler import count_compute

            original = count_compute(head, data.images[:1])
            head = load_head(self.head, self.name, split, head)
            new = count_compute(head, data.images[:1])
            costs = {"head_macs": new.macs, "original_head_macs": original.macs, "head_params": new.params,
                     "original_head_params": original.params}
        tails = [finetuned_tail(chain, self.name, split, tail) for chain in chains]
        if self.device.type != "cpu":
            tails = [copy.deepcopy(t).to(self.device) for t in tails]
        reference, confidence, reference_clean = self._reference_answers(data, batch_size)
        keys = ("payload", "header", "pred", "top5", "enc", "dec", "head", "tail", "snr", "cos")
        cols: list[dict[str, list[np.ndarray]]] = [{k: [] for k in keys} for _ in chains]
        timings: list[dict[tuple[str, str], float]] = [{} for _ in chains]
        shape: tuple[int, ...] = ()
        with torch.inference_mode():
            for start in range(0, len(data), batch_size):
                x = data.images[start:start + batch_size]
                n = x.shape[0]
                t0 = time.perf_counter()
                feats = head(x)
                head_s = np.full(n, (time.perf_counter() - t0) / n)
                shape = tuple(feats.shape[1:])
                for chain, col, timing, chain_tail in zip(chains, cols, timings, tails):
                    chain.timings = timing
                    col["head"].append(head_s)
                    self._batch(chain, feats, chain_tail, col)
        label = data.labels.numpy() if data.labels is not None else np.full(len(data), -1)
        results = []
        for chain, col, timing in zip(chains, cols, timings):
            cat = {k: np.concatenate(v) for k, v in col.items()}
            results.append(PipelineResult(
                model=self.name, split=split, codec=chain.describe(), weights=self.weights,
                device=str(self.device), feature_shape=shape, input_shape=tuple(data.images.shape[1:]),
                bits=chain.bits, payload_bytes=cat["payload"], header_bytes=cat["header"],
                prediction=cat["pred"], reference=reference, label=label, encode_s=cat["enc"],
                decode_s=cat["dec"], head_s=cat["head"], tail_s=cat["tail"], snr_db=cat["snr"],
                cosine=cat["cos"], top5=cat["top5"], reference_confidence=confidence, stage_seconds={f"{d}:{name}": s for (d, name), s in timing.items()},
                head=self.head, reference_clean=reference_clean, **costs))
        return results

    def _batch(self, chain: CodecChain, feats: Tensor, tail: torch.nn.Module,
               col: dict[str, list[np.ndarray]]) -> None:
        """Encode, decode (each payload on its own, as a server receives them) and run the tail."""
        n = feats.shape[0]
        enc = chain.encode_timed(feats)
        decoded, dec_s = [], []
        for p in enc.payloads:
            t0 = time.perf_counter()
            decoded.append(decode_payloads([p], chain, tuple(feats.shape[1:])))
            dec_s.append(time.perf_counter() - t0)
        rec = torch.cat(decoded)
        t0 = time.perf_counter()
        out = tail(rec.to(self.device, torch.float32))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        col["tail"].append(np.full(n, (time.perf_counter() - t0) / n))
        top1, top5, _ = self.answers(out)
        col["pred"].append(top1)
        col["top5"].append(top5)
        col["payload"].append(np.array([len(p) for p in enc.payloads]))
        col["header"].append(np.array([read_frame(p).header_size for p in enc.payloads]))
        col["enc"].append(enc.seconds)
        col["dec"].append(np.array(dec_s))
        snr, cos = fidelity(feats, rec)
        col["snr"].append(snr)
        col["cos"].append(cos)

    def run_image(self, data: Dataset, fmt: str, quality: int = 90, batch_size: int = 8) -> PipelineResult:
        """The 'send the image' baseline: each preprocessed frame back to uint8 pixels, encoded as
        ``raw``, ``png`` or ``jpeg`` (at ``quality``), decoded as a server would and run through the
        whole model. Split ``input``; codec ``image:<fmt>``; fidelity compares the model inputs."""
        from testbed.split.imagecodec import IMAGE_FORMATS, decode_image, encode_image

        if fmt not in IMAGE_FORMATS:
            raise ConfigError("image", fmt, f"one of {', '.join(IMAGE_FORMATS)}")
        if not 1 <= quality <= 100:
            raise ConfigError("image.quality", quality, "an integer from 1 to 100")
        reference, confidence, reference_clean = self._reference_answers(data, batch_size)
        prep = self.preprocess
        pixels = (prep.denormalize(data.images).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        payloads, enc_s, dec_s, decoded = [], [], [], []
        for px in pixels:
            t0 = time.perf_counter()
            payloads.append(encode_image(px, fmt, quality))
            t1 = time.perf_counter()
            decoded.append(decode_image(payloads[-1], fmt, px.shape))
            enc_s.append(t1 - t0)
            dec_s.append(time.perf_counter() - t1)
        x = torch.from_numpy(np.stack(decoded)).float() / 255
        if prep.mean is not None and prep.std is not None:
            x = (x - torch.tensor(prep.mean).view(1, 3, 1, 1)) / torch.tensor(prep.std).view(1, 3, 1, 1)
        answers, tail_s = [], []
        model = self.model if self.device.type == "cpu" else copy.deepcopy(self.model).to(self.device)
        with torch.inference_mode():
            for start in range(0, len(data), batch_size):
                t0 = time.perf_counter()
                out = model(x[start:start + batch_size].to(self.device))
                answers.append(self.answers(out))
                tail_s.append(np.full(len(answers[-1][0]), (time.perf_counter() - t0) / len(answers[-1][0])))
        snr, cos = fidelity(data.images, x)
        n = len(data)
        label = data.labels.numpy() if data.labels is not None else np.full(n, -1)
        return PipelineResult(
            model=self.name, split="input", codec=f"image:{fmt}" + (f"(q={quality})" if fmt == "jpeg" else ""),
            weights=self.weights, device=str(self.device), feature_shape=tuple(data.images.shape[1:]),
            input_shape=tuple(data.images.shape[1:]), bits=8, payload_bytes=np.array([len(b) for b in payloads]),
            header_bytes=np.zeros(n, dtype=np.int64), prediction=np.concatenate([a[0] for a in answers]),
            reference=reference, label=label, encode_s=np.array(enc_s), decode_s=np.array(dec_s),
            head_s=np.zeros(n), tail_s=np.concatenate(tail_s), snr_db=snr, cosine=cos,
            top5=np.concatenate([a[1] for a in answers]), reference_confidence=confidence,
            reference_clean=reference_clean)

    def sweep(self, splits: Sequence[str], codecs: Sequence[Any], data: Dataset,
              batch_size: int = 8) -> list[PipelineResult]:
        """Every split point x codec chain, reusing the model, the dataset and the head outputs."""
        return [r for s in splits for r in self.run_codecs(s, codecs, data, batch_size)]


def run_pipeline(model: str, split: str, codec_spec: Any = None, dataset_spec: Any = "photos",
                 weights: str = "pretrained", seed: int = 0, batch_size: int = 8, limit: int | None = None,
                 device: str | torch.device | None = None, head: str | None = None) -> PipelineResult:
    """One-call API: build ``model``, load ``dataset_spec`` and evaluate ``split`` with ``codec_spec``.

    ``codec_spec`` is anything :func:`~testbed.codecs.parse_chain` accepts (None: raw float32);
    ``head`` a trained replacement head's checkpoint (``model.head``).
    """
    pipe = SplitPipeline(model, weights, seed, device, head)
    return pipe.run(split, codec_spec, pipe.dataset(dataset_spec, limit), batch_size)


def finetuned_tail(chain: CodecChain, model: str, split: str, tail: torch.nn.Module) -> torch.nn.Module:
    """The tail the server runs behind ``chain``: a stage that brings a tail fine-tuned on this model
    and split (:meth:`~testbed.split.codecs.TensorStage.tuned_tail`: QCNet, the TCL autoencoder)
    replaces it; any other chain keeps the model's own tail."""
    for stage in chain.tensor_stages:
        tuned = stage.tuned_tail(model, split, tail)
        if tuned is not None:
            tail = tuned
    return tail


def agreement(prediction: np.ndarray, top5: np.ndarray, reference: np.ndarray,
              reference_confidence: np.ndarray) -> dict[str, float | int | None]:
    """Top-1 agreement with the unsplit model, top-5 agreement (the unsplit top-1 among the split
    model's five best) and top-1 agreement on the frames the unsplit model is confident about."""
    top1 = prediction == reference
    confident = reference_confidence >= CONFIDENT
    in_top5 = (top5 == reference[:, None]).any(axis=1) if top5.size else np.zeros(len(reference), bool)
    return {"top1_agreement": float(np.mean(top1)) if top1.size else None,
            "top5_agreement": float(np.mean(in_top5)) if top5.size and (top5 >= 0).any() else None,
            "confident_frames": int(confident.sum()),
            "confident_agreement": float(np.mean(top1[confident])) if confident.any() else None}


def fidelity(x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image SNR in dB (``10 log10(|x|^2 / |x - y|^2)``, inf when equal) and cosine similarity."""
    a = x.detach().reshape(x.shape[0], -1).to(torch.float64).cpu()
    b = y.detach().reshape(y.shape[0], -1).to(torch.float64).cpu()
    signal = (a * a).sum(dim=1)
    noise = ((a - b) ** 2).sum(dim=1)
    snr = np.array([math.inf if nz == 0 else (10 * math.log10(s / nz) if s > 0 else -math.inf)
                    for s, nz in zip(signal.tolist(), noise.tolist())])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-30).numpy()
    return snr, cos



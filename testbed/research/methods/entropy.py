"""Learned entropy-coded bottleneck: the learned-compression baseline of split computing.

A channel-reducing encoder on the node, integer rounding, a factorized-prior entropy model and real
rANS-coded bytes; a decoder on the server restores the split feature map for the (frozen) tail.

* Factorized prior ("entropy bottleneck"): Ballé, Minnen, Singh, Hwang, Johnston, "Variational image
  compression with a scale hyperprior", ICLR 2018, arXiv:1802.01436 (appendix 6.1): per channel, a
  monotone neural CDF; the likelihood of an integer symbol is ``F(y + 1/2) - F(y - 1/2)``; training
  replaces rounding by additive uniform noise and minimises ``distortion + beta * rate``.
* Its use as a split-computing bottleneck trained against the unsplit model (distillation): Matsubara,
  Yang, Callegaro, Mandt, Levorato, "Supervised compression for resource-constrained edge computing
  systems", WACV 2022 (arXiv:2108.11898).
* Coder: byte-wise rANS (:mod:`testbed.split.codecs.rans`), as CompressAI 1.2.8 codes an entropy
  bottleneck; CompressAI itself is not a dependency (its wheel pins numpy < 2).

Each channel's integer support ``[lo, hi]`` comes from the training codes (plus one on each side),
its probabilities from the learned CDF, and one escape symbol carries the tail mass; the 16-bit
frequency tables are computed once when the checkpoint is written and stored in it as integers, so
the receiver decodes bit-exactly without re-evaluating the network. An escaped value travels as a
zig-zag varint after the rANS stream.

Codec stages ``entropy`` (tensor stage: encoder + rounding on the node, decoder on the server;
charged by their multiply-accumulates) and ``rans`` (the serializer: the entropy-coded body)::

    codec: [{entropy: {checkpoint: eb.pt}}, {rans: {checkpoint: eb.pt}}]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research.common import batches, count_compute, load_checkpoint, save_checkpoint, seeded
from testbed.research.measure import EvalContext, Row, Seq
from testbed.research.nets import SplitTask, task_loss
from testbed.research.registry import Method, Option, register_method
from testbed.research.stagekit import LearnedStage, cached_checkpoint, check_side, no_side
from testbed.research.train import TrainOptions, eval_tail, split_task
from testbed.split.codecs import PayloadError, register_codec
from testbed.split.codecs.base import Codes, Serializer
from testbed.split.codecs.rans import Tables, decode, encode, quantize_pmf
from testbed.split.codecs.varint import Reader, write_varint

__all__ = ["EntropyBottleneck", "EntropyConfig", "EntropyStage", "FactorizedPrior", "RansStage", "load_entropy",
           "rans_body", "train_entropy"]

History = dict[str, list[float]]
_MAX_SUPPORT = 4096  # symbols per channel table (escape excluded)
_MAX_ABS = 1 << 20   # codes are clamped to this magnitude (far beyond any trained support)


class FactorizedPrior(nn.Module):
    """Ballé et al. (2018), appendix 6.1: per-channel monotone CDF ``F_c`` from a small network with
    positive matrices (softplus) and tanh gates; :meth:`likelihood` of integer-rounded codes."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: Tensor) -> Tensor:
        """``[C, 1, M]`` values -> ``[C, 1, M]`` logits of the per-channel CDF."""
        x = v
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: Tensor) -> Tensor:
        """Probability of each value's unit bin, ``[N, C, H, W]`` -> same shape (at least 1e-9)."""
        n, c = y.shape[:2]
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower, upper = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs().clamp(min=1e-9)
        return lik.reshape(c, n, *y.shape[2:]).transpose(0, 1)

    def pmf(self, lo: int, hi: int, channel: int) -> np.ndarray:
        """Probabilities of the integers ``lo..hi`` of one channel, then the tail mass outside them."""
        with torch.no_grad():
            k = torch.arange(lo, hi + 1, dtype=torch.float32)
            cdf = torch.sigmoid(self.logits_cdf(torch.cat([k - 0.5, k[-1:] + 0.5]).expand(
                len(self.matrices[0]), 1, -1))[channel, 0]).to(torch.float64)
        p = (cdf[1:] - cdf[:-1]).clamp(min=0).numpy()
        tail = max(0.0, float(cdf[0]) + 1.0 - float(cdf[-1]))
        return np.concatenate([p, [tail]])


class EntropyBottleneck(nn.Module):
    """Encoder (node) and decoder (server) around the integer code; features are divided by their
    training RMS ``scale`` first. ``nonneg`` ends the decoder with a ReLU (split after a ReLU)."""

    scale: Tensor

    def __init__(self, channels: int, code_channels: int, hidden: int, nonneg: bool) -> None:
        super().__init__()
        self.nonneg = nonneg
        self.register_buffer("scale", torch.ones(()))
        self.encoder = nn.Sequential(nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, code_channels, 1))
        self.decoder = nn.Sequential(nn.Conv2d(code_channels, hidden, 1), nn.ReLU(),
                                     nn.Conv2d(hidden, channels, 3, 1, 1))
        self.prior = FactorizedPrior(code_channels)

    def encode(self, f: Tensor) -> Tensor:
        return self.encoder(f / self.scale)

    def decode(self, y: Tensor) -> Tensor:
        r = self.decoder(y) * self.scale
        return F.relu(r) if self.nonneg else r


@dataclass(frozen=True)
class EntropyConfig:
    """``beta`` weighs the rate in kilobytes per frame against the distortion (task + feature loss)."""

    code_channels: int = 8
    hidden: int = 32
    beta: float = 0.1
    epochs: int = 10
    lr: float = 2e-3
    recon_weight: float = 1.0
    task_weight: float = 1.0
    batch_size: int = 32
    seed: int = 0
    #: epochs before ``epochs`` with feature loss and rate only (the tail is not run; cheap)
    feature_epochs: int = 0

    def validate(self) -> None:
        if not 1 <= self.code_channels <= 1024 or not 1 <= self.hidden <= 4096:
            raise ConfigError("code_channels", (self.code_channels, self.hidden),
                              "code_channels from 1 to 1024 and hidden from 1 to 4096")
        if not 0.0 <= self.beta <= 1e6:
            raise ConfigError("beta", self.beta, "a rate weight from 0 to 1e6")
        if not 1 <= self.epochs <= 100_000 or not 0 <= self.feature_epochs <= 100_000:
            raise ConfigError("epochs", (self.epochs, self.feature_epochs),
                              "epochs from 1 and feature_epochs from 0, at most 100,000")
        if not 0.0 <= self.task_weight <= 1e6 or not 0.0 <= self.recon_weight <= 1e6:
            raise ConfigError("task_weight", (self.task_weight, self.recon_weight), "weights from 0 to 1e6")


def _tables(model: EntropyBottleneck, codes: Tensor) -> tuple[Tensor, list[np.ndarray]]:
    """Per-channel supports ``[C, 2]`` (lo, hi) from the training codes and their frequency tables."""
    rounded = torch.round(codes)
    lo = rounded.amin(dim=(0, 2, 3)).to(torch.int64) - 1
    hi = rounded.amax(dim=(0, 2, 3)).to(torch.int64) + 1
    centre = (lo + hi) // 2
    lo = torch.maximum(lo, centre - _MAX_SUPPORT // 2 + 1)
    hi = torch.minimum(hi, lo + _MAX_SUPPORT - 1)
    freqs = [quantize_pmf(model.prior.pmf(int(a), int(b), c)) for c, (a, b) in enumerate(zip(lo, hi))]
    return torch.stack([lo, hi], 1), freqs


def train_entropy(task: SplitTask, cfg: EntropyConfig, device: torch.device | None = None,
                  out: str | None = None) -> tuple[EntropyBottleneck, History]:
    """Train encoder, decoder and prior against the frozen head and tail: task loss (labels or KL to
    the unsplit model) + feature MSE + ``beta`` * kilobytes per frame under the prior, with uniform
    noise for rounding (seeded). Writes a checkpoint (with the integer frequency tables) to ``out``."""
    cfg.validate()
    device = device or torch.device("cpu")
    feats = task.features(task.x_train, device=device)
    teacher = task.teacher_logits(task.x_train, device=device) if task.target == "teacher" else None
    channels = int(feats.shape[1])
    nonneg = bool(feats.min() >= 0)
    with seeded(cfg.seed):
        model = EntropyBottleneck(channels, cfg.code_channels, cfg.hidden, nonneg)
    rms = float(feats.pow(2).mean().sqrt().clamp(min=1e-6))
    model.scale.fill_(rms)
    tail = copy.deepcopy(task.tail).to(device).eval()
    for p in tail.parameters():
        p.requires_grad_(False)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    hist: History = {"loss": [], "task": [], "kbytes": []}
    for epoch in range(cfg.feature_epochs + cfg.epochs):
        sums, n = [0.0, 0.0, 0.0], 0
        for idx in batches(len(feats), cfg.batch_size, g):
            f = feats[idx].to(device)
            y = model.encode(f)
            noisy = y + (torch.rand(y.shape, generator=g) - 0.5).to(device)
            kbytes = -torch.log2(model.prior.likelihood(noisy)).sum() / len(idx) / 8000.0
            r = model.decode(noisy)
            if epoch >= cfg.feature_epochs:
                lt = task_loss(tail(r), task.y_train[idx].to(device) if task.y_train is not None else None,
                               teacher[idx].to(device) if teacher is not None else None)
            else:
                lt = torch.zeros(())
            loss = cfg.task_weight * lt + cfg.recon_weight * F.mse_loss(r, f) / rms ** 2 + cfg.beta * kbytes
            opt.zero_grad()
            loss.backward()
            opt.step()
            for k, v in enumerate((loss, lt, kbytes)):
                sums[k] += float(v.detach()) * len(idx)
            n += len(idx)
        for k, key in enumerate(("loss", "task", "kbytes")):
            hist[key].append(sums[k] / n)
    model.cpu().eval()
    if out:
        with torch.no_grad():
            codes = torch.cat([model.encode(feats[i:i + 64]) for i in range(0, len(feats), 64)])
        support, freqs = _tables(model, codes)
        state = {**{f"model.{k}": v for k, v in model.state_dict().items()}, "support": support,
                 **{f"freqs.{c}": torch.from_numpy(f) for c, f in enumerate(freqs)}}
        config = {**cfg.__dict__, "channels": channels, "nonneg": nonneg, "model": task.model_name,
                  "split": task.point}
        save_checkpoint(out, "entropy", config, state, {"history": hist})
    return model, hist


@dataclass(frozen=True)
class Loaded:
    model: EntropyBottleneck
    support: Tensor
    tables: Tables
    config: dict[str, Any]


def load_entropy(path: str, field: str = "checkpoint") -> Loaded:
    """The bottleneck, its per-channel supports and frequency tables, and its config."""
    blob = load_checkpoint(path, "entropy", field)
    cfg, st = blob["config"], blob["state"]
    model = EntropyBottleneck(int(cfg["channels"]), int(cfg["code_channels"]), int(cfg["hidden"]),
                              bool(cfg["nonneg"]))
    model.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("model.")})
    c = int(cfg["code_channels"])
    tables = Tables.from_arrays([st[f"freqs.{i}"].numpy() for i in range(c)])
    return Loaded(model.eval(), st["support"], tables, cfg)


def rans_body(codes: np.ndarray, loaded: Loaded) -> tuple[bytes, bytes]:
    """One item's integer codes ``[C, H, W]``: the rANS stream and the zig-zag varints of escaped values."""
    c = codes.shape[0]
    if c != loaded.support.shape[0]:
        raise ValueError(f"rans: {c} code channels, the checkpoint has {loaded.support.shape[0]}")
    v = np.clip(np.rint(codes).astype(np.int64), -_MAX_ABS, _MAX_ABS).reshape(c, -1)
    lo, hi = loaded.support[:, 0].numpy()[:, None], loaded.support[:, 1].numpy()[:, None]
    escape = (v < lo) | (v > hi)
    sym = np.where(escape, hi - lo + 1, v - lo)
    tab = np.broadcast_to(np.arange(c)[:, None], v.shape)
    body = encode(sym.ravel(), tab.ravel(), loaded.tables)
    extra = b"".join(write_varint(int(2 * x if x >= 0 else -2 * x - 1)) for x in v[escape].tolist())
    return body, extra


@register_codec("entropy")
@dataclass(frozen=True)
class EntropyStage(LearnedStage):
    """Encoder + rounding on the node (integer-valued float codes), decoder on the server."""

    loader = staticmethod(load_entropy)

    def _loaded(self) -> Loaded:
        out: Loaded = self.loaded()
        return out

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        with torch.no_grad():
            y = torch.round(self._loaded().model.encode(x.to(torch.float32))).clamp(-_MAX_ABS, _MAX_ABS)
        return y, no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        check_side(side, self.name)
        with torch.no_grad():
            return self._loaded().model.decode(y.to(torch.float32))

    def encoded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(self._loaded().config["code_channels"]), *shape[1:])

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """The encoder's MACs on the node, the decoder's on the server."""
        m = self._loaded().model
        x = torch.zeros(1, *shape)
        with torch.no_grad():
            code = m.encode(x)
        return StageCost("macs", self.name, float(count_compute(m.encoder, x).macs),
                         float(count_compute(m.decoder, code).macs))


#: operations charged per coded symbol (table lookups, a division, renormalisation): an assumption
RANS_OPS_PER_SYMBOL = 16


@register_codec("rans")
@dataclass(frozen=True)
class RansStage(Serializer):
    """Entropy-codes the integer codes of ``entropy`` under the checkpoint's frequency tables.

    Side information: the code shape and the body length; the body is the rANS stream followed by
    the escaped values.
    """

    local: ClassVar[tuple[str, ...]] = ("checkpoint",)
    checkpoint: str = ""

    def validate(self, path: str) -> None:
        if not self.checkpoint:
            raise ConfigError(f"{path}.checkpoint", self.checkpoint, "the path of a checkpoint from "
                                                                     "`testbed train entropy`")
        self._loaded(f"{path}.checkpoint")

    def _loaded(self, field: str = "checkpoint") -> Loaded:
        out: Loaded = cached_checkpoint(self.checkpoint, "entropy", field, load_entropy)
        return out

    def encode(self, codes: Codes) -> tuple[bytes, bytes]:
        a = np.asarray(codes.array)
        if a.ndim != 3:
            raise ValueError(f"rans: codes of shape {a.shape}, expected [C, H, W]")
        stream, extra = rans_body(a, self._loaded())
        side = (bytes([a.ndim]) + b"".join(write_varint(int(d)) for d in a.shape) + write_varint(len(stream))
                + write_varint(len(stream) + len(extra)))
        return stream + extra, side

    @staticmethod
    def _side(side: bytes) -> tuple[tuple[int, ...], int, int]:
        r = Reader(side)
        nd = r.u8("rans rank")
        if nd != 3:
            raise PayloadError(f"rans: codes of rank {nd}, expected 3")
        shape = tuple(r.varint("rans shape") for _ in range(nd))
        stream, size = r.varint("rans stream size"), r.varint("rans size")
        if r.pos != len(side) or stream > size:
            raise PayloadError("rans: inconsistent side information")
        return shape, stream, size

    def expected_size(self, side: bytes) -> int:
        return self._side(side)[2]

    def decode(self, data: bytes, side: bytes) -> np.ndarray:
        shape, used, _ = self._side(side)
        loaded = self._loaded()
        c, count = shape[0], int(np.prod(shape))
        if c != loaded.support.shape[0] or count > (1 << 26):
            raise PayloadError(f"rans: codes of shape {shape} do not fit the checkpoint")
        tab = np.repeat(np.arange(c), count // c)
        lo, hi = loaded.support[:, 0].numpy(), loaded.support[:, 1].numpy()
        sym = decode(data[:used], tab, loaded.tables)
        values = sym + lo[tab]
        esc = np.flatnonzero(sym == (hi - lo + 1)[tab])
        r = Reader(data[used:])
        for i in esc.tolist():
            z = r.varint("rans escape")
            values[i] = z // 2 if z % 2 == 0 else -(z + 1) // 2
        if r.pos != len(data) - used:
            raise PayloadError("rans: trailing bytes after the escaped values")
        return values.reshape(shape).astype(np.float32)

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """``RANS_OPS_PER_SYMBOL`` operations per code element each way, charged at the MAC rate (an
        assumption, not a measurement)."""
        ops = float(RANS_OPS_PER_SYMBOL * math.prod(shape))
        return StageCost("macs", self.name, ops, ops)


def codec_spec(path: str) -> list[dict[str, Any]]:
    """The codec chain that uses an ``entropy`` checkpoint."""
    return [{"entropy": {"checkpoint": path}}, {"rans": {"checkpoint": path}}]


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    task = split_task(o, device)
    cfg = EntropyConfig(code_channels=p["code_channels"], hidden=p["hidden"], beta=p["beta"], epochs=p["epochs"],
                        feature_epochs=p["feature_epochs"], seed=o.seed)
    model, hist = train_entropy(task, cfg, device, o.out)
    return {"history": hist["loss"], "kbytes_per_frame_train": hist["kbytes"],
            "float_metrics": eval_tail(task.head, task.tail, task, lambda f: model.decode(torch.round(model.encode(f)))),
            "codec": codec_spec(o.out)}


def eval_rows(ctx: EvalContext) -> list[Row]:
    """The entropy-coded bottleneck at the task's split for two rate weights (frozen tail)."""
    task, s = ctx.task, ctx.settings
    rows = []
    for beta in (0.02, 0.2):
        path = ctx.path(f"entropy_beta{beta}.pt")
        model, _ = train_entropy(task, EntropyConfig(beta=beta, epochs=s.epochs, seed=s.seed), ctx.device, path)
        f1 = ctx.f_test[:1]
        with torch.no_grad():
            code = model.encode(f1)
        rows.append(ctx.measure("split", f"entropy bottleneck (beta {beta})", "-", codec_spec(path), task.tail,
                                ctx.head_c + count_compute(model.encoder, f1),
                                count_compute(Seq(model.decoder, task.tail), code), ctx.f_test))
    return rows


METHOD = register_method(Method(
    name="entropy",
    title="learned entropy-coded bottleneck, factorized prior + rANS (Balle et al., ICLR 2018; Matsubara et al., "
          "WACV 2022): the learned-compression baseline",
    train=train, eval_rows=eval_rows, stages=(EntropyStage, RansStage), order=90,
    options=(Option("epochs", int, 10, "training epochs"),
             Option("code_channels", int, 8, "channels of the code"),
             Option("hidden", int, 32, "hidden channels of the encoder and decoder"),
             Option("beta", float, 0.1, "rate weight (per kilobyte per frame)"),
             Option("feature_epochs", int, 0, "epochs of feature loss + rate only before --epochs (cheap)"))))

"""NestQuant: INT8 head weights whose higher bits form a lower-bit head (integer nesting).

Xie et al., "NestQuant: Post-Training Integer-Nesting Quantization for On-Device DNN",
arXiv:2506.17870, 2025.

Each conv/linear weight of the head is quantized per output channel to INT8 with scale ``s``
and split bitwise as ``w8 = w_hi * 2^l + w_lo`` with ``h = part_bits`` high bits (signed) and
``l = 8 - h`` low bits (unsigned), so ``w_hi = w8 >> l`` exactly. The part-bit head uses
``s * (w_hi * 2^l + (2^l - 1) / 2)`` (the centre of the bucket the low bits would select). The
high part is chosen by adaptive rounding (AdaRound-style: a rectified-sigmoid rounding variable
per weight, fitted to reproduce the layer's float output on calibration data), and the INT8
weight is then nested into it: ``w_lo = clip(round(w / s) - w_hi * 2^l, 0, 2^l - 1)``. The node
stores one INT8 model; switching to the part-bit head pages out the ``l``-bit low weights and
switching back pages them in, so ``switch_bytes = ceil(n * l / 8)``.

No codec stage: ``testbed train nestquant`` writes the checkpoint and its modes file (accuracy,
compute scale and switch bytes per mode), which a scenario's fleet group uses to switch heads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.config.modes import FULL, MODES, NestQuantModes, modes_path
from testbed.errors import ConfigError
from testbed.research.common import load_checkpoint, save_checkpoint
from testbed.research.measure import EvalContext, Row
from testbed.research.nets import SplitTask
from testbed.research.registry import Method, Option, register_method
from testbed.research.train import TrainOptions, eval_tail, split_task

__all__ = ["NestQuantConfig", "NestQuantHead", "NestedWeight", "build_nestquant", "int8_scale", "load_nestquant",
           "nest_weight", "save_nestquant"]


@dataclass(frozen=True)
class NestQuantConfig:
    """``adaptive=False`` rounds the high part to nearest (the ablation of adaptive rounding)."""

    part_bits: int = 4
    adaptive: bool = True
    iters: int = 300
    lr: float = 1e-2
    reg: float = 0.01
    samples: int = 64
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.part_bits <= 7:
            raise ConfigError("part_bits", self.part_bits, "an integer from 1 to 7")
        if self.iters < 0:
            raise ConfigError("iters", self.iters, "a non-negative number of iterations")


@dataclass
class NestedWeight:
    """One layer's nested INT8 weight: high part (int8, ``h`` bits), low part (uint8, ``l`` bits), scales."""

    high: Tensor
    low: Tensor
    scale: Tensor  # [out_channels], broadcast over the rest
    part_bits: int

    @property
    def low_bits(self) -> int:
        return 8 - self.part_bits

    def int8(self) -> Tensor:
        """The full INT8 weights ``high * 2^l + low``."""
        return (self.high.to(torch.int16) * (1 << self.low_bits) + self.low.to(torch.int16)).to(torch.int8)

    def _s(self) -> Tensor:
        return self.scale.reshape(-1, *([1] * (self.high.dim() - 1)))

    def full(self) -> Tensor:
        return self.int8().to(torch.float32) * self._s()

    def part(self) -> Tensor:
        lb = self.low_bits
        return (self.high.to(torch.float32) * (1 << lb) + ((1 << lb) - 1) / 2) * self._s()


def int8_scale(w: Tensor) -> Tensor:
    """Symmetric per-output-channel INT8 scale ``max|w| / 127``."""
    return (w.reshape(w.shape[0], -1).abs().amax(1) / 127.0).clamp(min=1e-12)


def weight_of(layer: nn.Module) -> Tensor:
    """The ``weight`` tensor of a convolution or linear layer."""
    w = layer.weight
    if not isinstance(w, Tensor):
        raise TypeError(f"{type(layer).__name__} has no weight tensor")
    return w


def _layer_out(layer: nn.Module, x: Tensor, w: Tensor) -> Tensor:
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, w)


def nest_weight(layer: nn.Module, cfg: NestQuantConfig, calib: Tensor | None = None) -> NestedWeight:
    """Nest one layer's weights; ``calib`` (the layer's inputs) drives adaptive rounding."""
    cfg.validate()
    w = weight_of(layer).detach().to(torch.float32)
    s = int8_scale(w).reshape(-1, *([1] * (w.dim() - 1)))
    h, lb = cfg.part_bits, 8 - cfg.part_bits
    q = torch.clamp(torch.round(w / s), -127, 127)
    cont = (q - ((1 << lb) - 1) / 2) / (1 << lb)  # the high part as a real number
    hmin, hmax = -(1 << (h - 1)), (1 << (h - 1)) - 1
    if cfg.adaptive and calib is not None and cfg.iters > 0:
        high = _adaround(layer, calib, w, s, cont, lb, hmin, hmax, cfg)
    else:
        high = torch.round(cont)
    high = high.clamp(hmin, hmax)
    low = torch.clamp(q - high * (1 << lb), 0, (1 << lb) - 1)
    return NestedWeight(high.to(torch.int8), low.to(torch.uint8), s.reshape(-1), cfg.part_bits)


def _adaround(layer: nn.Module, x: Tensor, w: Tensor, s: Tensor, cont: Tensor, lb: int, hmin: int, hmax: int,
              cfg: NestQuantConfig) -> Tensor:
    """Choose floor or ceil of ``cont`` per weight to match the float layer output (Nagel et al., 2020)."""
    zeta, gamma = 1.1, -0.1
    base = torch.floor(cont)
    frac = (cont - base).clamp(0.01, 0.99)
    v = nn.Parameter(-torch.log((zeta - gamma) / (frac - gamma) - 1))
    opt = torch.optim.Adam([v], lr=cfg.lr)
    with torch.no_grad():
        target = _layer_out(layer, x, w)
    norm = float(target.pow(2).mean().clamp(min=1e-12))
    offset = ((1 << lb) - 1) / 2
    for it in range(cfg.iters):
        hv = torch.clamp(torch.sigmoid(v) * (zeta - gamma) + gamma, 0, 1)
        wq = ((base + hv).clamp(hmin, hmax) * (1 << lb) + offset) * s
        rec = (_layer_out(layer, x, wq) - target).pow(2).mean() / norm
        beta = 20 - (20 - 2) * it / max(1, cfg.iters - 1)
        round_reg = (1 - (2 * hv - 1).abs().pow(beta)).sum() / hv.numel()
        loss = rec + (cfg.reg * round_reg if it > cfg.iters // 5 else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hv = torch.clamp(torch.sigmoid(v) * (zeta - gamma) + gamma, 0, 1)
        return base + (hv >= 0.5).to(base.dtype)


class NestQuantHead:
    """A head with nested INT8 weights; :meth:`module` builds the full-bit or part-bit head."""

    def __init__(self, head: nn.Module, nested: dict[str, NestedWeight]) -> None:
        self.head = head.eval()
        self.nested = nested

    @property
    def part_bits(self) -> int:
        return next(iter(self.nested.values())).part_bits

    def module(self, mode: str) -> nn.Module:
        """A copy of the head running the ``"full"`` or ``"part"`` weights."""
        if mode not in MODES:
            raise ConfigError("mode", mode, f"one of {', '.join(MODES)}")
        out = copy.deepcopy(self.head)
        layers = dict(out.named_modules())
        for name, nw in self.nested.items():
            layers[name].weight.data = nw.full() if mode == FULL else nw.part()
        return out.eval()

    def weight_count(self) -> int:
        return sum(nw.high.numel() for nw in self.nested.values())

    def storage_bytes(self) -> dict[str, int]:
        """Bytes of the quantized weights (+ float32 scales): nested, full, part, separate, low."""
        n = self.weight_count()
        scales = 4 * sum(nw.scale.numel() for nw in self.nested.values())
        h = self.part_bits
        part = (n * h + 7) // 8 + scales
        full = n + scales
        low = (n * (8 - h) + 7) // 8
        return {"nested": full, "full": full, "part": part, "separate": full + part, "low": low}

    def switch_bytes(self) -> int:
        """Bytes paged in (part -> full) or out (full -> part): the packed low-bit weights."""
        return self.storage_bytes()["low"]


def _layer_inputs(head: nn.Module, x: Tensor, names: list[str]) -> dict[str, Tensor]:
    mods = dict(head.named_modules())
    seen: dict[str, Tensor] = {}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].detach()))
             for n in names]
    try:
        with torch.no_grad():
            head.eval()(x)
    finally:
        for hk in hooks:
            hk.remove()
    return seen


def build_nestquant(head: nn.Module, calib: Tensor, cfg: NestQuantConfig) -> NestQuantHead:
    """Nest every conv/linear weight of ``head``; ``calib`` are head inputs (``cfg.samples`` used)."""
    cfg.validate()
    head = copy.deepcopy(head).cpu().eval()
    names = [n for n, m in head.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not names:
        raise ConfigError("split", "input", "a split point with a head holding conv/linear layers")
    inputs = _layer_inputs(head, calib[:cfg.samples].cpu(), names)
    mods = dict(head.named_modules())
    nested: dict[str, NestedWeight] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for n in names:
            nested[n] = nest_weight(mods[n], cfg, inputs.get(n))
    return NestQuantHead(head, nested)


def save_nestquant(nq: NestQuantHead, path: str, config: dict[str, Any]) -> None:
    state = {f"head.{k}": v for k, v in nq.head.state_dict().items()}
    for name, nw in nq.nested.items():
        state[f"high.{name}"], state[f"low.{name}"], state[f"scale.{name}"] = nw.high, nw.low, nw.scale
    save_checkpoint(path, "nestquant", {**config, "layers": list(nq.nested)}, state)


def load_nestquant(path: str, head: nn.Module, field: str = "checkpoint") -> NestQuantHead:
    """Rebuild a :class:`NestQuantHead` on an architecture-matching ``head`` module."""
    blob = load_checkpoint(path, "nestquant", field)
    st = blob["state"]
    head = copy.deepcopy(head)
    head.load_state_dict({k[5:]: v for k, v in st.items() if k.startswith("head.")})
    pb = int(blob["config"]["part_bits"])
    nested = {n: NestedWeight(st[f"high.{n}"], st[f"low.{n}"], st[f"scale.{n}"], pb) for n in blob["config"]["layers"]}
    return NestQuantHead(head, nested)


def _modes(nq: NestQuantHead, task: SplitTask, part_bits: int, metrics: Mapping[str, Mapping[str, float]],
           path: str) -> NestQuantModes:
    """Write the modes file beside checkpoint ``path`` (the simulator's view of the two heads)."""
    key = "accuracy" if task.target == "labels" else "agreement"
    modes = NestQuantModes(8, part_bits, {m: metrics[m][key] for m in metrics}, {"full": 1.0, "part": part_bits / 8},
                           nq.switch_bytes(), nq.storage_bytes(), key)
    modes.save(modes_path(path))
    return modes


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    task = split_task(o, device)
    cfg = NestQuantConfig(part_bits=p["part_bits"], adaptive=p["adaptive"], samples=p["samples"], seed=o.seed)
    nq = build_nestquant(task.head, task.x_train, cfg)
    save_nestquant(nq, o.out, {**asdict(cfg), "model": o.model, "split": o.split})
    metrics = {m: eval_tail(nq.module(m), task.tail, task) for m in MODES}
    modes = _modes(nq, task, cfg.part_bits, metrics, o.out)
    return {"metrics": metrics, "modes": str(modes_path(o.out)), "switch_bytes": modes.switch_bytes,
            "storage": modes.storage_bytes}


def eval_rows(ctx: EvalContext) -> list[Row]:
    """INT8 heads nesting INT4/INT3 heads, with adaptive and nearest rounding of the high part."""
    task, s = ctx.task, ctx.settings
    float_bytes = 4 * sum(m.weight.numel() for m in task.head.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    rows: list[Row] = []
    for pb in (4, 3):
        for adaptive in (True, False):
            cfg = NestQuantConfig(part_bits=pb, adaptive=adaptive, seed=s.seed)
            nq = build_nestquant(task.head, task.x_train, cfg)
            tag = "adaptive" if adaptive else "nearest"
            path = ctx.path(f"nestquant_int8_int{pb}_{tag}.pt")
            save_nestquant(nq, path, {**asdict(cfg), "model": s.model, "split": s.split})
            accs = {}
            for mode in MODES:
                with torch.no_grad():
                    fq = nq.module(mode)(task.x_test)
                r = ctx.measure("weights", f"NestQuant INT8>INT{pb} {mode}-bit ({tag})", "8" if mode == FULL else str(pb),
                                None, task.tail, ctx.head_c, ctx.tail_c, fq, storage=nq.storage_bytes(),
                                switch_bytes=nq.switch_bytes(), float_weight_bytes=float_bytes)
                accs[mode] = {"accuracy": r.accuracy or 0.0, "agreement": r.agreement or 0.0}
                rows.append(r)
            _modes(nq, task, pb, accs, path)
    return rows


METHOD = register_method(Method(
    name="nestquant", title="integer-nesting quantization of the head weights (Xie et al., arXiv:2506.17870)",
    train=train, eval_rows=eval_rows,
    options=(Option("part_bits", int, 4, "bits of the nested part-bit head"),
             Option("adaptive", bool, True, "adaptive rounding of the high part (--no-adaptive: nearest)"),
             Option("samples", int, 64, "calibration samples"))))

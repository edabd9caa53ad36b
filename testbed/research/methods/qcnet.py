"""QCNet: a server-side network reconstructing feature maps from 1-bit quantized data.

Sánchez Leal et al., "Quantization Compensator Network: Server-Side Feature Reconstruction in
Partitioned IoT Systems", IEEE Access 13, 2025, doi:10.1109/ACCESS.2025.3627072.

The node quantizes its feature map with an ordinary quantizer (1 bit by default, ``binarize``) and
adds nothing else. The server dequantizes, refines the result with a small residual CNN (QCNet)
and runs a fine-tuned tail; QCNet and the tail are trained together (task loss + feature
reconstruction). The baselines of the paper are also here: plain dequantization (original tail)
and quantization-aware training of the tail alone (:func:`train_qat_tail`).

Codec stage ``qcnet``: nothing on the node (encode is the identity); decode refines the dequantized
map of the next stage and the server runs the fine-tuned tail; charged by QCNet's MACs on the
server: ``[{qcnet: {checkpoint: qc.pt}}, {binarize: {}}, {lzma: {}}]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.research.common import batches, count_compute, load_checkpoint, save_checkpoint, seeded, train_mode
from testbed.research.measure import LZMA, EvalContext, Row, Seq
from testbed.research.nets import SplitTask, task_loss
from testbed.research.registry import Method, Option, register_method
from testbed.research.stagekit import LearnedStage, check_side, no_side
from testbed.research.train import TrainOptions, eval_tail, split_task
from testbed.split.codecs import CodecChain, normalize_spec, parse_chain, register_codec

__all__ = ["QCNet", "QCNetConfig", "QCNetStage", "load_qcnet", "quantize_roundtrip", "train_qat_tail", "train_qcnet"]

History = dict[str, list[float]]


class QCNet(nn.Module):
    """Residual refinement of a dequantized map: ``x + conv(relu(conv(x)))``, ``blocks`` times, with a
    ``hidden``-channel bottleneck (lightweight next to the tail), then a ReLU when the split feature
    is non-negative (``nonneg``), none for a linear bottleneck (EfficientNet-Lite)."""

    def __init__(self, channels: int, hidden: int = 32, blocks: int = 2, nonneg: bool = True) -> None:
        super().__init__()
        self.nonneg = nonneg
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 3, 1, 1))
            for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        for b in self.blocks:
            x = x + b(x)
        return F.relu(x) if self.nonneg else x


@dataclass(frozen=True)
class QCNetConfig:
    """``quantizer`` is the node's codec (tensor stages only), 1-bit ``binarize`` by default."""

    quantizer: list[dict[str, Any]] = field(default_factory=lambda: [{"binarize": {}}])
    hidden: int = 32
    blocks: int = 2
    epochs: int = 10
    lr: float = 2e-3
    tail_lr: float = 5e-4
    recon_weight: float = 1.0
    batch_size: int = 64
    seed: int = 0
    #: epochs before ``epochs`` training QCNet on the feature loss alone (the tail is not run; cheap)
    feature_epochs: int = 0

    def validate(self) -> CodecChain:
        chain = parse_chain(self.quantizer, "quantizer")
        if chain.byte_stages or not chain.tensor_stages or chain.bits is None:
            raise ConfigError("quantizer", self.quantizer, "quantizer tensor stages only, e.g. [{binarize: {}}]")
        if self.epochs < 1 or self.feature_epochs < 0:
            raise ConfigError("epochs", (self.epochs, self.feature_epochs),
                              "a positive number of epochs and non-negative feature_epochs")
        if self.hidden < 1 or self.blocks < 1:
            raise ConfigError("hidden", (self.hidden, self.blocks), "positive hidden channels and blocks")
        return chain


def quantize_roundtrip(chain: CodecChain, x: Tensor) -> Tensor:
    """Apply the chain's tensor stages (encode then decode) to a batch: the server's dequantized view."""
    y = x
    sides = []
    for stage in chain.tensor_stages:
        y, side = stage.encode(y)
        sides.append(side)
    for stage, side in zip(reversed(chain.tensor_stages), reversed(sides)):
        y = stage.decode(y, side)
    return y.to(torch.float32)


def _fit(task: SplitTask, chain: CodecChain, module: nn.Module | None, cfg: QCNetConfig,
         device: torch.device) -> tuple[nn.Module, History]:
    feats = task.features(task.x_train, device=device)
    deq = quantize_roundtrip(chain, feats)
    teacher = task.teacher_logits(task.x_train, device=device) if task.target == "teacher" else None
    tail = train_mode(copy.deepcopy(task.tail).to(device), frozen_bn=task.target == "teacher")
    groups: list[dict[str, Any]] = [{"params": tail.parameters(), "lr": cfg.tail_lr}]  # QAT: the same tail rate as QCNet
    if module is not None:
        module.to(device).train()
        groups.insert(0, {"params": module.parameters(), "lr": cfg.lr})
    opt = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(cfg.seed)
    scale = float(feats.pow(2).mean().sqrt().clamp(min=1e-6))
    hist: History = {"loss": [], "task": []}
    warm = cfg.feature_epochs if module is not None else 0
    for epoch in range(warm + cfg.epochs):
        tot, tot_task, n = 0.0, 0.0, 0
        for idx in batches(len(feats), cfg.batch_size, g):
            q = deq[idx].to(device)
            r = module(q) if module is not None else q
            if epoch >= warm:
                lt = task_loss(tail(r), task.y_train[idx].to(device) if task.y_train is not None else None,
                               teacher[idx].to(device) if teacher is not None else None)
            else:
                lt = torch.zeros(())
            loss = lt
            if module is not None:
                loss = lt + cfg.recon_weight * F.mse_loss(r, feats[idx].to(device)) / scale ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            tot_task += float(lt.detach()) * len(idx)
            n += len(idx)
        hist["loss"].append(tot / n)
        hist["task"].append(tot_task / n)
    tail.cpu().eval()
    if module is not None:
        module.cpu().eval()
    return tail, hist


def train_qcnet(task: SplitTask, cfg: QCNetConfig, device: torch.device | None = None,
                out: str | None = None) -> tuple[QCNet, nn.Module, History]:
    """Train QCNet together with fine-tuning of the tail; the head is untouched."""
    chain = cfg.validate()
    device = device or torch.device("cpu")
    feats = task.features(task.x_train, device=device)
    channels, nonneg = int(feats.shape[1]), bool(feats.min() >= 0)
    with seeded(cfg.seed):
        net = QCNet(channels, cfg.hidden, cfg.blocks, nonneg)
    tail, hist = _fit(task, chain, net, cfg, device)
    if out:
        state = {**{f"qcnet.{k}": v for k, v in net.state_dict().items()},
                 **{f"tail.{k}": v for k, v in tail.state_dict().items()}}
        config = {"channels": channels, "nonneg": nonneg, "hidden": cfg.hidden, "blocks": cfg.blocks, "quantizer": cfg.quantizer,
                  "epochs": cfg.epochs, "seed": cfg.seed, "model": task.model_name, "split": task.point}
        save_checkpoint(out, "qcnet", config, state, {"history": hist})
    return net, tail, hist


def train_qat_tail(task: SplitTask, cfg: QCNetConfig, device: torch.device | None = None) -> tuple[nn.Module, History]:
    """Baseline: fine-tune the tail alone on dequantized features (quantization-aware training), at the
    same learning rate as the tail QCNet is trained with (``tail_lr``)."""
    chain = cfg.validate()
    return _fit(task, chain, None, cfg, device or torch.device("cpu"))


def load_qcnet(path: str, field: str = "checkpoint") -> tuple[QCNet, dict[str, Tensor], dict[str, Any]]:
    """QCNet, the fine-tuned tail's state dict and the config of a checkpoint."""
    blob = load_checkpoint(path, "qcnet", field)
    cfg = blob["config"]
    net = QCNet(int(cfg["channels"]), int(cfg["hidden"]), int(cfg["blocks"]), bool(cfg.get("nonneg", True)))
    net.load_state_dict({k[6:]: v for k, v in blob["state"].items() if k.startswith("qcnet.")})
    tail = {k[5:]: v for k, v in blob["state"].items() if k.startswith("tail.")}
    return net.eval(), tail, cfg


@register_codec("qcnet")
@dataclass(frozen=True)
class QCNetStage(LearnedStage):
    """QCNet: identity on the node; on the server, refines the dequantized map of the next stage."""

    loader = staticmethod(load_qcnet)

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        return x, no_side(x.shape[0])

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        check_side(side, self.name)
        with torch.no_grad():
            return self.loaded()[0](y.to(torch.float32))

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """Nothing on the node; QCNet's MACs on the server."""
        return StageCost("macs", self.name, 0.0, float(count_compute(self.loaded()[0], torch.zeros(1, *shape)).macs))


def train(o: TrainOptions, p: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    task = split_task(o, device)
    qspec = [{n: q} for n, q in normalize_spec(p["quantizer"], "quantizer")]
    cfg = QCNetConfig(quantizer=qspec, epochs=p["epochs"], feature_epochs=p["feature_epochs"], seed=o.seed)
    net, tail, hist = train_qcnet(task, cfg, device, o.out)
    chain = cfg.validate()
    return {"history": hist["loss"],
            "metrics": eval_tail(task.head, tail, task, lambda f: net(quantize_roundtrip(chain, f))),
            "codec": [{"qcnet": {"checkpoint": o.out}}, *qspec, LZMA],
            "note": "the server runs the fine-tuned tail stored under 'tail.' in the checkpoint"}


def eval_rows(ctx: EvalContext) -> list[Row]:
    """1-bit binarization with quantization-aware training of the tail (the paper's baseline) and
    with QCNet + its fine-tuned tail."""
    task, s = ctx.task, ctx.settings
    cfg = QCNetConfig(epochs=s.epochs, seed=s.seed)
    qat_tail, _ = train_qat_tail(task, cfg, ctx.device)
    rows = [ctx.measure("split", "QAT of the tail", "1", [{"binarize": {}}, LZMA], qat_tail, ctx.head_c, ctx.tail_c,
                        ctx.f_test)]
    path = ctx.path("qcnet_1bit.pt")
    train_qcnet(task, cfg, ctx.device, path)
    qnet, state, _ = load_qcnet(path)
    tail = copy.deepcopy(task.tail)
    tail.load_state_dict(state)
    rows.append(ctx.measure("split", "QCNet + fine-tuned tail", "1",
                            [{"qcnet": {"checkpoint": path}}, {"binarize": {}}, LZMA], tail.eval(), ctx.head_c,
                            count_compute(Seq(qnet, task.tail), ctx.f_test[:1]), ctx.f_test))
    return rows


METHOD = register_method(Method(
    name="qcnet",
    title="quantization compensator network on the server (Sánchez Leal et al., IEEE Access 2025, "
          "doi:10.1109/ACCESS.2025.3627072)",
    train=train, eval_rows=eval_rows, stages=(QCNetStage,),
    options=(Option("epochs", int, 10, "training epochs"),
             Option("quantizer", str, "binarize", "node quantizer chain (binarize = 1 bit)"),
             Option("feature_epochs", int, 0, "epochs of feature loss only before --epochs (cheap)"))))

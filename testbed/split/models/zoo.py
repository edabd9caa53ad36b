"""Stage decompositions of torchvision models (the split points of the registry).

Every decomposition reuses the model's own submodules in the order its ``forward`` calls them,
so head followed by tail computes exactly what the unsplit model computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from testbed.split.models.registry import ModelSpec, register_model

if TYPE_CHECKING:  # torchvision ships no type information: these names read as Any to mypy
    from torchvision.models import ResNet, VisionTransformer
    from torchvision.models.detection import SSD
    from torchvision.models.vision_transformer import Encoder

__all__ = ["SsdHead", "SsdTail", "VitBlocks", "VitClassHead", "VitPatchEmbed"]

Stages = list[tuple[str, nn.Module]]


def _seq(*modules: nn.Module) -> nn.Sequential:
    return nn.Sequential(*modules)


# --- ResNet (He et al., 2016): stem, then four residual stages -------------------------------------

def _resnet(m: ResNet) -> Stages:
    return [
        ("stem", _seq(m.conv1, m.bn1, m.relu, m.maxpool)),
        ("layer1", m.layer1), ("layer2", m.layer2), ("layer3", m.layer3), ("layer4", m.layer4),
        ("logits", _seq(m.avgpool, nn.Flatten(1), m.fc)),
    ]


_RESNET_POINTS = ("stem", "layer1", "layer2", "layer3", "layer4")
register_model(ModelSpec("resnet18", "classification", _resnet, _RESNET_POINTS))
register_model(ModelSpec("resnet50", "classification", _resnet, _RESNET_POINTS))


# --- "features + avgpool + classifier" families: split at resolution changes ------------------------

def _features_model(bounds: Sequence[tuple[str, int]]) -> Callable[[Any], Stages]:
    """Decompose ``features`` at the given (name, last index) boundaries, then pool + classify."""

    def decompose(model: Any) -> Stages:  # torchvision's MobileNetV3, EfficientNet, ConvNeXt
        feats: nn.Sequential = model.features
        stages: Stages = []
        start = 0
        for name, last in bounds:
            stages.append((name, feats[start:last + 1]))
            start = last + 1
        if start != len(feats):
            raise RuntimeError(f"decomposition leaves features[{start}:] unused")
        pool: list[nn.Module] = [model.avgpool]
        classifier: nn.Sequential = model.classifier
        if not isinstance(classifier[0], nn.Flatten) and not _flattens(classifier):
            pool.append(nn.Flatten(1))
        stages.append(("logits", _seq(*pool, classifier)))
        return stages

    return decompose


def _flattens(classifier: nn.Sequential) -> bool:
    return any(isinstance(m, nn.Flatten) for m in classifier)


# MobileNetV3-Large (Howard et al., 2019): features[0] stem (1/2), [1] (1/2), [2:4] (1/4),
# [4:7] (1/8), [7:13] (1/16), [13:16] (1/32), [16] last 1x1 conv.
_MBV3 = (("stem", 0), ("stage1", 1), ("stage2", 3), ("stage3", 6), ("stage4", 12),
         ("stage5", 15), ("features", 16))
register_model(ModelSpec("mobilenet_v3_large", "classification", _features_model(_MBV3),
                         tuple(n for n, _ in _MBV3)))

# EfficientNetV2-S (Tan & Le, 2021): features[0] stem, [1..6] the six MBConv/Fused stages, [7] head conv.
_EFFV2 = (("stem", 0), *((f"stage{i}", i) for i in range(1, 7)), ("features", 7))
register_model(ModelSpec("efficientnet_v2_s", "classification", _features_model(_EFFV2),
                         tuple(n for n, _ in _EFFV2)))

# ConvNeXt-T (Liu et al., 2022): features = stem, stage1, down, stage2, down, stage3, down, stage4;
# the downsampling layers go with the stage they feed.
_CONVNEXT = (("stem", 0), ("stage1", 1), ("stage2", 3), ("stage3", 5), ("stage4", 7))
register_model(ModelSpec("convnext_tiny", "classification", _features_model(_CONVNEXT),
                         tuple(n for n, _ in _CONVNEXT)))


# --- ViT-B/16 (Dosovitskiy et al., 2021): patch tokens, then groups of encoder blocks ---------------

class VitPatchEmbed(nn.Module):
    """Patchify, project and prepend the class token: ``[N,3,H,W] -> [N,1+HW/P^2,D]``.

    Mirrors ``VisionTransformer._process_input`` followed by the class-token concatenation.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.patch_size: int = vit.patch_size
        self.image_size: int = vit.image_size
        self.hidden_dim: int = vit.hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"ViT expects {self.image_size}x{self.image_size} inputs, got {h}x{w}")
        p = self.patch_size
        x = self.conv_proj(x).reshape(n, self.hidden_dim, (h // p) * (w // p)).permute(0, 2, 1)
        return torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)


class VitBlocks(nn.Module):
    """A run of encoder blocks; the first run adds the position embedding, the last applies the LN."""

    def __init__(self, encoder: Encoder, start: int, stop: int) -> None:
        super().__init__()
        self.first, self.last = start == 0, stop == len(encoder.layers)
        if self.first:
            self.pos_embedding = encoder.pos_embedding
            self.dropout = encoder.dropout
        self.layers = encoder.layers[start:stop]
        if self.last:
            self.ln = encoder.ln

    def forward(self, x: Tensor) -> Tensor:
        if self.first:
            x = self.dropout(x + self.pos_embedding)
        x = self.layers(x)
        return self.ln(x) if self.last else x


class VitClassHead(nn.Module):
    """Take the class token and apply the classification head."""

    def __init__(self, heads: nn.Module) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(x[:, 0])


def _vit(model: VisionTransformer) -> Stages:
    enc = model.encoder
    return [
        ("patch_embed", VitPatchEmbed(model)),
        ("block3", VitBlocks(enc, 0, 3)), ("block6", VitBlocks(enc, 3, 6)),
        ("block9", VitBlocks(enc, 6, 9)), ("encoder", VitBlocks(enc, 9, 12)),
        ("logits", VitClassHead(model.heads)),
    ]


register_model(ModelSpec("vit_b_16", "classification", _vit,
                         ("patch_embed", "block3", "block6", "block9", "encoder"), fixed_input=True))


# --- SSDlite320 on MobileNetV3-Large (Liu et al., 2016; Sandler et al., 2018) ----------------------

class SsdHead(nn.Module):
    """SSD's input transform (normalize, resize to 320) followed by the first backbone blocks."""

    def __init__(self, ssd: SSD, stop: int) -> None:
        super().__init__()
        self.transform = ssd.transform
        self.blocks = ssd.backbone.features[0][:stop]

    def forward(self, x: Tensor) -> Tensor:
        images, _ = self.transform(list(x))
        return self.blocks(images.tensors)


class SsdTail(nn.Module):
    """The remaining backbone blocks, extra layers, SSD heads, anchors and box post-processing.

    The device side sends only the feature map, so the tail assumes the head's input was a
    ``size x size`` image (the dataset preprocessing guarantees it).
    """

    def __init__(self, ssd: SSD, start: int, size: int) -> None:
        super().__init__()
        self.ssd = [ssd]
        self.rest = ssd.backbone.features[0][start:]
        self.c5 = ssd.backbone.features[1]
        self.extra = ssd.backbone.extra
        self.head = ssd.head
        self.size = size

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        from torchvision.models.detection.image_list import ImageList

        ssd = self.ssd[0]
        features = [self.rest(x)]
        features.append(self.c5(features[-1]))
        for block in self.extra:
            features.append(block(features[-1]))
        n = x.shape[0]
        sizes = [(self.size, self.size)] * n
        images = ImageList(torch.zeros((), dtype=x.dtype, device=x.device).expand(n, 3, self.size, self.size), sizes)
        head_outputs = self.head(features)
        anchors = ssd.anchor_generator(images, features)
        detections = ssd.postprocess_detections(head_outputs, anchors, sizes)
        return ssd.transform.postprocess(detections, sizes, sizes)


# Split points inside the backbone's first block: stem (1/2), stage2 (1/4), stage3 (1/8), stage4 (1/16).
_SSD = (("stem", 1), ("stage2", 4), ("stage3", 7), ("stage4", 13))


def _ssdlite(model: SSD) -> Stages:
    stages: Stages = []
    start = 0
    for i, (name, stop) in enumerate(_SSD):
        mod = SsdHead(model, stop) if i == 0 else model.backbone.features[0][start:stop]
        stages.append((name, mod))
        start = stop
    stages.append(("detections", SsdTail(model, start, 320)))
    return stages


register_model(ModelSpec("ssdlite320_mobilenet_v3_large", "detection", _ssdlite,
                         tuple(n for n, _ in _SSD), crop=320, resize=320, fixed_input=True,
                         build_kwargs={"weights_backbone": None}))

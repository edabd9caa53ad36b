"""Build registered models with random (seeded), torchvision-named or checkpoint weights."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from testbed.errors import ConfigError, TestbedError
from testbed.split.models.registry import ModelSpec, get_spec

if TYPE_CHECKING:  # torchvision ships no type information (Any to mypy)
    from torchvision.models import WeightsEnum

__all__ = ["PRETRAINED", "WeightsError", "is_checkpoint_path", "load_model", "packaged_weights", "weights_enum"]

PRETRAINED = ("pretrained", "DEFAULT")
"""Weights names that select a model's pretrained weights (``DEFAULT`` also for torchvision enums)."""


class WeightsError(TestbedError):
    """Named weights that are neither cached nor downloadable, or an unreadable checkpoint."""


def is_checkpoint_path(weights: str) -> bool:
    """True when ``weights`` names a file (a checkpoint) rather than a torchvision weights enum."""
    return os.sep in weights or weights.endswith((".pt", ".pth", ".ckpt", ".bin")) or Path(weights).is_file()


def packaged_weights(spec: ModelSpec, weights: str, path: str = "weights") -> Path:
    """The state dict behind ``weights: pretrained`` (or ``DEFAULT``) of a model that brings its own
    (``spec.pretrained``): a file inside an installed package."""
    if spec.pretrained is None:
        raise ConfigError(path, weights, f"{spec.name} has no packaged weights")
    if weights not in PRETRAINED:
        raise ConfigError(path, weights, "one of random, pretrained, DEFAULT, <checkpoint path>")
    try:
        file = spec.pretrained()
    except ModuleNotFoundError as exc:
        raise WeightsError(str(exc)) from None
    if not file.is_file():
        raise WeightsError(f"the pretrained weights of {spec.name} are missing: {file}")
    return file


def weights_enum(spec: ModelSpec, weights: str, path: str = "weights") -> WeightsEnum:
    """Resolve a torchvision weights name (``DEFAULT`` or ``pretrained``, ``IMAGENET1K_V2``, or the full
    enum name). For a model with packaged weights (``spec.pretrained``) this only checks the name and
    that the weights are installed, and returns None."""
    from torchvision.models import get_model_weights

    if spec.pretrained is not None:
        packaged_weights(spec, weights, path)
        return None
    enum = get_model_weights(spec.name)
    key = weights.split(".")[-1]
    if key in PRETRAINED:
        return enum.DEFAULT
    try:
        return enum[key]
    except KeyError:
        names = ", ".join(["random", "DEFAULT", *enum.__members__, "<checkpoint path>"])
        raise ConfigError(path, weights, f"one of {names}") from None


def load_model(name: str, weights: str = "random", seed: int = 0) -> nn.Module:
    """Build model ``name`` in eval mode.

    ``weights`` is ``"random"`` (torchvision's initialisation under ``torch.manual_seed(seed)``
    inside a forked RNG, so the global RNG is untouched), a torchvision weights name (the model built
    with ``weights=None`` and the enum's file in the hub cache, downloaded where reachable, checked
    against the hash in its name and read with ``weights_only=True``) or a checkpoint path, read with
    ``torch.load(..., weights_only=True)`` (a state dict, or a dict holding one under
    ``state_dict``/``model``). A model with packaged weights (``spec.pretrained``, e.g.
    ``efficientnet_lite0``) takes ``pretrained``/``DEFAULT``, read the same way, strictly.
    """
    from torchvision.models import get_model

    spec = get_spec(name)
    kwargs = dict(spec.build_kwargs)
    packaged = spec.pretrained is not None and weights != "random" and not is_checkpoint_path(weights)
    if weights == "random" or is_checkpoint_path(weights) or packaged:
        file = packaged_weights(spec, weights) if packaged else Path(weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = spec.build_model()
        if weights != "random":
            _load_checkpoint(model, file)
    else:
        enum = weights_enum(spec, weights)
        kwargs.pop("weights_backbone", None)
        kwargs.update(_enum_kwargs(name, enum))
        file = _hub_weights(name, enum)
        model = get_model(name, weights=None, **kwargs)
        _load_checkpoint(model, file)
    return model.eval()


def _enum_kwargs(name: str, enum: WeightsEnum) -> dict[str, object]:
    """The builder arguments torchvision derives from a weights enum (it is not passed to the builder)."""
    meta = enum.meta
    out: dict[str, object] = {}
    if "categories" in meta and meta["categories"] is not None:
        out["num_classes"] = len(meta["categories"])
    if name.startswith("vit_") and "min_size" in meta:
        out["image_size"] = int(meta["min_size"][0])
    return out


def _hub_weights(name: str, enum: WeightsEnum) -> Path:
    """The torchvision weights file of ``enum`` in the hub cache, downloaded where missing (checked
    against the hash prefix in its name, as ``torch.hub`` does): a cached file that does not match is a
    :class:`WeightsError` naming it; nothing is unpickled here."""
    url = str(enum.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    match = torch.hub.HASH_REGEX.search(cached.name)
    prefix = match.group(1) if match else ""
    if not cached.exists():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), prefix or None, progress=False)
        except Exception as exc:  # no network, refused, hash mismatch of the download: all one message
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise WeightsError(
                f"weights {name}.{enum.name} are not cached at {cached} and could not be fetched "
                f"({type(exc).__name__}: {_clip(first)}); use --weights random or a checkpoint path") from None
    if not cached.is_file():
        raise WeightsError(f"weights {name}.{enum.name}: {cached} is not a file; delete it")
    if prefix:
        digest = _sha256(cached)
        if not digest.startswith(prefix):
            raise WeightsError(f"weights file {cached} is corrupt or was replaced (sha256 {digest[:len(prefix)]}..., "
                               f"its name expects {prefix}...); delete it to download it again")
    return cached


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_checkpoint(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ConfigError("weights", str(path), "'random', a torchvision weights name or an existing checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(f"cannot read weights file {path} as a plain state dict (weights_only): "
                           f"{type(exc).__name__}: {_clip(first)}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise WeightsError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"checkpoint {path} does not fit {type(model).__name__}: {first}") from None

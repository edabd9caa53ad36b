"""Codec stages and their registry.

A codec chain is ``tensor stages -> one serializer -> byte stages``:

* :class:`TensorStage` maps a batch of feature tensors to a batch of tensors (quantizers, casts,
  later learned analysis/synthesis transforms) and returns per-image side information (scales,
  zero points) as bytes that travel in the payload header;
* :class:`Serializer` turns one image's tensor into bytes (bit packing, raw bytes);
* :class:`ByteStage` maps bytes to bytes (entropy coders: lzma, zlib, zstd).

Stages register themselves with :func:`register_codec` (as CompressAI registers its models) in the
:data:`CODECS` registry and are built from ``{name: {param: value}}`` dicts; parameters are
validated against the stage's dataclass fields so that errors name the offending field. Each stage
declares how a device profile charges it (:meth:`Stage.cost`, a
:class:`~testbed.core.charges.StageCost`). The built-in stages are registered when
:mod:`testbed.split.codecs` is imported; plug-ins (the learned stages of :mod:`testbed.research`)
register themselves when their package is imported: this kit never imports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from torch import Tensor

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.registry import Registry

__all__ = [
    "CODECS",
    "ByteStage",
    "Codes",
    "Serializer",
    "Stage",
    "TensorStage",
    "build_stage",
    "codec_names",
    "get_codec",
    "register_codec",
]


@dataclass(frozen=True)
class Codes:
    """One image's tensor as it leaves the tensor stages.

    ``array`` is a numpy array (float or unsigned integer codes); ``bits`` is the number of valid
    low bits per integer code (``None`` for floats, which are serialized as raw bytes).
    """

    array: np.ndarray
    bits: int | None = None


@dataclass(frozen=True)
class Stage:
    """Base of all stages. Subclasses are frozen dataclasses whose fields are the parameters."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: parameters written to the spec even at their default (shown in tables, pinned in headers)
    always: ClassVar[tuple[str, ...]] = ()
    #: parameters naming files of the machine that runs the stage (a checkpoint): never written to a
    #: payload header, and a header that carries one is refused (the receiver uses its own chain)
    local: ClassVar[tuple[str, ...]] = ()

    def validate(self, path: str) -> None:
        """Raise ConfigError (with ``path.<field>``) for invalid parameter values."""

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """How a device profile charges this stage on one item of ``shape`` (default: per element)."""
        return StageCost("element", self.name)

    def to_spec(self) -> dict[str, dict[str, Any]]:
        """The ``{name: {params}}`` form, omitting parameters left at their defaults."""
        params = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if value != default or f.name in self.always:
                params[f.name] = value
        return {self.name: params}

    def header_spec(self) -> dict[str, dict[str, Any]]:
        """:meth:`to_spec` without the :attr:`local` parameters: what a payload header records."""
        ((name, params),) = self.to_spec().items()
        return {name: {k: v for k, v in params.items() if k not in self.local}}


class TensorStage(Stage):
    """Tensor -> tensor transform over a batch ``[N, *shape]`` with per-image side information."""

    kind: ClassVar[str] = "tensor"

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        """Transform a float batch; return the transformed batch and one side-info blob per image."""
        raise NotImplementedError

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        """Invert :meth:`encode` for a batch given the per-image side information."""
        raise NotImplementedError

    def output_bits(self) -> int | None:
        """Valid bits per element of the encoded tensor when it holds integer codes, else None."""
        return None

    def encoded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one item after :meth:`encode` (the next stage's input; default unchanged)."""
        return shape

    def tuned_tail(self, model: str, split: str, tail: Any) -> Any | None:
        """A tail fine-tuned for this stage on ``model`` at ``split`` (a copy of ``tail`` with new
        weights), or None to keep the model's own tail (the default)."""
        return None


class Serializer(Stage):
    """One image's tensor <-> bytes. The serializer records the dtype and shape it needs."""

    kind: ClassVar[str] = "serialize"

    def encode(self, codes: Codes) -> tuple[bytes, bytes]:
        """Return ``(body, side)``: the serialized tensor and what is needed to read it back."""
        raise NotImplementedError

    def expected_size(self, side: bytes) -> int:
        """Exact body size implied by ``side`` (bounds the lossless decoders)."""
        raise NotImplementedError

    def decode(self, data: bytes, side: bytes) -> np.ndarray:
        raise NotImplementedError


class ByteStage(Stage):
    """Bytes -> bytes transform (lossless coders)."""

    kind: ClassVar[str] = "bytes"

    def cost(self, shape: tuple[int, ...]) -> StageCost:
        """Charged per uncompressed byte at the profile's throughput for ``name:k=v...``."""
        ((name, params),) = self.to_spec().items()
        return StageCost("bytes", name + "".join(f":{k}={v}" for k, v in sorted(params.items())))

    def encode(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, max_size: int) -> bytes:
        """Invert :meth:`encode`; output longer than ``max_size`` bytes is an error."""
        raise NotImplementedError


S = TypeVar("S", bound=type[Stage])
CODECS: Registry[type[Stage]] = Registry("codec stage")


def register_codec(name: str) -> Callable[[S], S]:
    """Class decorator adding a stage class to :data:`CODECS` under ``name``."""

    def deco(cls: S) -> S:
        CODECS.add(name, cls)
        cls.name = name
        return cls

    return deco


def codec_names() -> list[str]:
    """Names of all registered stages."""
    return list(CODECS.names())


def get_codec(name: str, path: str = "codec") -> type[Stage]:
    """The stage class registered as ``name``; unknown names raise ConfigError listing the known."""
    return CODECS.get(name, path)


def build_stage(name: str, params: dict[str, Any] | None, path: str) -> Stage:
    """Instantiate stage ``name`` with ``params``, validating names, types and values."""
    cls = get_codec(name, path)
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key not in fields:
            allowed = ", ".join(fields) if fields else "no parameters"
            raise ConfigError(f"{path}.{name}.{key}", value, f"parameters of {name}: {allowed}")
        kwargs[key] = _coerce(value, fields[key], f"{path}.{name}.{key}")
    stage = cls(**kwargs)
    stage.validate(f"{path}.{name}")
    return stage


def _coerce(value: Any, f: dataclasses.Field[Any], path: str) -> Any:
    """Check a parameter against its annotation (int, float, str, bool and unions thereof)."""
    ann = str(f.type)
    ok: list[type] = []
    for t, word in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if word in ann:
            ok.append(t)
    if isinstance(value, bool) and bool not in ok:
        raise ConfigError(path, value, f"a value of type {ann}")
    if isinstance(value, int) and not isinstance(value, bool) and int not in ok and float in ok:
        return float(value)
    if ok and not isinstance(value, tuple(ok)):
        raise ConfigError(path, value, f"a value of type {ann}")
    return value

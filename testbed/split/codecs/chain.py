"""Codec chains: parsing from YAML-style specs or a compact string, batched encode and decode."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from testbed.core.charges import StageCost
from testbed.errors import ConfigError
from testbed.split.codecs.base import ByteStage, Codes, Serializer, Stage, TensorStage, build_stage, get_codec
from testbed.split.codecs.errors import PayloadError
from testbed.split.codecs.pack import Pack
from testbed.split.codecs.payload import Frame, encode_spec, read_frame, write_frame

__all__ = ["MAX_ELEMENTS", "CodecChain", "EncodeResult", "decode_payloads", "normalize_spec", "parse_chain",
           "parse_codec_string", "with_bits"]

_RAW_NAMES = ("none", "raw", "float32", "identity")


@dataclass(frozen=True)
class EncodeResult:
    """Payloads of a batch with per-image encode wall time (batched tensor stages split evenly)."""

    payloads: list[bytes]
    seconds: np.ndarray


@dataclass
class CodecChain:
    """Tensor stages, one serializer and byte stages, applied per image of a batch.

    ``encode`` returns one self-describing payload per image (see :mod:`testbed.codecs.payload`);
    ``decode`` decodes with this chain (the receiver's own), after checking that the payload's header
    names the same chain; the header never names a file.
    ``timings`` accumulates wall seconds per ``(direction, stage name)``.
    """

    tensor_stages: list[TensorStage]
    serializer: Serializer
    byte_stages: list[ByteStage]
    explicit_serializer: bool = False
    timings: dict[tuple[str, str], float] = field(default_factory=dict)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: Any, path: str = "codec") -> CodecChain:
        """Build from a list of ``{name: {params}}`` (or bare names), a string, or None (raw float32)."""
        return parse_chain(spec, path)

    def _stages(self) -> list[Stage]:
        stages: list[Stage] = [*self.tensor_stages]
        if self.explicit_serializer:
            stages.append(self.serializer)
        return stages + list(self.byte_stages)

    def spec(self) -> list[dict[str, dict[str, Any]]]:
        """The canonical list form (defaults omitted; the implicit serializer left out)."""
        return [s.to_spec() for s in self._stages()]

    def header_spec(self) -> list[dict[str, dict[str, Any]]]:
        """:meth:`spec` as payload headers record it: without file paths (checkpoints)."""
        return [s.header_spec() for s in self._stages()]

    def encoded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one item of ``shape`` after the tensor stages (what the serializer packs)."""
        for stage in self.tensor_stages:
            shape = tuple(stage.encoded_shape(shape))
        return shape

    def describe(self) -> str:
        """Compact one-line form, e.g. ``quantize:bits=1,lzma:preset=6`` (``float32`` when empty)."""
        parts = []
        for item in self.spec():
            ((name, params),) = item.items()
            kv = ",".join(f"{k}={v}" for k, v in params.items())
            parts.append(f"{name}:{kv}" if kv else name)
        return ",".join(parts) or "float32"

    @property
    def bits(self) -> int | None:
        """Bits per element of the serialized codes, or None for float payloads."""
        for stage in reversed(self.tensor_stages):
            b = stage.output_bits()
            if b is not None:
                return b
        return None

    def costs(self, feature_shape: tuple[int, ...]) -> list[StageCost]:
        """How a device profile charges each stage, in chain order, for one feature map of
        ``feature_shape`` (each stage declares its own :meth:`~testbed.split.codecs.Stage.cost`)."""
        out: list[StageCost] = []
        shape = tuple(feature_shape)
        for stage in self.tensor_stages:
            out.append(stage.cost(shape))
            shape = stage.encoded_shape(shape)
        out.append(self.serializer.cost(shape))
        out += [stage.cost(shape) for stage in self.byte_stages]
        return out

    @property
    def lossless(self) -> bool:
        """True when decode(encode(x)) == x exactly (no tensor stages)."""
        return not self.tensor_stages

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> list[bytes]:
        """Encode a batch ``[N, *shape]`` of features into N payloads."""
        return self.encode_timed(x).payloads

    def encode_timed(self, x: Tensor) -> EncodeResult:
        """:meth:`encode` with per-image wall time."""
        if x.dim() < 2:
            raise ValueError("encode expects a batch [N, *shape]")
        dtype = "float16" if x.dtype == torch.float16 else "float32"
        n = x.shape[0]
        shared = 0.0
        sides: list[list[bytes]] = []
        y = x.detach()
        for stage in self.tensor_stages:
            t0 = time.perf_counter()
            y, side = stage.encode(y)
            dt = time.perf_counter() - t0
            self._tick("encode", stage.name, dt)
            shared += dt
            sides.append(side)
        t0 = time.perf_counter()
        arr = y.cpu().numpy()
        shared += time.perf_counter() - t0
        bits = self.bits
        payloads: list[bytes] = []
        seconds = np.full(n, shared / max(n, 1))
        spec = encode_spec(self.header_spec())
        shape = tuple(x.shape[1:])
        for i in range(n):
            t0 = time.perf_counter()
            body, ser_side = self.serializer.encode(Codes(arr[i], bits))
            t1 = time.perf_counter()
            self._tick("encode", self.serializer.name, t1 - t0)
            for bstage in self.byte_stages:
                ts = time.perf_counter()
                body = bstage.encode(body)
                self._tick("encode", bstage.name, time.perf_counter() - ts)
            ts = time.perf_counter()
            payloads.append(write_frame(dtype, shape, spec, [s[i] for s in sides] + [ser_side], body))
            self._tick("encode", "frame", time.perf_counter() - ts)
            seconds[i] += time.perf_counter() - t0
        return EncodeResult(payloads, seconds)

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, payload: bytes, expected_shape: Sequence[int] | None = None) -> Tensor:
        """Decode one payload of this chain to a tensor of the feature shape (no batch dimension)."""
        return decode_payloads([payload], self, expected_shape)[0]

    def decode_batch(self, payloads: Sequence[bytes], expected_shape: Sequence[int] | None = None) -> Tensor:
        """Decode payloads of this chain and equal shape into a batch ``[N, *shape]``."""
        return decode_payloads(payloads, self, expected_shape)

    def _tick(self, direction: str, name: str, seconds: float) -> None:
        key = (direction, name)
        self.timings[key] = self.timings.get(key, 0.0) + seconds


#: elements of one decoded item when the caller names no expected shape (64 M: 256 MB as float32)
MAX_ELEMENTS = 1 << 26


def decode_payloads(payloads: Sequence[bytes], chain: CodecChain | None = None,
                    expected_shape: Sequence[int] | None = None, *, max_elements: int = MAX_ELEMENTS) -> Tensor:
    """Decode payloads into a batch ``[N, *shape]``; any failure is a :class:`PayloadError`.

    ``chain`` is the receiver's own chain: each header must name it (``chain.header_spec()``), and
    decoding uses it, never anything the header names. Without ``chain`` the header's chain is built,
    which only works for stages that need no file (learned stages need the receiver's chain).
    ``expected_shape`` is the per-item feature shape the receiver takes (the model's shape at the
    split): a header claiming another shape is refused before anything is decompressed, and every
    decompressor is capped by the size that shape implies. Without it, an item may have at most
    ``max_elements`` elements. Payloads in one call must share chain and shape.
    """
    if not payloads:
        raise ValueError("no payloads to decode")
    frames: list[Frame] = []
    t0 = time.perf_counter()
    for p in payloads:
        f = read_frame(p)
        if frames and (f.spec_bytes != frames[0].spec_bytes or f.shape != frames[0].shape
                       or f.dtype != frames[0].dtype):
            raise PayloadError("payloads decoded together must share codec chain, shape and dtype")
        frames.append(f)
    if chain is not None:
        chain._tick("decode", "frame", time.perf_counter() - t0)
    first = frames[0]
    _check_shape(first.shape, expected_shape, max_elements)
    built = _receiver_chain(first, chain)
    timer = chain if chain is not None else _Discard()
    ser_shape = built.encoded_shape(first.shape)
    n_side = len(built.tensor_stages) + 1
    arrays = []
    for f in frames:
        if len(f.blobs) != n_side:
            raise PayloadError(f"payload has {len(f.blobs)} side-info blocks, its chain needs {n_side}")
        ser_side = f.blobs[-1]
        expected = _serialized_size(built, ser_side, ser_shape)
        body = f.body
        bound = expected + expected // 8 + 1024  # an inner coder's output may exceed the final size a little
        for stage in reversed(built.byte_stages):
            ts = time.perf_counter()
            body = _guard(stage.name, stage.decode, body, bound)
            timer._tick("decode", stage.name, time.perf_counter() - ts)
        if len(body) != expected:
            raise PayloadError(f"payload body decodes to {len(body)} bytes, its shape needs {expected}")
        ts = time.perf_counter()
        arrays.append(_guard(built.serializer.name, built.serializer.decode, body, ser_side))
        timer._tick("decode", built.serializer.name, time.perf_counter() - ts)
    if any(a.shape != arrays[0].shape or a.dtype != arrays[0].dtype for a in arrays):
        raise PayloadError("payloads decoded together serialize tensors of different shapes")
    y = torch.from_numpy(np.stack(arrays))
    for k in range(len(built.tensor_stages) - 1, -1, -1):
        tstage = built.tensor_stages[k]
        t1 = time.perf_counter()
        y = _guard(tstage.name, tstage.decode, y, [f.blobs[k] for f in frames])
        timer._tick("decode", tstage.name, time.perf_counter() - t1)
    out = y.to(torch.float16 if first.dtype == "float16" else torch.float32)
    if tuple(out.shape[1:]) != first.shape:
        raise PayloadError(f"decoded shape {tuple(out.shape[1:])} differs from the header's {first.shape}")
    return out


def _check_shape(shape: tuple[int, ...], expected: Sequence[int] | None, max_elements: int) -> None:
    """The header's shape against what the receiver takes (checked before any allocation)."""
    if expected is not None:
        if shape != tuple(int(d) for d in expected):
            raise PayloadError(f"payload claims shape {_clip(shape)}, this receiver takes {tuple(expected)}")
        return
    count = 1
    for d in shape:
        count *= d
    if count > max_elements:
        raise PayloadError(f"payload claims shape {_clip(shape)} ({count} elements), at most {max_elements} "
                           "are accepted")


def _serialized_size(chain: CodecChain, side: bytes, ser_shape: tuple[int, ...]) -> int:
    """Exact serialized body size, after checking the serializer's side information against the
    shape and code width the receiver's chain produces."""
    if isinstance(chain.serializer, Pack):
        _dtype, bits, shape = Pack.parse_side(side)
        if bits != (chain.bits or 0):
            raise PayloadError(f"payload packs {bits}-bit codes, its chain makes {chain.bits or 0}-bit codes")
        if shape != ser_shape:
            raise PayloadError(f"payload packs a tensor of shape {_clip(shape)}, its chain makes {ser_shape}")
    expected = _guard(chain.serializer.name, chain.serializer.expected_size, side)
    elements = 1
    for d in ser_shape:
        elements *= d
    if not 0 <= expected <= 8 * elements:
        raise PayloadError(f"payload serializer claims {expected} bytes for {elements} elements")
    return int(expected)


def _receiver_chain(frame: Frame, chain: CodecChain | None) -> CodecChain:
    """The chain to decode ``frame`` with: ``chain`` when the header names it, else the header's own
    (refused for stages that need files, and for any header that carries a path)."""
    _refuse_paths(frame.spec)
    if chain is not None:
        mine = encode_spec(chain.header_spec())
        if frame.spec_bytes != mine:
            raise PayloadError(f"payload was encoded with codec {_clip(frame.spec_bytes.decode('utf-8', 'replace'))}, "
                               f"this receiver decodes {mine.decode()}")
        return chain
    return _chain_from_header(frame.spec_bytes)


def _refuse_paths(spec: list[Any]) -> None:
    """A header naming a file (a stage's local parameter, or any value that looks like a path)."""
    for item in spec:
        if not isinstance(item, dict) or len(item) != 1:
            raise PayloadError("malformed codec spec in payload header (a stage is not {name: {params}})")
        ((name, params),) = item.items()
        if params is None:
            continue
        if not isinstance(params, dict):
            raise PayloadError(f"malformed codec spec in payload header (parameters of {_clip(name)})")
        try:
            local = get_codec(name, "payload.spec").local
        except ConfigError:
            raise PayloadError(f"payload header names an unknown codec stage {_clip(name)}") from None
        for key, value in params.items():
            if key in local or (isinstance(value, str) and ("/" in value or "\\" in value)):
                raise PayloadError(f"payload header carries a file path ({name}.{_clip(key)}); payloads "
                                   "never name files, the receiver decodes with its own codec chain")


def _guard(name: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with what a stage raises on hostile input turned into a PayloadError."""
    try:
        return fn(*args)
    except PayloadError:
        raise
    except (ValueError, RuntimeError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        raise PayloadError(f"{name}: payload does not decode ({type(exc).__name__}: "
                           f"{_clip(str(exc).splitlines()[0] if str(exc) else '')})") from None


def _clip(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Discard:
    """Timing sink used when the caller does not collect timings."""

    def _tick(self, direction: str, name: str, seconds: float) -> None:
        pass


@functools.lru_cache(maxsize=256)
def _chain_from_header(spec_bytes: bytes) -> CodecChain:
    """The chain a header names (cached: a stream of payloads shares one spec); stages that need a
    file are refused (decode those with the receiver's chain)."""
    try:
        spec = json.loads(spec_bytes)
        for item in spec:
            ((name, _params),) = item.items()
            if get_codec(name, "payload.spec").local:
                raise PayloadError(f"payload uses the learned stage {name}: decode it with the receiver's codec "
                                   "chain (the scenario's codec)")
        return parse_chain(spec, "payload.spec")
    except ConfigError as exc:
        raise PayloadError(f"payload header names an invalid codec chain ({exc})") from None


# -- parsing ---------------------------------------------------------------------------------------

def with_bits(stages: Sequence[Mapping[str, Any]], bits: Sequence[int]) -> list[list[dict[str, Any]]]:
    """A chain (``[{name: params}, ...]``) once per bit width in ``bits`` when it has a ``quantize`` stage
    (that stage's ``bits`` set), else once as it is."""
    chain = [dict(stage) for stage in stages]
    if not bits or not any("quantize" in stage for stage in chain):
        return [chain]
    return [[{n: ({**(p or {}), "bits": b} if n == "quantize" else p) for n, p in stage.items()} for stage in chain]
            for b in bits]


def normalize_spec(spec: Any, path: str = "codec") -> list[tuple[str, dict[str, Any]]]:
    """Turn any accepted spec form into ``[(name, params), ...]``.

    Accepted: None or ``"none"``/``"float32"`` (no stages), a compact string
    (``quantize:bits=1,lzma:preset=6``), a YAML/JSON list in a string or a file path, or a list
    whose items are names or single-key dicts ``{name: {params} | None}``.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in _RAW_NAMES or not text:
            return []
        if text[0] in "[{":
            return normalize_spec(_yaml(text, path), path)
        if text.endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
            return normalize_spec(_yaml(Path(text).read_text(), path), path)
        return parse_codec_string(text, path)
    if isinstance(spec, dict):
        if "codec" in spec and len(spec) == 1:
            return normalize_spec(spec["codec"], path)
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ConfigError(path, spec, "a list of codec stages, e.g. [{quantize: {bits: 8}}, {lzma: {preset: 6}}]")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(spec):
        where = f"{path}.{i}"
        if isinstance(item, str):
            out.append((item, {}))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(where, item, "a stage name or a single-key mapping {name: {params}}")
        ((name, params),) = item.items()
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.{name}", params, "a mapping of parameters")
        out.append((str(name), dict(params)))
    return out


def parse_codec_string(text: str, path: str = "codec") -> list[tuple[str, dict[str, Any]]]:
    """Parse ``name[:k=v[,k=v]...][,name...]``; ``+`` may also separate stages.

    A comma-separated token containing ``:`` or no ``=`` starts a new stage; a bare ``k=v`` token
    adds a parameter to the current stage. Values are read as YAML scalars (``6``, ``0.5``, ``true``).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for token in (t.strip() for t in text.replace("+", ",").split(",")):
        if not token:
            continue
        if ":" in token or "=" not in token:
            name, _, rest = token.partition(":")
            out.append((name.strip(), {}))
            if rest.strip():
                token = rest
            else:
                continue
        if not out:
            raise ConfigError(path, text, "stages like quantize:bits=1,lzma:preset=6")
        key, sep, value = token.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}.{len(out) - 1}.{out[-1][0]}", token, "parameters as key=value")
        out[-1][1][key.strip()] = _scalar(value.strip())
    return out


def parse_chain(spec: Any, path: str = "codec") -> CodecChain:
    """Build and validate a :class:`CodecChain`; errors are ConfigErrors naming ``path.i.stage.param``."""
    items = normalize_spec(spec, path)
    tensor: list[TensorStage] = []
    serializer: Serializer | None = None
    byte: list[ByteStage] = []
    for i, (name, params) in enumerate(items):
        where = f"{path}.{i}"
        cls = get_codec(name, where)
        stage = build_stage(name, params, where)
        if isinstance(stage, TensorStage):
            if serializer is not None or byte:
                raise ConfigError(where, name, "tensor stages must come before pack and the byte coders")
            if tensor and tensor[-1].output_bits() is not None:
                raise ConfigError(where, name, f"nothing may follow the quantizer {tensor[-1].name} "
                                               "among the tensor stages")
            tensor.append(stage)
        elif isinstance(stage, Serializer):
            if serializer is not None or byte:
                raise ConfigError(where, name, "a single serializer, before the byte coders")
            serializer = stage
        elif isinstance(stage, ByteStage):
            byte.append(stage)
        else:  # pragma: no cover - a registered class of an unknown kind
            raise ConfigError(where, name, f"a stage of kind tensor, serialize or bytes, not {cls.kind}")
    return CodecChain(tensor, serializer or Pack(), byte, explicit_serializer=serializer is not None)


def _yaml(text: str, path: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, text, f"valid YAML/JSON ({str(exc).splitlines()[0]})") from None


def _scalar(value: str) -> Any:
    try:
        return yaml.safe_load(value) if value else value
    except yaml.YAMLError:
        return value


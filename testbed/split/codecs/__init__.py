"""Feature-map codecs for the split point: quantizers, packing, casts and lossless coders.

Build a chain with :func:`parse_chain` (or ``CodecChain.from_spec``) from
``[{"quantize": {"bits": 1}}, {"lzma": {"preset": 6}}]`` or ``"quantize:bits=1,lzma:preset=6"``;
``chain.encode(batch)`` gives one self-describing payload per image and
:func:`decode_payloads` restores tensors with the receiver's chain, bounded by the shape it expects. Importing this package registers
the built-in stages; learned stages are plug-ins registered by :mod:`testbed.research`.
"""

from collections.abc import Sequence

from torch import Tensor

from testbed.split.codecs import cast, lossless, pack, quantize  # noqa: F401  (register the built-in stages)
from testbed.split.codecs.base import (
    CODECS,
    ByteStage,
    Codes,
    Serializer,
    Stage,
    TensorStage,
    build_stage,
    codec_names,
    get_codec,
    register_codec,
)
from testbed.split.codecs.chain import (
    MAX_ELEMENTS,
    CodecChain,
    EncodeResult,
    decode_payloads,
    normalize_spec,
    parse_chain,
    parse_codec_string,
    with_bits,
)
from testbed.split.codecs.errors import PayloadError
from testbed.split.codecs.pack import pack_bits, packed_size, unpack_bits
from testbed.split.codecs.payload import MAGIC, VERSION, Frame, read_frame

__all__ = [
    "CODECS",
    "MAGIC",
    "MAX_ELEMENTS",
    "VERSION",
    "ByteStage",
    "CodecChain",
    "Codes",
    "EncodeResult",
    "Frame",
    "PayloadError",
    "Serializer",
    "Stage",
    "TensorStage",
    "build_stage",
    "codec_names",
    "decode_payload",
    "decode_payloads",
    "get_codec",
    "normalize_spec",
    "pack_bits",
    "packed_size",
    "parse_chain",
    "parse_codec_string",
    "read_frame",
    "register_codec",
    "unpack_bits",
    "with_bits",
]


def decode_payload(payload: bytes, chain: CodecChain | None = None,
                   expected_shape: Sequence[int] | None = None) -> Tensor:
    """Decode one payload (see :func:`decode_payloads`: pass the receiver's chain and expected shape)."""
    return decode_payloads([payload], chain, expected_shape)[0]

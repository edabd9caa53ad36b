"""Corrupted, truncated or foreign payloads are rejected with PayloadError; bad specs with ConfigError."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
import torch

from testbed import errors
from testbed.errors import ConfigError
from testbed.split.codecs import MAGIC, PayloadError, decode_payload, parse_chain, parse_codec_string

CHAINS = ["float32", "float16,zstd", "quantize:bits=1,lzma:preset=6", "quantize:bits=5,granularity=channel,zlib",
          "binarize,zstd:level=5", "quantize:bits=8,clip=percentile"]


def _payload(spec: str) -> bytes:
    x = torch.randn(2, 8, 5, 3, generator=torch.Generator().manual_seed(0))
    return parse_chain(spec).encode(x)[0]


def _reseal(body: bytes) -> bytes:
    """Recompute the CRC so that only the structural checks can catch a forged payload."""
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("spec", CHAINS)
def test_every_single_byte_flip_is_rejected(spec: str) -> None:
    payload = _payload(spec)
    positions = range(len(payload)) if len(payload) < 800 else range(0, len(payload), max(1, len(payload) // 400))
    for pos in positions:
        for mask in (0x01, 0x80):
            bad = bytearray(payload)
            bad[pos] ^= mask
            with pytest.raises(PayloadError):
                decode_payload(bytes(bad))


@pytest.mark.parametrize("spec", CHAINS)
def test_every_truncation_and_extension_is_rejected(spec: str) -> None:
    payload = _payload(spec)
    cuts = set(range(0, min(len(payload), 64))) | set(range(0, len(payload), max(1, len(payload) // 200)))
    for n in sorted(cuts):
        with pytest.raises(PayloadError):
            decode_payload(payload[:n])
    with pytest.raises(PayloadError):
        decode_payload(payload + b"\0")


def test_wrong_magic_and_version_are_named() -> None:
    payload = _payload("quantize:bits=4")
    with pytest.raises(PayloadError, match="magic"):
        decode_payload(_reseal(b"XXXX" + payload[4:-4]))
    with pytest.raises(PayloadError, match="version 9"):
        decode_payload(_reseal(payload[:4] + bytes([9]) + payload[5:-4]))
    assert payload.startswith(MAGIC)


def test_forged_payloads_with_valid_crc_are_rejected() -> None:
    payload = _payload("quantize:bits=4,lzma")
    core = payload[:-4]
    # a different codec spec of the same length that no longer matches the body
    spec_at = core.index(b'[{"')
    end = core.index(b"]", spec_at) + 1
    forged_spec = core[spec_at:end].replace(b'"bits":4', b'"bits":9')
    with pytest.raises(PayloadError, match="invalid codec chain"):
        decode_payload(_reseal(core[:spec_at] + forged_spec + core[end:]))
    garbage_spec = b"{" * (end - spec_at)
    with pytest.raises(PayloadError, match="malformed codec spec"):
        decode_payload(_reseal(core[:spec_at] + garbage_spec + core[end:]))
    body = read_body(payload)
    assert len(body) < 128  # its length is a one-byte varint just before it
    body_len_pos = len(core) - len(body) - 1
    with pytest.raises(PayloadError, match="lzma"):  # body cut short, lengths consistent: lzma truncated
        decode_payload(_reseal(core[:body_len_pos] + bytes([len(body) - 10]) + body[:-10]))


def read_body(payload: bytes) -> bytes:
    from testbed.split.codecs import read_frame

    return read_frame(payload).body


def test_relabelled_bit_width_is_rejected() -> None:
    # an 8-bit payload whose spec claims 4 bits must not decode into a wrong tensor
    payload = _payload("quantize:bits=8")
    core = payload[:-4].replace(b'"bits":8', b'"bits":4')
    with pytest.raises(PayloadError, match="8-bit codes"):
        decode_payload(_reseal(core))


def test_payload_error_is_a_testbed_error() -> None:
    assert issubclass(PayloadError, errors.TestbedError)
    with pytest.raises(errors.TestbedError):
        decode_payload(b"")


@pytest.mark.parametrize(("spec", "path", "allowed"), [
    ([{"quantize": {"bits": 9}}], "codec.0.quantize.bits", "1 to 8"),
    ([{"quantize": {"bits": 0}}], "codec.0.quantize.bits", "1 to 8"),
    ([{"quantize": {"bits": "four"}}], "codec.0.quantize.bits", "type int"),
    ([{"quantize": {"bits": 2}}, {"lzma": {"preset": 12}}], "codec.1.lzma.preset", "0 to 9"),
    ([{"quantize": {"granularity": "row"}}], "codec.0.quantize.granularity", "tensor, channel"),
    ([{"quantize": {"clip": "max"}}], "codec.0.quantize.clip", "minmax, percentile"),
    ([{"quantize": {"nbits": 2}}], "codec.0.quantize.nbits", "parameters of quantize: bits"),
    ([{"zstd": {"level": 30}}], "codec.0.zstd.level", "1 to 22"),
    ([{"binarize": {"threshold": "max"}}], "codec.0.binarize.threshold", "mean, median"),
    ([{"jpeg": {}}], "codec.0", "a known codec stage: "),
    ([{"lzma": {}}, {"quantize": {}}], "codec.1", "tensor stages must come before"),
    ([{"quantize": {}}, {"float16": {}}], "codec.1", "nothing may follow the quantizer"),
    ([{"quantize": {}, "lzma": {}}], "codec.0", "single-key mapping"),
    ("quantize:bits=1,lzma:preset=x", "codec.1.lzma.preset", "type int"),
])
def test_bad_specs_name_field_value_and_allowed(spec: Any, path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_chain(spec)
    assert info.value.path == path
    assert allowed in str(info.value) and "\n" not in str(info.value)
    if "codec stage" in allowed:  # the registry lists what is available
        assert all(n in str(info.value) for n in ("binarize", "float16", "lzma", "quantize", "zlib", "zstd"))


def test_compact_string_equals_yaml_list() -> None:
    a = parse_chain("quantize:bits=1,granularity=channel,lzma:preset=6")
    b = parse_chain("[{quantize: {bits: 1, granularity: channel}}, {lzma: {preset: 6}}]")
    c = parse_chain([{"quantize": {"bits": 1, "granularity": "channel"}}, {"lzma": {"preset": 6}}])
    d = parse_chain("quantize:bits=1,granularity=channel+lzma:preset=6")
    assert a.spec() == b.spec() == c.spec() == d.spec()
    assert parse_codec_string("float16,zstd") == [("float16", {}), ("zstd", {})]
    assert parse_chain("none").spec() == [] and parse_chain(None).describe() == "float32"

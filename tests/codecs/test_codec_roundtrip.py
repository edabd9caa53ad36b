"""Every codec stage round-trips: lossless exactly, quantizers within half a step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from testbed.split.codecs import (
    CodecChain,
    PayloadError,
    TensorStage,
    codec_names,
    decode_payload,
    pack_bits,
    packed_size,
    parse_chain,
    read_frame,
    register_codec,
    unpack_bits,
)
from testbed.split.codecs.quantize import channel_view


def _features(shape: tuple[int, ...] = (3, 16, 7, 5), seed: int = 0, relu: bool = True) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.linspace(0.1, 5.0, shape[1]).view(1, -1, *[1] * (len(shape) - 2))
    return x.relu() if relu else x


LOSSLESS = ["float32", "lzma:preset=0", "lzma:preset=9,extreme=true", "zlib:level=1", "zlib:level=9",
            "zstd:level=1", "zstd:level=19", "pack,zstd", "zlib,lzma"]


@pytest.mark.parametrize("spec", LOSSLESS)
def test_lossless_chains_are_exact(spec: str) -> None:
    x = _features(relu=False)
    chain = parse_chain(spec)
    payloads = chain.encode(x)
    assert len(payloads) == x.shape[0]
    assert torch.equal(chain.decode_batch(payloads), x)
    assert torch.equal(decode_payload(payloads[2]), x[2])


def test_lossless_coders_compress_redundant_features() -> None:
    x = _features(relu=True)  # half zeros
    raw = len(parse_chain("float32").encode(x)[0])
    for spec in ("lzma", "zlib", "zstd"):
        assert len(parse_chain(spec).encode(x)[0]) < 0.8 * raw


def test_float16_rounds_to_nearest_half_and_saturates() -> None:
    x = _features(relu=False)
    x[0, 0, 0, 0] = 1e6
    y = parse_chain("float16").decode_batch(parse_chain("float16").encode(x))
    assert y.dtype == torch.float32
    assert y[0, 0, 0, 0] == 65504.0
    x[0, 0, 0, 0] = 0.0
    y = parse_chain("float16,zstd").decode_batch(parse_chain("float16,zstd").encode(x))
    torch.testing.assert_close(y, x.half().float(), rtol=0, atol=0)


def _ranges(x: Tensor, per_channel: bool, axis: int | None = None) -> tuple[Tensor, Tensor]:
    v = channel_view(x, per_channel, axis)
    return v.amin(dim=2), v.amax(dim=2)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_minmax_quantizer_error_is_at_most_half_a_step(bits: int, granularity: str) -> None:
    x = _features(relu=False)
    chain = parse_chain([{"quantize": {"bits": bits, "granularity": granularity}}])
    y = chain.decode_batch(chain.encode(x))
    lo, hi = _ranges(x, granularity == "channel")
    step = (hi - lo) / (2 ** bits - 1)
    err = channel_view((y - x).abs(), granularity == "channel", None)
    assert (err <= step[..., None] / 2 * (1 + 1e-5) + 1e-6).all()
    # the grid is used: reconstructions take at most 2^bits distinct values per tensor/channel
    levels = [torch.unique(r).numel() for r in channel_view(y, granularity == "channel", None).flatten(0, 1)]
    assert max(levels) <= 2 ** bits
    assert max(levels) >= min(2 ** bits, 2)


def test_percentile_clipping_bounds_error_inside_range_and_clamps_outliers() -> None:
    x = _features(relu=False)
    x[1, 2, 3, 4] = 1000.0  # an outlier that min-max would let dominate the step
    q = parse_chain("quantize:bits=4,clip=percentile,percentile=99")
    payload = q.encode(x)[1]
    y = decode_payload(payload)
    lo, step = np.frombuffer(read_frame(payload).blobs[0], "<f4").astype(float)
    hi = lo + 15 * step
    v = x[1].flatten().double()
    # the range is the 1st..99th percentile (order statistics, within one sample of interpolation)
    srt = v.sort().values
    k = int(np.ceil(0.99 * v.numel())) - 1
    assert srt[k - 1] <= hi <= srt[k + 1] and srt[v.numel() - 2 - k] <= lo <= srt[v.numel() - k]
    inside = (v >= lo) & (v <= hi)
    assert 0.97 < float(inside.double().mean()) < 1.0
    err = (y.flatten().double() - v).abs()
    assert (err[inside] <= step / 2 * (1 + 1e-5) + 1e-6).all()
    assert torch.equal(y.flatten().double()[v > hi].float(), torch.full_like(v[v > hi], hi).float())
    mm = parse_chain("quantize:bits=4")
    assert (decode_payload(mm.encode(x)[1]) - x[1]).abs().mean() > err.mean()


def test_token_features_quantize_per_hidden_channel() -> None:
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3)) * torch.arange(1, 13)
    chain = parse_chain("quantize:bits=3,granularity=channel")
    payload = chain.encode(x)[0]
    assert len(read_frame(payload).blobs[0]) == 12 * 2 * 4  # lo and step for each of the 12 channels
    y = chain.decode_batch(chain.encode(x))
    step = (x.amax(dim=1) - x.amin(dim=1)) / 7  # per image and hidden channel
    assert ((y - x).abs() <= step[:, None, :] / 2 * (1 + 1e-5) + 1e-6).all()


@pytest.mark.parametrize("threshold", ["mean", "median", 0.5])
def test_binarize_uses_threshold_and_conditional_means(threshold: str) -> None:
    x = _features(relu=False)
    chain = parse_chain([{"binarize": {"threshold": threshold}}])
    y = chain.decode_batch(chain.encode(x))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            v, r = x[n, c].flatten(), y[n, c].flatten()
            t = {"mean": v.mean(), "median": v.median(), 0.5: torch.tensor(0.5)}[threshold]
            above = v > t
            if above.any():
                torch.testing.assert_close(r[above], v[above].mean().expand(int(above.sum())))
            if (~above).any():
                torch.testing.assert_close(r[~above], v[~above].mean().expand(int((~above).sum())))
            torch.testing.assert_close(r.mean(), v.mean(), rtol=1e-4, atol=1e-5)  # sum is preserved


def test_binarize_beats_minmax_one_bit_on_skewed_features() -> None:
    x = _features(relu=True)
    mse = {}
    for spec in ("quantize:bits=1", "binarize"):
        c = parse_chain(spec)
        mse[spec] = float(((c.decode_batch(c.encode(x)) - x) ** 2).mean())
    assert mse["binarize"] < mse["quantize:bits=1"]


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [1, 7, 8, 9, 1001])
def test_bit_packing_round_trips_at_exact_size(bits: int, count: int) -> None:
    codes = np.random.default_rng(bits * 1000 + count).integers(0, 2 ** bits, count).astype(np.uint8)
    data = pack_bits(codes, bits)
    assert len(data) == packed_size(count, bits) == -(-count * bits // 8)
    assert np.array_equal(unpack_bits(data, bits, count), codes)


def test_bit_order_is_little_endian() -> None:
    assert pack_bits(np.array([1, 0, 1, 1], np.uint8), 1) == bytes([0b1101])
    assert pack_bits(np.array([3, 1], np.uint8), 2) == bytes([0b0111])
    assert pack_bits(np.array([5, 6], np.uint8), 3) == bytes([0b110101])
    assert pack_bits(np.array([0xA, 0x3], np.uint8), 4) == bytes([0x3A])


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("shape", [(2, 64, 7, 7), (2, 3, 5, 11), (2, 197, 12)])
def test_payload_size_is_packed_bits_plus_header(bits: int, shape: tuple[int, ...]) -> None:
    x = _features(shape, relu=False)
    elements = int(np.prod(shape[1:]))
    chain = parse_chain({"quantize": {"bits": bits}})
    payload = chain.encode(x)[0]
    frame = read_frame(payload)
    assert len(frame.body) == -(-elements * bits // 8)
    assert len(payload) == -(-elements * bits // 8) + frame.header_size
    # the header is small: magic/version/shape, spec, 8 bytes of scale and offset, pack info, CRC
    assert frame.header_size <= 40 + len(b'[{"quantize":{"bits":1}}]') + len(shape) * 2 * 2


def test_header_is_self_describing() -> None:
    x = _features()
    chain = parse_chain("quantize:bits=2,granularity=channel,lzma:preset=3")
    frame = read_frame(chain.encode(x)[0])
    assert frame.shape == tuple(x.shape[1:]) and frame.dtype == "float32"
    assert frame.spec == [{"quantize": {"bits": 2, "granularity": "channel"}}, {"lzma": {"preset": 3}}]
    # built-in stages decode from the header alone; a receiver's chain must be the one the header names
    assert torch.equal(decode_payload(chain.encode(x)[0]), chain.decode(chain.encode(x)[0], tuple(x.shape[1:])))
    with pytest.raises(PayloadError, match="this receiver decodes"):
        parse_chain("float32").decode(chain.encode(x)[0])


def test_batched_encode_equals_per_image_encode() -> None:
    x = _features()
    chain = parse_chain("quantize:bits=3,granularity=channel,zstd")
    batch = chain.encode(x)
    single = [chain.encode(x[i:i + 1])[0] for i in range(x.shape[0])]
    assert batch == single


def test_stage_timings_are_recorded() -> None:
    chain = parse_chain("quantize:bits=4,lzma")
    res = chain.encode_timed(_features())
    assert res.seconds.shape == (3,) and (res.seconds > 0).all()
    chain.decode_batch(res.payloads)
    assert {("encode", "quantize"), ("encode", "pack"), ("encode", "lzma"), ("decode", "lzma"),
            ("decode", "pack"), ("decode", "quantize")} <= set(chain.timings)


@register_codec("test_affine")
@dataclass(frozen=True)
class _Affine(TensorStage):
    """A stand-in for a learned transform: y = a * x + b with side info, registered from outside."""

    a: float = 2.0
    b: float = 1.0

    def encode(self, x: Tensor) -> tuple[Tensor, list[bytes]]:
        return x * self.a + self.b, [bytes([7])] * x.shape[0]

    def decode(self, y: Tensor, side: list[bytes]) -> Tensor:
        assert side == [bytes([7])] * y.shape[0]
        return (y - self.b) / self.a


def test_third_party_stage_plugs_into_chains() -> None:
    assert "test_affine" in codec_names()
    x = _features()
    chain = parse_chain([{"test_affine": {"a": 4}}, {"quantize": {"bits": 8}}, "zstd"])
    assert isinstance(chain, CodecChain)
    y = decode_payload(chain.encode(x)[1])
    step = ((x[1] * 4 + 1).max() - (x[1] * 4 + 1).min()) / 255 / 4
    assert ((y - x[1]).abs() <= step / 2 * 1.001).all()

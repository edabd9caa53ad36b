"""Decoding is bounded by what the receiver expects, and payloads never name files.

Memory is measured with :mod:`tracemalloc` (Python allocations: the decompressors' output buffers
and numpy arrays), never with wall time.
"""

from __future__ import annotations

import json
import lzma
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import testbed.research  # noqa: F401  (registers the learned stages)
from testbed.split.codecs import PayloadError, decode_payload, decode_payloads, parse_chain
from testbed.split.codecs.lossless import Lzma, Zlib, Zstd
from testbed.split.codecs.pack import Pack
from testbed.split.codecs.payload import write_frame

SHAPE = (16, 7, 5)  # what the receiver's tail takes
MIB = 1 << 20


def _peak(fn: Callable[[], Any]) -> int:
    """Peak bytes Python allocates while ``fn`` runs (it must raise PayloadError)."""
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _raw_side(shape: tuple[int, ...]) -> bytes:
    """Pack's side information for a float32 tensor of ``shape``."""
    from testbed.split.codecs.varint import write_varint

    return bytes([0, 0, len(shape)]) + b"".join(write_varint(d) for d in shape)


def _bomb(coder: Any, name: str, claimed: tuple[int, ...], size: int) -> bytes:
    """A float32 payload claiming ``claimed`` whose body decompresses to ``size`` zero bytes."""
    body = coder.encode(b"\0" * size)
    return write_frame("float32", claimed, [{name: coder.to_spec()[name]}], [_raw_side(claimed)], body)


@pytest.mark.parametrize(("coder", "name"), [(Lzma(preset=0), "lzma"), (Zlib(level=1), "zlib"), (Zstd(level=1), "zstd")])
def test_a_header_claiming_a_huge_shape_is_refused_before_decompression(coder: Any, name: str) -> None:
    """The issue's bomb: a small payload claiming 2e8 elements (800 MB) against a receiver taking SHAPE."""
    payload = _bomb(coder, name, (200_000_000,), 32 * MIB)
    assert len(payload) < 2 * MIB
    chain = parse_chain([{name: coder.to_spec()[name]}])
    assert _peak(lambda: decode_payloads([payload], chain, SHAPE)) < 3 * len(payload) + MIB
    # without an expected shape the default element bound still refuses it, before decompressing
    assert _peak(lambda: decode_payload(payload)) < 3 * len(payload) + MIB


@pytest.mark.parametrize(("coder", "name"), [(Lzma(preset=0), "lzma"), (Zlib(level=1), "zlib"), (Zstd(level=1), "zstd")])
def test_a_body_that_decompresses_past_the_expected_size_stops_at_the_bound(coder: Any, name: str) -> None:
    """Header and side information tell the truth about SHAPE; the body inflates to 32 MiB anyway."""
    body = coder.encode(b"\0" * (32 * MIB))
    payload = write_frame("float32", SHAPE, [{name: coder.to_spec()[name]}], [_raw_side(SHAPE)], body)
    chain = parse_chain([{name: coder.to_spec()[name]}])
    assert _peak(lambda: decode_payloads([payload], chain, SHAPE)) < 3 * len(payload) + MIB


def test_side_information_claiming_another_shape_is_refused() -> None:
    chain = parse_chain("lzma")
    payload = write_frame("float32", SHAPE, chain.header_spec(), [_raw_side((10**9,))], Lzma().encode(b"\0" * 64))
    with pytest.raises(PayloadError, match="shape"):
        decode_payloads([payload], chain, SHAPE)


def test_zstd_frame_declaring_a_huge_content_size_is_refused() -> None:
    import zstandard

    body = zstandard.ZstdCompressor(level=1).compress(b"\0" * (8 * MIB))
    with pytest.raises(PayloadError, match="exceeds"):
        Zstd().decode(body, 4096)


def test_the_receiver_takes_its_own_shape_only() -> None:
    chain = parse_chain("quantize:bits=4,zlib")
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    payload = chain.encode(x)[0]
    assert chain.decode(payload, SHAPE).shape == SHAPE
    with pytest.raises(PayloadError, match="takes"):
        chain.decode(payload, (16, 7, 6))


def test_the_receiver_decodes_with_its_own_chain() -> None:
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    payload = parse_chain("quantize:bits=8,lzma").encode(x)[0]
    with pytest.raises(PayloadError, match="this receiver decodes"):
        parse_chain("quantize:bits=8,zlib").decode(payload, SHAPE)


@pytest.mark.parametrize("spec", [
    [{"autoencoder": {"checkpoint": "CKPT"}}, {"quantize": {"bits": 2}}],
    [{"qcnet": {"checkpoint": "CKPT"}}, {"binarize": {}}],
    [{"binarize": {"threshold": "CKPT"}}],
])
def test_a_header_naming_a_file_is_refused_and_the_file_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     spec: list[dict[str, Any]]) -> None:
    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(b"not a checkpoint")
    spec = json.loads(json.dumps(spec).replace("CKPT", str(ckpt)))
    opened: list[Any] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a))
    payload = write_frame("float32", SHAPE, spec, [b""] * len(spec), zlib.compress(b""))
    for receiver in (None, parse_chain("float32")):
        with pytest.raises(PayloadError, match=r"path|receiver"):
            decode_payloads([payload], receiver, SHAPE)
    assert not opened


def test_learned_stages_write_no_path_into_their_headers() -> None:
    from testbed.research.stagekit import LearnedStage

    assert LearnedStage.local == ("checkpoint",)
    stage = LearnedStage(checkpoint="/somewhere/ae.pt")
    assert stage.to_spec() == {"": {"checkpoint": "/somewhere/ae.pt"}}
    assert stage.header_spec() == {"": {}}


def test_malformed_headers_and_side_information_are_payload_errors() -> None:
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    with pytest.raises(PayloadError):
        decode_payload(write_frame("float32", SHAPE, deep, [b""], b""))
    chain = parse_chain("quantize:bits=8")
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    good = chain.encode(x)[0]
    nan_side = bytes.fromhex("0000c07f") * 2  # lo = step = NaN
    from testbed.split.codecs import read_frame

    f = read_frame(good)
    bad = write_frame("float32", SHAPE, f.spec_bytes, [nan_side, f.blobs[1]], f.body)
    with pytest.raises(PayloadError, match="non-finite"):
        chain.decode(bad, SHAPE)


def test_emulation_server_decodes_with_the_scenarios_chain_and_the_tails_shape() -> None:
    from testbed.emulate.compute import ServerCompute

    chain = parse_chain("quantize:bits=8,lzma")
    server = ServerCompute.__new__(ServerCompute)
    server.chain, server.shape = chain, SHAPE
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(2))
    assert server.decode(chain.encode(x)[0]).shape == (1, *SHAPE)
    payload = _bomb(Lzma(preset=0), "lzma", (200_000_000,), 4 * MIB)
    server.chain = parse_chain("lzma:preset=0")
    assert _peak(lambda: server.decode(payload)) < 3 * len(payload) + MIB


def test_lzma_decoder_output_is_capped() -> None:
    data = lzma.compress(b"\0" * (8 * MIB), format=lzma.FORMAT_RAW, filters=Lzma()._filters(8 * MIB))
    assert _peak(lambda: Lzma().decode(data, 4096)) < MIB
    assert Pack().expected_size(_raw_side(SHAPE)) == 4 * 16 * 7 * 5

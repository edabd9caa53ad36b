"""The learned entropy-coded bottleneck: exact rANS round trips, real bytes near the prior's rate,
training that lowers the rate, and the stage in a codec chain with node/server charges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from testbed.research.methods.entropy import EntropyConfig, load_entropy, rans_body, train_entropy
from testbed.research.nets import SplitTask
from testbed.split.codecs import PayloadError, parse_chain, read_frame
from testbed.split.codecs.base import Codes
from testbed.split.codecs.chain import decode_payloads
from testbed.split.codecs.rans import Tables, decode, encode, quantize_pmf


def test_quantize_pmf_sums_and_keeps_every_symbol() -> None:
    f = quantize_pmf(np.array([0.999999, 1e-12, 0.0, 1e-6]))
    assert int(f.sum()) == 1 << 16 and int(f.min()) >= 1
    with pytest.raises(ValueError):
        Tables.from_arrays([np.array([1, 2, 3])])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rans_roundtrip_exact_and_near_entropy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pmfs = [rng.dirichlet(np.full(k, 0.3)) for k in (2, 7, 40)]
    tables = Tables.from_arrays([quantize_pmf(p) for p in pmfs])
    tab = rng.integers(0, 3, 5000)
    sym = np.array([rng.choice(len(pmfs[t]), p=pmfs[t]) for t in tab])
    data = encode(sym, tab, tables)
    assert np.array_equal(decode(data, tab, tables), sym)
    ideal = sum(-np.log2(tables.freqs[t][s] / 65536) for t, s in zip(tab, sym)) / 8
    assert ideal <= len(data) <= ideal + 8
    with pytest.raises(PayloadError):
        decode(data[:-1], tab, tables)
    with pytest.raises(PayloadError):
        decode(data + b"\x00", tab, tables)
    with pytest.raises(ValueError):
        encode(np.array([7]), np.array([0]), tables)


def test_entropy_stage_trains_roundtrips_and_charges(tmp_path: Path, task_factory: Callable[..., SplitTask]) -> None:
    task = task_factory()
    path = str(tmp_path / "eb.pt")
    _, hist = train_entropy(task, EntropyConfig(code_channels=4, hidden=8, beta=1.0, epochs=8, batch_size=8, seed=1),
                            out=path)
    assert hist["kbytes"][-1] < hist["kbytes"][0]
    chain = parse_chain([{"entropy": {"checkpoint": path}}, {"rans": {"checkpoint": path}}])
    feats = task.features(task.x_test)
    payloads = chain.encode(feats)
    assert payloads == chain.encode(feats)  # deterministic bytes
    loaded = load_entropy(path)
    with torch.no_grad():
        codes = torch.round(loaded.model.encode(feats))
    for i, p in enumerate(payloads):  # the body is exactly the rANS stream and the escapes
        stream, extra = rans_body(codes[i].numpy(), loaded)
        assert read_frame(p).body == stream + extra
    out = decode_payloads(payloads, chain, tuple(feats.shape[1:]))
    with torch.no_grad():
        assert torch.equal(out, loaded.model.decode(codes))  # lossless after the rounding
    # an escaped value (far outside the trained support) still round-trips exactly
    wild = codes[:1].clone()
    wild[0, 0, 0, 0] = 5000.0
    body, side = chain.serializer.encode(Codes(wild[0].numpy()))
    assert np.array_equal(chain.serializer.decode(body, side), wild[0].numpy())
    with pytest.raises(PayloadError):
        decode_payloads([payloads[0][:-3]], chain, tuple(feats.shape[1:]))
    costs = chain.costs(tuple(feats.shape[1:]))
    assert costs[0].kind == "macs" and costs[0].encode_macs > 0 and costs[0].decode_macs > 0
    assert costs[1].kind == "macs" and costs[1].encode_macs == 16 * 4 * 8 * 8

"""AuGQ against uniform quantization, NestQuant's integer nesting, and the simulator-facing modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from testbed.config.modes import NestQuantModes, NestQuantPolicy, choose_mode, modes_path, switch_bytes
from testbed.errors import ConfigError
from testbed.research.methods.augq import (
    AuGQConfig,
    augq_quantize_module,
    calibrate_features,
    calibrate_levels,
    level_mse,
    save_augq,
    uniform_levels,
    uniform_quantize_module,
)
from testbed.research.methods.nestquant import NestQuantConfig, build_nestquant, load_nestquant
from testbed.research.nets import SplitTask
from testbed.split.codecs import parse_chain, read_frame
from testbed.split.codecs.chain import decode_payloads


@pytest.mark.parametrize("bits", [2, 4])
def test_augq_beats_uniform_on_skewed_data(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    skewed = torch.exp(torch.randn(3, 4096, generator=g))  # log-normal: a long right tail
    calib, held = skewed[:, :64 * 16], skewed[:, 64 * 16:]
    levels = calibrate_levels(calib, AuGQConfig(bits=bits))
    assert levels.shape == (3, 1 << bits)
    assert bool((levels[:, 1:] >= levels[:, :-1]).all())
    uni = uniform_levels(calib, bits)
    assert bool((level_mse(held, levels) < level_mse(held, uni)).all())


def test_augq_stage_roundtrip_and_weights(tmp_path: Path, task: SplitTask) -> None:
    feats = task.features(task.x_train)
    cfg = AuGQConfig(bits=2, intervals=8, samples=16)
    path = tmp_path / "augq.pt"
    save_augq(str(path), calibrate_features(feats, cfg), cfg, "channel")
    chain = parse_chain([{"augq": {"checkpoint": str(path)}}])
    assert chain.bits == 2
    payloads = chain.encode(feats)
    assert payloads == chain.encode(feats)
    assert all(len(read_frame(p).body) == 32 * 8 * 8 * 2 // 8 for p in payloads)
    out = decode_payloads(payloads, chain, tuple(feats.shape[1:]))  # learned stages: the receiver's chain
    assert out.shape == feats.shape
    err_augq = (out - feats).pow(2).mean()
    uni = decode_payloads(parse_chain([{"quantize": {"bits": 2, "granularity": "channel"}}]).encode(feats))
    assert float(err_augq) < float((uni - feats).pow(2).mean())
    qhead, size = augq_quantize_module(task.head, AuGQConfig(bits=4, intervals=8))
    for m in qhead.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert all(len(torch.unique(row)) <= 16 for row in m.weight.reshape(m.weight.shape[0], -1))
    assert size > 0 and uniform_quantize_module(task.head, 4)[1] > 0


def test_nestquant_part_bits_are_the_high_bits(tmp_path: Path, task: SplitTask) -> None:
    cfg = NestQuantConfig(part_bits=4, iters=40, samples=16)
    nq = build_nestquant(task.head, task.x_train, cfg)
    total = 0
    for nw in nq.nested.values():
        w8 = nw.int8()
        assert w8.dtype == torch.int8
        assert torch.equal(w8.to(torch.int16) >> 4, nw.high.to(torch.int16))   # arithmetic shift = high part
        assert torch.equal((w8.to(torch.int16) & 0xF).to(torch.uint8), nw.low)
        assert int(nw.high.min()) >= -8 and int(nw.high.max()) <= 7
        total += nw.high.numel()
    assert nq.switch_bytes() == (total * 4 + 7) // 8
    st = nq.storage_bytes()
    assert st["separate"] == st["full"] + st["part"] and st["nested"] == st["full"]
    path = tmp_path / "nq.pt"
    from testbed.research.methods.nestquant import save_nestquant

    save_nestquant(nq, str(path), {**cfg.__dict__})
    again = load_nestquant(str(path), task.head)
    x = task.x_test[:4]
    for mode in ("full", "part"):
        with torch.no_grad():
            assert torch.equal(again.module(mode)(x), nq.module(mode)(x))
    with pytest.raises(ConfigError, match="mode"):
        nq.module("half")
    # adaptive rounding is deterministic under its seed
    nq2 = build_nestquant(task.head, task.x_train, cfg)
    assert all(torch.equal(nq2.nested[k].high, v.high) for k, v in nq.nested.items())


def test_modes_policy_and_json(tmp_path: Path) -> None:
    pol = NestQuantPolicy(low_battery=0.2, resume_battery=0.3, queue_high=8, queue_low=2)
    assert choose_mode(0.9, 0, "full", pol) == "full"
    assert choose_mode(0.1, 0, "full", pol) == "part"
    assert choose_mode(0.9, 8, "full", pol) == "part"
    assert choose_mode(0.25, 0, "part", pol) == "part"      # hysteresis: not yet back to full
    assert choose_mode(0.25, 0, "full", pol) == "full"
    assert choose_mode(0.5, 3, "part", pol) == "part"
    assert choose_mode(0.5, 2, "part", pol) == "full"
    with pytest.raises(ConfigError, match="battery"):
        choose_mode(1.5, 0)
    modes = NestQuantModes(8, 4, {"full": 0.98, "part": 0.97}, {"full": 1.0, "part": 0.5}, 1234, {"nested": 10})
    p = modes.save(modes_path(tmp_path / "nq.pt"))
    assert p.name == "nq.modes.json"
    assert NestQuantModes.load(p) == modes
    assert json.loads(p.read_text())["switch_bytes"] == 1234
    assert switch_bytes(modes, "full", "part") == 1234 and switch_bytes(modes, "part", "part") == 0
    with pytest.raises(ConfigError, match="part_bits"):
        NestQuantModes(8, 8, {"full": 1, "part": 1}, {"full": 1, "part": 1}, 0)


def test_modes_module_is_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys; import testbed.config.modes as m; "
            "print(any(k == 'torch' or k.startswith('torch.') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Real payloads through the live server: ResNet-18 (random weights) split after the stem,
1-bit quantization + zlib, two sample photos; the server's predictions must equal running the
tail on the decoded payloads here. Plus the whole ``testbed emulate`` / ``compare`` path."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
import yaml
from emu_helpers import emu_scenario, send_and_collect

from testbed.cli import main
from testbed.emulate.wire import BAD_PAYLOAD, OK

MODEL_SCENARIO = emu_scenario(
    model={"name": "resnet18", "weights": "random", "split": "stem", "seed": 0},
    codec=[{"quantize": {"bits": 1}}, {"zlib": {}}],
    dataset={"kind": "samples", "limit": 2},
)
del MODEL_SCENARIO["server"]["service"]


def test_real_payloads_round_trip_through_the_live_server(tmp_path: Path) -> None:
    import torch

    from testbed.emulate.compute import NodeCompute, ServerCompute
    from testbed.emulate.server import EdgeServer, ServerConfig
    from testbed.run.prepare import prepare_dict
    from testbed.split.codecs import decode_payloads

    res = prepare_dict(MODEL_SCENARIO)
    node = NodeCompute(res)
    server_compute = ServerCompute(res, "cpu")
    payloads = [node.encode(node.head_features(i)) for i in range(2)]
    with torch.inference_mode():
        outs = [server_compute.tail(decode_payloads([p])) for p in payloads]
    want = [int(o.argmax(1)) for o in outs]
    want5 = [tuple(o.topk(5, dim=1).indices[0].tolist()) for o in outs]
    corrupt = bytearray(payloads[0])
    corrupt[len(corrupt) // 2] ^= 0xFF   # CRC mismatch: a bad payload answered as such, nothing else

    async def go() -> tuple[list, list]:
        cfg = ServerConfig(max_batch=4, max_delay=0.01, compute=server_compute)
        async with EdgeServer(cfg) as srv:
            good, bad = await asyncio.gather(send_and_collect(srv.host, srv.port, 0, payloads * 3),
                                             send_and_collect(srv.host, srv.port, 1, [bytes(corrupt), b"junk"]))
            return good, bad
    good, bad = asyncio.run(go())
    assert all(r.status == OK for r in good)
    assert {r.request: r.prediction for r in good} == {i: want[i % 2] for i in range(6)}
    assert {r.request: r.top5 for r in good} == {i: want5[i % 2] for i in range(6)}  # five best, best first
    assert all(r.top5 == (-1,) * 5 for r in bad)                                    # no answer: all -1
    assert max(r.batch_size for r in good) > 1          # the tail really ran batched
    assert [r.status for r in bad] == [BAD_PAYLOAD, BAD_PAYLOAD]


def test_emulated_top5_agreement_equals_the_cached_pipeline(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A model scenario emulated end to end: each answered request carries the live server's five best
    classes, and its ``agree_top5`` equals the one the simulator joins from the cached pipeline table
    for the same image, exactly (as ``prediction`` equals ``cached_prediction`` for top-1)."""
    import math

    import pandas as pd

    from testbed.bridge.cache import pipeline_table
    from testbed.bridge.outcomes import add_outcomes
    from testbed.emulate import emulate_scenario
    from testbed.emulate.compute import top1_first
    from testbed.run.prepare import prepare_dict

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    res = prepare_dict({**MODEL_SCENARIO, "duration": "2 s", "drain": "20 s"})  # slack for a loaded machine
    result = emulate_scenario(res)
    emu = result.records
    ok = emu[(emu["status"].astype(str) == "ok") & (emu["image"] >= 0)]
    assert len(ok) > 0
    top5 = ok[[f"top5_{j}" for j in range(5)]].to_numpy()
    assert (top5 >= 0).all() and (top5[:, 0] == ok["prediction"].to_numpy()).all()
    assert all(len(set(row)) == 5 for row in top5.tolist())                  # five distinct classes
    assert (ok["prediction"] == ok["cached_prediction"]).all()               # top-1: the pipeline's
    table = pipeline_table(res.scenario)
    cached = add_outcomes(pd.DataFrame({"image": ok["image"].to_numpy()}), table)
    assert ok["agree_top5"].tolist() == cached["agree_top5"].tolist()        # top-5: the pipeline's too
    images = table.images.set_index("image").loc[ok["image"].to_numpy()]
    same = top1_first(images["prediction"].to_numpy(), images[[f"top5_{j}" for j in range(5)]].to_numpy())
    assert (top5 == same).all()                                              # the very same five
    assert emu.loc[emu["status"].astype(str) != "ok", "agree_top5"].isna().all()  # none where unanswered
    assert not math.isnan(result.summary["agreement_top5"])                  # the summary reports it


def test_emulate_and_compare_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(emu_scenario(drain="5 s")))  # slack for a loaded machine: all must finish
    sim, emu, cmp_ = tmp_path / "sim", tmp_path / "emu", tmp_path / "cmp"
    assert main(["run", str(scen), "--out", str(sim)]) == 0
    assert main(["emulate", str(scen), "--out", str(emu), "--time-scale", "0.5"]) == 0
    import pandas as pd

    from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS

    sim_df, emu_df = pd.read_parquet(sim / "requests.parquet"), pd.read_parquet(emu / "requests.parquet")
    assert set(FLOAT_COLUMNS) | {n for n, _ in INT_COLUMNS} <= set(emu_df.columns)
    # conservation: the same seeds give the same frames, created at the same (scenario) times with the
    # same draws and node decisions, and every one is answered (the drain leaves slack for a loaded machine)
    assert len(emu_df) == len(sim_df)
    for col in ("created_s", "image", "payload_bytes", "mode", "node", "frame"):
        assert (emu_df[col].to_numpy() == sim_df[col].to_numpy()).all(), col
    assert (emu_df["status"].astype(str) == "ok").all()
    ok = emu_df
    # what holds however late the event loops run: every wait is padded to its charge, never shorter,
    # and each request passes its stations in order
    assert (ok["tx_end_s"] - ok["tx_start_s"] >= 10_016 / 200_000 - 1e-9).all()   # 10 kB + header at 200 kB/s
    head = (ok["head_end_s"] - ok["head_start_s"]).to_numpy()
    assert (head >= (sim_df["head_end_s"] - sim_df["head_start_s"]).to_numpy() - 1e-9).all()
    order = ["created_s", "head_start_s", "head_end_s", "encode_end_s", "tx_start_s"]
    for a, b in itertools.pairwise(order):
        assert (ok[b] >= ok[a] - 1e-9).all(), (a, b)
    assert (ok["finished_s"] >= ok["batch_end_s"]).all() and (ok["batch_end_s"] >= ok["batch_start_s"]).all()
    assert (ok["batch_start_s"] >= ok["queued_s"]).all() and (ok["batch_size"] <= 4).all()
    summary = json.loads((emu / "summary.json").read_text())
    assert summary["completed"] > 0 and summary["mode"] == "emulation"
    assert main(["compare", str(sim), str(emu), "--out", str(cmp_)]) == 0
    r = json.loads((cmp_ / "comparison.json").read_text())
    assert (cmp_ / "latency_cdf.png").stat().st_size > 10_000
    assert r["most_divergent_stage"] in r["stages"] and 0 <= r["ks_statistic"] <= 1
    # agreement with the simulation: the emulated median is never more than 10% below the simulated one
    # (charges are padded, the link is shaped); a busy machine only makes it later, so no upper bound
    assert r["percentiles"]["p50"]["rel"] > -0.1
    assert "stage diverging most" in capsys.readouterr().out


def test_emulate_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(emu_scenario(link={"model": "csma", "datarate": "65 Mbit/s"})))
    assert main(["emulate", str(scen), "--out", str(tmp_path / "o")]) == 2
    assert "link.model" in capsys.readouterr().err
    scen.write_text(yaml.safe_dump(emu_scenario()))
    assert main(["emulate", str(scen), "--time-scale", "0"]) == 2
    assert "--time-scale" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "requests.parquet" in capsys.readouterr().err

"""Run a scenario live: a server process, the fleet, a shaped link; records like ``testbed run``.

``time_scale`` is wall seconds per scenario second: every scenario time (arrivals, charges,
latencies, batching delay, timeout, duration) is multiplied by it and every data rate divided by
it; records are divided back, so they read in scenario seconds whatever the scale. Real compute
(head, codec, tail) is not scaled, so a small scale leaves it less room inside its charge.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from testbed.config.resolve import Resolved
from testbed.config.schema import Scenario
from testbed.core.metrics import summarize, with_stages
from testbed.emulate.clients import FleetConfig, run_fleet
from testbed.emulate.compute import check_emulable
from testbed.emulate.handoff import save_resolved
from testbed.emulate.wire import MAX_FRAME
from testbed.errors import ConfigError, TestbedError
from testbed.io import json_text, write_output_set

__all__ = ["LINK_MODES", "MAX_TIME_SCALE", "EmulationResult", "check_options", "emulate_scenario", "write_emulation"]

LINK_MODES = ("shaper", "tc")


@dataclass
class EmulationResult:
    scenario: Scenario
    records: pd.DataFrame
    summary: dict[str, Any]
    meta: dict[str, Any]
    server_errors: list[dict[str, Any]]


def _start_server(cmd: list[str], env: dict[str, str], timeout: float = 180.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY "):
            return proc, int(line.split()[1])
        if not line and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise TestbedError(f"the emulated server did not start: {err.strip().splitlines()[-1:] or proc.returncode}")
    proc.kill()
    raise TestbedError(f"the emulated server did not start within {timeout:.0f} s")


def _stop_server(proc: subprocess.Popen[str], report: Path) -> dict[str, Any]:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if report.exists():
        return json.loads(report.read_text())
    err = proc.stderr.read() if proc.stderr else ""
    return {"stats": {}, "errors": [{"kind": "server", "error": f"no report (exit {proc.returncode}): {err[-500:]}"}]}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


MAX_TIME_SCALE = 1000.0
"""Largest time scale (wall seconds per scenario second); the smallest is 1 / MAX_TIME_SCALE."""
MAX_FRAME_LIMIT = 1 << 30
"""Largest ``max_frame`` a server may be asked to accept (1 GiB)."""


def check_options(time_scale: float = 1.0, max_frame: int = MAX_FRAME, drain_cap: float = 30.0) -> None:
    """Refuse a time scale, frame limit or drain cap outside its range (NaN, infinite, <= 0, absurd)."""
    if not (math.isfinite(time_scale) and 1 / MAX_TIME_SCALE <= time_scale <= MAX_TIME_SCALE):
        raise ConfigError("--time-scale", time_scale, f"a finite factor from {1 / MAX_TIME_SCALE:g} to "
                                                      f"{MAX_TIME_SCALE:g} (wall seconds per scenario second)")
    if not 64 <= max_frame <= MAX_FRAME_LIMIT:
        raise ConfigError("--max-frame", max_frame, f"a frame size in bytes from 64 to {MAX_FRAME_LIMIT}")
    if not (math.isfinite(drain_cap) and 0 <= drain_cap <= 86400):
        raise ConfigError("--drain-cap", drain_cap, "scenario seconds from 0 to 86400")


def _check(res: Resolved, link: str, time_scale: float) -> None:
    check_emulable(res)
    if link not in LINK_MODES:
        raise TestbedError(f"--link: got {link!r}; one of {', '.join(LINK_MODES)}")
    check_options(time_scale)
    if link == "tc" and any(g.datarate is not None for g in res.scenario.fleet):
        raise TestbedError("--link tc: per-group datarates are not shaped by the kernel path; use --link shaper")


def emulate_scenario(res: Resolved, *, time_scale: float = 1.0, link: str = "shaper", max_frame: int = MAX_FRAME,
                     drain_cap: float = 30.0, device: str | None = None) -> EmulationResult:
    """Run the resolved scenario live (``link``: ``shaper`` in the application, or ``tc`` in the kernel)."""
    _check(res, link, time_scale)
    check_options(time_scale, max_frame, drain_cap)
    sc, k = res.scenario, time_scale
    with tempfile.TemporaryDirectory(prefix="testbed-emulate-") as tmp_s:
        tmp = Path(tmp_s)
        os.chmod(tmp, 0o755)
        srv_cfg = {"resolved": str(save_resolved(res, tmp / "resolved.pickle")), "time_scale": k,
                   "host": "127.0.0.1", "port": 0, "shape_downlink": link == "shaper", "max_frame": max_frame,
                   "device": device, "report": str(tmp / "server.json")}
        if link == "shaper":
            (tmp / "server_cfg.json").write_text(json.dumps(srv_cfg))
            proc, port = _start_server([sys.executable, "-m", "testbed.emulate.serve", str(tmp / "server_cfg.json")],
                                       _env())
            try:
                records, fleet = run_fleet(res, FleetConfig(port=port, time_scale=k, drain_cap=drain_cap))
            finally:
                report = _stop_server(proc, tmp / "server.json")
            link_info: dict[str, Any] = {"mode": "shaper", "discipline": sc.link.model}
        else:
            records, fleet, report, link_info = _run_tc(sc, srv_cfg, tmp, k, drain_cap)
    if sc.model is not None:
        from testbed.bridge.cache import pipeline_table
        from testbed.bridge.outcomes import add_live_outcomes

        records = add_live_outcomes(records, pipeline_table(sc))
    summary = summarize(records, (sc.warmup, sc.duration), None, sc.server.gpus, nodes=sc.node_count)
    summary = {"scenario": sc.name, "seed": sc.seed, "mode": "emulation", **summary}
    meta = {"time_scale": k, "link": link_info, "fleet": fleet, "server": report.get("stats", {}),
            "server_device": report.get("device"), "server_errors": len(report.get("errors", []))}
    return EmulationResult(sc, records, summary, meta, report.get("errors", []))


def _run_tc(sc: Scenario, srv_cfg: dict[str, Any], tmp: Path, k: float, drain_cap: float
            ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], dict[str, Any]]:
    from testbed.emulate.netns import NetnsLink, netem_support, tc_support

    ok, why = tc_support()
    if not ok:
        raise TestbedError(f"--link tc: {why}")
    lat_up, lat_down = sc.link.latency.mean(), sc.link.downlink_latency.mean()  # netem: a fixed delay
    netem = netem_support()
    with NetnsLink(sc.link.datarate / k, sc.link.downlink_datarate / k, float(lat_up) * k, float(lat_down) * k,
                   netem=netem) as nl:
        srv_cfg = {**srv_cfg, "host": nl.server_ip, "app_latency": not netem}
        (tmp / "server_cfg.json").write_text(json.dumps(srv_cfg))
        proc, port = _start_server([*nl.exec_prefix(nl.server_ns), sys.executable, "-m", "testbed.emulate.serve", str(tmp / "server_cfg.json")], _env())
        try:
            cli_cfg = {"resolved": srv_cfg["resolved"], "host": nl.server_ip, "port": port,
                       "time_scale": k, "shape_uplink": False, "uplink_latency": float(lat_up), "app_latency": not netem,
                       "drain_cap": drain_cap, "out": str(tmp)}
            (tmp / "clients_cfg.json").write_text(json.dumps(cli_cfg))
            r = subprocess.run([*nl.exec_prefix(nl.node_ns), sys.executable, "-m", "testbed.emulate.clients", str(tmp / "clients_cfg.json")],
                               capture_output=True, text=True, env=_env())
            if r.returncode != 0:
                raise TestbedError(f"--link tc: the node process failed: {r.stderr.strip().splitlines()[-1:]}")
            stats = nl.qdisc_stats()
        finally:
            report = _stop_server(proc, tmp / "server.json")
    records = pd.read_parquet(tmp / "records.parquet")
    fleet = json.loads((tmp / "fleet.json").read_text())
    info = {"mode": "tc", "qdisc": ("netem delay + tbf rate" if netem else
                                   "tbf rate (no netem in this kernel: the delay is added in the application)")
            + " on a veth pair between two namespaces",
            "note": "sharing is TCP over one FIFO packet queue; tx_end_s = server arrival - nominal latency",
            "qdisc_stats": stats}
    return records, fleet, report, info


def write_emulation(result: EmulationResult, raw: Mapping[str, Any], out: Path | str, force: bool = False) -> Path:
    """``requests.parquet``, ``scenario.yaml``, ``emulation.json``, ``server_errors.csv`` and
    ``summary.json`` (last), as ``testbed run --out`` lays them out."""
    records = with_stages(result.records)
    errors = pd.DataFrame(result.server_errors, columns=["time", "kind", "peer", "node", "error"])
    return write_output_set(out, {
        "requests.parquet": lambda p: records.to_parquet(p, index=False),
        "scenario.yaml": lambda p: p.write_text(yaml.safe_dump(dict(raw), sort_keys=False)),
        "emulation.json": lambda p: p.write_text(json_text(result.meta) + "\n"),
        "server_errors.csv": lambda p: p.write_text(errors.to_csv(index=False)),
        "summary.json": lambda p: p.write_text(json_text(result.summary) + "\n"),
    }, force=force)

"""Run a scenario end to end: simulate, summarise and (optionally) write the results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.core.energy import NodePower, add_energy
from testbed.io import prepare_out_dir, write_json, write_parquet, write_text, write_yaml
from testbed.core.metrics import queue_table, summarize, with_stages
from testbed.config.resolve import resolve
from testbed.config.schema import Scenario
from testbed.sim.world import SimResult, simulate
from testbed.core.workload import Workload

__all__ = ["RunResult", "run_scenario", "write_run"]


@dataclass
class RunResult:
    scenario: Scenario
    sim: SimResult
    summary: dict[str, Any]
    queues: pd.DataFrame
    pipeline_s: float = 0.0  # wall time spent getting the model pipeline's table (cache read or model run)

    @property
    def records(self) -> pd.DataFrame:
        return self.sim.records


def node_power(scenario: Scenario, base_dir: Path | None = None) -> dict[int, NodePower]:
    """Power figures of each fleet group's profile (groups whose profile has none are left out)."""
    from testbed.config.profiles import load_profile

    out = {}
    for g, group in enumerate(scenario.fleet):
        p = load_profile(group.device, base_dir).power
        if p is not None:
            out[g] = NodePower(p.idle.watts, p.busy.watts, p.radio_tx.watts if p.radio_tx else 0.0,
                               p.radio_rx.watts if p.radio_rx else 0.0)
    return out


def nestquant_accuracy(records: pd.DataFrame, scenario: Scenario) -> float:
    """Expected accuracy of the completed requests in the window, each at its head's measured
    accuracy (NestQuant groups) -- the modes file's figure, not a per-image prediction."""
    from testbed.core.metrics import in_window
    from testbed.config.modes import NestQuantModes

    ok = in_window(records, (scenario.warmup, scenario.duration))
    ok = ok[ok["status"] == "ok"]
    acc = []
    for g, group in enumerate(scenario.fleet):
        rows = ok[ok["group"] == g]
        if group.nestquant is None or rows.empty:
            continue
        modes = NestQuantModes.load(group.nestquant.modes)
        acc.append(rows["mode"].map({0: modes.accuracy["full"], 1: modes.accuracy["part"]}).to_numpy())
    import numpy as np

    return float(np.concatenate(acc).mean()) if acc else float("nan")


def run_scenario(scenario: Scenario, workload: Workload | None = None, base_dir: Path | None = None) -> RunResult:
    """Simulate ``scenario`` once and compute its summary and queue table.

    With a model section the real pipeline supplies payloads and charges (cached on disk), and
    the records gain ``correct`` and ``agree``; with power figures in the node profiles, energy.
    """
    table, pipeline_s = None, 0.0
    if workload is None and scenario.model is not None:
        from testbed.bridge.cache import pipeline_table  # the real pipeline (torch)
        from testbed.bridge.workload import PipelineWorkload

        t0 = time.perf_counter()
        table = pipeline_table(scenario)
        pipeline_s = time.perf_counter() - t0
        workload = PipelineWorkload(resolve(scenario, base_dir), table)
    sim = simulate(scenario, workload)
    records = sim.records
    if table is not None:
        from testbed.bridge.outcomes import add_outcomes

        records = add_outcomes(records, table)
    power = node_power(scenario, base_dir)
    if power:
        records = add_energy(records, power, scenario.duration)
    sim.records = records
    summary = summarize(records, sim.window, sim.levels, sim.gpus, nodes=scenario.node_count)
    if any(g.nestquant is not None for g in scenario.fleet):
        summary["nestquant_accuracy"] = nestquant_accuracy(records, scenario)
    summary = {"scenario": scenario.name, "seed": scenario.seed, **summary}
    return RunResult(scenario, sim, summary, queue_table(sim.levels), pipeline_s)


def write_run(result: RunResult, raw: dict[str, Any], out: Path | str, force: bool = False) -> Path:
    """Write ``requests.parquet``, ``scenario.yaml``, ``queues.csv`` and ``summary.json`` (last)."""
    out = prepare_out_dir(out, force)
    write_parquet(out / "requests.parquet", with_stages(result.records))
    write_yaml(out / "scenario.yaml", raw)
    write_text(out / "queues.csv", result.queues.to_csv(index=False))
    write_json(out / "summary.json", result.summary)
    return out

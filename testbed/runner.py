"""Run a scenario end to end: simulate, summarise and (optionally) write the results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .io import prepare_out_dir, write_json, write_parquet, write_text, write_yaml
from .metrics import queue_table, summarize
from .scenario import Scenario
from .sim.model import SimResult, simulate
from .sim.workload import Workload

__all__ = ["RunResult", "run_scenario", "write_run"]


@dataclass
class RunResult:
    scenario: Scenario
    sim: SimResult
    summary: dict[str, Any]
    queues: pd.DataFrame

    @property
    def records(self) -> pd.DataFrame:
        return self.sim.records


def run_scenario(scenario: Scenario, workload: Workload | None = None) -> RunResult:
    """Simulate ``scenario`` once and compute its summary and queue table."""
    if workload is None and scenario.model is not None:
        from .pipeline_workload import workload_for  # joins the real model pipeline (torch)

        workload = workload_for(scenario)
    sim = simulate(scenario, workload)
    summary = summarize(sim.records, sim.window, sim.levels, sim.gpus, nodes=scenario.node_count)
    summary = {"scenario": scenario.name, "seed": scenario.seed, **summary}
    return RunResult(scenario, sim, summary, queue_table(sim.levels))


def write_run(result: RunResult, raw: dict[str, Any], out: Path | str, force: bool = False) -> Path:
    """Write ``requests.parquet``, ``scenario.yaml``, ``queues.csv`` and ``summary.json`` (last)."""
    out = prepare_out_dir(out, force)
    write_parquet(out / "requests.parquet", result.records)
    write_yaml(out / "scenario.yaml", raw)
    write_text(out / "queues.csv", result.queues.to_csv(index=False))
    write_json(out / "summary.json", result.summary)
    return out

"""Sweeps: a grid over dotted scenario fields times ``replications`` seeds, run in parallel processes
(or on a Dask cluster), each finished cell written atomically so an interrupted sweep resumes.

Layout of ``OUT``: ``cells/<cell>/`` with ``summary.json``, ``requests.parquet``, ``scenario.yaml``;
``summary.parquet`` with one row per cell and replication (swept values as columns, confidence
intervals of the mean across replications as ``<metric>_ci_low`` / ``_ci_high``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.errors import ConfigError
from testbed.io import write_json, write_parquet, write_yaml
from testbed.core.metrics import percentile_ci, with_stages
from testbed.config.load import apply_overrides, scenario_from_dict

__all__ = ["Job", "plan", "run_job", "run_sweep", "collect", "CI_METRICS", "replication_seed"]

CI_METRICS = ("latency_mean_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_per_s",
              "drop_rate", "link_utilisation", "gpu_utilisation", "accuracy", "agreement", "mean_energy_j")


def replication_seed(seed: int, replication: int) -> int:
    """Seed of replication ``r``: the same for every cell (common random numbers across cells)."""
    if replication == 0:
        return seed
    return int(np.random.SeedSequence([seed, replication]).generate_state(1)[0])


@dataclass(frozen=True)
class Job:
    cell: int
    replication: int
    values: dict[str, Any]   # swept field -> value
    raw: dict[str, Any]      # scenario mapping with overrides and seed applied
    name: str                # directory name under cells/

    @property
    def key(self) -> str:
        return self.name


def plan(raw: dict[str, Any]) -> list[Job]:
    """All (cell, replication) jobs of a scenario's ``sweep`` grid, in a stable order."""
    grid = raw.get("sweep") or {}
    if not isinstance(grid, dict):
        raise ConfigError("sweep", grid, "a mapping of dotted field -> list of values")
    for field, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{field}", values, "a non-empty list of values")
    reps = raw.get("replications", 1)
    if not isinstance(reps, int) or reps < 1:
        raise ConfigError("replications", reps, "a positive integer")
    base = {k: v for k, v in raw.items() if k not in ("sweep", "replications")}
    fields = list(grid)
    jobs = []
    for cell, combo in enumerate(itertools.product(*(grid[f] for f in fields)) if fields else [()]):
        values = dict(zip(fields, combo))
        cell_raw = apply_overrides(base, values)
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
        for r in range(reps):
            job_raw = copy.deepcopy(cell_raw)
            job_raw["seed"] = replication_seed(int(base.get("seed", 0)), r)
            jobs.append(Job(cell, r, values, job_raw, f"c{cell:04d}-r{r:02d}-{digest}"))
    return jobs


def run_job(job: Job, out: str, base_dir: str | None) -> dict[str, Any]:
    """Run one job and write its directory atomically; returns its summary row."""
    from testbed.run.runner import run_scenario

    scenario = scenario_from_dict(job.raw, base_dir)
    t0 = time.perf_counter()
    result = run_scenario(scenario, base_dir=Path(base_dir) if base_dir else None)
    elapsed = time.perf_counter() - t0
    row = {"cell": job.cell, "replication": job.replication, **{f"sweep.{k}": _plain(v) for k, v in job.values.items()},
           **result.summary, "wall_s": elapsed, "pipeline_s": result.pipeline_s}
    final = Path(out) / "cells" / job.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{job.name}.", dir=final.parent))
    try:
        write_parquet(tmp / "requests.parquet", with_stages(result.records))
        write_yaml(tmp / "scenario.yaml", job.raw)
        write_json(tmp / "summary.json", row)
        if final.exists():  # a stale partial result from an older run of this job
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return row


def _plain(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, sort_keys=True)


def _done(out: Path, job: Job) -> dict[str, Any] | None:
    f = out / "cells" / job.name / "summary.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


def _warm_caches(jobs: list[Job], base_dir: str | None) -> None:
    """Run each distinct model pipeline once in this process so workers only read the cache."""
    from testbed.bridge.cache import pipeline_key, pipeline_table

    seen = set()
    for job in jobs:
        if job.raw.get("model") is None:
            continue
        sc = scenario_from_dict(job.raw, base_dir)
        key = pipeline_key(sc)[0]
        if key not in seen:
            seen.add(key)
            pipeline_table(sc)


def run_sweep(raw: dict[str, Any], out: Path | str, workers: int = 1, base_dir: Path | str | None = None,
              scheduler: str | None = None, progress: bool = True,
              on_done: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """Run every job not already finished in ``out`` and return the summary table."""
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    write_yaml(out / "sweep.yaml", raw)
    jobs = plan(raw)
    for job in jobs:  # validate every cell before spending time on any
        scenario_from_dict(job.raw, base_dir)
    todo = [j for j in jobs if _done(out, j) is None]
    bd = str(base_dir) if base_dir is not None else None
    _warm_caches(todo, bd)
    bar = _progress(len(jobs), len(jobs) - len(todo), progress)
    if scheduler:
        from dask.distributed import Client, as_completed as dask_completed

        with Client(scheduler) as client:
            futures = client.map(run_job, todo, out=str(out), base_dir=bd, pure=False)
            for fut in dask_completed(futures):
                row = fut.result()
                bar.update(1)
                if on_done:
                    on_done(row)
    elif workers <= 1:
        for job in todo:
            row = run_job(job, str(out), bd)
            bar.update(1)
            if on_done:
                on_done(row)
    else:
        import multiprocessing as mp

        # fork: workers start at once with this process's imports; they run no model (the caches
        # were warmed above), so no torch thread pool is used after the fork
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
            futures = [pool.submit(run_job, job, str(out), bd) for job in todo]
            for fut in as_completed(futures):
                row = fut.result()
                bar.update(1)
                if on_done:
                    on_done(row)
    bar.close()
    table = collect(out, jobs)
    write_parquet(out / "summary.parquet", table)
    return table


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="run", desc="sweep")


def collect(out: Path | str, jobs: Iterable[Job] | None = None) -> pd.DataFrame:
    """The summary table from the finished cells (ordered by cell, replication), with CIs."""
    out = Path(out)
    if jobs is None:
        rows = [json.loads(f.read_text()) for f in sorted((out / "cells").glob("*/summary.json"))]
    else:
        rows = [r for r in (_done(out, j) for j in jobs) if r is not None]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows).sort_values(["cell", "replication"]).reset_index(drop=True)
    for metric in CI_METRICS:
        if metric not in df:
            continue
        lo, hi = [], []
        for _, grp in df.groupby("cell", sort=False):
            ci = percentile_ci(grp[metric].to_numpy(dtype=float))
            lo += [ci[0]] * len(grp)
            hi += [ci[1]] * len(grp)
        df[f"{metric}_ci_low"], df[f"{metric}_ci_high"] = lo, hi
    return df

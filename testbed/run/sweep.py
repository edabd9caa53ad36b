"""Sweeps: a grid over dotted scenario fields times ``replications`` seeds, run in parallel processes
(or on a Dask cluster), each finished cell written atomically so an interrupted sweep resumes.

Layout of ``OUT``: ``cells/<cell>/`` with ``summary.json``, ``requests.parquet``, ``scenario.yaml``;
``sweep.yaml`` (the scenario mapping) and ``inputs.json`` (sha256 of every file the cells read);
``summary.parquet`` with one row per cell and replication (swept values as columns, confidence
intervals of the mean across replications as ``<metric>_ci_low`` / ``_ci_high``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.config.load import apply_overrides
from testbed.config.resolve import Resolved
from testbed.core.metrics import replication_interval, replication_method, with_stages
from testbed.errors import ConfigError
from testbed.io import (
    OutputExistsError,
    claim_output,
    clean_stale,
    make_private_dir,
    write_json,
    write_parquet,
    write_yaml,
)

__all__ = [
    "CI_METRICS",
    "MAX_JOBS",
    "MAX_WORKERS",
    "Job",
    "check_previous",
    "check_workers",
    "collect",
    "input_files",
    "plan",
    "prepare_jobs",
    "replication_seed",
    "run_job",
    "run_sweep",
]

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


MAX_JOBS = 100_000
"""Most (cell, replication) runs one sweep may plan."""


def plan(raw: dict[str, Any]) -> list[Job]:
    """All (cell, replication) jobs of a scenario's ``sweep`` grid, in a stable order.

    Replication ``r`` of a cell runs with :func:`replication_seed` of the cell's own seed, so sweeping
    ``seed`` gives one cell per seed; replications share seeds across cells (common random numbers)."""
    grid = raw.get("sweep") or {}
    if not isinstance(grid, dict):
        raise ConfigError("sweep", grid, "a mapping of dotted field -> list of values")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{name}", values, "a non-empty list of values")
        if name == "replications" or name == "sweep" or str(name).startswith(("sweep.", "replications.")):
            raise ConfigError(f"sweep.{name}", values, "a scenario field (sweep and replications cannot be swept)")
    reps = raw.get("replications", 1)
    if not isinstance(reps, int) or isinstance(reps, bool) or not 1 <= reps <= MAX_JOBS:
        raise ConfigError("replications", reps, f"a positive integer of at most {MAX_JOBS:,}")
    cells = math.prod(len(v) for v in grid.values())
    if cells * reps > MAX_JOBS:
        raise ConfigError("sweep", f"{cells:,} cells x {reps} replications",
                          f"at most {MAX_JOBS:,} runs in one sweep")
    base = {k: v for k, v in raw.items() if k not in ("sweep", "replications")}
    fields = list(grid)
    jobs = []
    for cell, combo in enumerate(itertools.product(*(grid[f] for f in fields)) if fields else [()]):
        values = dict(zip(fields, combo))
        cell_raw = apply_overrides(base, values)
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
        seed = cell_raw.get("seed", 0)
        for r in range(reps):
            job_raw = copy.deepcopy(cell_raw)
            if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
                job_raw["seed"] = replication_seed(seed, r)
            # (any other seed is left for the schema to refuse in prepare_jobs, naming the cell)
            jobs.append(Job(cell, r, values, job_raw, f"c{cell:04d}-r{r:02d}-{digest}"))
    return jobs


def prepare_jobs(jobs: list[Job], base_dir: Path | str | None) -> list[Resolved]:
    """Every job prepared (loaded, resolved, checked) before any runs; an error names its cell."""
    from testbed.run.prepare import prepare_dict

    out = []
    for job in jobs:
        try:
            out.append(prepare_dict(job.raw, base_dir))
        except ConfigError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in job.values.items()) or "no swept field"
            raise ConfigError(exc.path, exc.value, f"{exc.allowed} (sweep cell {job.cell}: {where})") from None
    return out


def input_files(resolved: Iterable[Resolved]) -> dict[str, str]:
    """sha256 of every file the cells read (profiles, traces, data, modes files): with the
    scenario mapping, what identifies a sweep's inputs."""
    files: dict[str, str] = {}
    for res in resolved:
        files.update(res.files)
    return dict(sorted(files.items()))


def run_job(job: Job, out: str, resolved: Resolved) -> dict[str, Any]:
    """Run one prepared job and write its directory atomically; returns its summary row."""
    from testbed.run.runner import run_scenario

    t0 = time.perf_counter()
    result = run_scenario(resolved)
    elapsed = time.perf_counter() - t0
    row = {"cell": job.cell, "replication": job.replication, **{f"sweep.{k}": _plain(v) for k, v in job.values.items()},
           **result.summary, "wall_s": elapsed, "pipeline_s": result.pipeline_s}
    final = Path(out) / "cells" / job.name
    tmp = make_private_dir(final.parent, job.name)
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


def _warm_caches(resolved: list[Resolved]) -> None:
    """Run each distinct model pipeline once in this process so workers only read the cache."""
    from testbed.bridge.cache import pipeline_key, pipeline_table

    seen = set()
    for res in resolved:
        if res.scenario.model is None:
            continue
        key = pipeline_key(res.scenario)[0]
        if key not in seen:
            seen.add(key)
            pipeline_table(res.scenario)


def run_sweep(raw: dict[str, Any], out: Path | str, workers: int = 1, base_dir: Path | str | None = None,
              scheduler: str | None = None, progress: bool = True,
              on_done: Callable[[dict[str, Any]], None] | None = None,
              prepared: list[Resolved] | None = None, force: bool = False) -> pd.DataFrame:
    """Run every job not already finished in ``out`` and return the summary table.

    Every cell is prepared (``prepared``, from :func:`prepare_jobs`, or here) before anything is
    written, so a bad cell stops the sweep before it starts. ``out`` is locked while the sweep runs;
    results there of a different sweep (another scenario mapping, or a referenced file whose
    contents changed) are refused, or with ``force`` cleared (:func:`check_previous`)."""
    check_workers(workers, scheduler)
    jobs = plan(raw)
    cells = prepared if prepared is not None else prepare_jobs(jobs, base_dir)
    out = Path(out)
    with claim_output(out, force=True, marker=None):
        check_previous(out, raw, input_files(cells), force)
        (out / "cells").mkdir(parents=True, exist_ok=True)
        clean_stale(out / "cells")
        write_json(out / "inputs.json", input_files(cells))
        write_yaml(out / "sweep.yaml", raw)  # the marker, last: with inputs.json, the sweep's identity
        todo = [(j, r) for j, r in zip(jobs, cells) if _done(out, j) is None]
        _warm_caches([r for _, r in todo])
        bar = _progress(len(jobs), len(jobs) - len(todo), progress)
        for row in _execute(todo, str(out), workers, scheduler):
            bar.update(1)
            if on_done:
                on_done(row)
        bar.close()
        table = collect(out, jobs)
        write_parquet(out / "summary.parquet", table)
    return table


MAX_WORKERS = 1024


def check_workers(workers: int, scheduler: str | None) -> None:
    """Refuse a worker count out of range, or a scheduler when dask.distributed is not installed."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("--workers", workers, f"a number of worker processes from 1 to {MAX_WORKERS}")
    if scheduler is not None:
        import importlib.util

        if not scheduler.strip():
            raise ConfigError("--scheduler", scheduler, "a Dask scheduler address like tcp://host:8786")
        try:
            found = importlib.util.find_spec("dask.distributed") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError("--scheduler", scheduler, "needs dask.distributed, which is not installed "
                                                        "(pip install 'dask[distributed]', or testbed's [dev] extra)")


def check_previous(out: Path, raw: dict[str, Any], files: dict[str, str], force: bool) -> None:
    """Refuse (or with ``force`` clear) results in ``out`` of a different sweep: another scenario
    mapping, input files (profiles, traces, data) whose contents changed since, or cells of a sweep
    whose identity was never recorded."""
    from testbed.config.load import read_yaml

    previous, inputs = out / "sweep.yaml", out / "inputs.json"
    cells = out / "cells"
    if previous.exists():
        try:
            same = (read_yaml(previous) == raw and inputs.is_file()
                    and json.loads(inputs.read_text()) == files)
        except (ValueError, OSError, ConfigError):
            same = False
        why = "scenario or input files changed"
    else:
        same = not (cells.is_dir() and any(not p.name.startswith(".") for p in cells.iterdir()))
        why = "cells without a sweep.yaml"
    if same:
        return
    if not force:
        raise OutputExistsError(f"--out: {str(out)!r} holds a different sweep ({why}); "
                                "pass --force to replace its results, or choose another directory")
    previous.unlink(missing_ok=True)
    inputs.unlink(missing_ok=True)
    (out / "summary.parquet").unlink(missing_ok=True)
    shutil.rmtree(cells, ignore_errors=True)


def _execute(todo: list[tuple[Job, Resolved]], out: str, workers: int, scheduler: str | None
             ) -> Iterator[dict[str, Any]]:
    """Run the jobs (here, in worker processes or on a Dask cluster), yielding rows as they finish."""
    if scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed

        if not todo:
            return
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError("--scheduler", scheduler, f"a reachable Dask scheduler ({type(exc).__name__}: "
                                                        f"{str(exc)[:120]})") from None
        with client:
            futures = client.map(run_job, [j for j, _ in todo], [out] * len(todo), [r for _, r in todo], pure=False)
            for fut in dask_completed(futures):
                yield fut.result()
    elif workers <= 1:
        for job, res in todo:
            yield run_job(job, out, res)
    else:
        import multiprocessing as mp

        # fork: workers start at once with this process's imports; they run no model (the caches
        # were warmed above), so no torch thread pool is used after the fork
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
            local = [pool.submit(run_job, job, out, res) for job, res in todo]
            for done in as_completed(local):
                yield done.result()


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="run", desc="sweep")


def collect(out: Path | str, jobs: Iterable[Job] | None = None) -> pd.DataFrame:
    """The summary table from the finished cells (ordered by cell, replication), with replication
    intervals (:func:`~testbed.core.metrics.replication_interval`: Student-t across the cell's
    replications, NaN with fewer than three) and ``ci_method`` saying which."""
    out = Path(out)
    if jobs is None:
        rows = [json.loads(f.read_text()) for f in sorted((out / "cells").glob("*/summary.json"))]
    else:
        rows = [r for r in (_done(out, j) for j in jobs) if r is not None]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows).sort_values(["cell", "replication"]).reset_index(drop=True)
    reps = df.groupby("cell", sort=False)["replication"].transform("size")
    df["ci_method"] = [replication_method(int(n)) for n in reps]
    for metric in CI_METRICS:
        if metric not in df:
            continue
        lo, hi = [], []
        for _, grp in df.groupby("cell", sort=False):
            ci = replication_interval(grp[metric].to_numpy(dtype=float))
            lo += [ci[0]] * len(grp)
            hi += [ci[1]] * len(grp)
        df[f"{metric}_ci_low"], df[f"{metric}_ci_high"] = lo, hi
    return df

"""Sweeps: a grid over dotted scenario fields times ``replications`` seeds, run in parallel processes
(or on a Dask cluster), each finished cell written atomically so an interrupted sweep resumes.

Layout of ``OUT``: ``cells/<cell>/`` with ``summary.json``, ``requests.parquet``, ``scenario.yaml``;
``sweep.yaml`` (the scenario mapping) and ``inputs.json`` (sha256 of every file the cells read);
``summary.parquet`` with one row per cell and replication (swept values as columns, confidence
intervals of the mean across replications as ``<metric>_ci_low`` / ``_ci_high``).

Swept values: ``sweep.<field>`` holds the value as written (the display label, e.g. ``"2 MB/s"``);
for every field the schema parses as a quantity a numeric column in base units follows, its unit in
its name (:data:`UNITS`): ``sweep.link.datarate_bytes_per_s`` = 2000000.0, ``sweep.warmup_s``,
``sweep.link.mtu_bytes``, ``sweep.fleet.0.arrivals.rate_per_s``. Counts and names have no second
column. :func:`swept_fields` gives the label columns (one per swept field).

A sweep whose scenario does not set ``replications`` runs :data:`DEFAULT_REPLICATIONS` of each cell,
the fewest a replication interval is drawn from. Interrupted (Ctrl-C), pending runs are cancelled,
finished cells stay on disk and :class:`SweepInterrupted` says how many; the same call resumes.
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
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import numpy as np
import pandas as pd

from testbed.config.load import apply_overrides
from testbed.config.resolve import Resolved
from testbed.core.metrics import replication_interval, replication_method, replication_warning
from testbed.core.metrics.intervals import MIN_REPLICATIONS
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
from testbed.run.parallel import MAX_WORKERS, check_workers, run_all

__all__ = [
    "CI_METRICS",
    "DEFAULT_REPLICATIONS",
    "MAX_JOBS",
    "MAX_WORKERS",
    "UNITS",
    "Job",
    "SweepInterrupted",
    "check_previous",
    "check_workers",
    "collect",
    "field_unit",
    "input_files",
    "largest_first",
    "plan",
    "prepare_jobs",
    "quantity",
    "replication_notes",
    "replication_seed",
    "replications_of",
    "run_job",
    "run_sweep",
    "swept_fields",
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

DEFAULT_REPLICATIONS = MIN_REPLICATIONS
"""Replications of each cell when a scenario with a ``sweep`` does not set ``replications``: the
fewest a replication interval (and a figure's band) is drawn from."""


def replications_of(raw: dict[str, Any]) -> Any:
    """``replications`` as set, else :data:`DEFAULT_REPLICATIONS` for a sweep and 1 without one."""
    return raw.get("replications", DEFAULT_REPLICATIONS if raw.get("sweep") else 1)


def replication_notes(raw: dict[str, Any]) -> list[str]:
    """What to tell the user about a sweep's replications: the default applied (``note: ...``), or
    too few for intervals (``warning: ...``); nothing otherwise."""
    if not raw.get("sweep"):
        return []
    if "replications" not in raw:
        return [f"note: replications not set: {DEFAULT_REPLICATIONS} per cell, the fewest a confidence "
                "band is drawn from (set replications: in the scenario to change it)"]
    reps = raw["replications"]
    note = replication_warning(reps) if isinstance(reps, int) and not isinstance(reps, bool) else None
    return [f"warning: {note}; no interval bands will be drawn"] if note else []


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
    reps = replications_of(raw)
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
        result.write_requests(tmp / "requests.parquet")
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


def largest_first(todo: list[tuple[Job, Resolved]]) -> list[tuple[Job, Resolved]]:
    """The jobs in decreasing expected size (requests the fleet generates), ties in plan order.

    Workers take jobs in this order (longest processing time first, Graham 1969), so a large cell
    does not start last and leave the other worker idle; results do not depend on the order."""
    from testbed.core.records import expected_requests

    return sorted(todo, key=lambda jr: -expected_requests(jr[1].scenario))


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
        todo = largest_first([(j, r) for j, r in zip(jobs, cells) if _done(out, j) is None])
        _warm_caches([r for _, r in todo])
        bar = _progress(len(jobs), len(jobs) - len(todo), progress)
        rows = _execute(todo, str(out), workers, scheduler)
        try:
            for row in rows:
                bar.update(1)
                if on_done:
                    on_done(row)
        except KeyboardInterrupt:
            rows.close()  # cancels what has not started (and stops the workers) before counting
            bar.close()
            finished = sum(_done(out, j) is not None for j in jobs)
            if finished:
                write_parquet(out / "summary.parquet", collect(out, jobs))
            raise SweepInterrupted(finished, len(jobs)) from None
        finally:
            rows.close()
            bar.close()
        table = collect(out, jobs)
        write_parquet(out / "summary.parquet", table)
    return table


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C (or a ``KeyboardInterrupt`` from ``on_done``): ``finished`` of
    ``total`` runs are on disk (``summary.parquet`` holds them); the same call resumes the rest."""

    def __init__(self, finished: int, total: int) -> None:
        super().__init__(f"interrupted: {finished} of {total} runs finished; rerun the same command to resume")
        self.finished, self.total = finished, total

    def __str__(self) -> str:
        return str(self.args[0])


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
             ) -> Generator[dict[str, Any], None, None]:
    """Run the jobs (here, in worker processes or on a Dask cluster), yielding rows as they finish."""
    for _, row in run_all(run_job, [(job, out, res) for job, res in todo], workers, scheduler):
        yield row


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="run", desc="sweep")


UNITS: dict[str, str] = {"duration": "s", "size": "bytes", "datarate": "bytes_per_s", "rate": "per_s"}
"""Suffix of the numeric column of a swept quantity, by the kind the schema parses it as."""


def field_unit(path: str) -> str | None:
    """The kind of quantity (a key of :data:`UNITS`) the schema parses the dotted field ``path`` as
    (``link.datarate`` -> ``"datarate"``; distributions of durations or sizes count as their kind);
    None for counts, names, flags and unknown paths."""
    from testbed.config.schema import Scenario

    tp: Any = Scenario
    validators: list[Any] = []
    for part in path.split("."):
        tp, validators = _unwrap(tp, validators)
        fields = getattr(tp, "model_fields", None)
        if fields is not None:
            info = fields.get(part)
            if info is None:
                return None
            tp, validators = info.annotation, list(info.metadata)
        elif get_origin(tp) in (tuple, list) and part.isdigit():
            tp, validators = get_args(tp)[0], []
        else:
            return None
    tp, validators = _unwrap(tp, validators)
    for v in validators:
        kind = _validator_kind(v)
        if kind:
            return kind
    return None


def _unwrap(tp: Any, validators: list[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Optional`` and ``Annotated`` layers, collecting the Annotated metadata."""
    import types
    import typing

    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            args = get_args(tp)
            tp, validators = args[0], [*validators, *args[1:]]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp, validators
            tp = members[0]
        else:
            return tp, validators


def _validator_kind(validator: Any) -> str | None:
    """The quantity a schema validator parses: the unit parser (or distribution kind) it closes over."""
    from testbed.config import schema
    from testbed.units import parse_datarate, parse_duration, parse_rate, parse_size

    func = getattr(validator, "func", None)
    if func is None:
        return None
    if func is getattr(schema, "_jitter", None):
        return "duration"
    parsers = {parse_duration: "duration", parse_size: "size", parse_datarate: "datarate", parse_rate: "rate"}
    for cell in getattr(func, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(value) and value in parsers:
            return parsers[value]
        if isinstance(value, str) and value in ("duration", "size"):  # a distribution of that kind
            return value
    return None


def quantity(kind: str, value: Any) -> float:
    """``value`` (as written in the scenario, or its stored label) in base units; NaN where it is not
    one number (a distribution other than a constant, a mapping)."""
    from testbed.dists import constant_of, parse_dist
    from testbed.units import parse_datarate, parse_duration, parse_rate, parse_size

    parse = {"duration": parse_duration, "size": parse_size, "datarate": parse_datarate, "rate": parse_rate}[kind]
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)  # a mapping stored as its JSON label (a distribution)
        except json.JSONDecodeError:
            return math.nan
    try:
        if isinstance(value, dict):
            if kind not in ("duration", "size"):
                return math.nan
            const = constant_of(parse_dist(value, kind))
            return math.nan if const is None else float(const)
        return float(parse(value))
    except (TypeError, ValueError, ConfigError):
        return math.nan


def swept_fields(columns: Iterable[str]) -> list[str]:
    """The ``sweep.<field>`` label columns of a summary table, one per swept field, in sweep order
    (the numeric ``sweep.<field>_<unit>`` columns beside them left out)."""
    cols = [c for c in columns if c.startswith("sweep.")]
    numeric = {f"{c}_{u}" for c in cols for u in UNITS.values()}
    return [c for c in cols if c not in numeric]


def _add_quantities(df: pd.DataFrame) -> pd.DataFrame:
    """Beside each swept quantity's label column, its value in base units (``sweep.<field>_<unit>``)."""
    fields = swept_fields(df.columns)
    if not fields:
        return df
    after = list(df.columns).index(fields[-1]) + 1
    extra: dict[str, list[float]] = {}
    for col in fields:
        kind = field_unit(col.removeprefix("sweep."))
        name = f"{col}_{UNITS[kind]}" if kind else None
        if kind and name and name not in df.columns:
            extra[name] = [quantity(kind, v) for v in df[col]]
    if not extra:
        return df
    cols = list(df.columns)
    new = pd.DataFrame(extra, index=df.index)
    return pd.concat([df[cols[:after]], new, df[cols[after:]]], axis=1)


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
    df = _add_quantities(pd.DataFrame(rows).sort_values(["cell", "replication"]).reset_index(drop=True))
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

"""Run a scenario end to end: simulate, summarise and (optionally) write the results."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from testbed.config.resolve import Resolved, as_resolved
from testbed.config.schema import Scenario
from testbed.core.energy import NodePower, add_energy
from testbed.core.metrics import in_window, summarize, with_stages
from testbed.core.metrics.corruptions import CORRUPTION_COLUMNS, CorruptionAccumulator, corruption_breakdown
from testbed.core.metrics.groups import GROUP_COLUMNS, group_breakdown
from testbed.core.metrics.outcomes import RANDOM_WEIGHTS_NOTE
from testbed.core.metrics.topology import TOPOLOGY_COLUMNS
from testbed.core.monitor import station_table
from testbed.core.workload import SyntheticWorkload, Workload, configs_of
from testbed.io import json_text, write_output_set
from testbed.sim.world import SimResult, Simulation, simulate

__all__ = ["RunResult", "run_scenario", "station_servers", "write_run"]


@dataclass
class RunResult:
    scenario: Scenario
    sim: SimResult
    summary: dict[str, Any]
    queues: pd.DataFrame  # queues.csv: testbed.core.monitor.station_table
    pipeline_s: float = 0.0  # wall time spent getting the model pipeline's table (cache read or model run)
    requests_path: Path | None = None  # a streamed run's requests.parquet (in a temporary folder)
    _folder: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)  # removed with the result

    @property
    def records(self) -> pd.DataFrame:
        """Every request (a streamed run reads them from its file on first use)."""
        if self.sim.streamed and self.requests_path is not None:
            from testbed.run.stream import read_records

            self.sim.records, self.sim.streamed = read_records(self.requests_path), False
        return self.sim.records

    def write_requests(self, path: Path) -> None:
        """``requests.parquet`` (every request with its stage columns) into ``path``."""
        if self.requests_path is not None:
            shutil.copyfile(self.requests_path, path)
        else:
            with_stages(self.records).to_parquet(path, index=False)


def node_power(resolved: Resolved) -> dict[int, NodePower]:
    """Power figures of each fleet group's profile (groups whose profile has none are left out)."""
    out = {}
    for g, profile in enumerate(resolved.node_profiles):
        p = profile.power
        if p is not None:
            out[g] = NodePower(p.idle.watts, p.busy.watts, p.radio_tx.watts if p.radio_tx else 0.0,
                               p.radio_rx.watts if p.radio_rx else 0.0)
    return out


NESTQUANT_COLUMNS = ("created_s", "status", "group", "mode")
"""The record columns :func:`nestquant_accuracy` reads."""


def _column_chunks(path: Path, names: tuple[str, ...]) -> Iterator[pd.DataFrame]:
    """These columns of a streamed run's ``requests.parquet`` (those it has), a row group at a time."""
    from testbed.run.stream import ROW_GROUP

    have = set(pq.read_schema(path).names)
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP, columns=[c for c in names if c in have]):
        yield batch.to_pandas()


def nestquant_accuracy(records: pd.DataFrame, resolved: Resolved) -> float:
    """Expected accuracy of the completed requests in the window, each at its head's measured
    accuracy (NestQuant groups) -- the modes file's figure, not a per-image prediction."""
    total, count = _nestquant_sums(records, resolved)
    return total / count if count else float("nan")


def _nestquant_sums(records: pd.DataFrame, resolved: Resolved) -> tuple[float, int]:
    """(summed expected accuracy, requests) of :func:`nestquant_accuracy` over ``records`` (a chunk)."""
    sc = resolved.scenario
    ok = in_window(records, (sc.warmup, sc.duration))
    ok = ok[ok["status"].astype(str) == "ok"]
    total, count = 0.0, 0
    for g, modes in enumerate(resolved.nestquant):
        rows = ok[ok["group"] == g]
        if modes is None or rows.empty:
            continue
        total += float(rows["mode"].map({0: modes.accuracy["full"], 1: modes.accuracy["part"]}).to_numpy().sum())
        count += len(rows)
    return total, count


def run_scenario(scenario: Scenario | Resolved, workload: Workload | None = None,
                 base_dir: Path | None = None, *, stream: bool = True) -> RunResult:
    """Simulate a scenario once and compute its summary and queue table.

    Give it a :class:`Resolved` (from :func:`testbed.run.prepare.prepare`); a bare
    :class:`Scenario` is resolved against ``base_dir`` first. With a model section the real
    pipeline supplies payloads and charges (cached on disk), and the records gain ``correct`` and
    ``agree``; with power figures in the node profiles, energy.

    With ``stream`` (the default) the records are never all in memory: they are streamed to
    ``requests.parquet`` in a temporary folder (:mod:`testbed.run.stream`) and summarised in one chunked
    pass; ``records`` reads them back only when asked for. Without it, the run is held in memory.
    """
    res = as_resolved(scenario, base_dir)
    sc = res.scenario
    table, pipeline_s = None, 0.0
    if workload is None and sc.model is not None:
        from testbed.bridge.cache import pipeline_table  # the real pipeline (torch)
        from testbed.bridge.workload import PipelineWorkload

        t0 = time.perf_counter()
        table = pipeline_table(sc)
        pipeline_s = time.perf_counter() - t0
        workload = PipelineWorkload(res, table)
    if stream:
        return _run_streamed(res, workload or SyntheticWorkload(sc), table, pipeline_s)
    sim = simulate(res, workload or SyntheticWorkload(sc))
    records = sim.records
    if table is not None:
        from testbed.bridge.outcomes import add_outcomes

        records = add_outcomes(records, table)
    power = node_power(res)
    if power:
        records = add_energy(records, power, sc.duration)
    sim.records = records
    summary = summarize(records, sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    if any(m is not None for m in res.nestquant):
        summary["nestquant_accuracy"] = nestquant_accuracy(records, res)
    summary.update(_per_unit(records, sim, sc))
    if table is not None and "corruption" in table.images.columns:
        summary["by_corruption"] = corruption_breakdown(records, sim.window)
    summary.update(_by_group(records, sim, sc, workload))
    summary = _headed(summary, res)
    return RunResult(sc, sim, summary, station_table(sim.levels, station_servers(sc)), pipeline_s)


def _run_streamed(res: Resolved, workload: Workload, table: Any, pipeline_s: float) -> RunResult:
    """:func:`run_scenario` with the records streamed (spilled, then written and summarised in chunks)."""
    from testbed.core.metrics import SUMMARY_METRICS
    from testbed.core.metrics.online import ONLINE_METRICS, StreamSummary
    from testbed.run.stream import FileSeries, Spill, created_at, write_requests

    sc = res.scenario
    folder = tempfile.TemporaryDirectory(prefix="testbed-run-")
    spill = Spill(Path(folder.name) / "spill")
    try:
        sim = Simulation(res, workload, sink=spill).run()
    finally:
        spill.close()
    power = node_power(res)

    def extend(df: pd.DataFrame, frames: np.ndarray) -> pd.DataFrame:
        if table is not None:
            from testbed.bridge.outcomes import add_outcomes

            df = add_outcomes(df, table)
        return add_energy(df, power, sc.duration, frames) if power else df

    path = Path(folder.name) / "requests.parquet"
    series = FileSeries(Path(folder.name) / "latency.bin")  # the summary's latency series, on disk
    acc = StreamSummary(sim.window, sim.levels, sim.gpus, nodes=sc.node_count, series=series)
    names = tuple(g.name or f"group{i}" for i, g in enumerate(sc.fleet))
    write_requests(spill, path, acc, group_names=names, window=sim.window,
                   frames=np.asarray(sim.frames, dtype=np.int64), extend=extend)
    spill.remove()
    result = RunResult(sc, sim, {}, station_table(sim.levels, station_servers(sc)), pipeline_s, path, folder)
    if all(name in ONLINE_METRICS for name, _ in SUMMARY_METRICS.items()):
        summary = acc.result(created_at(path, sim.window[1]))
        series.remove()
    else:  # a metric the chunked pass does not know: summarise in memory
        summary = summarize(result.records, sim.window, sim.levels, sim.gpus, nodes=sc.node_count)
    if any(m is not None for m in res.nestquant):
        sums = [_nestquant_sums(chunk, res) for chunk in _column_chunks(path, NESTQUANT_COLUMNS)]
        count = sum(c for _, c in sums)
        summary["nestquant_accuracy"] = sum(t for t, _ in sums) / count if count else float("nan")
    if sc.topology:  # per-cell and per-server figures read their columns back (topology runs only)
        summary.update(_per_unit_streamed(path, sim, sc))
    if table is not None and "corruption" in table.images.columns:  # read back only the columns it needs
        per_corruption = CorruptionAccumulator(sim.window)  # its columns read back a row group at a time
        for chunk in _column_chunks(path, CORRUPTION_COLUMNS):
            per_corruption.add(chunk)
        summary["by_corruption"] = per_corruption.result()
    if configs_of(workload) is not None:  # heterogeneous fleet: its columns read back in chunks
        summary.update(_by_group_streamed(path, sim, sc, workload))
    result.summary = _headed(summary, res)
    return result


def _per_unit(records: pd.DataFrame, sim: SimResult, sc: Scenario) -> dict[str, Any]:
    """Per-cell and per-server figures of a topology run (none for one link and one server)."""
    if not sc.topology:
        return {}
    from testbed.core.metrics.topology import topology_summary

    units: Any = sim.meta
    return topology_summary(records, sim.window, sc.cell_names, sc.server_names, units)


def _per_unit_streamed(path: Path, sim: SimResult, sc: Scenario) -> dict[str, Any]:
    """:func:`_per_unit` of a streamed run: its columns read back a row group at a time, each cell's and
    server's completed latencies on disk beside the file."""
    from testbed.core.metrics.topology import TopologyAccumulator
    from testbed.run.stream import FileSeries

    files: dict[tuple[str, int], FileSeries] = {}

    def series(kind: str, i: int) -> FileSeries:
        files[kind, i] = FileSeries(path.parent / f"{kind}{i}.latency.bin")
        return files[kind, i]

    try:
        acc = TopologyAccumulator(sim.window, sc.cell_names, sc.server_names, series)
        for chunk in _column_chunks(path, TOPOLOGY_COLUMNS):
            acc.add(chunk)
        units: Any = sim.meta
        return acc.result(units)
    finally:
        for f in files.values():
            f.remove()


def _by_group(records: pd.DataFrame, sim: SimResult, sc: Scenario, workload: Workload | None) -> dict[str, Any]:
    """``configs`` (each configuration's label) and ``by_group`` (per-group figures) of a heterogeneous
    fleet's run (groups of their own model, split or codec); none otherwise."""
    hetero = configs_of(workload) if workload is not None else None
    if hetero is None:
        return {}
    labels = hetero.configs.labels
    names = tuple(g.name or f"group{i}" for i, g in enumerate(sc.fleet))
    return {"configs": list(labels),
            "by_group": group_breakdown(records, sim.window, names, labels, [g.count for g in sc.fleet])}


def _by_group_streamed(path: Path, sim: SimResult, sc: Scenario, workload: Workload) -> dict[str, Any]:
    """:func:`_by_group` of a streamed run: its columns read back a row group at a time, each group's
    completed latencies on disk beside the file (:class:`~testbed.run.stream.FileSeries`)."""
    from testbed.core.metrics.groups import GroupAccumulator
    from testbed.run.stream import FileSeries

    hetero = configs_of(workload)
    assert hetero is not None
    labels = hetero.configs.labels
    names = tuple(g.name or f"group{i}" for i, g in enumerate(sc.fleet))
    files = [FileSeries(path.parent / f"group{g}.latency.bin") for g in range(len(names))]
    try:
        acc = GroupAccumulator(sim.window, names, labels, [g.count for g in sc.fleet], series=files.__getitem__)
        for chunk in _column_chunks(path, GROUP_COLUMNS):
            acc.add(chunk)
        rows = acc.result()
    finally:
        for f in files:
            f.remove()
    return {"configs": list(labels), "by_group": rows}


def _headed(summary: dict[str, Any], res: Resolved) -> dict[str, Any]:
    """``scenario`` and ``seed`` first, the random-weights note last."""
    sc = res.scenario
    summary = {"scenario": sc.name, "seed": sc.seed, **summary}
    if sc.model is not None and sc.model.weights == "random":
        summary["note"] = RANDOM_WEIGHTS_NOTE
    return summary


def station_servers(sc: Scenario) -> dict[str, int]:
    """Servers of each station: a CPU per node, one channel per link direction and cell, the GPUs of
    every server."""
    cells = len(sc.cell_specs)
    return {"node": sc.node_count, "uplink": cells, "server": sum(s.gpus for s in sc.server_specs), "downlink": cells}


def write_run(result: RunResult, raw: dict[str, Any], out: Path | str, force: bool = False) -> Path:
    """Write ``requests.parquet``, ``scenario.yaml``, ``queues.csv`` and ``summary.json`` as one set
    (:func:`testbed.io.write_output_set`: all or nothing, refused while another run writes ``out``)."""
    return write_output_set(out, {
        "requests.parquet": result.write_requests,
        "scenario.yaml": lambda p: p.write_text(yaml.safe_dump(raw, sort_keys=False)),
        "queues.csv": lambda p: p.write_text(result.queues.to_csv(index=False)),
        "summary.json": lambda p: p.write_text(json_text(result.summary) + "\n"),
    }, force=force)

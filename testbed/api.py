"""The notebook API: run a scenario, load a run or a sweep, summarise records, draw figures.

Use it as ``import testbed.api as tb``. The same names are reachable from :mod:`testbed` itself (loaded
on first use; :func:`run` is ``testbed.simulate`` there, ``testbed.run`` being the package). Nothing here
imports torch unless a scenario has a model section. Figures are :class:`matplotlib.figure.Figure` objects
from :mod:`testbed.run.plots`: they never switch the backend, so they show inline in Jupyter and
save with ``fig.savefig(...)``.

>>> import testbed.api as tb
>>> r = tb.run("scenarios/queueing.yaml", duration="30 s", **{"link.datarate": "2 MB/s"})
>>> r.summary["latency_p95_s"], r.summary["completed_share"]
>>> r.cdf(slo="p95 < 100 ms")
>>> sw = tb.load_sweep("runs/sweep"); sw.table; sw.records(cell=0); sw.figures()

Units: every column and key ending ``_s`` is in seconds, ``_bytes`` in bytes, ``_per_s`` per second,
``_j`` in joules; shares and utilisations are fractions from 0 to 1 (see the README's "Outputs").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["Run", "Sweep", "cdf", "load_run", "load_sweep", "run", "summarise"]


@dataclass
class Run:
    """One run: in memory (:func:`run`) or read from a ``testbed run``/``emulate``/sweep-cell folder
    (:func:`load_run`).

    ``records``: one row per request (``requests.parquet``: timestamps, status, ``latency_s``, the
    stage durations, ``in_window``); ``summary``: ``summary.json`` (with its ``warnings``);
    ``scenario``: the scenario mapping as run; ``queues``: the station table (``queues.csv``; None
    where the folder has none, e.g. a sweep cell or an emulation); ``path``: the folder, if any."""

    records: pd.DataFrame
    summary: dict[str, Any]
    scenario: dict[str, Any]
    queues: pd.DataFrame | None = None
    path: Path | None = None

    @property
    def window(self) -> tuple[float, float]:
        """The measurement window ``[warmup, duration)`` in seconds."""
        from testbed.units import parse_duration

        sc = self.scenario
        if "duration" not in sc:
            return (0.0, math.inf)
        return (parse_duration(sc.get("warmup", 0)), parse_duration(sc["duration"]))

    @property
    def warnings(self) -> list[str]:
        """What the summary warns about (overload, unfinished requests, a short warm-up)."""
        return list(self.summary.get("warnings") or [])

    def in_window(self) -> pd.DataFrame:
        """The requests created in the window: those every summary figure is computed over."""
        from testbed.core.metrics import in_window

        return in_window(self.records, self.window)

    def summarise(self) -> dict[str, Any]:
        """The summary recomputed from ``records`` (:func:`summarise`; utilisations from the records)."""
        gpus = int((self.scenario.get("server") or {}).get("gpus", 1))
        return summarise(self.records, self.window, gpus=gpus)

    def cdf(self, slo: Any = None, tail: bool = True, label: str = "this run") -> Figure:
        """Latency CDF (with its tail as a log CCDF when ``tail``), as a share of every request created
        in the window; ``slo`` (e.g. ``"p95 < 100 ms"``) draws the objective."""
        return cdf([self], [label], slo=slo, tail=tail)

    def figures(self, slo: Any = None) -> dict[str, Figure]:
        """The single-run figures of :func:`testbed.run.plots.run_figures` (CDF, breakdown, stations
        over time), by name; an in-memory run gets the CDF and the stations over time."""
        from testbed.run import plots

        if self.path is not None:
            return {name: fig for name, (fig, _) in plots.run_figures(self.path, _slo(slo)).items()}
        data = plots.RunData(Path("."), self._with_stages(), self.summary, self.scenario, self.window)
        return {"latency_cdf": self.cdf(slo), "timeline": plots.timeline_figure(data)[0]}

    def _with_stages(self) -> pd.DataFrame:
        from testbed.core.metrics import with_stages

        return with_stages(self.records)

    def _curve(self, label: str) -> Any:
        from testbed.run.plots import Curve

        w = self.in_window()
        ok = w[w["status"].astype(str) == "ok"]
        return Curve(label, ok["latency_s"].to_numpy(dtype=float), len(w))


def run(scenario: str | Path | Mapping[str, Any] | None = None, out: str | Path | None = None,
        force: bool = False, **overrides: Any) -> Run:
    """Simulate a scenario (a YAML path, a mapping, or None for the built-in default) once, in memory.

    ``overrides`` set scenario fields, a double underscore standing for a dot
    (``fleet__0__count=20``, or ``**{"link.datarate": "2 MB/s"}``). With ``out`` the output set
    (``requests.parquet``, ``summary.json``, ``queues.csv``, ``scenario.yaml``) is also written there,
    as ``testbed run --out`` does (``force`` to replace one)."""
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.run.prepare import prepare, prepare_dict, scenario_dir
    from testbed.run.runner import run_scenario, write_run

    sets = {k.replace("__", "."): v for k, v in overrides.items()}
    if isinstance(scenario, Mapping):
        raw = apply_overrides(dict(scenario), sets) if sets else dict(scenario)
        resolved = prepare_dict(raw, None)
    elif scenario is None:
        resolved, raw = prepare(None, sets or None)
    else:
        raw = read_yaml(scenario)
        raw = apply_overrides(raw, sets) if sets else raw
        resolved = prepare_dict(raw, scenario_dir(scenario))
    result = run_scenario(resolved)
    path = None
    if out is not None:
        path = write_run(result, raw, out, force=force)
    from testbed.core.metrics import with_stages

    return Run(with_stages(result.records), result.summary, raw, result.queues, Path(path) if path else None)


def load_run(folder: str | Path) -> Run:
    """Read a run folder: ``requests.parquet`` (with stage durations), ``summary.json``,
    ``scenario.yaml`` and ``queues.csv`` where present."""
    from testbed.run.plots import load_run_dir

    data = load_run_dir(folder)
    queues_csv = Path(folder) / "queues.csv"
    queues = pd.read_csv(queues_csv) if queues_csv.is_file() else None
    return Run(data.records, dict(data.summary), dict(data.scenario), queues, Path(folder))


@dataclass
class Sweep:
    """A sweep folder (``testbed sweep --out``).

    ``table``: ``summary.parquet``, one row per cell and replication: the swept values
    (``sweep.<field>`` as written, ``sweep.<field>_<unit>`` in base units), every summary figure and
    the replication intervals ``<metric>_ci_low/_ci_high``; ``fields``: the swept label columns;
    ``scenario``: ``sweep.yaml``."""

    path: Path
    table: pd.DataFrame
    fields: list[str]
    scenario: dict[str, Any] = field(default_factory=dict)

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell: its swept values and the mean of every numeric figure over replications."""
        numeric = [c for c in self.table.select_dtypes("number").columns
                   if c not in ("cell", "replication", "seed", *self.fields)]
        by = self.table.groupby("cell", sort=True)
        return by[self.fields].first().join(by[numeric].mean()).reset_index()

    @property
    def warnings(self) -> list[str]:
        """What the sweep's figures cannot show (:func:`testbed.run.plots.sweep_warnings`)."""
        from testbed.run.plots import sweep_warnings

        return sweep_warnings(self.path)

    def cell_dir(self, cell: int, replication: int = 0) -> Path:
        """The folder of one run of the sweep."""
        found = sorted((self.path / "cells").glob(f"c{cell:04d}-r{replication:02d}-*"))
        if not found:
            from testbed.errors import TestbedError

            raise TestbedError(f"{str(self.path)!r} has no finished run of cell {cell}, replication {replication}")
        return found[0]

    def run(self, cell: int, replication: int = 0) -> Run:
        """One run of the sweep, as :func:`load_run` reads it."""
        return load_run(self.cell_dir(cell, replication))

    def records(self, cell: int, replication: int = 0) -> pd.DataFrame:
        """``requests.parquet`` of one run of the sweep (with stage durations)."""
        return self.run(cell, replication).records

    def figures(self, slo: Any = None) -> dict[str, Figure]:
        """The sweep's figures (:func:`testbed.run.plots.sweep_figures`), by name."""
        from testbed.run.plots import sweep_figures

        return {name: fig for name, (fig, _) in sweep_figures(self.path, _slo(slo)).items()}


def load_sweep(folder: str | Path) -> Sweep:
    """Read a sweep folder's ``summary.parquet`` and ``sweep.yaml``."""
    from testbed.config.load import read_yaml
    from testbed.run.plots import load_sweep as read_table

    path = Path(folder)
    table, fields = read_table(path)
    scenario = read_yaml(path / "sweep.yaml") if (path / "sweep.yaml").is_file() else {}
    return Sweep(path, table, fields, scenario)


def summarise(records: pd.DataFrame, window: tuple[float, float] | None = None, *, gpus: int = 1,
              nodes: int | None = None) -> dict[str, Any]:
    """The summary figures (as in ``summary.json``) of the requests created in ``window``
    (``(warmup, duration)`` in seconds; None: every request), utilisations from the records."""
    from testbed.core.metrics import summarize

    return summarize(records, window if window is not None else (0.0, math.inf), None, gpus, nodes)


def cdf(runs: Sequence[Run], labels: Sequence[str] | None = None, slo: Any = None, tail: bool = True) -> Figure:
    """Latency CDFs of several runs overlaid (:func:`testbed.run.plots.latency_cdf_figure`)."""
    from testbed.run.plots import latency_cdf_figure

    names = list(labels) if labels else [str(r.path.name) if r.path else f"run {i + 1}" for i, r in enumerate(runs)]
    return latency_cdf_figure([r._curve(n) for r, n in zip(runs, names)], slo=_slo(slo), tail=tail)


def _slo(slo: Any) -> Any:
    """An objective written as text (``"p95 < 100 ms"``) parsed; an :class:`~testbed.run.capacity.Slo` or
    None as given."""
    if isinstance(slo, str):
        from testbed.run.capacity import parse_slo

        return parse_slo(slo)
    return slo

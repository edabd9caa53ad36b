"""Figures for papers: of a sweep, of a single run, and comparing two runs or two sweeps.

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` built with the object-oriented
API (no pyplot state, the user's backend is never switched), so figures work headless and inline in
Jupyter; :func:`save_figure` writes one in any of :data:`FORMATS`. ``plot_sweep``, ``plot_run`` and
``plot_compare`` draw and save every figure of a directory, each with the CSV table behind it.

Axes are labelled in words with units (``link.datarate`` is "uplink data rate (MB/s)", see
:func:`field_label`); latencies are in milliseconds (seconds beyond 10 s). Latency CDFs are shares of
every request created in the measurement window, so a curve levels off at its completed share.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import yaml
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from testbed.core.metrics import STAGES, in_window, replication_warning, with_stages
from testbed.core.metrics.intervals import MIN_REPLICATIONS
from testbed.errors import ConfigError, TestbedError
from testbed.io import atomic_write, write_text
from testbed.units import parse_datarate, parse_duration, parse_rate, parse_size

__all__ = [
    "FORMATS",
    "STAGE_COLOURS",
    "STAGE_LABELS",
    "Curve",
    "RunData",
    "breakdown_figure",
    "compare_figures",
    "corruption_figure",
    "field_label",
    "format_value",
    "latency_cdf_figure",
    "load_run_dir",
    "load_sweep",
    "plot_compare",
    "plot_dirs",
    "plot_run",
    "plot_sweep",
    "run_figures",
    "save_figure",
    "sweep_figures",
    "sweep_warnings",
    "timeline_figure",
]

FORMATS = ("png", "svg", "pdf")
"""File formats :func:`save_figure` writes."""

STAGE_LABELS = {"node_queue_s": "node queue", "head_s": "head", "encode_s": "encode", "link_wait_s": "link wait",
                "tx_s": "transmission", "propagation_s": "propagation", "decode_s": "decode",
                "server_queue_s": "server queue", "batch_wait_s": "batch wait", "tail_s": "tail",
                "downlink_s": "downlink"}

# Okabe-Ito (colour-blind safe) and three of Tol's: neighbouring stages never share a hue.
STAGE_COLOURS = {"node_queue_s": "#E69F00", "head_s": "#56B4E9", "encode_s": "#009E73", "link_wait_s": "#D55E00",
                 "tx_s": "#0072B2", "propagation_s": "#F0E442", "decode_s": "#CC79A7", "server_queue_s": "#999999",
                 "batch_wait_s": "#882255", "tail_s": "#44AA99", "downlink_s": "#332288"}
_LINES = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_PCT_MARKERS = {50: "o", 95: "s", 99: "^"}
_PERCENTILES = ("latency_p50_s", "latency_p95_s", "latency_p99_s")
_UTILISATION = (("link_utilisation", "uplink"), ("gpu_utilisation", "server GPU"), ("node_utilisation", "node CPU"))
_MODEL_FIELDS = re.compile(r"^(codec|model|dataset)(\.|$)|(^|\.)split$")
_COLUMN_IN = 3.5    # one column of a two-column paper (inches)
_PAGE_IN = 7.0      # the full text width
_STYLE: Any = {"font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 7, "legend.title_fontsize": 7,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 4,
          "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False,
          "axes.spines.right": False, "legend.frameon": False, "svg.fonttype": "path", "pdf.fonttype": 42,
          "axes.prop_cycle": cycler(color=_LINES)}

Table = pd.DataFrame
Figures = dict[str, tuple[Figure, Table]]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _styled(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``draw`` under the paper style (fonts are fixed when artists are made, so at draw time)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(_STYLE):
            return draw(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = draw.__name__, draw.__doc__
    return wrapper


def save_figure(fig: Figure, stem: Path | str, formats: Sequence[str] = ("png",), dpi: int = 200) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (atomically); returns the paths."""
    out = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError("--format", fmt, f"one of {', '.join(FORMATS)}")
        path = Path(f"{stem}.{fmt}")

        def write(p: Path, fmt: str = fmt) -> None:
            with matplotlib.rc_context(_STYLE):
                fig.savefig(p, format=fmt, dpi=dpi, metadata=_metadata(fmt))
        out.append(atomic_write(path, write))
    return out


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation dates: the same figure gives the same file."""
    return {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]


# -- labels and units ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    label: str
    kind: str | None = None     # duration, datarate, size, rate, count, or None (a category)
    noun: str = ""              # a count's unit ("nodes")


_FIELDS: tuple[tuple[str, _Spec], ...] = (
    (r"fleet\.\d+\.count", _Spec("nodes{fleet}", "count", "nodes")),
    (r"fleet\.\d+\.arrivals\.rate", _Spec("frame rate per node{fleet}", "rate")),
    (r"fleet\.\d+\.payload", _Spec("payload{fleet}", "size")),
    (r"fleet\.\d+\.head", _Spec("head compute time{fleet}", "duration")),
    (r"fleet\.\d+\.encode", _Spec("encode time{fleet}", "duration")),
    (r"fleet\.\d+\.datarate", _Spec("node uplink data rate{fleet}", "datarate")),
    (r"fleet\.\d+\.queue\.capacity", _Spec("node queue capacity{fleet}", "count", "frames")),
    (r"fleet\.\d+\.device", _Spec("node device{fleet}")),
    (r"link\.datarate", _Spec("uplink data rate", "datarate")),
    (r"link\.latency", _Spec("link propagation delay", "duration")),
    (r"link\.model", _Spec("link model")),
    (r"link\.downlink\.datarate", _Spec("downlink data rate", "datarate")),
    (r"link\.downlink\.latency", _Spec("downlink delay", "duration")),
    (r"server\.gpus", _Spec("server GPUs", "count", "GPUs")),
    (r"server\.batching\.max_batch", _Spec("largest batch", "count", "requests")),
    (r"server\.batching\.max_delay", _Spec("batching delay", "duration")),
    (r"server\.queue_capacity", _Spec("server queue capacity", "count", "requests")),
    (r"server\.timeout", _Spec("server timeout", "duration")),
    (r"server\.device", _Spec("server device")),
    (r"workload\.payload", _Spec("payload", "size")),
    (r"workload\.result", _Spec("result size", "size")),
    (r"model\.split", _Spec("split point")),
    (r"model\.name", _Spec("model")),
    (r"model\.weights", _Spec("weights")),
    (r"codec", _Spec("codec")),
    (r"dataset\.kind", _Spec("dataset")),
    (r"seed", _Spec("seed")),
    (r"duration", _Spec("run length", "duration")),
    (r"warmup", _Spec("warm-up", "duration")),
)
_KIND_BY_WORD = {"datarate": "datarate", "basic_rate": "datarate", "paging_rate": "datarate", "rate": "rate",
                 "latency": "duration", "timeout": "duration", "max_delay": "duration", "head": "duration",
                 "encode": "duration", "decode": "duration", "slot": "duration", "sifs": "duration",
                 "payload": "size", "result": "size", "mtu": "size"}
_UNIT_SUFFIX = re.compile(r"_(s|bytes|bytes_per_s|per_s)$")


def _path(field: str) -> str:
    """A swept column's field path: ``sweep.`` and a unit suffix (``_Bps``) removed."""
    path = field.removeprefix("sweep.")
    bare = _UNIT_SUFFIX.sub("", path)
    return bare if bare != path and any(re.fullmatch(p, bare) for p, _ in _FIELDS) else path


def _spec(field: str, scenario: Mapping[str, Any] | None) -> _Spec:
    path = _path(field)
    m = re.match(r"fleet\.(\d+)\.", path)
    where = ""
    if m:
        i = int(m.group(1))
        fleet = (scenario or {}).get("fleet") or []
        name = fleet[i].get("name") if i < len(fleet) and isinstance(fleet[i], Mapping) else None
        where = f" in fleet '{name}'" if name else f" in fleet {i + 1}"
    for pattern, spec in _FIELDS:
        if re.fullmatch(pattern, path):
            return _Spec(spec.label.format(fleet=where), spec.kind, spec.noun)
    rest = re.sub(r"^fleet\.\d+\.", "", path)
    words = re.sub(r"[._]+", " ", re.sub(r"\.\d+(\.|$)", r" \1", rest)).strip()
    return _Spec(words + where, _KIND_BY_WORD.get(rest.rsplit(".", 1)[-1]))


_PARSE: dict[str, Callable[[object], float]] = {"duration": parse_duration, "datarate": parse_datarate,
                                                "size": parse_size, "rate": parse_rate}


def _number(kind: str | None, value: Any) -> float | None:
    """``value`` in base units (seconds, bytes, bytes/s, 1/s), None when it is not a quantity."""
    if kind is None or isinstance(value, bool):
        return None
    if kind == "count":
        return float(value) if isinstance(value, (int, float, np.integer, np.floating)) else None
    try:
        return float(_PARSE[kind](value))
    except (ValueError, TypeError, ConfigError):
        return None


def _scale(kind: str | None, largest: float) -> tuple[float, str]:
    """Divisor and unit for numbers of ``kind`` up to ``largest`` (base units)."""
    if kind == "duration":
        return (1e-3, "ms") if largest < 1 else (1.0, "s")
    if kind == "datarate":
        return next(((f, u) for f, u in ((1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")) if largest >= f), (1.0, "B/s"))
    if kind == "size":
        return next(((f, u) for f, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if largest >= f), (1.0, "B"))
    if kind == "rate":
        return 1.0, "frames/s"
    return 1.0, ""


def field_label(field: str, scenario: Mapping[str, Any] | None = None, values: Iterable[Any] = (),
                unit: bool = True) -> str:
    """Words and a unit for a swept field (``sweep.link.datarate`` -> "uplink data rate (MB/s)"); the
    unit fits ``values``; ``scenario`` (the mapping) names fleets; ``unit=False`` for a legend title
    whose entries carry their units."""
    spec = _spec(field, scenario)
    nums = [n for n in (_number(spec.kind, v) for v in values) if n is not None]
    if spec.kind in (None, "count") or not unit:
        return spec.label
    _, name = _scale(spec.kind, max(nums, default=1.0))
    return f"{spec.label} ({name})"


def format_value(field: str, value: Any, scenario: Mapping[str, Any] | None = None, with_noun: bool = False) -> str:
    """One value of a swept field for a legend or a tick ("1 MB/s", "20 nodes", "csma")."""
    spec = _spec(field, scenario)
    n = _number(spec.kind, value)
    if n is None:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return re.sub(r"\s+", " ", text)[:40]
    if spec.kind == "count":
        return f"{n:g} {spec.noun}" if with_noun and spec.noun else f"{n:g}"
    factor, unit = _scale(spec.kind, n)
    return f"{n / factor:.4g} {unit}"


def _axis_values(field: str, values: Sequence[Any], scenario: Mapping[str, Any] | None
                 ) -> tuple[np.ndarray, list[str] | None]:
    """Positions of ``values`` on an axis: numbers in the axis unit, or (for categories) 0, 1, ...
    in first-seen order with their tick labels."""
    spec = _spec(field, scenario)
    nums = [_number(spec.kind, v) for v in values]
    if nums and all(n is not None for n in nums):
        factor, _ = _scale(spec.kind, max(n for n in nums if n is not None))
        return np.array([n for n in nums if n is not None]) / factor, None
    order = list(dict.fromkeys(format_value(field, v, scenario) for v in values))
    return np.array([order.index(format_value(field, v, scenario)) for v in values], dtype=float), order


def _time_scale(largest_s: float) -> tuple[float, str]:
    return (1e3, "ms") if largest_s < 10 else (1.0, "s")


# -- latency distributions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """One latency distribution: completed requests' latencies (s) and how many were created."""

    label: str
    latencies_s: np.ndarray
    created: int

    @property
    def completed_share(self) -> float:
        return len(self.latencies_s) / self.created if self.created else math.nan

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile over every created request, the unfinished counted as infinitely
        late (NaN when they are more than ``100 - q`` percent)."""
        k = math.ceil(q / 100 * self.created)
        xs = np.sort(self.latencies_s)
        return float(xs[k - 1]) if 0 < k <= len(xs) else math.nan


def _thin(x: np.ndarray, y: np.ndarray, limit: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points of a step curve, evenly in rank (the first and last kept)."""
    if len(x) <= limit:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[idx], y[idx]


@_styled
def latency_cdf_figure(curves: Sequence[Curve], slo: Any = None, tail: bool = True,
                       title: str | None = None, legend_title: str | None = None) -> Figure:
    """Latency CDF (left) and its tail as a CCDF on a log axis (right, when ``tail``): each curve is
    a share of every request created in the window, so it levels off at the completed share (the
    legend says how much did not complete); markers at p50/p95/p99 (over every request, unfinished
    counted as late) and, with ``slo`` (a :class:`testbed.run.capacity.Slo`), its bound."""
    curves = [c for c in curves if c.created]
    fig = _figure(_PAGE_IN if tail else _COLUMN_IN, 2.6 if tail else 2.4)
    axes = fig.subplots(1, 2 if tail else 1, squeeze=False)[0]
    cdf_ax, tail_ax = axes[0], (axes[1] if tail else None)
    largest = max((float(c.latencies_s.max()) for c in curves if len(c.latencies_s)), default=0.0)
    factor, unit = _time_scale(largest)
    lo = [float(np.median(c.latencies_s)) for c in curves if len(c.latencies_s)]
    hi = [float(np.percentile(c.latencies_s, 99)) for c in curves if len(c.latencies_s)]
    logx = bool(lo and min(lo) > 0 and max(hi) / min(lo) > 30)  # curves too far apart for a linear axis
    for i, c in enumerate(curves):
        colour = _LINES[i % len(_LINES)]
        xs = np.sort(c.latencies_s) * factor
        done = c.completed_share
        note = f"\n({1 - done:.1%} not completed:\ncurve levels off at {done:.1%})" if done < 1 else ""
        k = np.arange(1, len(xs) + 1)
        x = np.append(xs, largest * factor * 1.05) if len(xs) else xs
        y = np.append(k, len(xs)) / c.created if len(xs) else k / c.created
        tx, ty = _thin(x, y)
        cdf_ax.plot(tx, ty, drawstyle="steps-post", color=colour, label=f"{c.label}{note}")
        if done < 1:
            cdf_ax.annotate(f"{done:.1%} completed", (tx[-1], ty[-1]), xytext=(-2, 3), textcoords="offset points",
                            ha="right", fontsize=6, color=colour)
        if tail_ax is not None and len(xs):
            ccdf = 1 - y
            keep = ccdf > 0
            cx, cy = _thin(x[keep], ccdf[keep])
            tail_ax.plot(cx, cy, drawstyle="steps-post", color=colour)
        for q, marker in _PCT_MARKERS.items():
            v = c.percentile(q)
            if math.isfinite(v):
                cdf_ax.plot(v * factor, q / 100, marker, color=colour, mfc="white", zorder=3)
                if tail_ax is not None:
                    tail_ax.plot(v * factor, 1 - q / 100, marker, color=colour, mfc="white", zorder=3)
    for ax in axes:
        ax.set_xlabel(f"end-to-end latency ({unit})")
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_xlim(left=0)
    cdf_ax.set_ylabel("share of requests answered by then")
    cdf_ax.set_ylim(0, 1.02)
    handles = [Line2D([], [], ls="", marker=m, color="0.2", mfc="white", label=f"p{q}") for q, m in _PCT_MARKERS.items()]
    if slo is not None:
        _slo_lines(slo, factor, unit, cdf_ax, tail_ax)
        handles.append(Line2D([], [], ls=":", color="0.2", label=f"SLO {slo}"))
    if tail_ax is not None:
        tail_ax.set_yscale("log")
        n = max((c.created for c in curves), default=1)
        tail_ax.set_ylim(0.5 / n, 1.1)
        tail_ax.set_ylabel("share not answered by then (log)")
        tail_ax.set_title("tail (complementary CDF)")
        cdf_ax.set_title("distribution (CDF)")
    fig.legend(loc="outside right upper", fontsize=6.5, title=legend_title, alignment="left")
    fig.legend(handles=handles, loc="outside right lower", fontsize=6.5, alignment="left",
               title="markers: over all requests,\nthe unfinished as late")
    if title:
        fig.suptitle(title)
    return fig


def _slo_lines(slo: Any, factor: float, unit: str, cdf_ax: Axes, tail_ax: Axes | None) -> None:
    """The objective: a vertical line at its bound and, for a percentile, a horizontal one at its level."""
    q = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}.get(slo.metric)
    for ax, level in ((cdf_ax, None if q is None else q / 100), (tail_ax, None if q is None else 1 - q / 100)):
        if ax is None:
            continue
        ax.axvline(slo.bound_s * factor, ls=":", color="0.2", lw=1)
        if level is not None and level > 0:
            ax.axhline(level, ls=":", color="0.6", lw=0.8)


# -- a sweep -------------------------------------------------------------------------------------------------
def load_sweep(out: Path) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's ``summary.parquet`` (one row per cell and replication) and its swept fields."""
    f = out / "summary.parquet"
    if not f.exists():
        raise TestbedError(f"DIR: {str(out)!r} holds no summary.parquet; run `testbed sweep FILE --out {out}` first")
    from testbed.run.sweep import swept_fields

    df = pd.read_parquet(f)
    return df, swept_fields(df.columns)


@dataclass(frozen=True)
class _Sweep:
    """What every figure reads: the summary rows, the swept fields, the per-cell means, the scenario."""

    out: Path
    df: pd.DataFrame
    fields: list[str]
    per_cell: pd.DataFrame
    scenario: Mapping[str, Any]

    @property
    def x(self) -> str | None:
        return self.fields[0] if self.fields else None

    @property
    def series(self) -> str | None:
        return self.fields[1] if len(self.fields) > 1 else None

    def label(self, field: str, unit: bool = True) -> str:
        return field_label(field, self.scenario, self.per_cell[field], unit)

    def value(self, field: str, v: Any, noun: bool = False) -> str:
        return format_value(field, v, self.scenario, with_noun=noun)

    def cell_name(self, row: Any) -> str:
        return ", ".join(self.value(f, row[f], noun=True) for f in self.fields) or "run"


def _open_sweep(out: Path) -> _Sweep:
    df, fields = load_sweep(out)
    per_cell = df.groupby("cell", sort=True).agg("mean", numeric_only=True).reset_index()
    for f in fields:
        per_cell[f] = df.groupby("cell", sort=True)[f].first().to_numpy()
    scenario: Mapping[str, Any] = {}
    if (out / "sweep.yaml").is_file():
        loaded = yaml.safe_load((out / "sweep.yaml").read_text())
        scenario = loaded if isinstance(loaded, Mapping) else {}
    return _Sweep(out, df, fields, per_cell, scenario)


@dataclass
class _CellRecords:
    latencies: list[np.ndarray]
    created: int
    stages: list[pd.DataFrame]


def _cell_records(out: Path, cells: pd.DataFrame) -> dict[int, _CellRecords]:
    """Per cell, pooled over replications: completed requests created in the window (latency and
    stage durations) and how many requests were created in the window (completed or not)."""
    res: dict[int, _CellRecords] = {}
    for _, row in cells.iterrows():
        d = next((out / "cells").glob(f"c{int(row['cell']):04d}-r{int(row['replication']):02d}-*"), None)
        if d is None:
            continue
        sc = yaml.safe_load((d / "scenario.yaml").read_text())
        window = (parse_duration(sc.get("warmup", 0)), parse_duration(sc["duration"]))
        rec = with_stages(in_window(pd.read_parquet(d / "requests.parquet"), window))
        ok = rec[rec["status"].astype(str) == "ok"]
        r = res.setdefault(int(row["cell"]), _CellRecords([], 0, []))
        r.latencies.append(ok["latency_s"].to_numpy())
        r.created += len(rec)
        r.stages.append(ok[[*STAGES, "latency_s"]])
    return res


def _near_p95(stages: pd.DataFrame) -> pd.Series:
    """Mean stage durations of the completed requests between the 94th and 96th percentile."""
    lat = stages["latency_s"]
    if not len(lat):
        return pd.Series(math.nan, index=list(STAGES))
    lo, hi = np.percentile(lat, [94, 96])
    return stages.loc[(lat >= lo) & (lat <= hi), list(STAGES)].mean()


def _cdf_figures(sw: _Sweep, recs: Mapping[int, _CellRecords], slo: Any) -> Figures:
    """One CDF (+ tail) per swept field, one line per value of it (pooling the other fields)."""
    figs: Figures = {}
    for f in sw.fields:
        curves, rows = [], []
        for value, grp in sw.per_cell.groupby(f, sort=False):
            cells = [recs[c] for c in grp["cell"] if c in recs]
            lat = np.concatenate([x for r in cells for x in r.latencies] or [np.array([])])
            created = sum(r.created for r in cells)
            if not created:
                continue
            c = Curve(sw.value(f, value, noun=True), lat, created)
            curves.append(c)
            q = np.percentile(lat, np.arange(0, 101)) * 1e3 if len(lat) else np.full(101, math.nan)
            rows += [{"field": _path(f), "value": value, "percentile": p, "latency_ms": v,
                      "completed_share": c.completed_share} for p, v in enumerate(q)]
        fig = latency_cdf_figure(curves, slo=slo, legend_title=sw.label(f, unit=False))
        figs[f"latency_cdf_{_path(f).replace('.', '_')}"] = (fig, pd.DataFrame(rows))
    return figs


def _bands(df: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series] | None:
    """Per cell, the replication interval of ``col``: only for cells with at least
    :data:`~testbed.core.metrics.intervals.MIN_REPLICATIONS` replications (NaN otherwise, whatever an
    older sweep table holds), None when the table has no intervals."""
    if f"{col}_ci_low" not in df:
        return None
    by = df.groupby("cell")
    enough = by.size() >= MIN_REPLICATIONS
    return (by[f"{col}_ci_low"].first().where(enough), by[f"{col}_ci_high"].first().where(enough))


def sweep_warnings(out: Path | str) -> list[str]:
    """One line per thing a sweep's figures cannot show: no intervals below three replications."""
    df, _ = load_sweep(Path(out))
    note = replication_warning(int(df.groupby("cell").size().min())) if len(df) else None
    return [note] if note else []


@dataclass(frozen=True)
class _Lines:
    """Percentile lines of one sweep for :func:`_percentile_axes`."""

    sw: _Sweep
    style: str = "-"
    prefix: str = ""


@_styled
def _percentile_figure(lines: Sequence[_Lines], x: str, slo: Any = None) -> Figure:
    """p50/p95/p99 against ``x`` (shared axes; log y when they span more than 30x), one line per value
    of the second swept field, replication bands where a cell has 3+ replications, hollow markers for
    cells where more than 1% of the requests did not complete."""
    fig = _figure(_PAGE_IN, 2.5)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    first = lines[0].sw
    all_vals = pd.concat([ln.sw.per_cell[list(_PERCENTILES)] for ln in lines]).to_numpy(dtype=float).ravel()
    finite = all_vals[np.isfinite(all_vals) & (all_vals > 0)]
    factor, unit = _time_scale(float(finite.max()) if len(finite) else 0.0)
    lossy = categorical = False
    for ax, col in zip(axes, _PERCENTILES):
        k = 0
        for ln in lines:
            sw, series = ln.sw, ln.sw.series
            groups: Iterable[tuple[Any, pd.DataFrame]] = (
                sw.per_cell.groupby(series, sort=False) if series else [(None, sw.per_cell)])
            bounds = _bands(sw.df, col)
            for value, grp in groups:
                pos, ticks = _axis_values(x, list(grp[x]), sw.scenario)
                order = np.argsort(pos, kind="stable")
                g, xs = grp.iloc[order], pos[order]
                colour, marker = _LINES[k % len(_LINES)], _MARKERS[k % len(_MARKERS)]
                k += 1
                name = ", ".join(t for t in (ln.prefix, sw.value(series, value) if series else "") if t) or None
                ax.plot(xs, g[col] * factor, ln.style, color=colour, label=name, zorder=2)
                share = g["completed_share"].to_numpy() if "completed_share" in g else np.ones(len(g))
                bad = share < 0.99
                lossy |= bool(bad.any())
                ax.plot(xs[~bad], g[col].to_numpy()[~bad] * factor, marker, ls="", color=colour, zorder=3)
                ax.plot(xs[bad], g[col].to_numpy()[bad] * factor, marker, ls="", color=colour, mfc="white", zorder=3)
                if ticks is not None:
                    ax.set_xticks(range(len(ticks)), ticks)
                    categorical = True
                if bounds is not None:
                    lo, hi = bounds[0].loc[g["cell"]].to_numpy(), bounds[1].loc[g["cell"]].to_numpy()
                    if np.isfinite(lo).any():
                        ax.fill_between(xs, lo * factor, hi * factor, alpha=0.2, color=colour, linewidth=0)
        ax.set_title(col.split("_")[1])
        ax.set_xlabel(first.label(x, unit=not categorical))
        if slo is not None and slo.metric == col.split("_")[1]:
            ax.axhline(slo.bound_s * factor, ls=":", color="0.2", lw=1, label=f"SLO {slo}")
    if len(finite) and finite.max() / finite.min() > 30:
        axes[0].set_yscale("log")
    else:
        axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(f"latency of completed requests ({unit})")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # an SLO line drawn on another panel
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab.startswith("SLO"):
                handles, labels = [*handles, h], [*labels, lab]
    if lossy:
        handles.append(Line2D([], [], ls="", marker="o", color="0.2", mfc="white"))
        labels.append("> 1% not completed")
    if handles:
        title = first.label(first.series, unit=False) if first.series else None
        axes[0].legend(handles, labels, title=title, fontsize=6.5)
    notes = {replication_warning(int(ln.sw.df.groupby("cell").size().min())) for ln in lines} - {None}
    fig.suptitle("; ".join(sorted(n for n in notes if n)) or "bands: Student-t 95% intervals across replications",
                 fontsize=6.5)
    return fig


@_styled
def _heatmap_figure(sw: _Sweep, x: str, series: str) -> tuple[Figure, Table]:
    """p95 latency over the first two swept fields, rows and columns in sweep order."""
    per_cell = sw.per_cell
    piv = per_cell.pivot_table(index=series, columns=x, values="latency_p95_s", aggfunc="mean") * 1e3
    piv = piv.reindex(index=list(dict.fromkeys(per_cell[series])), columns=list(dict.fromkeys(per_cell[x])))
    fig = _figure(min(_PAGE_IN, 0.55 * len(piv.columns) + 2.2), 0.35 * len(piv.index) + 1.3)
    ax = fig.subplots()
    ax.grid(False)
    data = piv.to_numpy()
    im = ax.imshow(data, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(piv.columns)), [sw.value(x, c) for c in piv.columns])
    ax.set_yticks(range(len(piv.index)), [sw.value(series, i) for i in piv.index])
    ax.set_xlabel(sw.label(x, unit=False))  # the ticks carry their units
    ax.set_ylabel(sw.label(series, unit=False))
    mid = (np.nanmin(data) + np.nanmax(data)) / 2 if np.isfinite(data).any() else 0.0
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=6, color="w" if v < mid else "k")
    fig.colorbar(im, ax=ax, label="p95 latency (ms)")
    return fig, piv


@_styled
def breakdown_figure(names: Sequence[str], mean: pd.DataFrame, p95: pd.DataFrame | None = None) -> Figure:
    """Where the time goes, one horizontal stacked bar per row of ``mean`` (stage columns, seconds),
    labelled ``names``; with ``p95``, a second panel of the same stages for the requests near the 95th
    percentile. Fits one paper column; the legend lists the stages in stack order."""
    panels = [("mean of completed requests", mean)] + ([("requests between p94 and p96", p95)] if p95 is not None else [])
    present = [s for s in STAGES if any(s in d and np.nansum(np.abs(d[s].to_numpy(dtype=float))) > 1e-9
                                           for _, d in panels)]
    largest = max(float(np.nansum(d[present].to_numpy(dtype=float), axis=1).max()) for _, d in panels) if present else 0.0
    factor, unit = _time_scale(largest)
    bar_h = 0.16
    height = sum(len(d) * bar_h + 0.55 for _, d in panels) + 0.25 * math.ceil(len(present) / 3) + 0.45
    fig = _figure(_COLUMN_IN, height)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [len(d) + 1.5 for _, d in panels]})[:, 0]
    for ax, (title, d) in zip(axes, panels):
        left = np.zeros(len(d))
        ypos = np.arange(len(d))
        for s in present:
            v = np.nan_to_num(d[s].to_numpy(dtype=float) if s in d else np.zeros(len(d))) * factor
            ax.barh(ypos, v, left=left, height=0.75, color=STAGE_COLOURS[s], label=STAGE_LABELS[s],
                    edgecolor="white", linewidth=0.3)
            left += v
        ax.set_yticks(ypos, list(names))
        ax.invert_yaxis()
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
    axes[-1].set_xlabel(f"latency ({unit})")
    axes[-1].set_xlim(left=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, max(1, len(labels))), fontsize=6.5,
               handlelength=1.2, columnspacing=0.8)
    return fig


def _breakdown_tables(sw: _Sweep, recs: Mapping[int, _CellRecords]) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    means, near = [], []
    for _, row in sw.per_cell.iterrows():
        cell = int(row["cell"])
        means.append({s: row.get(f"mean_{s}", math.nan) for s in STAGES})
        r = recs.get(cell)
        near.append(_near_p95(pd.concat(r.stages)) if r and r.stages else pd.Series(math.nan, index=list(STAGES)))
    names = [sw.cell_name(r) for _, r in sw.per_cell.iterrows()]
    return names, pd.DataFrame(means), pd.DataFrame(near).reset_index(drop=True)


@_styled
def _utilisation_figure(sw: _Sweep) -> Figure:
    """Busy fraction of each station against offered load, one line per value of the second swept
    field; each point annotated with the first field's value."""
    stations = [(c, lab) for c, lab in _UTILISATION if c in sw.per_cell and sw.per_cell[c].notna().any()]
    fig = _figure(_PAGE_IN if len(stations) > 1 else _COLUMN_IN, 2.4)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(stations)), sharex=True, sharey=True))
    groups: list[tuple[Any, pd.DataFrame]] = (list(sw.per_cell.groupby(sw.series, sort=False)) if sw.series
                                              else [(None, sw.per_cell)])
    for ax, (col, name) in zip(axes, stations):
        for k, (value, grp) in enumerate(groups):
            g = grp.sort_values("offered_per_s")
            label = sw.value(sw.series, value) if sw.series else None
            ax.plot(g["offered_per_s"], g[col], marker=_MARKERS[k % len(_MARKERS)], color=_LINES[k % len(_LINES)],
                    label=label)
            if sw.x is not None and len(g) <= 12:
                for _, r in g.iterrows():
                    ax.annotate(sw.value(sw.x, r[sw.x]), (r["offered_per_s"], r[col]), fontsize=5.5,
                                xytext=(2, 3), textcoords="offset points", color=_LINES[k % len(_LINES)])
        ax.set_title(name)
        ax.set_xlabel("offered load (requests/s)")
        ax.axhline(1.0, color="0.5", lw=0.6, ls="--")
    axes[0].set_ylabel("utilisation (share of time busy)")
    axes[0].set_ylim(0, 1.08)
    if sw.series:  # beside the last panel, clear of the points and their labels
        axes[-1].legend(title=sw.label(sw.series, unit=False), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                        borderaxespad=0.0, frameon=False)
    if sw.x is not None:
        fig.suptitle(f"points labelled with {sw.label(sw.x)}", fontsize=6.5)
    return fig


@_styled
def _accuracy_figure(sw: _Sweep, metric: str) -> Figure:
    """Accuracy (or agreement) against payload and p95 latency, one point per cell."""
    per_cell = sw.per_cell
    fig = _figure(_COLUMN_IN, 2.8)
    ax = fig.subplots()
    sc = ax.scatter(per_cell["mean_payload_bytes"] / 1e3, per_cell["latency_p95_s"] * 1e3,
                    c=per_cell[metric], cmap="viridis", s=25, vmin=0, vmax=1)
    for _, r in per_cell.iterrows():
        ax.annotate(sw.cell_name(r), (r["mean_payload_bytes"] / 1e3, r["latency_p95_s"] * 1e3),
                    fontsize=5.5, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax, label=f"{metric} (share)")
    ax.set_xlabel("mean payload (kB)")
    ax.set_ylabel("p95 latency (ms)")
    return fig


def sweep_figures(out: Path | str, slo: Any = None) -> Figures:
    """Every figure of the sweep in ``out`` with the table behind it, by file stem."""
    sw = _open_sweep(Path(out))
    recs = _cell_records(sw.out, sw.df)
    figs = _cdf_figures(sw, recs, slo)
    if sw.x is not None:
        cols = ["cell", *sw.fields, *_PERCENTILES] + (["completed_share"] if "completed_share" in sw.per_cell else [])
        figs["percentiles"] = (_percentile_figure([_Lines(sw)], sw.x, slo), sw.per_cell[cols])
        if sw.series is not None:
            figs["p95_heatmap"] = _heatmap_figure(sw, sw.x, sw.series)
    names, mean, near = _breakdown_tables(sw, recs)
    if len(mean):
        table = pd.concat([pd.DataFrame({"cell": sw.per_cell["cell"], "view": "mean"}).join(mean),
                           pd.DataFrame({"cell": sw.per_cell["cell"], "view": "p94-p96"}).join(near)])
        figs["breakdown"] = (breakdown_figure(names, mean, near), table)
    if "offered_per_s" in sw.per_cell:
        present = [c for c, _ in _UTILISATION if c in sw.per_cell]
        table = sw.per_cell.sort_values("offered_per_s")[["cell", *sw.fields, "offered_per_s", *present]]
        figs["utilisation"] = (_utilisation_figure(sw), table)
    metric = next((m for m in ("accuracy", "agreement") if m in sw.per_cell and sw.per_cell[m].notna().any()), None)
    if metric and any(_MODEL_FIELDS.search(_path(f)) for f in sw.fields):
        table = sw.per_cell[["cell", *sw.fields, "mean_payload_bytes", "latency_p95_s", metric]]
        figs["accuracy_payload_latency"] = (_accuracy_figure(sw, metric), table)
    return figs


def _write(figs: Figures, dest: Path, formats: Sequence[str], dpi: int) -> list[Path]:
    """Save each figure (every format) and its CSV into ``dest``; returns the figure files."""
    written = []
    for stem, (fig, table) in figs.items():
        written += save_figure(fig, dest / stem, formats, dpi)
        write_text(dest / f"{stem}.csv", table.to_csv(index=stem == "p95_heatmap"))
    return written


def plot_sweep(out: Path | str, formats: Sequence[str] = ("png",), dpi: int = 200, slo: Any = None,
               dest: Path | str | None = None) -> list[Path]:
    """Write every figure of the sweep in ``out`` (into ``dest``, default ``out/plots``), each in every
    format with its CSV; returns the figure files."""
    out = Path(out)
    return _write(sweep_figures(out, slo), Path(dest) if dest else out / "plots", formats, dpi)


# -- a single run -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """A ``testbed run``/``emulate`` output folder: records (with stages), summary, scenario, window."""

    path: Path
    records: pd.DataFrame
    summary: dict[str, Any]
    scenario: dict[str, Any]
    window: tuple[float, float]

    @property
    def in_window(self) -> pd.DataFrame:
        return in_window(self.records, self.window)

    def curve(self, label: str) -> Curve:
        w = self.in_window
        ok = w[w["status"].astype(str) == "ok"]
        return Curve(label, ok["latency_s"].to_numpy(), len(w))


def load_run_dir(folder: Path | str) -> RunData:
    """Read a run folder (``requests.parquet`` + ``summary.json``, ``scenario.yaml`` when present)."""
    folder = Path(folder)
    for name in ("requests.parquet", "summary.json"):
        if not (folder / name).is_file():
            raise TestbedError(f"DIR: {str(folder)!r} has no {name} (give the --out folder of testbed run, "
                               "emulate or sweep)")
    summary = json.loads((folder / "summary.json").read_text())
    scenario: dict[str, Any] = {}
    if (folder / "scenario.yaml").is_file():
        loaded = yaml.safe_load((folder / "scenario.yaml").read_text())
        scenario = loaded if isinstance(loaded, dict) else {}
    window = (parse_duration(scenario.get("warmup", 0)), parse_duration(scenario["duration"])) \
        if "duration" in scenario else (0.0, math.inf)
    records = with_stages(pd.read_parquet(folder / "requests.parquet"))
    return RunData(folder, records, summary if isinstance(summary, dict) else {}, scenario, window)


_STATIONS = (("node", "created_s", "encode_end_s"), ("uplink", "encode_end_s", "server_arrival_s"),
             ("server", "server_arrival_s", "batch_end_s"), ("downlink", "batch_end_s", "finished_s"))


def _occupancy(rec: pd.DataFrame, enter: str, leave: str, grid: np.ndarray) -> np.ndarray:
    """Requests inside a station at each time of ``grid``: entered and not yet left (a request lost
    there leaves when it was lost, one still there at the end never leaves)."""
    a = rec[enter].to_numpy(dtype=float)
    b = rec[leave].to_numpy(dtype=float)
    b = np.where(np.isnan(b), rec["finished_s"].to_numpy(dtype=float), b)
    keep = ~np.isnan(a)
    a, b = np.sort(a[keep]), np.sort(np.nan_to_num(b[keep], nan=np.inf))
    return np.searchsorted(a, grid, side="right") - np.searchsorted(b, grid, side="right")


def _busy(start: np.ndarray, end: np.ndarray, edges: np.ndarray, merge: bool) -> np.ndarray:
    """Busy time of intervals ``[start, end)`` in each bin of ``edges`` (the union when ``merge``)."""
    keep = ~np.isnan(start)
    s, e = start[keep], np.nan_to_num(end[keep], nan=edges[-1])
    if merge and len(s):
        order = np.argsort(s)
        s, e = s[order], np.maximum.accumulate(e[order])
        new = np.r_[True, s[1:] > e[:-1]]
        groups = np.cumsum(new) - 1
        s = s[new]
        e = pd.Series(e).groupby(groups).max().to_numpy()
    out = np.zeros(len(edges) - 1)
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        out[i] = np.clip(np.minimum(e, hi) - np.maximum(s, lo), 0, None).sum()
    return out


def _nice_bin(span: float) -> float:
    raw = span / 80
    return float(min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)
                      if m * 10 ** math.floor(math.log10(raw)) >= raw), default=raw)) if raw > 0 else 1.0


def _time_grid(run: RunData) -> tuple[float, float, float, np.ndarray, np.ndarray, np.ndarray]:
    """The time axis of the over-time figures: the run's end (the last finish, at least the window's end),
    the window's end, a bin width of about 1/80 of the run, the bin edges and mid-points, and 20 sampling
    instants per bin (at their centres) to average occupancy over."""
    rec = run.records
    end = float(np.nanmax(rec[["finished_s", "created_s"]].to_numpy(dtype=float))) if len(rec) else 1.0
    t1 = run.window[1] if math.isfinite(run.window[1]) else end
    end = max(end, t1)
    width = _nice_bin(end)
    edges = np.arange(0.0, end + width, width)
    mids = (edges[:-1] + edges[1:]) / 2
    fine = np.linspace(0, edges[-1], len(mids) * 20 + 1)[:-1] + edges[-1] / (len(mids) * 40)
    return end, t1, width, edges, mids, fine


@_styled
def timeline_figure(run: RunData) -> tuple[Figure, Table]:
    """Number of requests in each station (top) and each station's busy share (bottom) over time,
    in bins of about 1/80 of the run; the warm-up and the drain after the run are shaded."""
    rec = run.records
    end, t1, width, edges, mids, fine = _time_grid(run)
    table = pd.DataFrame({"time_s": mids})
    fig = _figure(_COLUMN_IN, 3.6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, (name, a, b) in enumerate(_STATIONS):
        level = _occupancy(rec, a, b, fine).reshape(len(mids), 20).mean(axis=1)
        table[f"in_{name}"] = level
        top.plot(mids, level, color=_LINES[i], label=name)
    sc = run.scenario
    servers = [s for s in sc.get("servers") or [] if isinstance(s, Mapping)]  # a topology: every server's GPUs
    gpus = (sum(int(s.get("gpus", 1) or 1) for s in servers) if servers
            else int((sc.get("server") or {}).get("gpus", 1) or 1))
    nodes = sum(int(g.get("count", 1)) for g in sc.get("fleet") or [] if isinstance(g, Mapping)) or \
        max(1, int(rec["node"].nunique()) if "node" in rec else 1)
    bins = np.diff(edges)
    busy = {"uplink": _busy(rec["tx_start_s"].to_numpy(float), rec["tx_end_s"].to_numpy(float), edges, True) / bins}
    batches = rec.dropna(subset=["batch_start_s"]).drop_duplicates(
        [c for c in ("server", "gpu", "batch_start_s") if c in rec])
    busy["server GPU"] = _busy(batches["batch_start_s"].to_numpy(float), batches["batch_end_s"].to_numpy(float),
                               edges, False) / (bins * gpus)
    busy["node CPU (mean)"] = _busy(rec["head_start_s"].to_numpy(float), rec["encode_end_s"].to_numpy(float),
                                    edges, False) / (bins * nodes)
    for (name, share), colour in zip(busy.items(), (_LINES[1], _LINES[2], _LINES[0])):  # as the stations above
        table[f"busy_{name.split(' ')[0].lower()}"] = share
        bottom.plot(mids, np.clip(share, 0, 1), color=colour, label=name)
    for ax in (top, bottom):
        if run.window[0] > 0:
            ax.axvspan(0, run.window[0], color="0.85", lw=0, zorder=0)
        if end > t1:
            ax.axvspan(t1, end, color="0.92", lw=0, zorder=0)
    top.set_ylabel("requests in station")
    top.set_ylim(bottom=0)
    top.legend(ncol=4, loc="upper left", fontsize=6, handlelength=1.2, columnspacing=0.8)
    bottom.set_ylabel("busy share")
    bottom.set_ylim(0, 1.3)  # headroom above full utilisation for the legend, clear of the lines
    bottom.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    bottom.set_xlabel(f"time (s; bins of {width:g} s; grey: warm-up{', drain' if end > t1 else ''})")
    bottom.legend(ncol=3, loc="upper center", fontsize=6, handlelength=1.2, columnspacing=0.8, frameon=False)
    top.set_xlim(0, end)
    return fig, table


def _names(scenario: Mapping[str, Any], key: str, count: int) -> list[str]:
    items = [x for x in scenario.get(key) or [] if isinstance(x, Mapping)]
    names = [str(x.get("name", i)) for i, x in enumerate(items)]
    return names if len(names) >= count else [*names, *(str(i) for i in range(len(names), count))]


@_styled
def topology_figure(run: RunData) -> tuple[Figure, Table]:
    """A topology run: requests at each server (arrived, not yet out of their batch; top) and in each
    cell's uplink (handed to the radio, not yet on the server's side; bottom) over time, in bins of about
    1/80 of the run; scripted server and cell outages shaded."""
    rec = run.records
    end, _, width, _, mids, fine = _time_grid(run)
    table = pd.DataFrame({"time_s": mids})
    fig = _figure(_COLUMN_IN, 3.6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    sc = run.scenario
    for ax, key, column, (a, b), what in ((top, "servers", "server", ("server_arrival_s", "batch_end_s"), "server"),
                                          (bottom, "cells", "cell", ("encode_end_s", "server_arrival_s"), "uplink")):
        ids = sorted(int(i) for i in rec[column].unique() if i >= 0) if column in rec else []
        names = _names(sc, key, max(ids, default=-1) + 1)
        for k, i in enumerate(ids):
            level = _occupancy(rec[rec[column] == i], a, b, fine).reshape(len(mids), 20).mean(axis=1)
            table[f"in_{what}_{names[i]}"] = level
            ax.plot(mids, level, color=_LINES[k % len(_LINES)], label=names[i])
        for item in sc.get(key) or []:
            outages = item.get("outages") if isinstance(item, Mapping) else None
            for pair in (outages or {}).get("at") or [] if isinstance(outages, Mapping) else []:
                lo, hi = (parse_duration(t) for t in pair)
                ax.axvspan(lo, hi, color="#f4cccc", lw=0, zorder=0)
        ax.set_ylim(bottom=0)
        ax.legend(ncol=4, loc="upper left", fontsize=6, handlelength=1.2, columnspacing=0.8)
    top.set_ylabel("requests at server")
    bottom.set_ylabel("requests in uplink")
    bottom.set_xlabel(f"time (s; bins of {width:g} s; red: scripted outages)")
    top.set_xlim(0, end)
    return fig, table


@_styled
def corruption_figure(run: RunData) -> tuple[Figure, Table]:
    """A run whose frames were corrupted: top-1 agreement per corruption (left: against the unsplit model
    on the same corrupted frame and on the clean frame, all severities) and agreement on the clean frame
    by severity (right), over the completed requests created in the window."""
    from testbed.core.metrics.corruptions import corruption_breakdown

    table = pd.DataFrame(corruption_breakdown(run.records, run.window))
    fig = _figure(_PAGE_IN, 2.8)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    overall = table[table["severity"].isna()].reset_index(drop=True)
    y = np.arange(len(overall))
    clean = "agreement_clean" in overall and bool(overall["agreement_clean"].notna().any())
    h = 0.38 if clean else 0.7
    left.barh(y - (h / 2 if clean else 0), overall["agreement"], height=h, color=_LINES[0],
              label="same corrupted frame")
    if clean:
        left.barh(y + h / 2, overall["agreement_clean"], height=h, color=_LINES[1], label="clean frame")
    left.set_yticks(y, [f"{c} ({n})" for c, n in zip(overall["corruption"], overall["requests"])])
    left.invert_yaxis()
    left.set_xlim(0, 1)
    left.set_xlabel("top-1 agreement with the unsplit model")
    left.legend(loc="lower right", fontsize=6)
    by_sev = table[table["severity"].notna()]
    metric = "agreement_clean" if clean else "agreement"
    for k, (name, rows) in enumerate(by_sev.groupby("corruption", sort=False)):
        if name == "none":
            continue
        right.plot(rows["severity"].astype(int), rows[metric], marker=_MARKERS[k % len(_MARKERS)],
                   color=_LINES[k % len(_LINES)], label=str(name))
    right.set_ylim(0, 1.02)
    right.set_xlabel("severity")
    right.set_ylabel(f"{'clean-frame ' if clean else ''}agreement")
    if by_sev["corruption"].nunique() > 1:
        right.legend(fontsize=6, ncol=1)
    return fig, table


def run_figures(folder: Path | str, slo: Any = None) -> Figures:
    """Figures of one run folder: latency CDF with its tail, the breakdown (mean and near p95), and
    the stations over time."""
    run = load_run_dir(folder)
    c = run.curve("this run")
    w = run.in_window
    ok = w[w["status"].astype(str) == "ok"]
    rows = [{"percentile": p, "latency_ms": v * 1e3, "completed_share": c.completed_share}
            for p, v in zip(range(101), np.percentile(c.latencies_s, np.arange(101)) if len(ok) else [])]
    figs: Figures = {"latency_cdf": (latency_cdf_figure([c], slo=slo), pd.DataFrame(rows))}
    if len(ok):
        mean = ok[list(STAGES)].mean().to_frame().T
        near = _near_p95(ok[[*STAGES, "latency_s"]]).to_frame().T
        table = pd.concat([mean.assign(view="mean"), near.assign(view="p94-p96")])
        figs["breakdown"] = (breakdown_figure(["this run"], mean, near), table)
    figs["timeline"] = timeline_figure(run)
    if run.scenario.get("cells") or run.scenario.get("servers"):
        figs["topology"] = topology_figure(run)
    if "corruption" in run.records and (run.records["corruption"].astype(str) != "").any():
        figs["corruption"] = corruption_figure(run)
    return figs


def plot_run(folder: Path | str, formats: Sequence[str] = ("png",), dpi: int = 200, slo: Any = None,
             dest: Path | str | None = None) -> list[Path]:
    """Write the figures of one run folder (into ``dest``, default ``folder/plots``)."""
    folder = Path(folder)
    return _write(run_figures(folder, slo), Path(dest) if dest else folder / "plots", formats, dpi)


# -- comparisons ---------------------------------------------------------------------------------------------------
def _kind(folder: Path) -> str:
    if (folder / "summary.parquet").exists():
        return "sweep"
    if (folder / "requests.parquet").exists() and (folder / "summary.json").exists():
        return "run"
    if not folder.is_dir():
        raise TestbedError(f"DIR: {str(folder)!r} is not a directory")
    raise TestbedError(f"DIR: {str(folder)!r} holds neither a sweep (summary.parquet) nor a run "
                       "(requests.parquet + summary.json)")


def compare_figures(folders: Sequence[Path | str], labels: Sequence[str] | None = None, slo: Any = None) -> Figures:
    """Two or more runs: their CDFs (with tails) overlaid; two or more sweeps over the same first
    field: their percentile lines overlaid (solid, dashed, dotted...)."""
    paths = [Path(f) for f in folders]
    names = list(labels) if labels else [p.name or str(p) for p in paths]
    if len(names) != len(paths):
        raise ConfigError("--label", list(labels or ()), f"one label per directory ({len(paths)})")
    kinds = {_kind(p) for p in paths}
    if len(kinds) > 1:
        raise ConfigError("DIR", [str(p) for p in paths], "directories of one kind: all runs or all sweeps")
    if kinds == {"run"}:
        runs = [load_run_dir(p) for p in paths]
        curves = [r.curve(n) for r, n in zip(runs, names)]
        rows = [{"run": c.label, "percentile": q, "latency_all_ms": c.percentile(q) * 1e3,
                 "completed_share": c.completed_share} for c in curves for q in (50, 90, 95, 99)]
        return {"latency_cdf": (latency_cdf_figure(curves, slo=slo), pd.DataFrame(rows))}
    sweeps = [_open_sweep(p) for p in paths]
    xs = {sw.x for sw in sweeps}
    if len(xs) != 1 or None in xs:
        raise ConfigError("DIR", [str(p) for p in paths], "sweeps over the same first field")
    x = sweeps[0].x
    assert x is not None
    styles = ("-", "--", ":", "-.")
    lines = [_Lines(sw, styles[i % len(styles)], n) for i, (sw, n) in enumerate(zip(sweeps, names))]
    table = pd.concat([sw.per_cell[["cell", *sw.fields, *_PERCENTILES]].assign(sweep=n) for sw, n in zip(sweeps, names)])
    return {"percentiles": (_percentile_figure(lines, x, slo), table)}


def plot_compare(folders: Sequence[Path | str], dest: Path | str, labels: Sequence[str] | None = None,
                 formats: Sequence[str] = ("png",), dpi: int = 200, slo: Any = None) -> list[Path]:
    """Write :func:`compare_figures` into ``dest``."""
    return _write(compare_figures(folders, labels, slo), Path(dest), formats, dpi)


def plot_dirs(folders: Sequence[Path | str], labels: Sequence[str] | None = None, dest: Path | str | None = None,
              formats: Sequence[str] = ("png",), dpi: int = 200, slo: Any = None) -> list[Path]:
    """``testbed plot``: one folder (a sweep or a run) or a comparison of several (into ``dest``,
    default ``FIRST/plots/vs-SECOND``)."""
    paths = [Path(f) for f in folders]
    if len(paths) == 1:
        if labels:
            raise ConfigError("--label", list(labels), "labels only when comparing two or more directories")
        plot = plot_sweep if _kind(paths[0]) == "sweep" else plot_run
        return plot(paths[0], formats, dpi, slo, dest)
    where = Path(dest) if dest else paths[0] / "plots" / ("vs-" + "-".join(p.name for p in paths[1:]))
    return plot_compare(paths, where, labels, formats, dpi, slo)

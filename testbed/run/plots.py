"""Figures of a sweep directory (``testbed plot DIR``): PNG files plus the CSV behind each.

Axes are in milliseconds, requests per second, bytes or fractions, labelled with their units.
The first swept field is the x axis (typically fleet size), the second the series (typically
datarate); other fields are averaged over.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from testbed.core.metrics import STAGES, in_window, replication_warning, with_stages
from testbed.core.metrics.intervals import MIN_REPLICATIONS
from testbed.errors import TestbedError
from testbed.io import atomic_write, write_text
from testbed.units import parse_duration

__all__ = ["STAGE_LABELS", "load_sweep", "plot_sweep", "sweep_warnings"]

STAGE_LABELS = {"node_queue_s": "node queue", "head_s": "head", "encode_s": "encode", "link_wait_s": "link wait",
                "tx_s": "transmission", "propagation_s": "propagation", "decode_s": "decode",
                "server_queue_s": "server queue", "batch_wait_s": "batch wait", "tail_s": "tail",
                "downlink_s": "downlink"}
_UTILISATION = (("link_utilisation", "uplink"), ("gpu_utilisation", "GPU"), ("node_utilisation", "node CPU"))
_PERCENTILES = ("latency_p50_s", "latency_p95_s", "latency_p99_s")


def load_sweep(out: Path) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's ``summary.parquet`` (one row per cell and replication) and its swept fields."""
    f = out / "summary.parquet"
    if not f.exists():
        raise TestbedError(f"DIR: {str(out)!r} holds no summary.parquet; run `testbed sweep FILE --out {out}` first")
    df = pd.read_parquet(f)
    return df, [c for c in df.columns if c.startswith("sweep.")]


@dataclass(frozen=True)
class _Sweep:
    """What every figure reads: the summary rows, the swept fields and the per-cell means."""

    out: Path
    df: pd.DataFrame
    fields: list[str]
    per_cell: pd.DataFrame

    @property
    def x(self) -> str | None:
        return self.fields[0] if self.fields else None

    @property
    def series(self) -> str | None:
        return self.fields[1] if len(self.fields) > 1 else None

    @property
    def plots(self) -> Path:
        return self.out / "plots"


def _label(field: str) -> str:
    return field.removeprefix("sweep.")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def _cell_latencies(out: Path, cells: pd.DataFrame) -> dict[int, tuple[np.ndarray, int]]:
    """Per cell, pooled over replications: latencies (s) of completed requests created in the window,
    and how many requests were created in the window (completed or not)."""
    res: dict[int, list[tuple[np.ndarray, int]]] = {}
    for _, row in cells.iterrows():
        d = next((out / "cells").glob(f"c{int(row['cell']):04d}-r{int(row['replication']):02d}-*"), None)
        if d is None:
            continue
        sc = yaml.safe_load((d / "scenario.yaml").read_text())
        window = (parse_duration(sc.get("warmup", 0)), parse_duration(sc["duration"]))
        rec = with_stages(in_window(pd.read_parquet(d / "requests.parquet"), window))
        ok = rec[rec["status"] == "ok"]
        res.setdefault(int(row["cell"]), []).append((ok["latency_s"].to_numpy(), len(rec)))
    return {k: (np.concatenate([lat for lat, _ in v]), sum(n for _, n in v)) for k, v in res.items()}


def _stage_means(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for cell, grp in cells.groupby("cell"):
        r = grp.iloc[0]
        means = {s: grp[f"mean_{s}"].mean() for s in STAGES if f"mean_{s}" in grp}
        rows.append({"cell": cell, **{c: r[c] for c in grp.columns if c.startswith("sweep.")}, **means})
    return pd.DataFrame(rows)


def _latency_cdfs(sw: _Sweep) -> list[Path]:
    """Latency CDFs, one figure per swept field, one line per value of it (pooling the others).

    The curve is a share of every request created in the window, so it levels off at the completed
    share: what was dropped or never finished is the gap below 1, and the legend gives that share."""
    lat = _cell_latencies(sw.out, sw.df)
    written = []
    for f in sw.fields:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        rows = []
        for value, grp in sw.per_cell.groupby(f, sort=False):
            cells = [lat[c] for c in grp["cell"] if c in lat]
            vals = np.concatenate([v for v, _ in cells] or [np.array([])])
            created = sum(n for _, n in cells)
            if not len(vals):
                continue
            xs = np.sort(vals) * 1e3
            done = len(xs) / created
            lost = f" ({1 - done:.1%} not completed)" if done < 1 else ""
            ax.plot(xs, np.arange(1, len(xs) + 1) / created, label=f"{_label(f)} = {value}{lost}")
            q = np.percentile(xs, np.arange(0, 101))
            rows += [{"field": _label(f), "value": value, "percentile": p, "latency_ms": v, "completed_share": done}
                     for p, v in enumerate(q)]
        ax.set_xlabel("end-to-end latency (ms)")
        ax.set_ylabel("fraction of requests created in the window")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Latency CDF by {_label(f)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        name = f"latency_cdf_{_label(f).replace('.', '_')}"
        written.append(_save(fig, sw.plots / f"{name}.png"))
        write_text(sw.plots / f"{name}.csv", pd.DataFrame(rows).to_csv(index=False))
    return written


def _percentiles(sw: _Sweep, x: str) -> list[Path]:
    """p50/p95/p99 against the first field, one line per value of the second (with CIs if known)."""
    df, per_cell, series = sw.df, sw.per_cell, sw.series
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, col in zip(axes, _PERCENTILES):
        groups: Iterable[tuple[Any, pd.DataFrame]] = (
            per_cell.groupby(series, sort=False) if series else [("all", per_cell)])
        bounds = _bands(df, col)
        for value, grp in groups:
            g = grp.sort_values(x)
            line, = ax.plot(g[x], g[col] * 1e3, marker="o", label=f"{_label(series)} = {value}" if series else None)
            if bounds is not None:
                lo, hi = bounds[0].loc[g["cell"]].to_numpy(), bounds[1].loc[g["cell"]].to_numpy()
                if np.isfinite(lo).any():
                    ax.fill_between(g[x], lo * 1e3, hi * 1e3, alpha=0.2, color=line.get_color(), linewidth=0)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(f"{col.split('_')[1]} latency (ms)")
        ax.set_title(col.split("_")[1])
        ax.grid(alpha=0.3)
    if series:
        axes[0].legend(fontsize=8)
    note = replication_warning(int(df.groupby("cell").size().min()))
    fig.suptitle(note or "bands: Student-t 95% intervals across replications", fontsize=8)
    path = _save(fig, sw.plots / "percentiles.png")
    write_text(sw.plots / "percentiles.csv", per_cell[["cell", *sw.fields, *_PERCENTILES]].to_csv(index=False))
    return [path]


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


def _heatmap(sw: _Sweep, x: str, series: str) -> list[Path]:
    """p95 latency over the first two swept fields, rows and columns in sweep order."""
    per_cell = sw.per_cell
    piv = per_cell.pivot_table(index=series, columns=x, values="latency_p95_s", aggfunc="mean") * 1e3
    piv = piv.reindex(index=list(dict.fromkeys(per_cell[series])), columns=list(dict.fromkeys(per_cell[x])))
    fig, ax = plt.subplots(figsize=(1.2 * len(piv.columns) + 3, 0.6 * len(piv.index) + 2.5))
    im = ax.imshow(piv.to_numpy(), aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(piv.columns)), [str(c) for c in piv.columns])
    ax.set_yticks(range(len(piv.index)), [str(i) for i in piv.index])
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(series))
    for (i, j), v in np.ndenumerate(piv.to_numpy()):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="p95 latency (ms)")
    ax.set_title("p95 latency (ms)")
    path = _save(fig, sw.plots / "p95_heatmap.png")
    write_text(sw.plots / "p95_heatmap.csv", piv.to_csv())
    return [path]


def _breakdown(sw: _Sweep) -> list[Path]:
    """Stacked mean latency per stage, one bar per cell."""
    stages = _stage_means(sw.df)
    if not len(stages):
        return []
    present = [s for s in STAGES if s in stages]
    labels = [", ".join(f"{_label(f)}={r[f]}" for f in sw.fields) or "run" for _, r in stages.iterrows()]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(stages) + 4.5), 4.8))
    bottom = np.zeros(len(stages))
    colours = plt.get_cmap("tab20")  # 20 distinct colours
    for i, s in enumerate(present):
        v = stages[s].fillna(0).to_numpy() * 1e3
        ax.bar(range(len(stages)), v, bottom=bottom, label=STAGE_LABELS[s], color=colours(i % colours.N))
        bottom += v
    ax.set_xticks(range(len(stages)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("mean latency (ms)")
    ax.set_title("Where the time goes (mean per stage, completed requests)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(fig, sw.plots / "breakdown.png")
    write_text(sw.plots / "breakdown.csv", stages.to_csv(index=False))
    return [path]


def _utilisation(sw: _Sweep) -> list[Path]:
    """Utilisation of the uplink, GPU and node CPUs against offered load."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    order = sw.per_cell.sort_values("offered_per_s")
    present = [col for col, _ in _UTILISATION if col in order]
    for col, label in _UTILISATION:
        if col in order:
            ax.plot(order["offered_per_s"], order[col], "o", label=label)
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("utilisation (fraction of time busy)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Utilisation against offered load")
    path = _save(fig, sw.plots / "utilisation.png")
    write_text(sw.plots / "utilisation.csv", order[["cell", *sw.fields, "offered_per_s", *present]].to_csv(index=False))
    return [path]


def _accuracy(sw: _Sweep) -> list[Path]:
    """Accuracy (or agreement) against payload and p95 latency, one point per cell."""
    per_cell, fields = sw.per_cell, sw.fields
    if "accuracy" not in per_cell and "agreement" not in per_cell:
        return []
    metric = "accuracy" if "accuracy" in per_cell and per_cell["accuracy"].notna().any() else "agreement"
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    sc = ax.scatter(per_cell["mean_payload_bytes"] / 1e3, per_cell["latency_p95_s"] * 1e3,
                    c=per_cell[metric], cmap="plasma", s=60, vmin=0, vmax=1)
    for _, r in per_cell.iterrows():
        ax.annotate(", ".join(str(r[f]) for f in fields), (r["mean_payload_bytes"] / 1e3, r["latency_p95_s"] * 1e3),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax, label=f"{metric} (fraction)")
    ax.set_xlabel("mean payload (kB)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_title(f"{metric.capitalize()} vs payload vs latency")
    ax.grid(alpha=0.3)
    path = _save(fig, sw.plots / "accuracy_payload_latency.png")
    write_text(sw.plots / "accuracy_payload_latency.csv",
               per_cell[["cell", *fields, "mean_payload_bytes", "latency_p95_s", metric]].to_csv(index=False))
    return [path]


def plot_sweep(out: Path | str) -> list[Path]:
    """Write every figure for the sweep in ``out`` into ``out/plots``; returns the PNG paths."""
    out = Path(out)
    df, fields = load_sweep(out)
    per_cell = df.groupby("cell", sort=True).agg("mean", numeric_only=True).reset_index()
    for f in fields:
        per_cell[f] = df.groupby("cell", sort=True)[f].first().to_numpy()
    sw = _Sweep(out, df, fields, per_cell)
    sw.plots.mkdir(exist_ok=True)
    written = _latency_cdfs(sw)
    if sw.x is not None:
        written += _percentiles(sw, sw.x)
        if sw.series is not None:
            written += _heatmap(sw, sw.x, sw.series)
    return written + _breakdown(sw) + _utilisation(sw) + _accuracy(sw)

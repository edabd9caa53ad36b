"""Figures of a sweep directory (``testbed plot DIR``): PNG files plus the CSV behind each.

Axes are in milliseconds, requests per second, bytes or fractions, labelled with their units.
The first swept field is the x axis (typically fleet size), the second the series (typically
datarate); other fields are averaged over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from testbed.errors import TestbedError  # noqa: E402
from testbed.io import atomic_write, write_text  # noqa: E402
from testbed.core.metrics import STAGES, in_window, with_stages  # noqa: E402

__all__ = ["plot_sweep", "load_sweep"]

STAGE_LABELS = {"node_queue_s": "node queue", "head_s": "head", "encode_s": "encode", "link_wait_s": "link wait",
                "tx_s": "transmission", "propagation_s": "propagation", "decode_s": "decode",
                "server_queue_s": "server queue", "batch_wait_s": "batch wait", "tail_s": "tail",
                "downlink_s": "downlink"}


def load_sweep(out: Path) -> tuple[pd.DataFrame, list[str]]:
    f = out / "summary.parquet"
    if not f.exists():
        raise TestbedError(f"DIR: {str(out)!r} holds no summary.parquet; run `testbed sweep FILE --out {out}` first")
    df = pd.read_parquet(f)
    return df, [c for c in df.columns if c.startswith("sweep.")]


def _label(field: str) -> str:
    return field.removeprefix("sweep.")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def _cell_latencies(out: Path, cells: pd.DataFrame) -> dict[int, np.ndarray]:
    """Latencies (s) of completed requests in the window, pooled over replications, per cell."""
    res: dict[int, list[np.ndarray]] = {}
    for _, row in cells.iterrows():
        d = next((out / "cells").glob(f"c{int(row['cell']):04d}-r{int(row['replication']):02d}-*"), None)
        if d is None:
            continue
        import yaml

        sc = yaml.safe_load((d / "scenario.yaml").read_text())
        from testbed.units import parse_duration

        window = (parse_duration(sc.get("warmup", 0)), parse_duration(sc["duration"]))
        rec = pd.read_parquet(d / "requests.parquet")
        rec = with_stages(in_window(rec, window))
        rec = rec[rec["status"] == "ok"]
        res.setdefault(int(row["cell"]), []).append(rec["latency_s"].to_numpy())
    return {k: np.concatenate(v) for k, v in res.items()}


def _stage_means(out: Path, cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for cell, grp in cells.groupby("cell"):
        r = grp.iloc[0]
        means = {s: grp[f"mean_{s}"].mean() for s in STAGES if f"mean_{s}" in grp}
        rows.append({"cell": cell, **{c: r[c] for c in grp.columns if c.startswith("sweep.")}, **means})
    return pd.DataFrame(rows)


def plot_sweep(out: Path | str) -> list[Path]:
    """Write every figure for the sweep in ``out`` into ``out/plots``; returns the PNG paths."""
    out = Path(out)
    df, fields = load_sweep(out)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    written: list[Path] = []
    x = fields[0] if fields else None
    series = fields[1] if len(fields) > 1 else None
    per_cell = df.groupby("cell", sort=True).agg("first" if False else "mean", numeric_only=True).reset_index()
    for f in fields:
        per_cell[f] = df.groupby("cell", sort=True)[f].first().to_numpy()

    # 1. latency CDFs, one line per value of each swept field (pooling the others)
    lat = _cell_latencies(out, df)
    for f in fields:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        rows = []
        for value, grp in per_cell.groupby(f, sort=False):
            vals = np.concatenate([lat[c] for c in grp["cell"] if c in lat] or [np.array([])])
            if not len(vals):
                continue
            xs = np.sort(vals) * 1e3
            ys = np.arange(1, len(xs) + 1) / len(xs)
            ax.plot(xs, ys, label=f"{_label(f)} = {value}")
            q = np.percentile(xs, np.arange(0, 101))
            rows += [{"field": _label(f), "value": value, "percentile": p, "latency_ms": v} for p, v in enumerate(q)]
        ax.set_xlabel("end-to-end latency (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"Latency CDF by {_label(f)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        name = f"latency_cdf_{_label(f).replace('.', '_')}"
        written.append(_save(fig, plots / f"{name}.png"))
        write_text(plots / f"{name}.csv", pd.DataFrame(rows).to_csv(index=False))

    # 2. p50/p95/p99 against the first field, one line per value of the second
    if x is not None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
        cols = ["latency_p50_s", "latency_p95_s", "latency_p99_s"]
        for ax, col in zip(axes, cols):
            groups = per_cell.groupby(series, sort=False) if series else [("all", per_cell)]
            for value, grp in groups:
                g = grp.sort_values(x)
                lo, hi = (df.groupby("cell")[f"{col}_ci_low"].first(), df.groupby("cell")[f"{col}_ci_high"].first()) \
                    if f"{col}_ci_low" in df else (None, None)
                ax.plot(g[x], g[col] * 1e3, marker="o", label=f"{_label(series)} = {value}" if series else None)
                if lo is not None and lo.notna().any():
                    ax.fill_between(g[x], lo.loc[g["cell"]].to_numpy() * 1e3, hi.loc[g["cell"]].to_numpy() * 1e3, alpha=0.2)
            ax.set_xlabel(_label(x))
            ax.set_ylabel(f"{col.split('_')[1]} latency (ms)")
            ax.set_title(col.split("_")[1])
            ax.grid(alpha=0.3)
        if series:
            axes[0].legend(fontsize=8)
        written.append(_save(fig, plots / "percentiles.png"))
        write_text(plots / "percentiles.csv", per_cell[["cell", *fields, *cols]].to_csv(index=False))

    # 3. heatmap of p95 over the first two fields
    if x is not None and series is not None:
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
        written.append(_save(fig, plots / "p95_heatmap.png"))
        write_text(plots / "p95_heatmap.csv", piv.to_csv())

    # 4. stacked latency breakdown per cell
    stages = _stage_means(out, df)
    if len(stages):
        present = [s for s in STAGES if s in stages]
        labels = [", ".join(f"{_label(f)}={r[f]}" for f in fields) or "run" for _, r in stages.iterrows()]
        fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(stages) + 4.5), 4.8))
        bottom = np.zeros(len(stages))
        colours = plt.get_cmap("tab20").colors
        for i, s in enumerate(present):
            v = stages[s].fillna(0).to_numpy() * 1e3
            ax.bar(range(len(stages)), v, bottom=bottom, label=STAGE_LABELS[s], color=colours[i % len(colours)])
            bottom += v
        ax.set_xticks(range(len(stages)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("mean latency (ms)")
        ax.set_title("Where the time goes (mean per stage, completed requests)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        written.append(_save(fig, plots / "breakdown.png"))
        write_text(plots / "breakdown.csv", stages.to_csv(index=False))

    # 5. utilisation against offered load
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    order = per_cell.sort_values("offered_per_s")
    for col, label in (("link_utilisation", "uplink"), ("gpu_utilisation", "GPU"), ("node_utilisation", "node CPU")):
        if col in order:
            ax.plot(order["offered_per_s"], order[col], "o", label=label)
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("utilisation (fraction of time busy)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Utilisation against offered load")
    written.append(_save(fig, plots / "utilisation.png"))
    write_text(plots / "utilisation.csv", order[["cell", *fields, "offered_per_s", *[c for c in (
        "link_utilisation", "gpu_utilisation", "node_utilisation") if c in order]]].to_csv(index=False))

    # 6. accuracy vs payload vs latency (split / bit-width choices)
    if "accuracy" in per_cell or "agreement" in per_cell:
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
        written.append(_save(fig, plots / "accuracy_payload_latency.png"))
        write_text(plots / "accuracy_payload_latency.csv",
                   per_cell[["cell", *fields, "mean_payload_bytes", "latency_p95_s", metric]].to_csv(index=False))
    return written

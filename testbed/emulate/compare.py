"""Compare two runs of one scenario (typically simulated vs emulated): latency CDFs, percentile
differences, a two-sample Kolmogorov-Smirnov statistic and the stage that diverges most."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.metrics import STAGES, in_window, with_stages
from testbed.errors import TestbedError

__all__ = ["PERCENTILES", "compare_runs", "completed_latencies", "load_run", "write_comparison"]

PERCENTILES = (50, 90, 95, 99)


def load_run(folder: Path | str) -> tuple[pd.DataFrame, dict[str, Any], tuple[float, float]]:
    """Records, summary and measurement window of a ``testbed run``/``emulate`` output folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TestbedError(f"{str(folder)!r}: not a directory (give the --out folder of testbed run or emulate)")
    for name in ("requests.parquet", "summary.json"):
        if not (folder / name).is_file():
            raise TestbedError(f"{str(folder)!r}: no file {name} (not the --out folder of testbed run or emulate)")
    df = _read_records(folder / "requests.parquet")
    try:
        summary = json.loads((folder / "summary.json").read_bytes())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as exc:
        raise TestbedError(f"{str(folder / 'summary.json')!r}: not a readable summary "
                           f"({type(exc).__name__}: {str(exc)[:100]})") from None
    window = (0.0, math.inf)
    if (folder / "scenario.yaml").exists():
        from testbed.config.load import load_scenario

        sc, _ = load_scenario(folder / "scenario.yaml")
        window = (sc.warmup, sc.duration)
    return df, summary, window


_NEEDED = ("status", "created_s", "finished_s")


def _read_records(path: Path) -> pd.DataFrame:
    """A run's ``requests.parquet``; a file that is not one (corrupt, truncated, other columns) is a
    one-line :class:`TestbedError` naming it."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise TestbedError(f"{str(path)!r}: not a readable Parquet file of requests ({msg})") from None
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise TestbedError(f"{str(path)!r}: not a requests table (no column {', '.join(missing)})")
    return df


def completed_latencies(df: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """Completed requests created in ``window``, with stage durations and ``latency_s``."""
    w = with_stages(in_window(df, window))
    return w[w["status"].astype(str) == "ok"]


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Figures comparing two sets of completed requests (``a`` the reference, e.g. the simulation)."""
    from scipy.stats import ks_2samp

    la, lb = a["latency_s"].to_numpy(), b["latency_s"].to_numpy()
    if len(la) == 0 or len(lb) == 0:
        raise TestbedError("a run has no completed requests in its window; nothing to compare")
    qa, qb = np.percentile(la, PERCENTILES), np.percentile(lb, PERCENTILES)
    pct = {f"p{p}": {"a_s": float(x), "b_s": float(y), "diff_s": float(y - x),
                     "rel": float((y - x) / x) if x > 0 else math.nan} for p, x, y in zip(PERCENTILES, qa, qb)}
    ks = ks_2samp(la, lb)
    stages = {}
    for s in STAGES:
        ma, mb = float(a[s].mean()), float(b[s].mean())
        stages[s] = {"a_s": ma, "b_s": mb, "diff_s": mb - ma}
    finite = {s: abs(v["diff_s"]) for s, v in stages.items() if math.isfinite(v["diff_s"])}
    worst = max(finite, key=lambda s: finite[s]) if finite else None
    return {"completed_a": len(la), "completed_b": len(lb), "mean_a_s": float(la.mean()),
            "mean_b_s": float(lb.mean()), "percentiles": pct,
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
            "stages": stages, "most_divergent_stage": worst,
            "most_divergent_diff_s": stages[worst]["diff_s"] if worst else math.nan}


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    return x, np.arange(1, len(x) + 1) / len(x)


def write_comparison(a_dir: Path | str, b_dir: Path | str, out: Path | str,
                     labels: tuple[str, str] = ("simulated", "emulated"), force: bool = False) -> dict[str, Any]:
    """Write ``latency_cdf.png``, ``latency_cdf.csv`` and ``comparison.json`` into ``out`` as one set
    (refused when ``out`` already holds a comparison, unless ``force``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed.io import claim_output, json_text, write_output_set

    claim = claim_output(out, force, "comparison.json")  # refuse before the work
    da, _sa, wa = load_run(a_dir)
    db, _sb, wb = load_run(b_dir)
    a, b = completed_latencies(da, wa), completed_latencies(db, wb)
    result = {"a": str(a_dir), "b": str(b_dir), "labels": list(labels), **compare_runs(a, b)}
    rows = []
    for label, d in zip(labels, (a, b)):
        x, y = _cdf(d["latency_s"].to_numpy())
        rows.append(pd.DataFrame({"run": label, "latency_s": x, "cdf": y}))
    cdf = pd.concat(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (label, d), style in zip(zip(labels, (a, b)), ("-", "--")):
        x, y = _cdf(d["latency_s"].to_numpy() * 1e3)
        ax.step(x, y, style, where="post", label=f"{label} (n={len(x)})")
    p = result["percentiles"]
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("CDF")
    ax.set_title(f"p50 {p['p50']['a_s'] * 1e3:.1f} / {p['p50']['b_s'] * 1e3:.1f} ms, p95 {p['p95']['a_s'] * 1e3:.1f} / "
                 f"{p['p95']['b_s'] * 1e3:.1f} ms, KS {result['ks_statistic']:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        with claim:
            write_output_set(out, {
                "latency_cdf.csv": lambda f: f.write_text(cdf.to_csv(index=False)),
                "latency_cdf.png": lambda f: fig.savefig(f, dpi=110, format="png"),
                "comparison.json": lambda f: f.write_text(json_text(result) + "\n"),
            }, force=force, marker="comparison.json")
    finally:
        plt.close(fig)
    return result

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


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, created: tuple[int, int] | None = None) -> dict[str, Any]:
    """Figures comparing two sets of completed requests (``a`` the reference, e.g. the simulation);
    with ``created`` (requests created in each run's window, completed or not), the share of each run
    that did not complete (dropped, timed out or still in flight)."""
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
    na, nb = created if created is not None else (len(la), len(lb))
    return {"created_a": na, "created_b": nb, "completed_a": len(la), "completed_b": len(lb),
            "unfinished_share_a": 1 - len(la) / na if na else math.nan,
            "unfinished_share_b": 1 - len(lb) / nb if nb else math.nan,
            "mean_a_s": float(la.mean()),
            "mean_b_s": float(lb.mean()), "percentiles": pct,
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
            "stages": stages, "most_divergent_stage": worst,
            "most_divergent_diff_s": stages[worst]["diff_s"] if worst else math.nan}


def _cdf(values: np.ndarray, created: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted latencies and the share of the ``created`` requests answered by each."""
    x = np.sort(values)
    return x, np.arange(1, len(x) + 1) / max(created, 1)


def _figure(labels: tuple[str, str], runs: tuple[pd.DataFrame, pd.DataFrame], created: tuple[int, int],
            result: dict[str, Any]) -> Any:
    """CDF (a share of every request created in the window, so it levels off at the completed share)
    and its tail on a log axis; drawn without pyplot, so the user's backend is left alone."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.size": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7}):
        return _draw(Figure(figsize=(7.0, 2.8), layout="constrained"), labels, runs, created, result)


def _draw(fig: Any, labels: tuple[str, str], runs: tuple[pd.DataFrame, pd.DataFrame], created: tuple[int, int],
          result: dict[str, Any]) -> Any:
    cdf_ax, tail_ax = fig.subplots(1, 2, sharex=True)
    top = max(float(d["latency_s"].max()) * 1e3 for d in runs)
    for (label, d, n), style, colour in zip(zip(labels, runs, created), ("-", "--"), ("#0072B2", "#D55E00")):
        x, y = _cdf(d["latency_s"].to_numpy() * 1e3, n)
        done = len(x) / n if n else 1.0
        lost = f", {1 - done:.1%} not completed: levels off at {done:.1%}" if done < 1 else ", all completed"
        x, y = np.append(x, top * 1.02), np.append(y, y[-1])
        cdf_ax.step(x, y, style, where="post", color=colour, label=f"{label} (n={n}{lost})")
        keep = y < 1
        tail_ax.step(x[keep], 1 - y[keep], style, where="post", color=colour)
    p = result["percentiles"]
    cdf_ax.set_xlabel("end-to-end latency (ms)")
    tail_ax.set_xlabel("end-to-end latency (ms)")
    cdf_ax.set_ylabel("share of requests answered by then")
    cdf_ax.set_ylim(0, 1.02)
    tail_ax.set_yscale("log")
    tail_ax.set_ylim(0.5 / max(max(created), 1), 1.1)
    tail_ax.set_ylabel("share not answered by then")
    for ax in (cdf_ax, tail_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(f"completed requests: p50 {p['p50']['a_s'] * 1e3:.1f} / {p['p50']['b_s'] * 1e3:.1f} ms, "
                 f"p95 {p['p95']['a_s'] * 1e3:.1f} / {p['p95']['b_s'] * 1e3:.1f} ms, KS {result['ks_statistic']:.3f}",
                 fontsize=8)
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    return fig


def write_comparison(a_dir: Path | str, b_dir: Path | str, out: Path | str,
                     labels: tuple[str, str] = ("simulated", "emulated"), force: bool = False) -> dict[str, Any]:
    """Write ``latency_cdf.png``, ``latency_cdf.csv`` and ``comparison.json`` into ``out`` as one set
    (refused when ``out`` already holds a comparison, unless ``force``). The CDF is a share of every
    request created in each run's window, so each curve levels off at its completed share."""
    from testbed.io import claim_output, json_text, write_output_set

    claim = claim_output(out, force, "comparison.json")  # refuse before the work
    da, _sa, wa = load_run(a_dir)
    db, _sb, wb = load_run(b_dir)
    created = (len(in_window(da, wa)), len(in_window(db, wb)))
    a, b = completed_latencies(da, wa), completed_latencies(db, wb)
    result = {"a": str(a_dir), "b": str(b_dir), "labels": list(labels), **compare_runs(a, b, created)}
    rows = []
    for label, d, n in zip(labels, (a, b), created):
        x, y = _cdf(d["latency_s"].to_numpy(), n)
        rows.append(pd.DataFrame({"run": label, "latency_s": x, "cdf": y, "created": n}))
    cdf = pd.concat(rows)
    fig = _figure(labels, (a, b), created, result)
    files = {
        "latency_cdf.csv": lambda f: f.write_text(cdf.to_csv(index=False)),
        "latency_cdf.png": lambda f: fig.savefig(f, dpi=200, format="png", metadata={"Software": None}),
        "comparison.json": lambda f: f.write_text(json_text(result) + "\n"),
    }
    with claim:
        write_output_set(out, files, force=force, marker="comparison.json")
    return result

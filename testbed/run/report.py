"""``testbed report DIR``: one self-contained HTML file for a run, a sweep or a comparison folder.

The file holds the tables (summary with completion and intervals, the sweep's cells), every figure as
inline SVG, the scenario YAML and the warnings; it references nothing outside itself (no scripts,
stylesheets, fonts or images to fetch), so it opens offline in any browser and can be mailed or archived.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from testbed.errors import TestbedError
from testbed.io import refuse_existing_file, write_text
from testbed.run.plots import (
    compare_figures,
    field_label,
    format_value,
    load_run_dir,
    load_sweep,
    run_figures,
    sweep_figures,
    sweep_warnings,
)

__all__ = ["CAPTIONS", "build_report", "report_kind", "write_report"]

CAPTIONS = {
    "latency_cdf": "End-to-end latency: CDF (left) as a share of every request created in the measurement window, "
                   "so a curve levels off at its completed share, and its tail on a log scale (right). Markers: "
                   "p50/p95/p99 over all requests, those not completed counted as late.",
    "percentiles": "Latency percentiles of completed requests against the swept field; bands are Student-t 95% "
                   "intervals across replications (only with 3 or more); hollow markers: more than 1% of the "
                   "requests did not complete.",
    "p95_heatmap": "p95 latency (ms) of completed requests over the first two swept fields.",
    "breakdown": "Where the time goes: mean stage durations of completed requests (top) and of the requests "
                 "between the 94th and 96th percentile (bottom), in the order a request passes the stages.",
    "utilisation": "Share of time each station is busy against the offered load.",
    "accuracy_payload_latency": "Accuracy (or agreement) against mean payload and p95 latency, one point per cell.",
    "timeline": "Requests in each station (top) and each station's busy share (bottom) over time; grey: the "
                "warm-up and the drain after the run, outside the measurement window.",
}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.2em .5em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:.4em .8em;margin:.3em 0}
.ok{color:#2a7}figure{margin:1.2em 0}figure svg{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#444}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
nav a{margin-right:1em}.muted{color:#777;font-size:.85em}
"""


def report_kind(folder: Path) -> str:
    """``sweep``, ``run`` or ``comparison``: what ``folder`` holds."""
    if (folder / "summary.parquet").is_file():
        return "sweep"
    if (folder / "requests.parquet").is_file() and (folder / "summary.json").is_file():
        return "run"
    if (folder / "comparison.json").is_file():
        return "comparison"
    if not folder.is_dir():
        raise TestbedError(f"DIR: {str(folder)!r} is not a directory")
    raise TestbedError(f"DIR: {str(folder)!r} holds no run (requests.parquet + summary.json), sweep "
                       "(summary.parquet) or comparison (comparison.json)")


# -- pieces ---------------------------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _svg(fig: Figure, salt: str) -> str:
    """``fig`` as an inline ``<svg>`` element: no XML prologue, DOCTYPE or metadata (whose URLs are
    namespace names, yet look like references), ids salted per figure so they never collide."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>", "", text, flags=re.S)
    return text.strip()


def _fmt_seconds(v: float) -> str:
    return f"{v * 1e3:.3g} ms" if abs(v) < 10 else f"{v:.4g} s"


def _fmt(key: str, v: Any) -> str:
    """A summary value in the unit its key names, for people (ms below 10 s, shares in %)."""
    if v is None:
        return "∞ (beyond the run)" if key.endswith("_all_s") else "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v if not isinstance(v, (list, dict)) else json.dumps(v))
    if isinstance(v, float) and not math.isfinite(v):
        return "–"
    if key.endswith("_share") or key == "drop_rate" or key.endswith("utilisation"):
        return f"{v:.1%}"
    if key.endswith("per_s"):
        return f"{v:.4g}/s"
    if key.endswith("_s"):
        return _fmt_seconds(float(v))
    if key.endswith("_j"):
        return f"{v:.4g} J"
    if key.endswith("_bytes"):
        return f"{v:,.0f} B"
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _interval(s: Any, key: str, suffix: str) -> str:
    lo, hi = s.get(f"{key}{suffix}_low"), s.get(f"{key}{suffix}_high")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo) and math.isfinite(hi):
        return f"{_fmt(key, lo)} – {_fmt(key, hi)}"
    return "–"


_HEADLINE = (("requests", "requests created in the window"), ("completed", "completed"),
             ("completed_share", "completed share"), ("dropped_share", "dropped (all causes)"),
             ("timed_out_share", "timed out"), ("in_flight_share", "unfinished at the end"),
             ("throughput_per_s", "throughput"), ("offered_per_s", "offered load"),
             ("latency_mean_s", "mean latency (completed)"), ("latency_p50_s", "p50 (completed)"),
             ("latency_p95_s", "p95 (completed)"), ("latency_p99_s", "p99 (completed)"),
             ("latency_p95_all_s", "p95 (all; unfinished = late)"), ("latency_p99_all_s", "p99 (all; unfinished = late)"),
             ("link_utilisation", "uplink utilisation"), ("gpu_utilisation", "server GPU utilisation"),
             ("node_utilisation", "node CPU utilisation"), ("warmup_mser5_s", "MSER-5 warm-up suggestion"))


def _summary_section(s: Mapping[str, Any]) -> str:
    """The headline figures of a run (with within-run intervals) and, folded, every key."""
    rows = [[_e(label), _fmt(k, s[k]), _interval(s, k, "_run_ci")] for k, label in _HEADLINE if k in s]
    out = _table(["", "value", "95% interval (within run)"], rows)
    if s.get("run_ci_method"):
        out += f'<p class="muted">intervals: {_e(s["run_ci_method"])}; latencies over {_e(s.get("latency_over", "completed requests"))}</p>'
    every = [[_e(k), _fmt(k, v)] for k, v in s.items() if k != "warnings"]
    return out + f"<details><summary>every summary key</summary>{_table(['key', 'value'], every)}</details>"


def _warnings_section(lines: Sequence[str]) -> str:
    if not lines:
        return '<p class="ok">No warnings: no station saturated, no material share lost or unfinished, warm-up long enough.</p>'
    return "".join(f'<div class="warn">{_e(w)}</div>' for w in lines)


def _figures_section(figs: Mapping[str, tuple[Figure, pd.DataFrame]]) -> str:
    parts = []
    for stem, (fig, _) in figs.items():
        key = "latency_cdf" if stem.startswith("latency_cdf") else stem
        parts.append(f'<figure id="fig-{_e(stem)}">{_svg(fig, stem)}<figcaption><b>{_e(stem)}</b>: '
                     f"{_e(CAPTIONS.get(key, ''))}</figcaption></figure>")
    return "".join(parts)


def _yaml_section(text: str | None, name: str) -> str:
    return f"<h3>{_e(name)}</h3><pre>{_e(text)}</pre>" if text else ""


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


# -- the three kinds --------------------------------------------------------------------------------------------
def _run_report(folder: Path, slo: Any) -> tuple[str, list[tuple[str, str, str]]]:
    run = load_run_dir(folder)
    s = run.summary
    warnings = [str(w) for w in s.get("warnings") or ()]
    sections = [("warnings", "Warnings", _warnings_section(warnings)),
                ("summary", "Summary", _summary_section(s))]
    queues = _read(folder / "queues.csv")
    if queues:
        q = pd.read_csv(io.StringIO(queues))
        sections.append(("stations", "Stations (queues.csv)", _table(
            list(q.columns), [[_e(v if not isinstance(v, float) else f"{v:.4g}") for v in r] for r in q.itertuples(index=False)])))
    sections += [("figures", "Figures", _figures_section(run_figures(folder, slo))),
                 ("scenario", "Scenario", _yaml_section(_read(folder / "scenario.yaml"), "scenario.yaml"))]
    return f"Run {s.get('scenario', folder.name)}", sections


def _sweep_table(df: pd.DataFrame, fields: list[str], scenario: Mapping[str, Any]) -> str:
    """One row per cell: swept values, replications, completion, percentiles with intervals."""
    header = [field_label(f, scenario, df[f], unit=False) for f in fields] + [
        "replications", "completed", "unfinished", "p50", "p95 (95% interval)", "p99", "p95 all", "throughput",
        "uplink util.", "warnings"]
    rows = []
    for _, grp in df.groupby("cell", sort=True):
        r = grp.iloc[0]
        mean = grp.mean(numeric_only=True)
        warn = sum(len(w) for w in grp["warnings"] if w is not None) if "warnings" in grp else 0

        def get(k: str, m: pd.Series = mean) -> Any:
            return float(m[k]) if k in m else None
        rows.append([_e(format_value(f, r[f], scenario, with_noun=True)) for f in fields] + [
            str(len(grp)), _fmt("completed_share", get("completed_share")), _fmt("in_flight_share", get("in_flight_share")),
            _fmt("latency_p50_s", get("latency_p50_s")),
            f"{_fmt('latency_p95_s', get('latency_p95_s'))} ({_interval(r, 'latency_p95_s', '_ci')})",
            _fmt("latency_p99_s", get("latency_p99_s")), _fmt("latency_p95_all_s", get("latency_p95_all_s")),
            _fmt("throughput_per_s", get("throughput_per_s")), _fmt("link_utilisation", get("link_utilisation")),
            str(warn)])
    return _table(header, rows)


def _sweep_report(folder: Path, slo: Any) -> tuple[str, list[tuple[str, str, str]]]:
    df, fields = load_sweep(folder)
    raw = _read(folder / "sweep.yaml")
    import yaml

    loaded = yaml.safe_load(raw) if raw else {}
    scenario: Mapping[str, Any] = loaded if isinstance(loaded, Mapping) else {}
    warnings = list(sweep_warnings(folder))
    if "warnings" in df:
        counts: dict[str, int] = {}
        for ws in df["warnings"]:
            for w in ws if ws is not None else ():
                key = re.sub(r"\d[\d,.]*%?", "N", str(w).split(":")[0])
                counts[key] = counts.get(key, 0) + 1
        warnings += [f"{k}: in {n} of {len(df)} runs (see the table and each cell's summary.json)"
                     for k, n in counts.items()]
    sections = [("warnings", "Warnings", _warnings_section(warnings)),
                ("sweep-table", "Cells", _sweep_table(df, fields, scenario)),
                ("figures", "Figures", _figures_section(sweep_figures(folder, slo))),
                ("scenario", "Scenario", _yaml_section(raw, "sweep.yaml"))]
    return f"Sweep {scenario.get('name', folder.name)}", sections


def _comparison_report(folder: Path, slo: Any) -> tuple[str, list[tuple[str, str, str]]]:
    r = json.loads((folder / "comparison.json").read_text())
    labels = [str(x) for x in r.get("labels", ["a", "b"])]
    runs = [Path(str(r.get("a", ""))), Path(str(r.get("b", "")))]
    warnings = [f"{lab}: {share:.1%} of the requests created in the window did not complete"
                for lab, share in zip(labels, (r.get("unfinished_share_a"), r.get("unfinished_share_b")))
                if isinstance(share, float) and share > 0.01]
    rows = [[_e(lab), f"{r.get(f'completed_{s}', '–'):,}" if isinstance(r.get(f"completed_{s}"), int) else "–",
             _fmt("unfinished_share", r.get(f"unfinished_share_{s}")), _fmt("latency_mean_s", r.get(f"mean_{s}_s"))]
            for lab, s in zip(labels, "ab")]
    pct = [[_e(k), _fmt("x_s", p["a_s"]), _fmt("x_s", p["b_s"]), _fmt("x_s", p["diff_s"]),
            f"{p['rel']:+.1%}" if isinstance(p.get("rel"), float) else "–"] for k, p in r.get("percentiles", {}).items()]
    body = (_table(["run", "completed", "not completed", "mean latency"], rows)
            + "<p>Percentiles of completed requests:</p>" + _table(["", *labels, "difference", "relative"], pct)
            + f"<p>Kolmogorov-Smirnov statistic {r.get('ks_statistic', math.nan):.3f} "
              f"(p = {r.get('ks_pvalue', math.nan):.3g}); stage diverging most: "
              f"{_e(r.get('most_divergent_stage'))}</p>")
    sections = [("warnings", "Warnings", _warnings_section(warnings)), ("summary", "Comparison", body)]
    if all((p / "requests.parquet").is_file() for p in runs):
        sections.append(("figures", "Figures", _figures_section(compare_figures(runs, labels, slo))))
        sections.append(("scenario", "Scenarios", "".join(
            _yaml_section(_read(p / "scenario.yaml"), f"{lab}: {p}/scenario.yaml") for lab, p in zip(labels, runs))))
    else:
        sections.append(("figures", "Figures", f"<p>The compared runs ({_e(runs[0])}, {_e(runs[1])}) are no longer "
                                               "where comparison.json says; no figures.</p>"))
        sections.append(("scenario", "Scenarios", "<p>–</p>"))
    return f"Comparison: {' vs '.join(labels)}", sections


def build_report(folder: Path | str, slo: Any = None) -> str:
    """The HTML text of the report of ``folder`` (a run, a sweep or a comparison)."""
    folder = Path(folder)
    kind = report_kind(folder)
    title, sections = {"run": _run_report, "sweep": _sweep_report, "comparison": _comparison_report}[kind](folder, slo)
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(name)}</h2>{content}</section>' for sid, name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><h1>{_e(title)}</h1><p class="muted">{_e(kind)} folder {_e(folder)}</p><nav>{nav}</nav>'
            f"{body}</body></html>\n")


def write_report(folder: Path | str, out: Path | str | None = None, force: bool = False, slo: Any = None) -> Path:
    """Write the report of ``folder`` to ``out`` (default ``folder/report.html``) atomically; an existing
    file is refused unless ``force``."""
    folder = Path(folder)
    target = Path(out) if out is not None else folder / "report.html"
    refuse_existing_file(target, force)
    report_kind(folder)  # a one-line error before any work
    return write_text(target, build_report(folder, slo))

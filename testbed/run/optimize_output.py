"""What ``testbed optimize`` prints and writes: the table of every configuration, the Pareto front of
agreement against p95 latency (CSV and figure) and the recommended configuration as a runnable scenario."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.run.optimize import OptimizeResult

__all__ = ["format_table", "table_frame", "write_result"]

_COLUMNS = ("config", "pruned", "simulated", "feasible", "pareto", "agreement", "agreement_top5",
            "mean_payload_bytes", "latency_p50_s", "latency_p95_s", "latency_p95_all_s", "latency_p99_all_s",
            "latency_p95_s_run_ci_low", "latency_p95_s_run_ci_high", "completed_share", "mean_energy_j",
            "worst_group_latency_p95_all_s", "capacity", "first_failing", "at_limit", "probes",
            "slo_value_at_capacity", "link_utilisation", "gpu_utilisation", "node_utilisation", "binding",
            "predicted_uplink_utilisation", "predicted_node_utilisation", "meets_when_simulated", "replications")


_CAPACITY = ("capacity", "first_failing", "at_limit", "probes", "slo_value_at_capacity")
"""Columns of the ``max-nodes`` objective only."""


def table_frame(result: OptimizeResult) -> pd.DataFrame:
    """One row per configuration, in the order they were evaluated (``worst_group_*`` only when one fleet
    group was searched)."""
    capacity = result.objective.metric == "capacity"
    cols = [k for k in _COLUMNS if (result.group is not None or not k.startswith("worst_group_"))
            and (capacity or k not in _CAPACITY)]
    return pd.DataFrame([{k: r.get(k) for k in cols} for r in result.rows])


def _ms(v: Any) -> str:
    return "inf" if v is None else ("-" if isinstance(v, float) and math.isnan(v) else f"{1e3 * float(v):.1f}")


def format_table(result: OptimizeResult) -> str:
    """The printed summary: constraints, every configuration (ms, kB, shares) and the recommendation."""
    cons = [str(result.slo)] if result.slo else []
    if result.min_agreement is not None:
        cons.append(f"top-1 agreement >= {result.min_agreement:g}")
    lines = [f"# objective {result.objective.name}; constraints: {', '.join(cons) or 'none'}; p95 in ms "
             "(all: unfinished counted as late), payload in kB, '*' on the Pareto front of agreement vs p95"]
    if result.group is not None:
        lines.append(f"# fleet group {result.group!r} searched (the others keep theirs): agreement, kB and p95 are "
                     "its requests'; the latency objective holds for every group ('worst' p95 all)")
    worst = result.group is not None and result.objective.metric != "capacity"
    nodes = result.objective.metric == "capacity"
    if nodes:
        lines.append(f"# capacity: the largest node count whose requests (and every group's) meet {result.slo}; "
                     "its statistic at that count ('at cap.', ms); '+' at the node limit")
    head = (f"{'configuration':48s} {'agree':>6s} {'kB':>7s} "
            + (f"{'nodes':>7s} {'at cap.':>8s} " if nodes else f"{'p95':>8s} {'p95 all':>8s} ")
            + (f"{'worst':>8s} " if worst else "") + f"{'binding':>10s}  status")
    lines.append(head)
    for r in result.rows:
        status = ("pruned: " + r["pruned"]) if r["pruned"] else ("meets" if r["feasible"] else "misses")
        if r["pruned"] and r["simulated"]:
            status += f" (simulated: {'meets' if r['meets_when_simulated'] else 'misses'})"
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.3f}"
        kb = "-" if r.get("mean_payload_bytes") is None else f"{r['mean_payload_bytes'] / 1e3:.1f}"
        p95 = _ms(r.get("latency_p95_s")) if r["simulated"] else "-"
        p95a = _ms(r.get("latency_p95_all_s")) if r["simulated"] else "-"
        if nodes:
            cap = r.get("capacity")
            p95 = "-" if not r["simulated"] or cap is None else f"{int(cap)}{'+' if r.get('at_limit') else ''}"
            p95a = _ms(r.get("slo_value_at_capacity")) if r["simulated"] and cap else "-"
        star = "*" if r.get("pareto") else " "
        other = (f"{_ms(r.get('worst_group_latency_p95_all_s')) if r['simulated'] else '-':>8s} " if worst else "")
        lines.append(f"{star}{r['config'][:47]:47s} {agree:>6s} {kb:>7s} {p95:>8s} {p95a:>8s} {other}"
                     f"{r.get('binding', '-'):>10s}  {status}")
    b = result.best
    if b and nodes:
        lines.append(f"recommended: {b['config']} (agreement {b['agreement']:.3f}, {int(b['capacity'])} nodes, "
                     f"{_ms(b['slo_value_at_capacity'])} ms at that count, "
                     f"{(b.get('mean_payload_bytes') or b['screen_payload_bytes']) / 1e3:.1f} kB)")
    else:
        lines.append("recommended: " + (f"{b['config']} (agreement {b['agreement']:.3f}, p95 "
                                        f"{_ms(b['latency_p95_all_s'])} ms, {b['mean_payload_bytes'] / 1e3:.1f} kB)"
                                        if b else "none: no configuration meets the constraints"))
    return "\n".join(lines)


def _pareto_png(df: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.5, 2.6), dpi=200)
    ax = fig.subplots()
    sim = df[df["simulated"].astype(bool)]
    nodes = "capacity" in df  # max-nodes: agreement against the node count carried
    p95 = sim["capacity"].astype(float) if nodes else sim["latency_p95_all_s"].astype(float) * 1e3
    ax.scatter(p95, sim["agreement"], s=10, color="0.6", label="simulated")
    front = sim[sim["pareto"].astype(bool)].assign(p95=p95).sort_values("p95")
    ax.plot(front["p95"], front["agreement"], marker="o", ms=3, color="#0072B2", label="Pareto front")
    for _, r in front.iterrows():
        ax.annotate(str(r["config"]), (r["p95"], r["agreement"]), fontsize=4.5, xytext=(2, -6),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("nodes carried within the latency objective" if nodes else
                  "p95 latency, unfinished counted as late (ms)")
    ax.set_ylabel("top-1 agreement with the unsplit model")
    ax.legend(fontsize=5, frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def write_result(result: OptimizeResult, out: Path | str, force: bool = False) -> Path:
    """``table.csv``, ``pareto.csv``, ``pareto.png``, ``recommended.yaml`` (when a configuration meets the
    constraints) and ``optimize.json``, committed as one set."""
    import yaml

    from testbed.io import json_text, write_output_set

    df = table_frame(result)
    files: dict[str, Any] = {
        "table.csv": lambda p: df.to_csv(p, index=False),
        "pareto.csv": lambda p: df[df["pareto"].astype(bool)].to_csv(p, index=False),
        "pareto.png": lambda p: _pareto_png(df, p),
        "optimize.json": lambda p: Path(p).write_text(json_text({
            "objective": result.objective.name, "slo": str(result.slo) if result.slo else None,
            "group": result.group,
            "min_agreement": result.min_agreement, "best": result.best, "notes": result.notes,
            "configurations": len(result.rows), "simulated": int(df["simulated"].sum()),
            "pruned": int(df["pruned"].notna().sum())})),
    }
    if result.recommended is not None:
        rec = result.recommended
        files["recommended.yaml"] = lambda p: Path(p).write_text(
            "# written by testbed optimize: the best configuration, as a runnable scenario\n"
            + yaml.safe_dump(rec, sort_keys=False))
    return write_output_set(out, files, force=force, marker="optimize.json")

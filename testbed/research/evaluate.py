"""``testbed research-eval``: every registered research method on one split model, through real payloads.

Each row encodes the test set with a codec chain (one self-describing payload per image), decodes
the payloads (learned stages from their checkpoints), runs the server side and reports accuracy,
agreement with the unsplit model, mean payload bytes (header included) and body bytes, and
node/server compute as parameters and MACs per image. The rows come from each method's
``eval_rows`` (see :mod:`testbed.research.registry`, and :mod:`testbed.research.measure` for the
context they share); this module runs them and writes the tables.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed.research.common import pick_device, set_threads
from testbed.research.measure import SECTIONS, EvalContext, EvalSettings, Log, Row
from testbed.research.nets import TINY_MODEL, load_split_task
from testbed.research.registry import METHODS
from testbed.research.repro import reproducible

__all__ = ["aggregate_seeds", "format_nestquant", "format_seed_table", "format_table", "run_eval", "write_results",
           "write_seed_results"]


def _section_rank(row: Row) -> int:
    return SECTIONS.index(row.section.split(":")[0])


def run_eval(settings: EvalSettings, methods: Sequence[str] | None = None, log: Log = print) -> list[Row]:
    """Train/calibrate the ``methods`` (default: every registered one) into ``settings.out`` and
    measure them; rows are grouped by section, baselines first. Runs under
    :func:`~testbed.research.repro.reproducible` (deterministic kernels, ``settings.threads``)."""
    with reproducible(settings.threads):
        return _run_eval(settings, methods, log)


def _run_eval(settings: EvalSettings, methods: Sequence[str] | None, log: Log) -> list[Row]:
    entries = [METHODS.get(m, "method") for m in (methods or METHODS.names())]
    set_threads(settings.threads)
    dev = pick_device(settings.device)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    s = settings
    base_ckpt = str(out / "base.pt") if s.model == TINY_MODEL and not s.weights else None
    task = load_split_task(s.model, s.weights, s.split, s.dataset, s.limit, s.seed, device=dev, base_out=base_ckpt)
    if base_ckpt:
        settings = EvalSettings(**{**asdict(settings), "weights": base_ckpt})
    log(f"[{time.perf_counter() - t_start:6.1f}s] split model ready ({task.model_name} @ {s.split}, "
        f"{len(task.x_train)} train / {len(task.x_test)} test, target {task.target})")
    ctx = EvalContext(settings, task, dev, log, t_start)
    ranked: list[tuple[int, int, Row]] = []
    for entry in sorted(entries, key=lambda e: (e.order, e.name)):
        if entry.eval_rows is not None:
            ranked += [(_section_rank(r), entry.order, r) for r in entry.eval_rows(ctx)]
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in ranked]


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:,.0f}"


def _k(n: int) -> str:
    return f"{n / 1e3:,.1f}k" if n < 1e6 else f"{n / 1e6:,.2f}M"


def format_table(rows: list[Row]) -> str:
    """Markdown table of the rows."""
    head = ("section", "method", "bits", "acc %", "agree %", "payload B", "body B", "node params", "node MACs",
            "server params", "server MACs", "codec")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = (f"MSE {r.extra['mse']:.3f} (R² {r.extra['r2']:.3f})" if "mse" in r.extra else _fmt(r.accuracy))
        cells = (r.section, r.method, r.bits, acc, _fmt(r.agreement), _fmt(r.payload_bytes, False),
                 _fmt(r.body_bytes, False), _k(r.node.params), _k(r.node.macs), _k(r.server.params),
                 _k(r.server.macs), f"`{r.codec}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_nestquant(rows: list[Row]) -> str:
    """Storage and switching costs of the NestQuant rows (full-bit and part-bit rows in pairs)."""
    lines = ["| configuration | full-bit acc % | part-bit acc % | nested storage B | separate models B | "
             "part-bit storage B | switch (paged) B | float32 weights B |", "|---|---|---|---|---|---|---|---|"]
    nq = [r for r in rows if r.method.startswith("NestQuant")]
    for full, part in zip(nq[0::2], nq[1::2]):
        s = full.extra["storage"]
        name = full.method.replace(" full-bit", "")
        lines.append(f"| {name} | {_fmt(full.accuracy or full.agreement)} | {_fmt(part.accuracy or part.agreement)} | "
                     f"{s['nested']:,} | {s['separate']:,} | {s['part']:,} | {full.extra['switch_bytes']:,} | "
                     f"{full.extra['float_weight_bytes']:,} |")
    return "\n".join(lines)


def write_results(rows: list[Row], out_dir: str) -> str:
    """Write ``results.json`` and ``table.md`` into ``out_dir``; returns the table text."""
    out = Path(out_dir)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, default=str))
    text = format_table(rows)
    if any(r.method.startswith("NestQuant") for r in rows):
        text += "\n\nNestQuant storage and switching:\n\n" + format_nestquant(rows)
    (out / "table.md").write_text(text + "\n")
    return text + "\n"


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)


def aggregate_seeds(per_seed: dict[int, list[Row]]) -> list[dict[str, Any]]:
    """Rows of several seeds grouped by (section, method, bits), in the first seed's order: mean and
    sample standard deviation of accuracy, agreement, payload and body bytes (and a regression's
    ``mse``/``r2``), with the per-seed values. A row missing from some seed has fewer ``seeds``."""
    groups: dict[tuple[str, str, str], list[tuple[int, Row]]] = {}
    for seed, rows in per_seed.items():
        for r in rows:
            groups.setdefault((r.section, r.method, r.bits), []).append((seed, r))
    out = []
    for (section, method, bits), items in groups.items():
        rs = [r for _, r in items]
        entry: dict[str, Any] = {"section": section, "method": method, "bits": bits, "seeds": [s for s, _ in items],
                                 "codec": rs[0].codec, "node": asdict(rs[0].node), "server": asdict(rs[0].server)}
        for name, get in (("accuracy", lambda r: r.accuracy), ("agreement", lambda r: r.agreement),
                          ("payload_bytes", lambda r: r.payload_bytes), ("body_bytes", lambda r: r.body_bytes),
                          ("mse", lambda r: r.extra.get("mse")), ("r2", lambda r: r.extra.get("r2"))):
            values = [get(r) for r in rs]
            if all(v is None for v in values):
                continue
            entry[name], entry[f"{name}_sd"] = _mean_sd(values)
            entry[f"{name}_per_seed"] = values
        out.append(entry)
    return out


def _ms(entry: dict[str, Any], name: str, pct: bool = True) -> str:
    """``mean ± sd`` of an aggregated field (percent or bytes); ``-`` when absent."""
    m, sd = entry.get(name), entry.get(f"{name}_sd")
    if m is None:
        return "-"
    if pct:
        return f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
    return f"{m:,.0f}" + (f" ± {sd:,.0f}" if sd else "")


def format_seed_table(agg: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`aggregate_seeds` rows (mean ± sample sd over the seeds)."""
    head = ("section", "method", "bits", "acc %", "agree %", "MSE (R²)", "payload B", "body B", "node MACs",
            "server MACs", "seeds", "codec")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in agg:
        mse = "-" if e.get("mse") is None else (f"{e['mse']:.3f}" + (f" ± {e['mse_sd']:.3f}" if e.get("mse_sd")
                                                                      is not None else "") + f" ({e['r2']:.3f})")
        cells = (e["section"], e["method"], e["bits"], _ms(e, "accuracy"), _ms(e, "agreement"), mse,
                 _ms(e, "payload_bytes", False), _ms(e, "body_bytes", False), _k(e["node"]["macs"]),
                 _k(e["server"]["macs"]), str(len(e["seeds"])), f"`{e['codec']}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_seed_results(per_seed: dict[int, list[Row]], out_dir: str, header: str,
                       meta: dict[str, Any]) -> str:
    """Write the aggregate of several seeds to ``results.json`` (with every seed's rows and ``meta``)
    and ``table.md`` (``header`` above the table) in ``out_dir``; returns the table text."""
    agg = aggregate_seeds(per_seed)
    out = Path(out_dir)
    (out / "results.json").write_text(json.dumps(
        {**meta, "rows": agg, "per_seed": {str(s): [asdict(r) for r in rows] for s, rows in per_seed.items()}},
        indent=1, default=str))
    text = format_seed_table(agg)
    (out / "table.md").write_text(header + "\n\n" + text + "\n")
    return text + "\n"

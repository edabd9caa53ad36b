"""Trainable bitwise soft quantization (arXiv:2603.05172) on scikit-learn's bundled tables, over seeds.

    python analysis/research_tabular.py --seeds 0,1,2     # a minute or two on one CPU thread

The paper's claim for tabular inputs: 1-6 bits per feature, 5-16x compression against 32-bit
input at near-float quality. Tested here on breast cancer and wine (classification: accuracy on the
held-out third) and diabetes (regression on the standardized target: MSE, where 1.0 is the
training mean's error, and R^2). Per seed (the seed draws the 2/3 train / 1/3 test split, the
initialisation and the data order) a two-layer perceptron is trained on the float features
(30 epochs), then for each bit width 1-6 (:func:`testbed.research.methods.softquant.tabular_rows`):

* ``uniform quantize``: the per-item min-max ``quantize`` codec (each payload carries its range);
* ``uniform per-feature grid``: the soft quantizer left untrained, i.e. a uniform grid per feature over
  the training range (0.5-99.5 percentiles) with the float model unchanged: same codes and payload as
  the learned one, so it isolates what learning the thresholds and levels adds;
* ``bitwise soft quantization``: thresholds and levels trained with the annealed sigmoid staircase, the
  model fine-tuned with it (30 epochs), hardened to ``b``-bit codes at inference.

Every row sends the test rows through real payloads (one per row) and decodes them. Compression is
reported two ways: by bits (``32 / b``) and by payload body bytes (``4 D / ceil(D b / 8)``, the
float32 vector against the packed codes; the header, which names the checkpoint, is left out).
*Near float* means accuracy within 1 point of the float model's (classification) or an MSE at most
5 % above it (regression), comparing means over the seeds. Writes ``--docs``/research-tabular.md and
.json. Deterministic on a CPU for a seed (:mod:`testbed.research.repro`: one thread, deterministic
kernels, instruction set pinned).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import testbed.research  # noqa: F401  (pins the instruction set before torch is used)
from testbed.research.methods.softquant import TABULAR_BITS, TABULAR_SETS, tabular_rows
from testbed.research.nets import is_regression_table
from testbed.research.repro import isa_pinned, reproducible

METHODS = ("uniform quantize", "uniform per-feature grid", "bitwise soft quantization")
NEAR_ACC_PT = 1.0      # classification: within this many points of float accuracy
NEAR_MSE_FRAC = 0.05   # regression: MSE at most this fraction above the float model's


def _stat(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def run(seeds: list[int], sets: list[str], bits: tuple[int, ...], out: str) -> tuple[list[dict[str, Any]], float]:
    """Rows of every (set, seed), each as a dict with its seed."""
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with reproducible(1):
        for name in sets:
            for seed in seeds:
                def log(line: str, name: str = name, seed: int = seed) -> None:
                    print(f"[{time.perf_counter() - t0:6.1f}s {name} s{seed}] {line}", flush=True)

                for r in tabular_rows(name, seed, out, bits, log=log, suffix=f"_s{seed}"):
                    rows.append({**asdict(r), "seed": seed})
    return rows, time.perf_counter() - t0


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over the seeds per (set, method, bits)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["section"], r["method"], r["bits"]), []).append(r)
    table = []
    for (section, method, b), rs in groups.items():
        name = section.split(":", 1)[1]
        quality = "mse" if is_regression_table(name) else "accuracy"
        values = [float(r["extra"][quality] if quality == "mse" else r["accuracy"]) for r in rs]
        mean, sd = _stat(values)
        entry: dict[str, Any] = {
            "set": name, "method": method, "bits": b, "seeds": [r["seed"] for r in rs], "metric": quality,
            "mean": mean, "sd": sd, "per_seed": values,
            "payload_bytes": statistics.fmean(r["payload_bytes"] for r in rs),
            "body_bytes": statistics.fmean(r["body_bytes"] for r in rs),
            "features": rs[0]["extra"]["features"], "raw_float32_bytes": rs[0]["extra"]["raw_float32_bytes"],
            "codec": rs[0]["codec"]}
        if quality == "mse":
            entry["r2"], entry["r2_sd"] = _stat([float(r["extra"]["r2"]) for r in rs])
        table.append(entry)
    return table


def _find(table: list[dict[str, Any]], name: str, method: str, b: str) -> dict[str, Any]:
    return next(r for r in table if r["set"] == name and r["method"] == method and r["bits"] == b)


def _q(r: dict[str, Any]) -> str:
    """The quality of a row as text: accuracy in % or MSE (R^2), mean ± sd."""
    sd = r["sd"] if r["sd"] is not None else 0.0
    if r["metric"] == "mse":
        return f"MSE {r['mean']:.3f} ± {sd:.3f} (R² {r['r2']:.3f})"
    return f"{100 * r['mean']:.1f} ± {100 * sd:.1f} %"


def _near(r: dict[str, Any], f: dict[str, Any]) -> bool:
    if r["metric"] == "mse":
        return bool(r["mean"] <= (1 + NEAR_MSE_FRAC) * f["mean"])
    return bool(100 * (f["mean"] - r["mean"]) <= NEAR_ACC_PT)


def _better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` at least as good as ``b`` (mean over the seeds)."""
    return bool(a["mean"] <= b["mean"]) if a["metric"] == "mse" else bool(a["mean"] >= b["mean"])


def claims(table: list[dict[str, Any]], sets: list[str], bits: tuple[int, ...]) -> list[dict[str, str]]:
    """Per table: the paper's 5-16x-at-near-float claim (2-6 bits), and learned vs untrained grid."""
    out = []
    for name in sets:
        f = _find(table, name, "float32 features (no codec)", "32")
        in_range = [b for b in bits if 2 <= b <= 6]
        near = {b: _near(_find(table, name, "bitwise soft quantization", str(b)), f) for b in in_range}
        ok = [b for b in in_range if near[b]]
        verdict = "holds" if ok and len(ok) == len(in_range) else "holds partly" if ok else "does not hold here"
        ev = []
        for b in in_range:
            s = _find(table, name, "bitwise soft quantization", str(b))
            ev.append(f"{b} bit ({32 / b:.1f}x by bits, {s['raw_float32_bytes'] / s['body_bytes']:.1f}x by body "
                      f"bytes): {_q(s)}{' (near float)' if near[b] else ''}")
        best = min(ok) if ok else None
        grid_ok = [b for b in in_range if _near(_find(table, name, "uniform per-feature grid", str(b)), f)]
        text = (f"float {_q(f)}; " + "; ".join(ev)
                + (f". Most compression at near float: {best} bit ({32 / best:.1f}x by bits)" if best else "")
                + ". The untrained grid is near float at " + _bits(grid_ok))
        out.append({"claim": f"{name}: 5-16x compression (2-6 bits per feature) at near-float quality",
                    "verdict": verdict, "evidence": text})
        wins_grid = [b for b in bits if _better(_find(table, name, "bitwise soft quantization", str(b)),
                                                 _find(table, name, "uniform per-feature grid", str(b)))]
        wins_mm = [b for b in bits if _better(_find(table, name, "bitwise soft quantization", str(b)),
                                               _find(table, name, "uniform quantize", str(b)))]
        verdict = ("holds" if len(wins_grid) == len(bits) else "holds partly" if wins_grid else "does not hold here")
        text = "; ".join(
            f"{b} bit: learned {_q(_find(table, name, 'bitwise soft quantization', str(b)))}, grid "
            f"{_q(_find(table, name, 'uniform per-feature grid', str(b)))}, min-max "
            f"{_q(_find(table, name, 'uniform quantize', str(b)))}" for b in bits)
        text += (f". Learned at least as good as the untrained grid at {_bits(wins_grid)}; as the per-item min-max "
                 f"codec at {_bits(wins_mm)} (means)")
        out.append({"claim": f"{name}: learned thresholds and levels at least as good as an untrained uniform grid "
                             "at equal bits", "verdict": verdict, "evidence": text})
    return out


def _bits(bs: list[int]) -> str:
    return (", ".join(map(str, bs)) + " bit") if bs else "no bit width"


def write(table: list[dict[str, Any]], rows: list[dict[str, Any]], docs: Path, cmd: str, seeds: list[int],
          sets: list[str], bits: tuple[int, ...], seconds: float) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    cl = claims(table, sets, bits)
    lines = [f"# Bitwise soft quantization (arXiv:2603.05172) on scikit-learn tables, seeds {','.join(map(str, seeds))}",
             "", f"Produced by `{cmd}` in {seconds:.0f} s (CPU, 1 torch thread, deterministic kernels, instruction "
             f"set pinned: {isa_pinned()}). Per seed: a 2/3 train / 1/3 test split of each table, a two-layer "
             "perceptron (32 hidden units, 30 epochs) on the standardized float features; per bit width the "
             "per-item min-max `quantize` codec, the soft quantizer left untrained (uniform per-feature grid over "
             "the training range, model unchanged) and the trained soft quantizer (thresholds, levels and model, "
             "30 epochs, temperature 1 -> 0.02). Breast cancer and wine: accuracy on the test rows; diabetes: "
             "MSE of the standardized target (1.0 = the training mean's error) and R². Mean ± sample standard "
             "deviation over the seeds; every row goes through real payloads. Compression by bits = 32 / b; by "
             "body bytes = float32 vector bytes / packed code bytes (header, which names the checkpoint, left "
             f"out). Near float: accuracy within {NEAR_ACC_PT:g} point or MSE at most {100 * NEAR_MSE_FRAC:g} % "
             "above the float model's (means).", "",
             "## Claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {c['claim']} | **{c['verdict']}** | {c['evidence']} |" for c in cl]
    lines += ["", "## All rows", "",
              "| set | method | bits | x by bits | x by body | quality | payload B | body B | codec |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        b = int(r["bits"])
        lines.append(f"| {r['set']} | {r['method']} | {b} | {32 / b:.1f} | "
                     f"{r['raw_float32_bytes'] / r['body_bytes']:.1f} | {_q(r)} | {r['payload_bytes']:,.0f} | "
                     f"{r['body_bytes']:,.0f} | `{r['codec']}` |")
    (docs / "research-tabular.md").write_text("\n".join(lines) + "\n")
    (docs / "research-tabular.json").write_text(json.dumps(
        {"command": cmd, "seconds": round(seconds, 1), "seeds": seeds, "sets": sets, "bits": list(bits),
         "near_float": {"accuracy_points": NEAR_ACC_PT, "mse_fraction": NEAR_MSE_FRAC}, "claims": cl,
         "rows": table, "per_seed_rows": rows}, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (at least one)")
    p.add_argument("--sets", default=",".join(TABULAR_SETS), help=f"comma list of {', '.join(TABULAR_SETS)}")
    p.add_argument("--bits", default=",".join(map(str, TABULAR_BITS)), help="comma list of bit widths, 1-8")
    p.add_argument("--docs", default="docs/results", help="where research-tabular.md/.json go")
    a = p.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
        sets = [s.strip() for s in a.sets.split(",") if s.strip()]
        bits = tuple(int(b) for b in a.bits.split(",") if b.strip())
        bad = [s for s in sets if s not in TABULAR_SETS]
        if bad or not seeds or min(seeds) < 0 or not sets or not bits or not all(1 <= b <= 8 for b in bits):
            raise ValueError(f"unknown sets {bad}" if bad else "--seeds >= 0, --sets not empty, --bits 1-8")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as out:
        rows, seconds = run(seeds, sets, bits, out)
    table = aggregate(rows)
    cmd = ("python analysis/research_tabular.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    write(table, rows, Path(a.docs), cmd, seeds, sets, bits, seconds)
    for c in claims(table, sets, bits):
        print(f"{c['verdict']:>18s}  {c['claim']}")
    print(f"wrote {a.docs}/research-tabular.md and .json in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

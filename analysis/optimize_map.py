"""Which split point and bit width wins where: the optimiser's recommendation over data rate and fleet size.

    python analysis/optimize_map.py --out docs/results/optimize-map      # about 4 min here (pipelines cached)

For each uplink data rate (1-10 MB/s) and fleet size (10-1,000 Raspberry Pi 4 B cameras at 2 frames/s,
H100 server) it runs ``testbed.run.optimize.optimize`` on ``scenarios/tcl_setting.yaml`` over a fixed set
of candidates (the pretrained EfficientNet-Lite0 split at stage 4, stage 6 or features, 4 or 8 bits per
tensor + zstd, and everything on the node), maximising top-1 agreement subject to p95 < 100 ms (unfinished
requests counted as late) and agreement >= 0.9, and writes the recommendation per cell as a Markdown table,
a CSV and a figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATES = ["1 MB/s", "2 MB/s", "5 MB/s", "10 MB/s"]
FLEETS = [10, 100, 1000]


def main() -> None:
    import pandas as pd

    from testbed.config.load import apply_overrides, read_yaml
    from testbed.io import write_text
    from testbed.run.capacity import parse_slo
    from testbed.run.optimize import Config, configs, optimize, parse_objective

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "tcl_setting.yaml"))
    ap.add_argument("--duration", default="60 s")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "optimize-map"))
    args = ap.parse_args()
    path = Path(args.scenario)
    raw = apply_overrides(read_yaml(path), {"duration": args.duration, "warmup": "5 s", "drain": "20 s"})
    grid = configs(["stage4", "stage6", "features"], [[{"quantize": {}}, {"zstd": {"level": 3}}]], [4, 8])
    grid.append(Config("none", ()))
    rows: list[dict[str, Any]] = []
    for rate in RATES:
        for n in FLEETS:
            cell = apply_overrides(raw, {"link.datarate": rate, "fleet.0.count": n})
            res = optimize(cell, grid, parse_objective("max-agreement"), parse_slo("p95 < 100 ms"), 0.9,
                           base_dir=path.parent, replications=1)
            b = res.best
            rows.append({"datarate": rate, "nodes": n, "recommended": b["config"] if b else "none meets",
                         "agreement": b["agreement"] if b else None,
                         "p95_ms": 1e3 * b["latency_p95_all_s"] if b else None,
                         "payload_kB": b["mean_payload_bytes"] / 1e3 if b else None,
                         "feasible": sum(bool(r["feasible"]) for r in res.rows), "candidates": len(res.rows)})
            print(rows[-1], file=sys.stderr)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "optimize-map.csv", df.to_csv(index=False))
    lines = ["| uplink | " + " | ".join(f"{n} cameras" for n in FLEETS) + " |", "|---|" + "---|" * len(FLEETS)]
    for rate in RATES:
        cells = []
        for n in FLEETS:
            r = df[(df.datarate == rate) & (df.nodes == n)].iloc[0]
            cells.append(r["recommended"] if r["agreement"] is None or pd.isna(r["agreement"]) else
                         f"{r['recommended']} ({r['agreement']:.2f}, {r['p95_ms']:.0f} ms, {r['feasible']}/{r['candidates']} meet)")
        lines.append(f"| {rate} | " + " | ".join(cells) + " |")
    write_text(out / "optimize-map.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

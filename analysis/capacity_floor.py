"""Capacity at an agreement floor: how many cameras one link and one server carry when the codec at each
split point is the smallest one that keeps the unsplit model's answers.

    python analysis/payload_tables.py                    # first: the payload table with agreement
    python analysis/capacity_floor.py --out docs/results/capacity-floor.md

For each split point of EfficientNet-Lite0 and each agreement floor, the codec is the one
``analysis/payload_tables.py`` found smallest at that floor (top-1 agreement with the unsplit model on the
photo frames); the scenario is ``scenarios/tcl_setting.yaml`` with that split and codec, Raspberry Pi 4 B
cameras at 2 frames/s, an H100 server; ``testbed.run.capacity.capacity_search`` finds the largest fleet
meeting the objective (dropped and unfinished requests count as infinitely late) at each datarate.
Running everything on the node (split ``none``) uses no shared resource and is left out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATES = ["2 MB/s", "5 MB/s"]


def scenario_codec(codec: str) -> list[dict[str, Any]]:
    """A payload-table codec name as a scenario's ``codec`` list."""
    from testbed.split.codecs import normalize_spec

    m = re.fullmatch(r"image:(\w+)(?:\(q=(\d+)\))?", codec)
    if m:
        return [{"image": {"format": m.group(1), **({"quality": int(m.group(2))} if m.group(2) else {})}}]
    return [{name: params} for name, params in normalize_spec(codec)]


def main() -> None:
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.run.capacity import capacity_search, parse_slo
    from testbed.split.frontier import smallest_keeping

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(ROOT / "docs" / "results" / "payloads-efficientnet_lite0.json"))
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "tcl_setting.yaml"))
    ap.add_argument("--floor", type=float, nargs="+", default=[0.9, 0.99])
    ap.add_argument("--slo", default="p95 < 100 ms")
    ap.add_argument("--duration", default="20 s")
    ap.add_argument("--out", help="write the Markdown table here")
    args = ap.parse_args()
    rows = json.loads(Path(args.table).read_text())
    slo = parse_slo(args.slo)
    base = {k: v for k, v in read_yaml(Path(args.scenario)).items() if k not in ("sweep", "replications")}
    base = apply_overrides(base, {"duration": args.duration, "warmup": "2 s", "drain": "5 s"})
    lines = ["| split | floor | codec | payload | top-1 agreement | "
             + " | ".join(f"largest fleet at {r} ({args.slo}) | saturating" for r in RATES) + " |",
             "|---|---:|---|---:|---:|" + "---:|---|" * len(RATES)]
    for split, picks in smallest_keeping(rows, args.floor):
        if split == "none":
            continue
        for f, pick in picks.items():
            if pick is None:
                lines.append(f"| {split} | {f:.0%} | none keeps it | | |" + " | |" * len(RATES))
                continue
            cell = apply_overrides(base, {"model.split": split, "codec": scenario_codec(pick["codec"]),
                                          "sweep": {"link.datarate": RATES}})
            found = capacity_search(cell, slo, base_dir=Path(args.scenario).parent)
            caps = " | ".join(f"{r.capacity} | {r.saturating_station}" for r in found)
            lines.append(f"| {split} | {f:.0%} | {pick['codec']} | {pick['payload_bytes_mean'] / 1e3:,.1f} kB "
                         f"| {pick['top1_agreement']:.3f} | {caps} |")
            print(lines[-1], file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    if args.out:
        from testbed.io import write_text

        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()

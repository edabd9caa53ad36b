"""Speed-up of split computing in the autoencoder + TCL paper's setting (one node, 1-10 MB/s).

    python analysis/tcl_speedup.py --out docs/tcl_speedup.md

Runs ``scenarios/tcl_resnet50_stem.yaml`` (ResNet-50 on a Raspberry Pi 4 B, H100 server) with one
node for each configuration and datarate: the split after the stem at 1, 2 and 3 bits + LZMA, sending
the input image (raw uint8, PNG, JPEG q90), and everything on the node. Speed-up = mean end-to-end
latency of the baseline / that of the split. Prints a Markdown table and writes it with a CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CONFIGS: dict[str, dict[str, Any]] = {
    "stem 1-bit+LZMA": {"model.split": "stem", "codec": [{"quantize": {"bits": 1}}, {"lzma": {"preset": 6}}]},
    "stem 2-bit+LZMA": {"model.split": "stem", "codec": [{"quantize": {"bits": 2}}, {"lzma": {"preset": 6}}]},
    "stem 3-bit+LZMA": {"model.split": "stem", "codec": [{"quantize": {"bits": 3}}, {"lzma": {"preset": 6}}]},
    "input raw": {"model.split": "input", "codec": [{"image": {"format": "raw"}}]},
    "input PNG": {"model.split": "input", "codec": [{"image": {"format": "png"}}]},
    "input JPEG q90": {"model.split": "input", "codec": [{"image": {"format": "jpeg", "quality": 90}}]},
    "all on node": {"model.split": "none", "codec": []},
}
RATES = ["1 MB/s", "2 MB/s", "5 MB/s", "10 MB/s"]


def run(scenario: Path, rates: list[str]) -> pd.DataFrame:
    from testbed.config.load import apply_overrides, read_yaml
    from testbed.run.prepare import prepare_dict
    from testbed.run.runner import run_scenario

    raw = {k: v for k, v in read_yaml(scenario).items() if k not in ("sweep", "replications")}
    rows = []
    for rate in rates:
        for name, over in CONFIGS.items():
            cell = apply_overrides(raw, {**over, "link.datarate": rate, "fleet.0.count": 1})
            res = run_scenario(prepare_dict(cell, scenario.parent))
            s = res.summary
            rows.append({"datarate": rate, "config": name, "latency_ms": s["latency_mean_s"] * 1e3,
                         "payload_bytes": s["mean_payload_bytes"], "head_ms": s["mean_head_s"] * 1e3,
                         "encode_ms": s["mean_encode_s"] * 1e3, "tx_ms": s["mean_tx_s"] * 1e3,
                         "agreement": s.get("agreement")})
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    lat = df.pivot(index="datarate", columns="config", values="latency_ms").reindex(RATES)
    lines = ["| datarate | " + " | ".join(f"{c} (ms)" for c in CONFIGS) + " | speed-up vs input raw / PNG / JPEG "
             "(1-bit) | speed-up vs all on node (1-bit) |", "|---" * (len(CONFIGS) + 3) + "|"]
    for rate, r in lat.iterrows():
        best = r["stem 1-bit+LZMA"]
        vs_in = " / ".join(f"{r[c] / best:.2f}x" for c in ("input raw", "input PNG", "input JPEG q90"))
        lines.append(f"| {rate} | " + " | ".join(f"{r[c]:.1f}" for c in CONFIGS)
                     + f" | {vs_in} | {r['all on node'] / best:.2f}x |")
    pay = df.groupby("config")["payload_bytes"].mean().reindex(list(CONFIGS))
    lines += ["", "Mean payload per frame: " + ", ".join(f"{c} {v / 1e3:.1f} kB" for c, v in pay.items()
                                                          if c != "all on node") + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "tcl_resnet50_stem.yaml"))
    ap.add_argument("--out", help="write the Markdown table here (and a CSV beside it)")
    args = ap.parse_args()
    df = run(Path(args.scenario), RATES)
    text = table(df)
    print(text)
    if args.out:
        from testbed.io import write_text

        write_text(args.out, text + "\n")
        write_text(Path(args.out).with_suffix(".csv"), df.to_csv(index=False))


if __name__ == "__main__":
    main()

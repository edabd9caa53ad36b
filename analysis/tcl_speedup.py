"""The autoencoder + TCL paper's setting (one node, 1-10 MB/s), with real weights.

    python analysis/tcl_speedup.py --out docs/tcl_speedup.md

Runs ``scenarios/tcl_setting.yaml`` (the pretrained EfficientNet-Lite0 on a Raspberry Pi 4 B, H100 server,
the bundled photos) with one node for each configuration and datarate: the split after the stem at 1, 2, 4
and 8 bits + LZMA, a later split (stage 4, 8 bits + zstd), sending the input image (raw uint8, PNG, JPEG
q90), and everything on the node. For each configuration: node time (head + encode), payload, top-1
agreement with the unsplit model, and mean end-to-end latency per datarate. Speed-up = mean latency of a
baseline / that of the configuration. Prints a Markdown table and writes it with a CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _q(split: str, bits: int, lossless: dict[str, Any]) -> dict[str, Any]:
    return {"model.split": split, "codec": [{"quantize": {"bits": bits}}, lossless]}


LZMA = {"lzma": {"preset": 6}}
CONFIGS: dict[str, dict[str, Any]] = {
    "stem 1-bit+LZMA": _q("stem", 1, LZMA),
    "stem 2-bit+LZMA": _q("stem", 2, LZMA),
    "stem 4-bit+LZMA": _q("stem", 4, LZMA),
    "stem 8-bit+LZMA": _q("stem", 8, LZMA),
    "stage4 8-bit+zstd": _q("stage4", 8, {"zstd": {"level": 3}}),
    "input raw": {"model.split": "input", "codec": [{"image": {"format": "raw"}}]},
    "input PNG": {"model.split": "input", "codec": [{"image": {"format": "png"}}]},
    "input JPEG q90": {"model.split": "input", "codec": [{"image": {"format": "jpeg", "quality": 90}}]},
    "all on node": {"model.split": "none", "codec": []},
}
BASELINES = ("input raw", "input PNG", "input JPEG q90", "all on node")
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
                         "agreement": s.get("agreement"), "agreement_top5": s.get("agreement_top5"),
                         "completed": s["completed"]})
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    """One row per configuration: node time, payload, agreement, latency per datarate, and the speed-up of
    the configuration over each baseline at 2 MB/s."""
    recs: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
    first = {r["config"]: r for r in reversed(recs)}
    lat = {(r["config"], r["datarate"]): float(r["latency_ms"]) for r in recs}
    head = ["configuration", "node ms (head + encode)", "payload", "top-1 / top-5 agreement",
            *(f"latency at {r} (ms)" for r in RATES), "speed-up at 2 MB/s vs raw / PNG / JPEG / all on node"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in CONFIGS:
        f = first[name]
        at = {r: lat[(name, r)] for r in RATES}
        node = f["head_ms"] + f["encode_ms"]
        pay = "-" if name == "all on node" else f"{f['payload_bytes'] / 1e3:,.1f} kB"
        agree = f"{f['agreement']:.3f} / {f['agreement_top5']:.3f}"
        ups = " / ".join(f"{lat[(b, '2 MB/s')] / at['2 MB/s']:.2f}x" for b in BASELINES)
        lines.append(f"| {name} | {node:.1f} | {pay} | {agree} | "
                     + " | ".join(f"{at[r]:.1f}" for r in RATES) + f" | {ups} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "tcl_setting.yaml"))
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

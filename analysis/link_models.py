"""Per-node goodput and p95 latency against the number of nodes for the three link models.

    python analysis/link_models.py --out docs/

Every node sends a 25 kB payload 4 times a second (periodic, random phase, +-50 ms jitter) (800 kbit/s offered per node) over one cell whose
rate is 65 Mbit/s (802.11n MCS7, 20 MHz, one stream): ``shared_fifo`` and ``fair_share`` move the
payload at that rate, ``csma`` at that PHY rate with 802.11 framing, contention, collisions and the
access point sending the results on the same air. Writes ``link_models.csv`` and ``link_models.png``.
Per-node goodput counts payload bytes whose transmission ended inside the window; p95 latency is over
the requests created in the window that completed (when the link saturates, the backlog grows and
the latency is bounded by the run length, so read it as "saturated"). Once the csma uplink saturates,
the access point is one contender among n + 1 and the results queue there: no request created in the
window completes, and its p95 is missing (shaded).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import summarize
from testbed.sim import simulate

__all__ = ["main", "measure", "scenario"]

MODELS = ("shared_fifo", "fair_share", "csma")
NODES = (1, 5, 10, 20, 30, 40, 50, 60, 80, 100, 120)


def scenario(model: str, nodes: int, seed: int = 1, duration: float = 20.0) -> dict[str, Any]:
    """The scenario of one point of the figure."""
    return {
        "name": f"{model}-{nodes}", "seed": seed, "duration": f"{duration} s", "warmup": "2 s", "drain": "5 s",
        "fleet": [{"name": "cams", "count": nodes, "device": "pi4b", "payload": "25 kB", "head": "0 s",
                   "encode": "0 s", "arrivals": {"kind": "periodic", "rate": "4/s", "jitter": "50 ms"}}],
        "link": {"model": model, "datarate": "65 Mbit/s", "latency": "1 ms", "csma": {"standard": "802.11n"}},
        "server": {"device": "h100", "batching": {"max_batch": 32, "max_delay": "2 ms"},
                   "service": {"table": {1: "1 ms", 32: "4 ms"}}},
        "workload": {"result": "64 B"},
    }


def measure(model: str, nodes: int, seed: int = 1) -> dict[str, Any]:
    """One point: per-node goodput (Mbit/s) and latency percentiles (ms)."""
    result = simulate(scenario_from_dict(scenario(model, nodes, seed)))
    df, (t0, t1) = result.records, result.window
    sent = df[(df["tx_end_s"] >= t0) & (df["tx_end_s"] < t1)]
    summary = summarize(df, result.window, result.levels)
    return {
        "model": model, "nodes": nodes,
        "goodput_per_node_mbit_s": float(sent["payload_bytes"].sum()) * 8e-6 / (t1 - t0) / nodes,
        "latency_p50_ms": summary["latency_p50_s"] * 1e3, "latency_p95_ms": summary["latency_p95_s"] * 1e3,
        "completed": summary["completed"], "requests": summary["requests"],
        "dropped_on_link": summary["dropped_on_link"], "uplink_busy": result.levels["uplink"]["busy"],
    }


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for model in MODELS:
        t = table[table["model"] == model]
        ax1.plot(t["nodes"], t["goodput_per_node_mbit_s"], marker="o", label=model)
        ax2.plot(t["nodes"], t["latency_p95_ms"], marker="o", label=model)
    starved = table[(table["model"] == "csma") & table["latency_p95_ms"].isna()]
    if len(starved):
        ax2.axvspan(starved["nodes"].min(), starved["nodes"].max(), color="C2", alpha=0.1)
        ax2.text(2, ax2.get_ylim()[1] * 0.3, f"csma, {starved['nodes'].min()}+ nodes (shaded):\nresults starve at the AP, none complete",
                 fontsize=8, color="C2")
    ax1.axhline(0.8, color="grey", lw=0.8, ls="--", label="offered (0.8 Mbit/s)")
    ax1.set(xlabel="nodes in the cell", ylabel="goodput per node (Mbit/s)", xscale="log", yscale="log",
            title="per-node goodput, 25 kB at 4/s, 65 Mbit/s")
    ax2.set(xlabel="nodes in the cell", ylabel="p95 end-to-end latency (ms)", xscale="log", yscale="log",
            title="p95 latency")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures"), help="directory for the CSV and PNG")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([measure(m, n, args.seed) for m in MODELS for n in NODES])
    table.to_csv(args.out / "link_models.csv", index=False, float_format="%.5g")
    plot(table, args.out / "link_models.png")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

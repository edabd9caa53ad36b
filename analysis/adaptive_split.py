"""Adaptive split against every static choice on a link whose rate drops and recovers.

    python analysis/adaptive_split.py [scenarios/adaptive_split.yaml] [--set PATH=VALUE ...]

Runs the scenario as written (its first fleet group adaptive) and once per configuration of that group
with the group fixed to it (the same seed, nodes and frames), and prints for each: p95 and mean latency
over the window, top-1 agreement, the share of frames dropped, and p95 and agreement over the frames
created while the link is slow (the rate trace's lowest segment), plus each configuration's share of
the adaptive run's frames.
"""

from __future__ import annotations

import argparse
import copy
import math
from typing import Any

import numpy as np
import pandas as pd

from testbed.config.load import apply_overrides, read_yaml, scenario_from_dict
from testbed.run.runner import run_scenario

__all__ = ["main", "measure", "static_variants"]


def static_variants(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenario with its first group fixed to each of its adaptive configurations in turn."""
    group = raw["fleet"][0]
    out = []
    for config in group["adaptive"]["configs"]:
        r = copy.deepcopy(raw)
        g = r["fleet"][0]
        del g["adaptive"]
        if "model" in config:
            g["model"] = config["model"]
        if "codec" in config:
            g["codec"] = config["codec"]
        out.append(r)
    return out


def _slow_window(raw: dict[str, Any]) -> tuple[float, float]:
    sc = scenario_from_dict(raw)
    trace = sc.link.rate_trace
    if trace is None:
        return (math.nan, math.nan)
    times, rates = list(trace.time_s), list(trace.rate)
    k = int(np.argmin(rates))
    return times[k], (times[k + 1] if k + 1 < len(times) else sc.duration)


def measure(raw: dict[str, Any], slow: tuple[float, float]) -> dict[str, Any]:
    """Figures of one run (see the module docstring)."""
    result = run_scenario(scenario_from_dict(raw), stream=False)
    df, s = result.sim.records, result.summary
    window = df[df["in_window"]]
    ok = window[window["status"] == "ok"]
    lat = (ok["finished_s"] - ok["created_s"]).to_numpy()
    t = ok["created_s"].to_numpy()
    in_slow = (t >= slow[0]) & (t < slow[1])
    row: dict[str, Any] = {
        "p95_ms": 1e3 * float(np.percentile(lat, 95)), "mean_ms": 1e3 * float(lat.mean()),
        "agreement": float(ok["agree"].mean()), "dropped": 1.0 - len(ok) / len(window),
        "slow_p95_ms": 1e3 * float(np.percentile(lat[in_slow], 95)) if in_slow.any() else math.nan,
        "slow_agreement": float(ok["agree"].to_numpy()[in_slow].mean()) if in_slow.any() else math.nan,
        "mean_kB": float(ok["payload_bytes"].mean()) / 1e3}
    shares = ok["config"].value_counts(normalize=True).sort_index()
    labels = s.get("configs", [])
    row["shares"] = " ".join(f"{shares.get(k, 0.0):.2f}" for k in range(len(labels))) if labels else ""
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", default="scenarios/adaptive_split.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    args = ap.parse_args(argv)
    raw = apply_overrides(read_yaml(args.file), args.set)
    slow = _slow_window(raw)
    rows = {"adaptive": measure(raw, slow)}
    for k, variant in enumerate(static_variants(raw)):
        rows[f"static {k}"] = measure(variant, slow)
    table = pd.DataFrame(rows).T
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(f"slow segment: {slow[0]:g}-{slow[1]:g} s; shares: of configurations 0, 1, ... (adaptive run)")
        print(table.to_string())
    return table


if __name__ == "__main__":
    main()

"""One-line warnings about what a run's summary can be trusted for: a saturated station, a material
share of requests still in flight at the end or lost, and a warm-up shorter than MSER-5 suggests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from testbed.core.metrics.registry import SummaryInput

__all__ = ["SATURATED", "UNFINISHED", "busiest_node", "run_warnings", "station_utilisation"]

SATURATED = 0.95
"""A station busy at least this fraction of the window is at (or beyond) its capacity."""
UNFINISHED = 0.01
"""Share of the window's requests still in flight at the end (or lost) above which a run warns."""


def busiest_node(records: pd.DataFrame, window: tuple[float, float]) -> tuple[int, float] | None:
    """(node, busy fraction of its CPU over ``window``) of the busiest node: head and encode time."""
    if not len(records):
        return None
    t0, t1 = window
    lo = np.maximum(records["head_start_s"].to_numpy(dtype=float), t0)
    hi = np.minimum(records["encode_end_s"].to_numpy(dtype=float), t1)
    busy = pd.Series(np.nan_to_num(np.clip(hi - lo, 0.0, None)), index=records["node"].to_numpy()
                     ).groupby(level=0).sum()
    i = int(np.argmax(busy.to_numpy()))
    return int(busy.index[i]), float(busy.iloc[i]) / (t1 - t0)


def station_utilisation(summary: Mapping[str, Any], s: SummaryInput,
                        busiest_cpu: tuple[int, float] | Literal[False] | None = False) -> dict[str, float]:
    """Busy fraction over the window of the uplink, the server GPUs and the busiest node's CPU
    (named ``node CPU (node i)``; ``busiest_cpu`` when already known, e.g. from a streamed pass);
    stations the summary has no figure for are left out."""
    out: dict[str, float] = {}
    for key, name in (("link_utilisation", "uplink"), ("gpu_utilisation", "server GPU")):
        v = summary.get(key)
        if isinstance(v, float) and math.isfinite(v):
            out[name] = v
    node = busiest_cpu if busiest_cpu is not False else (busiest_node(s.records, s.window) if s.nodes else None)
    if node is not None:
        out[f"node CPU (node {node[0]})"] = node[1]
    return out


def run_warnings(summary: Mapping[str, Any], s: SummaryInput,
                 busiest_cpu: tuple[int, float] | Literal[False] | None = False) -> list[str]:
    """The summary's warnings, one line each: every station at or above :data:`SATURATED`, an
    unfinished share above :data:`UNFINISHED` (naming the busiest station), a share dropped or timed
    out above it (by cause), and a configured warm-up shorter than MSER-5's (or a latency MSER-5
    finds still trending)."""
    out: list[str] = []
    util = station_utilisation(summary, s, busiest_cpu)
    for name, u in util.items():
        if u >= SATURATED:
            out.append(f"overload: {name} utilisation {u:.3f} (>= {SATURATED}): the offered load is at or above its "
                       f"capacity, so its queue grows for as long as the run lasts")
    n, left = summary.get("requests", 0), summary.get("in_flight", 0)
    if n and left / n > UNFINISHED:
        top = max(util, key=lambda k: util[k]) if util else None
        busiest = f"; busiest station: {top} at {util[top]:.3f}" if top else ""
        out.append(f"unfinished: {left:,} of {n:,} requests created in the window ({left / n:.1%}) were still in "
                   f"flight at the end; latency_*_s cover the {summary.get('completed', 0):,} completed{busiest}")
    lost = {k: summary.get(k, 0) for k in ("dropped_at_node", "dropped_at_server", "dropped_on_link", "timed_out",
                                                 "server_failed", "cell_failed")}
    if n and sum(lost.values()) / n > UNFINISHED:
        causes = ", ".join(f"{k.replace('_', ' ')} {v / n:.1%}" for k, v in lost.items() if v)
        out.append(f"lost: {sum(lost.values()):,} of {n:,} requests created in the window ({sum(lost.values()) / n:.1%}) "
                   f"got no answer ({causes}); latency_*_s leave them out, latency_*_all_s count them as infinite")
    warm = summary.get("warmup_mser5_s", math.nan)
    if warm is None:
        out.append("no steady state: MSER-5 finds the latency still trending over the run (its best truncation "
                   "is beyond half of it); the window's figures describe a transient")
    elif isinstance(warm, float) and warm > s.window[0]:
        out.append(f"warm-up: MSER-5 suggests discarding requests created before {warm:.3g} s; "
                   f"the configured warmup is {s.window[0]:.3g} s")
    return out

"""Agreement by camera corruption: the per-corruption breakdown of a run whose frames were corrupted
(``dataset.corruption``, per group ``fleet[].dataset``; the ImageNet-C families of Hendrycks and
Dietterich, ICLR 2019, as GroupNL's robustness claims are stated over them: Ding, Xie et al., IEEE TMC
2026, arXiv:2506.12335).

Not a registered summary metric (streamed runs summarise in chunks, and this table is small): the
runner adds it to ``summary.json`` as ``by_corruption`` when the records carry a ``corruption``
column. Pure pandas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CORRUPTION_COLUMNS", "corruption_breakdown"]

CORRUPTION_COLUMNS = ("status", "created_s", "corruption", "severity", "agree", "agree_clean")
"""The record columns :func:`corruption_breakdown` reads (``agree_clean`` where present)."""


def _figures(rows: pd.DataFrame, name: str, severity: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"corruption": name, "severity": severity, "requests": len(rows),
                           "agreement": float(rows["agree"].mean()) if len(rows) else math.nan}
    if "agree_clean" in rows:
        out["agreement_clean"] = float(rows["agree_clean"].mean()) if len(rows) else math.nan
    return out


def corruption_breakdown(records: pd.DataFrame, window: tuple[float, float]) -> list[dict[str, Any]]:
    """Rows per corruption (``"none"``: a clean group's frames) over the completed requests created in
    ``window``: one with ``severity`` None (all its severities), then one per severity, each with
    ``requests``, ``agreement`` (top-1 equals the unsplit model's on the same corrupted frame) and
    ``agreement_clean`` (on the frame before its corruption). Flat rows of one schema, so a sweep's
    summary table holds them as it holds ``warnings``. Empty when the records carry no corruption."""
    if "corruption" not in records or "agree" not in records:
        return []
    created = records["created_s"].to_numpy(dtype=float)
    ok = (records["status"].astype(str) == "ok").to_numpy() & (created >= window[0]) & (created < window[1])
    rows = records.loc[ok]
    names = rows["corruption"].astype(str)
    rows = rows[names != ""]
    names = names[names != ""]
    out: list[dict[str, Any]] = []
    for name in sorted(set(names)):
        by_name = rows[(names == name).to_numpy()]
        out.append(_figures(by_name, name, None))
        sev = by_name["severity"].to_numpy(dtype=float)
        out += [_figures(by_name[sev == v], name, int(v)) for v in sorted(set(sev[~np.isnan(sev)]))]
    return out

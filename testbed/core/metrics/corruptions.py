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

from testbed.core.metrics.online import NanMeans

__all__ = ["CORRUPTION_COLUMNS", "CorruptionAccumulator", "corruption_breakdown"]

CORRUPTION_COLUMNS = ("status", "created_s", "corruption", "severity", "agree", "agree_clean")
"""The record columns :func:`corruption_breakdown` reads (``agree_clean`` where present)."""


def _figures(name: str, severity: int | None, n: int, agree: NanMeans, clean: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"corruption": name, "severity": severity, "requests": n,
                           "agreement": agree.get("agree") if n else math.nan}
    if clean:
        out["agreement_clean"] = agree.get("agree_clean") if n else math.nan
    return out


def corruption_breakdown(records: pd.DataFrame, window: tuple[float, float]) -> list[dict[str, Any]]:
    """Rows per corruption (``"none"``: a clean group's frames) over the completed requests created in
    ``window``: one with ``severity`` None (all its severities), then one per severity, each with
    ``requests``, ``agreement`` (top-1 equals the unsplit model's on the same corrupted frame) and
    ``agreement_clean`` (on the frame before its corruption). Flat rows of one schema, so a sweep's
    summary table holds them as it holds ``warnings``. Empty when the records carry no corruption.
    Held in memory; a streamed run feeds :class:`CorruptionAccumulator` chunk by chunk."""
    acc = CorruptionAccumulator(window)
    acc.add(records)
    return acc.result()


class CorruptionAccumulator:
    """:func:`corruption_breakdown` over records that arrive in chunks: counts and NaN-skipping sums per
    corruption and per (corruption, severity); constant memory."""

    def __init__(self, window: tuple[float, float]) -> None:
        self.window = window
        self.counts: dict[tuple[str, int | None], int] = {}
        self.means: dict[tuple[str, int | None], NanMeans] = {}
        self.usable = True   # every chunk had corruption and agree columns
        self.clean = False   # some chunk had agree_clean
        self.seen = False

    def add(self, chunk: pd.DataFrame) -> None:
        self.seen = True
        if "corruption" not in chunk or "agree" not in chunk:
            self.usable = False
            return
        self.clean |= "agree_clean" in chunk
        created = chunk["created_s"].to_numpy(dtype=float)
        ok = (chunk["status"].astype(str) == "ok").to_numpy() & (created >= self.window[0]) & (created < self.window[1])
        rows = chunk.loc[ok]
        names = rows["corruption"].astype(str).to_numpy()
        sev = rows["severity"].to_numpy(dtype=float)
        agree = rows["agree"].to_numpy(dtype=float)
        clean = rows["agree_clean"].to_numpy(dtype=float) if "agree_clean" in rows else None
        for name in set(names) - {""}:
            mine = names == name
            keys: list[tuple[tuple[str, int | None], np.ndarray]] = [((name, None), mine)]
            keys += [((name, int(v)), mine & (sev == v)) for v in set(sev[mine][~np.isnan(sev[mine])])]
            for key, sel in keys:
                self.counts[key] = self.counts.get(key, 0) + int(sel.sum())
                m = self.means.setdefault(key, NanMeans())
                m.add("agree", agree[sel])
                if clean is not None:
                    m.add("agree_clean", clean[sel])

    def result(self) -> list[dict[str, Any]]:
        if not self.usable or not self.seen:
            return []
        out: list[dict[str, Any]] = []
        for name in sorted({k[0] for k in self.counts}):
            severities = sorted(k[1] for k in self.counts if k[0] == name and k[1] is not None)
            for key in [(name, None), *((name, v) for v in severities)]:
                out.append(_figures(name, key[1], self.counts[key], self.means[key], self.clean))
        return out

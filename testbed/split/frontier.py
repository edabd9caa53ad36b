"""Which codec to pick: the smallest payload that keeps a given share of the unsplit model's answers.

Pure functions over the rows :meth:`testbed.split.pipeline.PipelineResult.summary` returns, so a payload
table can be read as "at split point S, the smallest payload keeping >= 90% top-1 agreement is C".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["smallest_keeping"]


def smallest_keeping(rows: Iterable[Mapping[str, Any]], floors: Sequence[float],
                     metric: str = "top1_agreement") -> list[tuple[str, dict[float, Mapping[str, Any] | None]]]:
    """For each split point (in first-seen order) and each floor, the row with the smallest mean payload
    whose ``metric`` is at least the floor; ties go to the higher agreement, then the earlier row.

    Returns ``(split, {floor: chosen row, or None when no codec at that split keeps the floor})`` pairs.
    """
    for f in floors:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"agreement floor {f} is outside [0, 1]")
    by_split: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_split.setdefault(str(r["split"]), []).append(r)
    out: list[tuple[str, dict[float, Mapping[str, Any] | None]]] = []
    for split, group in by_split.items():
        picks: dict[float, Mapping[str, Any] | None] = {}
        for f in floors:
            ok = [r for r in group if r.get(metric) is not None and r[metric] >= f]
            picks[f] = min(ok, key=lambda r: (r["payload_bytes_mean"], -r[metric])) if ok else None
        out.append((split, picks))
    return out

"""Mean node energy per completed request, split into compute, radio and idle (see testbed.core.energy)."""

from __future__ import annotations

import math
from typing import Any

from testbed.core.energy import ENERGY_COLUMNS
from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput

__all__ = ["energy"]


@SUMMARY_METRICS.register("energy")
def energy(s: SummaryInput) -> dict[str, Any]:
    if "energy_j" not in s.window_rows:
        return {}
    order = ("energy_j", *[c for c in ENERGY_COLUMNS if c != "energy_j"])
    return {f"mean_{col}": float(s.ok[col].mean()) if len(s.ok) else math.nan for col in order}

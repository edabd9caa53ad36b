"""The registry of summary metrics.

A summary metric is a pure function of a :class:`SummaryInput` returning named figures; it is
registered under a name and contributes its keys to every run's ``summary.json`` in registration
order. Adding a metric is one new module in :mod:`testbed.core.metrics` plus its import in the
package's ``__init__`` (which registers it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from testbed.registry import Registry

__all__ = ["SUMMARY_METRICS", "SummaryInput", "SummaryMetric"]


@dataclass(frozen=True)
class SummaryInput:
    """What a summary metric may look at.

    ``records``: every request (whenever created); ``window_rows``: the requests created inside
    ``window`` with stage columns; ``ok``: those of them that completed. ``levels``: the simulator's
    time-weighted station monitors (None for emulation), ``gpus`` and ``nodes`` the station counts.
    """

    records: pd.DataFrame
    window_rows: pd.DataFrame
    ok: pd.DataFrame
    window: tuple[float, float]
    levels: Mapping[str, Mapping[str, float]] | None
    gpus: int
    nodes: int | None

    @property
    def span(self) -> float:
        return self.window[1] - self.window[0]


SummaryMetric = Callable[[SummaryInput], dict[str, Any]]
SUMMARY_METRICS: Registry[SummaryMetric] = Registry("summary metric")

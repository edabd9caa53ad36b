"""Metrics as pure functions of the request records (one row per request).

Stage durations are derived from the per-stage timestamps (:mod:`.stages`); a run's summary is the
union of the registered summary metrics (:mod:`.registry`), each over the requests created inside
the measurement window ``[warmup, duration)``. The imports below register the built-in metrics, in
the order their keys appear in ``summary.json``; a new metric is a new module here plus one import.
"""

# Registration order is the order of the summary's keys.
# isort: off
from testbed.core.metrics import latency  # noqa: F401
from testbed.core.metrics import utilisation  # noqa: F401
from testbed.core.metrics import outcomes  # noqa: F401
from testbed.core.metrics import energy  # noqa: F401
# isort: on

from testbed.core.metrics.checks import run_warnings
from testbed.core.metrics.intervals import (
                                            batch_interval,
                                            mser,
                                            replication_interval,
                                            replication_method,
                                            replication_warning,
                                            t_interval,
)
from testbed.core.metrics.latency import censored_statistic, latency_or_inf
from testbed.core.metrics.registry import SUMMARY_METRICS, SummaryInput, SummaryMetric
from testbed.core.metrics.stages import STAGES, batch_table, in_window, overlap, with_stages
from testbed.core.metrics.summary import summarize
from testbed.core.metrics.tables import format_summary, format_warnings, percentile_ci

__all__ = [
           "STAGES",
           "SUMMARY_METRICS",
           "SummaryInput",
           "SummaryMetric",
           "batch_interval",
           "batch_table",
           "censored_statistic",
           "format_summary",
           "format_warnings",
           "in_window",
           "latency_or_inf",
           "mser",
           "overlap",
           "percentile_ci",
           "replication_interval",
           "replication_method",
           "replication_warning",
           "run_warnings",
           "summarize",
           "t_interval",
           "with_stages",
]

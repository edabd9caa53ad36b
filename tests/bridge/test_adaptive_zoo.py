"""The example adaptive split (scenarios/adaptive_split.yaml) on the real pretrained Lite0 over 8 photos,
its timeline shortened: while the link is slow the cameras send 4-bit features, otherwise 8-bit; the
adaptive run's p95 is far below the static 8-bit run's (which overloads the slow link), and its agreement
is at least the static 4-bit run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.adaptive_split import measure, static_variants
from testbed.config.load import read_yaml

pytestmark = pytest.mark.zoo

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "adaptive_split.yaml"


def _small() -> dict[str, Any]:
    raw = read_yaml(SCENARIO)
    raw.update(duration="60 s", warmup="5 s", dataset={"kind": "photos", "limit": 8, "seed": 1})
    raw["link"]["rate_trace"] = {"time_s": [0, 20, 40], "rate": ["4 MB/s", "1 MB/s", "4 MB/s"]}
    raw["fleet"][0]["adaptive"]["policy"]["hold_s"] = "5 s"
    return raw


def test_adaptive_keeps_p95_near_the_small_configuration_and_agreement_near_the_large() -> None:
    raw = _small()
    adaptive = measure(raw, (20.0, 40.0))
    big, small = (measure(v, (20.0, 40.0)) for v in static_variants(raw))
    assert big["p95_ms"] > 10 * adaptive["p95_ms"]  # 8 bits all the time overloads the slow link
    assert adaptive["agreement"] >= small["agreement"]
    assert small["mean_kB"] < adaptive["mean_kB"] < big["mean_kB"]
    shares = np.array([float(x) for x in adaptive["shares"].split()])
    assert shares.sum() == pytest.approx(1.0) and (shares > 0.1).all()

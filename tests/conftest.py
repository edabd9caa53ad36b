"""Shared helpers: small scenario dictionaries for the simulation tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest


def base_scenario(**overrides: Any) -> dict[str, Any]:
    """A small, fast timing-only scenario; override top-level sections with keyword arguments."""
    raw: dict[str, Any] = {
        "name": "test", "seed": 3, "duration": "60 s", "warmup": "5 s",
        "fleet": [{"name": "cams", "count": 20, "device": "pi4b",
                   "arrivals": {"kind": "poisson", "rate": "1/s"},
                   "head": "10 ms", "encode": "2 ms", "payload": "10 kB"}],
        "link": {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms"},
        "server": {"device": "h100", "batching": {"max_batch": 8, "max_delay": "2 ms"},
                   "service": {"table": {1: "2 ms", 8: "5 ms"}}},
    }
    raw.update(copy.deepcopy(overrides))
    return raw


@pytest.fixture
def scenario_dict() -> dict[str, Any]:
    return base_scenario()

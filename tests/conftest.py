"""Shared helpers: small scenario dictionaries for the simulation tests, and the ``zoo`` marker.

``tests/`` is a package, so ``from tests.conftest import base_scenario`` works from any working
directory (pytest puts the repository root on ``sys.path`` for a package's conftest).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests that build or run torchvision models or train networks, by path (relative to the repository)
# and test name (``None``: every test under that path). They get the ``zoo`` marker, so a developer
# can skip them with ``-m "not zoo"``; CI runs everything. Tests in files of the model side may
# carry ``@pytest.mark.zoo`` themselves instead.
ZOO: dict[str, tuple[str, ...] | None] = {
    "tests/models/test_payloads_cli.py": None,
    "tests/research": None,
    "tests/test_pipeline_workload.py": (
        "test_baselines_input_and_none",
        "test_cache_reused_for_fleet_link_server_changes_and_invalidated_otherwise",
        "test_fine_tuned_tail_of_a_learned_codec_is_used",
        "test_requests_carry_real_payloads_and_charges",
    ),
    "tests/emulate/test_roundtrip.py": ("test_real_payloads_round_trip_through_the_live_server",),
}


def _rel(item: pytest.Item) -> str:
    """``item``'s file relative to the repository root (``""`` outside it)."""
    path = item.path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else ""


def _zoo_entry(item: pytest.Item) -> str | None:
    """The ``ZOO`` key that marks ``item``, if any."""
    rel, name = _rel(item), getattr(item, "originalname", item.name)
    for key, names in ZOO.items():
        if (rel == key or rel.startswith(key + "/")) and (names is None or name in names):
            return key
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the model-zoo tests; warn about ``ZOO`` names that match no collected test (renamed?)."""
    seen: set[tuple[str, str]] = set()
    files = {_rel(item) for item in items}
    for item in items:
        key = _zoo_entry(item)
        if key is not None:
            item.add_marker(pytest.mark.zoo)
            seen.add((key, getattr(item, "originalname", item.name)))
    for key, names in ZOO.items():
        missing = [n for n in names or () if key in files and (key, n) not in seen]
        if missing:
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(f"tests/conftest.py ZOO: no test {', '.join(missing)} in {key}"), 2)


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

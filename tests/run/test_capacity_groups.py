"""``testbed capacity --group``: the objective holds for named fleet groups' own requests (a
heterogeneous fleet: how many far cameras fit while the near ones keep their p95)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from testbed.config.load import apply_overrides
from testbed.errors import ConfigError
from testbed.run.capacity import capacity_search, group_slo_values, parse_slo, probe_runs, resolve_groups, slo_value
from testbed.run.prepare import prepare_dict
from testbed.run.runner import run_scenario
from tests.conftest import base_scenario


def two_groups() -> dict[str, Any]:
    """Near cameras (2 kB frames) and far ones (10 kB) on one 0.5 MB/s link: the far ones fill it."""
    raw = base_scenario(duration="12 s", warmup="2 s", drain="5 s")
    near = {**raw["fleet"][0], "name": "near", "count": 4, "payload": "2 kB",
            "arrivals": {"kind": "poisson", "rate": "2/s"}}
    far = {**near, "name": "far", "count": 1, "payload": "10 kB"}
    raw["fleet"] = [near, far]
    raw["link"] = {"model": "shared_fifo", "datarate": "0.5 MB/s"}
    return raw


def test_group_values_are_the_statistic_over_each_groups_requests() -> None:
    raw = apply_overrides(two_groups(), {"fleet.1.count": 20})
    res = run_scenario(prepare_dict(raw, None), stream=False)
    df, window = res.records, res.sim.window
    values = group_slo_values(df, window, "p95", {"near": 0, "far": 1})
    for name, g in (("near", 0), ("far", 1)):
        assert values[name] == slo_value(df[df["group"] == g], window, "p95")
    assert values["near"] < values["far"]  # small frames wait behind large ones but send faster
    assert min(values.values()) <= slo_value(df, window, "p95") <= max(values.values())


def test_per_group_bisection_agrees_with_brute_force() -> None:
    raw, slo = two_groups(), parse_slo("p95 < 80 ms")
    (result,) = capacity_search(raw, slo, "fleet.1.count", start=2, limit=64, groups=("near",))
    brute = {n: probe_runs(raw, "fleet.1.count", n, slo, None, 1, {"near": 0}).value for n in range(1, 32)}
    largest_prefix = max((n for n in brute if all(slo.met(brute[m]) for m in range(1, n + 1))), default=0)
    assert result.capacity == largest_prefix and result.first_failing == largest_prefix + 1
    assert result.binding_group == "near"
    # the objective over all requests binds earlier: the far cameras' own frames are the slower ones
    (overall,) = capacity_search(raw, slo, "fleet.1.count", start=2, limit=64)
    assert overall.capacity < result.capacity
    (both,) = capacity_search(raw, slo, "fleet.1.count", start=2, limit=64, groups=("all",))
    assert both.capacity <= overall.capacity and both.binding_group == "far"
    assert not math.isnan(both.value_at_capacity)


def test_an_unknown_group_is_one_line_naming_the_option() -> None:
    assert resolve_groups(two_groups(), ["all"]) == {"near": 0, "far": 1}
    with pytest.raises(ConfigError, match=r"^--group: got 'nowhere'; a fleet group name \(near, far\) or all$"):
        capacity_search(two_groups(), parse_slo("p95 < 80 ms"), "fleet.1.count", groups=("nowhere",))

"""The kernel-shaped link: namespaces + veth + tc netem (skipped with the reason where it cannot run)."""

from __future__ import annotations

import subprocess

import pytest
from emu_helpers import emu_scenario

from testbed.emulate.netns import tc_support

OK, WHY = tc_support()
pytestmark = pytest.mark.skipif(not OK, reason=f"tc/netns path unavailable: {WHY}")


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("tbe")}


def test_kernel_shaped_link_carries_the_fleet_and_cleans_up() -> None:
    from testbed.emulate import emulate_scenario
    from testbed.run.prepare import prepare_dict

    before = _namespaces()
    res = emulate_scenario(prepare_dict(emu_scenario(duration="2 s")), time_scale=1.0, link="tc")
    assert _namespaces() == before                      # the run's namespaces are gone
    df = res.records
    ok = df[df["status"].astype(str) == "ok"]
    assert len(ok) == len(df) > 0
    # 10 kB at 200 kB/s takes 50 ms; a token bucket lets one MTU leave at once and its peak rate
    # is 5% above the rate: at least (10,016 - 1,600) B / 210 kB/s = 40 ms on the kernel-shaped wire
    wire = ok["server_arrival_s"] - ok["encode_end_s"]
    assert (wire >= 0.040).all() and wire.median() < 0.2
    assert res.meta["link"]["mode"] == "tc" and "tbf" in res.meta["link"]["qdisc_stats"]

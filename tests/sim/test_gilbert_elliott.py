"""Gilbert-Elliott frame errors on the csma link (link.csma.gilbert_elliott): the cell loses the chain's
share of MPDUs, and in bursts, so a payload exhausts its retries far more often than with independent
losses of the same mean."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testbed.config.load import scenario_from_dict
from testbed.core.channel import GilbertElliott
from testbed.errors import ConfigError
from testbed.sim import simulate
from testbed.sim.links.csma import saturation_throughput
from testbed.sim.links.phy import STANDARDS

A = STANDARDS["802.11a"]          # one MPDU per PPDU: one loss draw per access
GE = (0.05, 0.2, 0.0, 1.0)        # bad 20% of the time, mean bad spell 5 frames


def test_one_station_loses_the_chains_share_of_frames() -> None:
    dcf = replace(A, gilbert_elliott=GE, retry_limit=255)
    payload = float(dcf.msdu_data)           # one MPDU per payload
    out = saturation_throughput(1, 6e6, payload, dcf, duration=30.0, warmup=0.0)
    delivered = out["throughput"] * 30.0 / payload
    lost_share = 1 - delivered / out["exchanges"]
    assert out["exchanges"] > 20_000 and out["drops"] == 0
    assert lost_share == pytest.approx(GilbertElliott(*GE).loss_rate, rel=0.1)


def test_bursts_exhaust_retries_where_independent_losses_rarely_do() -> None:
    payload = float(A.msdu_data)
    burst = saturation_throughput(1, 6e6, payload, replace(A, gilbert_elliott=GE, retry_limit=2), 30.0, warmup=0.0)
    iid = saturation_throughput(1, 6e6, payload, replace(A, frame_error_rate=0.2, retry_limit=2), 30.0, warmup=0.0)
    # independent: a payload is dropped after 3 losses in a row, 0.2^3 = 0.8%; in a bad spell (stay 0.8
    # per frame) the next two frames are lost with probability 0.64
    per_burst = burst["drops"] / burst["exchanges"]
    per_iid = iid["drops"] / iid["exchanges"]
    assert per_iid < 0.012 and per_burst > 4 * per_iid


def test_the_scenario_key_reaches_the_cell() -> None:
    raw = {
        "seed": 2, "duration": "20 s", "drain": "10 s",
        "fleet": [{"count": 4, "device": "pi4b", "payload": "20 kB", "arrivals": {"kind": "poisson", "rate": "5/s"}}],
        "link": {"model": "csma", "datarate": "24 Mbit/s",
                 "csma": {"standard": "802.11a", "retry_limit": 1,
                          "gilbert_elliott": {"p_good_bad": 0.05, "p_bad_good": 0.2}}},
        "server": {"device": "h100", "service": "2 ms"},
    }
    lossy = (simulate(scenario_from_dict(raw)).records["status"] == "dropped_on_link").mean()
    clean = dict(raw, link={**raw["link"], "csma": {"standard": "802.11a", "retry_limit": 1}})
    collisions = (simulate(scenario_from_dict(clean)).records["status"] == "dropped_on_link").mean()
    assert lossy > 0.2 and collisions < 0.05, (lossy, collisions)  # 14 MPDUs a payload, two tries each
    bad = dict(raw, link={**raw["link"], "csma": {"frame_error_rate": 0.1,
                                                  "gilbert_elliott": {"p_good_bad": 0.05, "p_bad_good": 0.2}}})
    with pytest.raises(ConfigError, match=r"link\.csma"):
        scenario_from_dict(bad)

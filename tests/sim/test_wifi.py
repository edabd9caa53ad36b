"""The 802.11 DCF cell (testbed/sim/links: csma.py, phy.py, bianchi.py) against hand-computed airtimes,
Bianchi's saturation model, the single-station MAC efficiency and the empirical per-client table in
figures.md.

Tolerances come from the spread of the estimate: saturation runs are split into 10 batches and the
simulated throughput must lie within 3.3 batch-means standard errors (plus the stated model error
for Bianchi's decoupling approximation) of the analytical value.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from testbed.config.load import scenario_from_dict
from testbed.errors import ConfigError
from testbed.sim import simulate
from testbed.sim.links.bianchi import bianchi_fixed_point, bianchi_tau, bianchi_throughput
from testbed.sim.links.csma import saturation_throughput
from testbed.sim.links.phy import (
    STANDARDS,
    Dcf,
    ack_time,
    exchange_time,
    mac_efficiency,
    mpdus_per_ppdu,
    payload_airtime,
    ppdu_time,
)

A = STANDARDS["802.11a"]
RATE_54 = 54e6 / 8           # bytes/s
L = A.msdu_data              # 1472 application bytes in a 1500-byte IP packet


def test_ofdm_airtimes_by_hand() -> None:
    # PSDU 1472 + 28 (IP/UDP) + 38 (MAC hdr, FCS, LLC) = 1538 B; 16 + 12304 + 6 bits / 216 per symbol
    # -> 58 symbols = 232 us + 20 us preamble
    assert ppdu_time(1538, RATE_54, 20e-6) == pytest.approx(252e-6)
    assert ack_time(A, RATE_54) == pytest.approx(28e-6)        # 134 bits / 96 -> 2 symbols + 20 us
    assert ack_time(A, RATE_54, block=True) == pytest.approx(32e-6)  # 278 bits -> 3 symbols
    assert A.difs == pytest.approx(34e-6)
    assert exchange_time(1, L, RATE_54, A)[2] == pytest.approx((252 + 16 + 28 + 34) * 1e-6)
    ht = STANDARDS["802.11n"]
    assert mpdus_per_ppdu(65e6 / 8, ht) == 28          # aPPDUMaxTime 5.484 ms binds at 65 Mbit/s
    assert mpdus_per_ppdu(300e6 / 8, ht) == 42         # 65,535-byte A-MPDU binds
    assert mpdus_per_ppdu(600e6 / 8, STANDARDS["802.11ac"]) == 64  # Block Ack window binds


def test_bianchi_fixed_point_closed_forms() -> None:
    # constant window (m = 0): tau = 2 / (W + 1) whatever p (Bianchi 2000, Sec. III)
    for p in (0.0, 0.2, 0.6):
        assert bianchi_tau(p, 32, 0) == pytest.approx(2 / 33)
    # one station never collides
    tau, p = bianchi_fixed_point(1, 32, 5)
    assert p == pytest.approx(0.0, abs=1e-9) and tau == pytest.approx(2 / 33)
    # the retry-limited chain tends to eq. (7) as the limit grows
    for p in (0.05, 0.3, 0.45):
        assert bianchi_tau(p, 16, 6, retry_limit=400) == pytest.approx(bianchi_tau(p, 16, 6), rel=1e-9)
    # the solution satisfies both equations, and p grows with n
    ps = []
    for n in (2, 5, 10, 20, 50):
        tau, p = bianchi_fixed_point(n, 32, 5)
        assert p == pytest.approx(1 - (1 - tau) ** (n - 1), abs=1e-9)
        assert tau == pytest.approx(bianchi_tau(p, 32, 5), rel=1e-9)
        ps.append(p)
    assert ps == sorted(ps)
    # frame errors add to the failure probability: p = 1 - (1 - tau)^(n-1) (1 - FER)
    tau, p = bianchi_fixed_point(5, 16, 6, 7, frame_error_rate=0.1)
    assert p == pytest.approx(1 - (1 - tau) ** 4 * 0.9, abs=1e-9)


def _batched(n: int, rate: float, payload: float, dcf: Dcf, duration: float, seed: int) -> tuple[float, float]:
    """Mean throughput and its 3.3-standard-error half width over 10 independent runs."""
    runs = [saturation_throughput(n, rate, payload, dcf, duration, seed=seed * 100 + b)["throughput"]
            for b in range(10)]
    return float(np.mean(runs)), 3.3 * float(np.std(runs, ddof=1)) / math.sqrt(len(runs))


@pytest.mark.parametrize("n", [1, 5, 10, 20, 50])
def test_saturation_throughput_matches_bianchi(n: int) -> None:
    ts = exchange_time(1, L, RATE_54, A)[2]
    theory = bianchi_throughput(n, L, ts, ts, A.slot, A.cw_min + 1, A.stages, A.retry_limit)
    mean, half = _batched(n, RATE_54, L, A, duration=0.8, seed=n)
    # 1% for Bianchi's decoupling approximation (constant p whatever the stage), plus sampling
    assert abs(mean - theory) < 0.01 * theory + half, (n, mean * 8e-6, theory * 8e-6, half * 8e-6)


@pytest.mark.parametrize("std, mbit, payload", [("802.11a", 54, 25_000), ("802.11n", 65, 25_000),
                                                ("802.11ac", 200, 60_000)])
def test_single_node_goodput_is_rate_times_mac_efficiency(std: str, mbit: float, payload: float) -> None:
    dcf, rate = STANDARDS[std], mbit * 1e6 / 8
    expected = rate * mac_efficiency(payload, rate, dcf)
    assert expected == pytest.approx(payload / payload_airtime(payload, rate, dcf))
    mean, half = _batched(1, rate, payload, dcf, duration=1.0, seed=7)
    assert abs(mean - expected) < half + 1e-3 * expected, (mean, expected, half)
    assert 0.4 < expected / rate < 0.95


EDGECLOUDSIM = {1: 88.0, 2: 45.2, 10: 15.7, 32: 6.5}   # Mbit/s per client (figures.md)


def test_per_client_throughput_falls_with_clients_like_the_empirical_table() -> None:
    # 802.11n, two streams at 20 MHz, MCS12 (104 Mbit/s; HT-mixed preamble with 2 HT-LTFs: 40 us),
    # 25 kB payloads aggregated in one A-MPDU each
    dcf, rate = replace(STANDARDS["802.11n"], preamble=40e-6), 104e6 / 8
    ppdu, _, ts = exchange_time(17, 25_000, rate, dcf)
    tc = ppdu + dcf.sifs + ack_time(dcf, dcf.basic_rate) + dcf.difs
    per_client, bianchi = {}, {}
    for n in EDGECLOUDSIM:
        per_client[n] = saturation_throughput(n, rate, 25_000, dcf, 3.0, seed=n)["throughput"] * 8e-6 / n
        bianchi[n] = bianchi_throughput(n, 25_000, ts, tc, dcf.slot, 16, dcf.stages, dcf.retry_limit) * 8e-6 / n
    # one and two clients: within 5% and 10% of the table
    assert per_client[1] == pytest.approx(EDGECLOUDSIM[1], rel=0.05)
    assert per_client[2] == pytest.approx(EDGECLOUDSIM[2], rel=0.10)
    # the shape: S(n)/n with Bianchi's contention losses (3%), falling faster than 1/n
    for n in EDGECLOUDSIM:
        assert per_client[n] == pytest.approx(bianchi[n], rel=0.03), (n, per_client[n], bianchi[n])
    assert per_client[1] > per_client[2] > per_client[10] > per_client[32]
    assert per_client[32] * 32 < 0.8 * per_client[1]
    # what differs: the table's aggregate grows with clients (88 -> 90 -> 157 -> 208 Mbit/s), which
    # one collision domain at a fixed PHY rate cannot do; at 10 and 32 clients it is 2-4x above us
    assert 1.5 < EDGECLOUDSIM[10] / per_client[10] < 3.0
    assert 2.5 < EDGECLOUDSIM[32] / per_client[32] < 5.0


def test_frame_errors_are_retried_then_dropped() -> None:
    dcf = replace(A, frame_error_rate=0.5, retry_limit=2)
    result = saturation_throughput(1, RATE_54, L, dcf, 20.0, seed=3)
    attempts = result["exchanges"]
    drops = result["drops"]
    # each frame fails with 0.5 per attempt; dropped after 3 failed attempts: P = 0.125,
    # attempts per frame 1 + 0.5 + 0.25 = 1.75
    frames = attempts / 1.75
    p_drop = drops / frames
    se = math.sqrt(0.125 * 0.875 / frames)
    assert abs(p_drop - 0.125) < 4 * se, (p_drop, se)
    ts = exchange_time(1, L, RATE_54, A)[2]
    theory = bianchi_throughput(1, L, ts, ts, A.slot, A.cw_min + 1, A.stages, 2, frame_error_rate=0.5)
    assert result["throughput"] == pytest.approx(theory, rel=0.03)


def cell_scenario(**link: object) -> dict:
    return {
        "name": "wifi", "seed": 0, "duration": "0.005 s", "drain": "1 s",
        "fleet": [{"count": 1, "device": "pi4b", "head": "8 ms", "encode": "1 ms", "payload": f"{L} B",
                   "arrivals": {"kind": "periodic", "rate": "100/s", "random_phase": False}}],
        "link": {"model": "csma", "datarate": "54 Mbit/s", "latency": "1 ms",
                 "csma": {"standard": "802.11a", "cw_min": 0, "cw_max": 0, **link}},
        "server": {"device": "h100", "batching": {"max_batch": 1}, "service": {"table": {1: "3 ms"}}},
        "workload": {"result": "64 B"},
    }


def test_csma_trace_and_radio_energy_by_hand() -> None:
    df = simulate(scenario_from_dict(cell_scenario())).records
    row = df.iloc[0]
    assert str(row["status"]) == "ok"
    us = 1e-6
    # uplink at the slot boundary 9 ms (1000 slots): PPDU 252 + SIFS 16 + ACK 28 us
    assert row["tx_start_s"] == pytest.approx(9e-3)
    assert row["tx_end_s"] == pytest.approx(9e-3 + 296 * us)
    # server 1 ms later, 3 ms batch; the AP counts slots from the end of DIFS (9.330 ms):
    # 13.296 ms is 440.67 slots later -> sends at slot 441 = 13.299 ms; 64 B result: PSDU 130 B,
    # 5 symbols + 20 us = 40 us, + SIFS + ACK = 84 us; then 1 ms propagation
    assert row["batch_end_s"] == pytest.approx(13.296e-3)
    assert row["downlink_start_s"] == pytest.approx(9.330e-3 + 441 * 9 * us)
    assert row["downlink_end_s"] == pytest.approx(13.299e-3 + 84 * us)
    assert row["finished_s"] == pytest.approx(14.383e-3)
    # energy: tx = own PPDU + ACK of the result; rx = ACK + result PPDU; idle = SIFS waiting
    assert row["radio_tx_j"] == pytest.approx(1.28 * (252 + 28) * us)
    assert row["radio_rx_j"] == pytest.approx(0.94 * (28 + 40) * us)
    assert row["radio_idle_j"] == pytest.approx(0.82 * 16 * us)


def fleet(nodes: int, **csma: object) -> dict:
    return {
        "name": "fleet", "seed": 5, "duration": "6 s", "warmup": "1 s", "drain": "2 s",
        "fleet": [{"name": "near", "count": nodes // 2, "device": "pi4b", "payload": "25 kB",
                   "arrivals": {"kind": "poisson", "rate": "4/s"}},
                  {"name": "far", "count": nodes - nodes // 2, "device": "pi4b", "payload": "25 kB",
                   "datarate": "13 Mbit/s", "arrivals": {"kind": "poisson", "rate": "4/s"}}],
        "link": {"model": "csma", "datarate": "65 Mbit/s", "csma": csma},
        "server": {"device": "h100", "batching": {"max_batch": 8}, "service": {"table": {1: "1 ms"}}},
        "workload": {"result": "200 B"},
    }


def test_rate_classes_losses_and_determinism() -> None:
    raw = fleet(20, frame_error_rate=0.2, retry_limit=1)
    first = simulate(scenario_from_dict(raw)).records
    again = simulate(scenario_from_dict(raw)).records
    assert first.equals(again)
    ok = first[first["status"] == "ok"]
    tx = (ok["tx_end_s"] - ok["tx_start_s"]).groupby(ok["group"]).median()
    assert tx[1] > 3 * tx[0]                      # the far group sends at a fifth of the rate
    # with FER 0.2 and one retry an MPDU is lost with 0.04: 17 MPDUs per payload, and an
    # A-MPDU fails only when all its MPDUs are lost, so drops are rare but retries are common
    energy = ok["radio_tx_j"] / 1.28              # seconds on the air, retransmissions included
    solo = ok["payload_bytes"] * 8 / pd.Series(np.where(ok["group"] == 0, 65e6, 13e6), index=ok.index)
    assert (energy > solo).all()
    assert (energy.groupby(ok["group"]).median() / solo.groupby(ok["group"]).median() > 1.1).all()


def test_csma_section_errors_name_the_field() -> None:
    raw = cell_scenario(cw_min=16)
    with pytest.raises(ConfigError, match=r"link\.csma\.cw_min"):
        scenario_from_dict(raw)
    with pytest.raises(ConfigError, match=r"link\.csma\.frame_error_rate"):
        scenario_from_dict(cell_scenario(frame_error_rate=1.5))
    with pytest.raises(ConfigError, match=r"link\.csma\.standard"):
        scenario_from_dict(cell_scenario(standard="802.11b"))

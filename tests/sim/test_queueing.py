"""The simulator against queueing theory.

Traffic is Poisson pooled from many nodes; tolerances are batch-means confidence intervals
(30 batches, 3.3 standard errors, about 99.9%) around the simulated mean, so they shrink with
the number of requests rather than being tuned to a result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import in_window, summarize
from testbed.sim import simulate

S = 0.001            # mean service time on the station under test (1 ms)
PAYLOAD = 1000.0     # bytes; at 1 MB/s one payload takes S on the air


def pooled(rho: float, payload: object, model: str = "shared_fifo", duration: float = 150.0, nodes: int = 50,
           server: dict | None = None, datarate: str = "1 MB/s", seed: int = 11) -> dict:
    lam = rho / S
    return {
        "name": "mm1", "seed": seed, "duration": f"{duration} s", "warmup": "5 s", "drain": "5 s",
        "fleet": [{"count": nodes, "device": "pi4b", "payload": payload,
                   "arrivals": {"kind": "poisson", "rate": f"{lam / nodes}/s"}}],
        "link": {"model": model, "datarate": datarate},
        "server": server or {"device": "h100", "batching": {"max_batch": 256},
                             "service": {"table": {1: "1 us"}}},
        "workload": {"result": "0 B"},
    }


def batch_mean_ci(created: np.ndarray, values: np.ndarray, batches: int = 30, z: float = 3.3) -> tuple[float, float]:
    order = np.argsort(created)
    means = np.array([b.mean() for b in np.array_split(values[order], batches)])
    return float(values.mean()), z * float(means.std(ddof=1)) / math.sqrt(batches)


def station_time(raw: dict, start: str, end: str, ahead: bool = True) -> tuple[float, float, int]:
    result = simulate(scenario_from_dict(raw), ahead=ahead)
    df = in_window(result.records, result.window)
    df = df[df["status"] == "ok"]
    mean, half = batch_mean_ci(df["created_s"].to_numpy(), (df[end] - df[start]).to_numpy())
    return mean, half, len(df)


@pytest.mark.parametrize("ahead", [True, False], ids=["front", "events"])
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_on_shared_fifo(rho: float, ahead: bool) -> None:
    """The uplink computed ahead (sim/front.py) and driven by events are each an M/M/1 station."""
    mean, half, n = station_time(pooled(rho, {"dist": "exponential", "mean": f"{PAYLOAD} B"}),
                                 "encode_end_s", "tx_end_s", ahead)
    theory = S / (1 - rho)
    assert n > 50_000
    assert abs(mean - theory) < half, (mean, theory, half)


def test_md1_pollaczek_khinchine_on_shared_fifo() -> None:
    rho = 0.7
    mean, half, _ = station_time(pooled(rho, f"{PAYLOAD} B"), "encode_end_s", "tx_end_s")
    lam = rho / S
    theory = S + lam * S * S / (2 * (1 - rho))  # P-K with E[S^2] = S^2
    assert abs(mean - theory) < half, (mean, theory, half)


@pytest.mark.parametrize("payload", [
    {"dist": "uniform", "low": "0 B", "high": f"{2 * PAYLOAD} B"},
    {"dist": "lognormal", "mean": f"{PAYLOAD} B", "sigma": 1.0},
])
def test_mg1_processor_sharing_on_fair_share(payload: object) -> None:
    rho = 0.6
    mean, half, _ = station_time(pooled(rho, payload, model="fair_share"), "encode_end_s", "tx_end_s")
    theory = S / (1 - rho)  # M/G/1-PS: insensitive to the service distribution
    assert abs(mean - theory) < half, (mean, theory, half)


def test_server_with_max_batch_one_is_mg1() -> None:
    rho = 0.75
    server = {"device": "h100", "batching": {"max_batch": 1, "max_delay": "0 s"},
              "service": {"dist": "uniform", "low": "0.5 ms", "high": "1.5 ms"}}
    raw = pooled(rho, "1 kB", server=server, datarate="1 TB/s")
    mean, half, _ = station_time(raw, "queued_s", "batch_end_s")
    es2 = (0.0005**2 + 0.0005 * 0.0015 + 0.0015**2) / 3
    theory = S + (rho / S) * es2 / (2 * (1 - rho))
    assert abs(mean - theory) < half, (mean, theory, half)


@pytest.mark.parametrize("ahead", [True, False], ids=["front", "events"])
def test_littles_law_and_utilisation_on_every_station(ahead: bool) -> None:
    raw = pooled(0.6, {"dist": "exponential", "mean": f"{PAYLOAD} B"}, duration=100.0)
    raw["fleet"][0].update(head={"dist": "exponential", "mean": "30 ms"}, encode="5 ms")
    raw["server"] = {"device": "h100", "batching": {"max_batch": 8, "max_delay": "2 ms"},
                     "service": {"table": {1: "1 ms", 8: "3 ms"}}}
    raw["workload"] = {"result": "200 B"}
    raw["link"]["latency"] = "1 ms"
    result = simulate(scenario_from_dict(raw), ahead=ahead)
    df = result.records
    t0, t1 = result.window
    spans = {"node": ("created_s", "encode_end_s"), "uplink": ("encode_end_s", "tx_end_s"),
             "server": ("queued_s", "batch_end_s"), "downlink": ("batch_end_s", "downlink_end_s")}
    for station, (start, end) in spans.items():
        entered = df[(df[start] >= t0) & (df[start] < t1)]
        lam = len(entered) / (t1 - t0)
        w = float((entered[end] - entered[start]).mean())
        level = result.levels[station]["in_station"]
        assert level == pytest.approx(lam * w, rel=0.03), station
    lam = 0.6 / S
    assert result.levels["uplink"]["busy"] == pytest.approx(0.6, rel=0.03)
    summary = summarize(df, result.window, result.levels, nodes=50)
    assert summary["node_utilisation"] == pytest.approx(lam / 50 * 0.035, rel=0.05)
    assert summary["link_utilisation"] == pytest.approx(0.6, rel=0.03)


def test_saturated_server_drops_at_the_bound() -> None:
    server = {"device": "h100", "batching": {"max_batch": 1}, "service": {"table": {1: "2 ms"}},
              "queue_capacity": 50}
    raw = pooled(1.0, "1 kB", server=server, datarate="1 TB/s", duration=40.0)  # 1000/s into a 500/s GPU
    result = simulate(scenario_from_dict(raw))
    summary = summarize(result.records, result.window, result.levels)
    assert summary["throughput_per_s"] == pytest.approx(500, rel=0.02)
    assert summary["dropped_at_server"] / summary["requests"] == pytest.approx(0.5, abs=0.02)
    assert summary["gpu_utilisation"] == pytest.approx(1.0, abs=0.01)
    assert result.levels["server"]["peak_in_station"] <= 51


def test_saturated_link_queue_grows_without_bound() -> None:
    raw = pooled(1.5, "1 kB", duration=20.0)
    raw["drain"] = "0.5 s"
    result = simulate(scenario_from_dict(raw))
    summary = summarize(result.records, result.window, result.levels)
    assert summary["throughput_per_s"] == pytest.approx(1000, rel=0.03)
    assert result.levels["uplink"]["busy"] == pytest.approx(1.0, abs=0.001)
    backlog = (1500 - 1000) * 20.0 - 1000 * 0.5  # left at the end of the drain
    left = int((result.records["status"] == "in_flight").sum())
    assert left == pytest.approx(backlog, rel=0.05)
    assert result.levels["uplink"]["peak_in_station"] == pytest.approx(500 * 20.0, rel=0.05)


def test_fifo_link_waiting_is_the_queue_behind_the_transmission() -> None:
    rho = 0.7
    result = simulate(scenario_from_dict(pooled(rho, f"{PAYLOAD} B", duration=60.0)))
    lam = rho / S
    wq = lam * S * S / (2 * (1 - rho))  # M/D/1 mean wait
    assert result.levels["uplink"]["waiting"] == pytest.approx(lam * wq, rel=0.1)

"""Several cells and servers (testbed.sim.topology) against the one-cell simulator, queueing theory
and an independent model.

Tolerances are batch-means confidence intervals (30 batches, 3.3 standard errors, about 99.9%) around
the simulated mean, as in test_queueing.py; exact comparisons are exact.
"""

from __future__ import annotations

import copy
import heapq
import math

import numpy as np
import pandas as pd
import pytest

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import in_window
from testbed.errors import ConfigError
from testbed.sim import simulate

TIME_COLUMNS = ["created_s", "head_end_s", "encode_end_s", "tx_start_s", "tx_end_s", "server_arrival_s",
                "queued_s", "batch_ready_s", "batch_start_s", "batch_end_s", "downlink_start_s",
                "downlink_end_s", "finished_s", "payload_bytes", "result_bytes"]


def batch_mean_ci(created: np.ndarray, values: np.ndarray, batches: int = 30, z: float = 3.3,
                  q: float | None = None) -> tuple[float, float]:
    """The mean (or ``q``-th percentile) of ``values`` and the half-width of its batch-means interval
    (batches in creation order)."""
    order = np.argsort(created, kind="stable")
    stat = (lambda v: float(np.mean(v))) if q is None else (lambda v: float(np.percentile(v, q)))
    means = np.array([stat(b) for b in np.array_split(values[order], batches)])
    return stat(values), z * float(means.std(ddof=1)) / math.sqrt(batches)


def one_cell(seed: int = 3) -> dict:
    """A one-link, one-server scenario with random draws on every station."""
    return {
        "name": "one", "seed": seed, "duration": "20 s", "warmup": "1 s", "drain": "5 s",
        "fleet": [{"name": "cams", "count": 6, "device": "pi4b",
                   "payload": {"dist": "exponential", "mean": "2 kB"},
                   "head": {"dist": "exponential", "mean": "5 ms"}, "encode": "1 ms",
                   "arrivals": {"kind": "poisson", "rate": "8/s"}}],
        "link": {"model": "shared_fifo", "datarate": "1 MB/s", "latency": {"dist": "uniform", "low": "1 ms", "high": "3 ms"}},
        "server": {"device": "h100", "batching": {"max_batch": 4, "max_delay": "2 ms"},
                   "service": {"dist": "uniform", "low": "2 ms", "high": "6 ms"}, "decode": "1 ms"},
        "workload": {"result": {"dist": "uniform", "low": "100 B", "high": "300 B"}},
    }


def as_topology(raw: dict) -> dict:
    """The same scenario written as a topology of one cell and one server."""
    out = copy.deepcopy(raw)
    out["cells"] = [{"name": "a", **out.pop("link")}]
    out["servers"] = [{"name": "x", **out.pop("server")}]
    out["fleet"][0]["cell"] = "a"
    return out


def test_one_cell_topology_gives_the_one_link_records() -> None:
    plain = simulate(scenario_from_dict(one_cell())).records
    topo = simulate(scenario_from_dict(as_topology(one_cell()))).records
    assert len(plain) > 500 and (plain["status"] == "ok").mean() > 0.9
    pd.testing.assert_frame_equal(plain.drop(columns="server"), topo.drop(columns="server"))
    sent = plain["status"] == "ok"
    assert (plain.loc[sent, "server"] == 0).all() and (topo.loc[sent, "server"] == 0).all()
    assert (plain["cell"] == 0).all()


def trace_group(name: str, times: np.ndarray, nodes: np.ndarray, cell: str, count: int) -> dict:
    return {"name": name, "count": count, "device": "pi4b", "cell": cell, "payload": "1500 B",
            "head": "4 ms", "encode": "1 ms",
            "arrivals": {"kind": "trace", "trace_times": times.tolist(), "trace_nodes": nodes.tolist()}}


def poisson_trace(seed: int, rate: float, duration: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    times = np.cumsum(r.exponential(1 / rate, int(rate * duration * 1.3)))
    times = times[times < duration]
    return times, r.integers(0, nodes, len(times))


CELL_A = {"name": "a", "model": "shared_fifo", "datarate": "600 kB/s", "latency": "2 ms"}
CELL_B = {"name": "b", "model": "fair_share", "datarate": "400 kB/s", "latency": "5 ms",
          "downlink": {"datarate": "100 kB/s"}}
SERVER_X = {"name": "x", "device": "h100", "batching": {"max_batch": 4, "max_delay": "3 ms"},
            "service": {"table": {1: "4 ms", 4: "10 ms"}}}
SERVER_Y = {"name": "y", "device": "h100-cudagraphs", "gpus": 2, "service": {"per_batch": "3 ms", "per_item": "2 ms"},
            "decode": "1 ms"}


def test_two_cells_with_static_assignment_equal_two_separate_runs() -> None:
    ta, na = poisson_trace(1, 250.0, 20.0, 5)
    tb, nb = poisson_trace(2, 160.0, 20.0, 4)
    common = {"seed": 5, "duration": "20 s", "drain": "5 s", "workload": {"result": "200 B"}}
    both = {**common, "fleet": [trace_group("ga", ta, na, "a", 5), trace_group("gb", tb, nb, "b", 4)],
            "cells": [CELL_A, CELL_B], "servers": [SERVER_X, SERVER_Y],
            "assignment": {"policy": "static", "static": {"a": "x", "gb": "y"}}}
    joint = simulate(scenario_from_dict(both)).records
    for g, (cell, server, times) in enumerate(((CELL_A, SERVER_X, ta), (CELL_B, SERVER_Y, tb))):
        group = dict(both["fleet"][g])
        del group["cell"]
        alone = {**common, "fleet": [group],
                 "link": {k: v for k, v in cell.items() if k != "name"},
                 "server": {k: v for k, v in server.items() if k != "name"}}
        single = simulate(scenario_from_dict(alone)).records
        part = joint[joint["group"] == g].reset_index(drop=True)
        assert len(part) == len(single) == len(times)
        assert (part["cell"] == g).all()
        assert (part.loc[part["status"] == "ok", "server"] == g).all()
        assert list(part["status"]) == list(single["status"])
        assert (single["status"] == "ok").all()
        for col in TIME_COLUMNS:
            np.testing.assert_allclose(part[col], single[col], rtol=0, atol=1e-12, err_msg=col)
        for col in ("frame", "batch_size", "gpu"):
            assert list(part[col]) == list(single[col]), col
        assert list(part["node"] - 5 * g) == list(single["node"])  # group b's nodes come after a's 5


S_LOW, S_HIGH = 0.004, 0.016   # server service time, uniform (mean 10 ms)


def two_servers(policy: str, rate: float, duration: float, seed: int = 21) -> dict:
    """Poisson traffic at ``rate`` through one instant cell to two one-GPU servers (no batching)."""
    server = {"device": "h100", "batching": {"max_batch": 1},
              "service": {"dist": "uniform", "low": f"{S_LOW} s", "high": f"{S_HIGH} s"}}
    return {
        "name": "two", "seed": seed, "duration": f"{duration} s", "warmup": "5 s", "drain": "5 s",
        "fleet": [{"count": 50, "device": "pi4b", "payload": "0 B", "cell": "a",
                   "arrivals": {"kind": "poisson", "rate": f"{rate / 50}/s"}}],
        "cells": [{"name": "a", "datarate": "1 GB/s"}],
        "servers": [{"name": "x", **server}, {"name": "y", **server}],
        "assignment": {"policy": policy},
        "workload": {"result": "0 B"},
    }


def sojourns(raw: dict) -> pd.DataFrame:
    result = simulate(scenario_from_dict(raw))
    df = in_window(result.records, result.window)
    assert (df["status"] == "ok").all()
    return df.assign(sojourn=df["batch_end_s"] - df["server_arrival_s"])


def test_random_assignment_is_two_mg1_queues_at_half_the_rate() -> None:
    lam = 120.0                          # total; each server sees 60/s, rho = 0.6
    df = sojourns(two_servers("random", lam, 400.0, seed=3))
    es = (S_LOW + S_HIGH) / 2
    es2 = (S_LOW**2 + S_LOW * S_HIGH + S_HIGH**2) / 3
    half_rate = lam / 2
    theory = es + half_rate * es2 / (2 * (1 - half_rate * es))   # Pollaczek-Khinchine
    assert len(df) > 45_000
    for s in (0, 1):
        part = df[df["server"] == s]
        assert len(part) / len(df) == pytest.approx(0.5, abs=0.01)
        mean, half = batch_mean_ci(part["created_s"].to_numpy(), part["sojourn"].to_numpy())
        assert abs(mean - theory) < half, (s, mean, theory, half)


def independent_model(policy: str, lam: float, n: int, seed: int) -> np.ndarray:
    """Sojourn times of ``n`` Poisson arrivals at two FIFO one-server queues, written without the
    simulator: each queue's departures follow from Lindley's recursion; JSQ sends an arrival to the
    queue with fewer requests present (departures after it), ties at random."""
    r = np.random.default_rng(seed)
    arrivals = np.cumsum(r.exponential(1 / lam, n))
    service = r.uniform(S_LOW, S_HIGH, n)
    coin = r.integers(0, 2, n)
    last = [0.0, 0.0]
    present: list[list[float]] = [[], []]  # departure times of the requests at each queue (min-heaps)
    out = np.empty(n)
    for k in range(n):
        t = arrivals[k]
        for q in present:
            while q and q[0] <= t:
                heapq.heappop(q)
        if policy == "random":
            s = int(coin[k])
        else:
            a, b = len(present[0]), len(present[1])
            s = 0 if a < b else 1 if b < a else int(coin[k])
        depart = max(t, last[s]) + service[k]
        last[s] = depart
        heapq.heappush(present[s], depart)
        out[k] = depart - t
    return out


def test_jsq_beats_random_by_what_an_independent_model_predicts() -> None:
    lam, duration = 150.0, 400.0
    sim = {p: sojourns(two_servers(p, lam, duration)) for p in ("random", "jsq")}
    model = {p: independent_model(p, lam, 400_000, seed=9)[20_000:] for p in ("random", "jsq")}
    for p in ("random", "jsq"):
        df = sim[p]
        mean, half = batch_mean_ci(df["created_s"].to_numpy(), df["sojourn"].to_numpy())
        ref = model[p]
        ref_mean, ref_half = batch_mean_ci(np.arange(len(ref), dtype=float), ref)
        assert abs(mean - ref_mean) < half + ref_half, (p, mean, ref_mean, half, ref_half)
        p95, p95_half = batch_mean_ci(df["created_s"].to_numpy(), df["sojourn"].to_numpy(), q=95)
        ref_p95, ref_p95_half = batch_mean_ci(np.arange(len(ref), dtype=float), ref, q=95)
        assert abs(p95 - ref_p95) < p95_half + ref_p95_half, (p, p95, ref_p95, p95_half, ref_p95_half)
    gain = sim["random"]["sojourn"].mean() / sim["jsq"]["sojourn"].mean()
    ref_gain = model["random"].mean() / model["jsq"].mean()
    assert gain > 1.3 and gain == pytest.approx(ref_gain, rel=0.1), (gain, ref_gain)
    assert np.percentile(sim["jsq"]["sojourn"], 95) < 0.8 * np.percentile(sim["random"]["sojourn"], 95)


@pytest.mark.parametrize("policy", ["round_robin", "power_of_two"])
def test_load_aware_and_cyclic_policies_sit_between_random_and_jsq(policy: str) -> None:
    lam, duration = 150.0, 150.0
    means = {p: sojourns(two_servers(p, lam, duration))["sojourn"].mean() for p in ("random", policy, "jsq")}
    assert means["jsq"] <= means[policy] * 1.02 and means[policy] < means["random"], means


def test_backhaul_trace_by_hand() -> None:
    raw = {
        "seed": 0, "duration": "0.5 s", "drain": "1 s",
        "fleet": [{"name": "n", "count": 2, "device": "pi4b", "cell": "a", "payload": "1000 B", "head": "10 ms",
                   "encode": "0 s", "arrivals": {"kind": "periodic", "rate": "1/s", "random_phase": False}}],
        "cells": [{"name": "a", "datarate": "1 MB/s", "latency": "1 ms"}],
        "servers": [{"name": "x", "device": "h100", "service": {"table": {1: "3 ms"}}},
                    {"name": "y", "device": "h100", "service": {"table": {1: "3 ms"}}}],
        "backhaul": {"datarate": "200 kB/s", "latency": "2 ms", "shared": "per_cell"},
        "assignment": {"policy": "round_robin"},
        "workload": {"result": "100 B"},
    }
    df = simulate(scenario_from_dict(raw)).records
    # node 0: air 10-11 ms, +1 ms, backhaul 12-17 ms, +2 ms -> server x 19 ms, batch 19-22 ms,
    #   backhaul back 22-22.5 ms, +2 ms, downlink 24.5-24.6 ms, +1 ms
    # node 1: air 11-12 ms, +1 ms, waits for the line: 17-22 ms, +2 ms -> server y 24 ms, batch 24-27 ms,
    #   backhaul back 27-27.5, +2 ms, downlink 29.5-29.6, +1 ms
    cols = ["tx_start_s", "tx_end_s", "server_arrival_s", "batch_start_s", "batch_end_s", "downlink_start_s",
            "downlink_end_s", "finished_s"]
    expected = [[10, 11, 19, 19, 22, 24.5, 24.6, 25.6], [11, 12, 24, 24, 27, 29.5, 29.6, 30.6]]
    for rid, times in enumerate(expected):
        assert df.loc[rid, cols].to_numpy(dtype=float) * 1e3 == pytest.approx(times, abs=1e-9)
    assert list(df["server"]) == [0, 1]
    raw["backhaul"]["shared"] = "per_server"  # one line each: node 1 no longer waits behind node 0
    df = simulate(scenario_from_dict(raw)).records
    assert df.loc[1, "server_arrival_s"] * 1e3 == pytest.approx(20.0)


def test_local_fallback_runs_on_the_node_when_the_servers_are_busy() -> None:
    raw = two_servers("jsq", 300.0, 40.0)     # rho 1.5 per server: the queues would grow without bound
    raw["assignment"]["fallback"] = {"local": "50 ms", "queue": 4}
    df = sojourns(raw)
    local = df["server"] == -1
    assert 0.2 < local.mean() < 0.6
    assert (df.loc[local, "payload_bytes"] == 0).all()
    on_cpu = df["finished_s"] - df["head_start_s"]  # the node's CPU runs the whole model for 50 ms
    assert on_cpu[local].to_numpy() == pytest.approx(0.05)
    assert df.loc[local, "tx_start_s"].isna().all()
    # a node offloads only when some server has fewer than 4 outstanding, so the queues stay short (a
    # node that decides twice at one instant, after a local run, may add one more than the threshold)
    served = df[~local]
    assert served["sojourn"].max() < 6 * S_HIGH
    assert served["sojourn"].mean() < 3 * S_HIGH


def test_rtt_fallback_recovers_when_round_trips_are_forgotten() -> None:
    raw = two_servers("random", 100.0, 30.0)
    raw["cells"][0]["latency"] = "150 ms"
    raw["assignment"]["fallback"] = {"local": "20 ms", "rtt": "100 ms", "rtt_window": "1 s"}
    df = sojourns(raw)
    local = df["server"] == -1
    # every round trip exceeds the threshold, so a node offloads only when it has no recent one
    assert 0.3 < local.mean() < 0.95 and (~local).sum() > 100


def test_topology_errors_name_the_field() -> None:
    raw = two_servers("jsq", 10.0, 10.0)
    bad = copy.deepcopy(raw)
    bad["assignment"]["policy"] = "fastest"
    with pytest.raises(ConfigError, match=r"assignment\.policy"):
        simulate(scenario_from_dict(bad))
    bad = copy.deepcopy(raw)
    bad["cells"][0]["model"] = "lte"
    with pytest.raises(ConfigError, match=r"cells\.0\.model"):
        simulate(scenario_from_dict(bad))


def test_per_cell_and_per_server_summaries() -> None:
    from testbed.run.runner import run_scenario, station_servers

    raw = two_servers("jsq", 120.0, 20.0)
    raw["servers"][1]["gpus"] = 2
    streamed = run_scenario(scenario_from_dict(raw)).summary
    held = run_scenario(scenario_from_dict(raw), stream=False)
    assert streamed["by_server"] == held.summary["by_server"] and streamed["by_cell"] == held.summary["by_cell"]
    by_server = {row["server"]: row for row in held.summary["by_server"]}
    [cell] = held.summary["by_cell"]
    assert [row["server"] for row in held.summary["by_server"]] == ["x", "y"] and cell["cell"] == "a"
    assert set(held.summary["by_server"][0]) == set(held.summary["by_server"][1])  # one schema
    df = in_window(held.records, held.sim.window)
    assert cell["requests"] == len(df) == held.summary["requests"]
    assert by_server["x"]["requests"] + by_server["y"]["requests"] == len(df)
    assert by_server["y"]["share"] > 0.5  # two GPUs: JSQ per GPU sends it more
    x = df[df["server"] == 0]
    assert by_server["x"]["latency_mean_s"] == pytest.approx(float((x["finished_s"] - x["created_s"]).mean()))
    assert by_server["x"]["mean_batch_size"] == 1.0
    busy = sum(by_server[s]["gpu_utilisation"] * g for s, g in (("x", 1), ("y", 2)))
    assert busy == pytest.approx(held.sim.levels["server"]["busy"])
    assert station_servers(held.scenario)["server"] == 3
    assert "by_cell" not in run_scenario(scenario_from_dict(one_cell())).summary


def test_prepare_and_the_emulator_name_the_topology_field(tmp_path) -> None:
    from testbed.config.resolve import resolve
    from testbed.emulate.compute import check_emulable
    from testbed.run.prepare import prepare_dict

    bad = two_servers("jsq", 10.0, 10.0)
    bad["cells"] = [{"name": "a", "datarate": "1 MB/s"}, {"name": "b", "datarate": "1 MB/s", "model": "lte"}]
    with pytest.raises(ConfigError, match=r"cells\.1\.model"):
        prepare_dict(bad)
    bad["cells"][1] = {"name": "b", "datarate": "1 MB/s", "model": "csma",
                       "rate_trace": {"time_s": [0], "rate": ["1 MB/s"]}}
    with pytest.raises(ConfigError, match=r"cells\.1\.rate_trace"):
        prepare_dict(bad)
    with pytest.raises(ConfigError, match=r"^servers: got \['x', 'y'\]; one link and one server"):
        check_emulable(resolve(scenario_from_dict(two_servers("jsq", 10.0, 10.0))))
    with pytest.raises(ConfigError, match=r"^cells: got \['a'\]"):
        check_emulable(resolve(scenario_from_dict(as_topology(one_cell()))))
    check_emulable(resolve(scenario_from_dict(one_cell())))


def test_a_packet_trace_delivers_exactly_its_opportunities() -> None:
    raw = {
        "seed": 0, "duration": "2 s", "drain": "30 s",
        "fleet": [{"name": "n", "count": 3, "device": "pi4b", "payload": {"dist": "uniform", "low": "1 kB", "high": "9 kB"},
                   "arrivals": {"kind": "poisson", "rate": "40/s"}}],
        "link": {"datarate": "1 MB/s",
                 "packet_trace": {"ms": [1, 1, 2, 4, 4, 4, 5, 7, 9, 10], "mtu": "1500 B"},
                 "downlink": {"packet_trace": {"ms": [3, 6, 9], "mtu": "500 B"}}},
        "server": {"device": "h100", "service": "1 ms"},
        "workload": {"result": "300 B"},
    }
    df = simulate(scenario_from_dict(raw)).records
    assert (df["status"] == "ok").all() and len(df) > 150
    up = [(m + 10 * k) / 1e3 for k in range(5000) for m in raw["link"]["packet_trace"]["ms"]]
    down = [(m + 9 * k) / 1e3 for k in range(10000) for m in (3, 6, 9)]
    for end_col, size_col, times, mtu in (("tx_end_s", "payload_bytes", up, 1500), ("downlink_end_s", "result_bytes", down, 500)):
        ends = df[end_col].to_numpy()
        slots = np.searchsorted(np.round(times, 9), np.round(ends, 9))
        assert np.allclose(np.asarray(times)[slots], ends, atol=1e-12, rtol=0)  # every end is an opportunity
        # bytes delivered by each end never exceed the opportunities up to it, and a backlog uses them all
        order = np.argsort(ends, kind="stable")
        sent = np.cumsum(df[size_col].to_numpy()[order])
        k = np.searchsorted(np.round(times, 9), np.round(ends[order], 9), side="right")
        assert (sent <= k * mtu + 1e-6).all()
        # and each transmission ends where MTU-sized opportunities from its start, in order, carry its
        # last byte (the rest of an opportunity goes to a transmission starting at that instant)
        start_col = "tx_start_s" if end_col == "tx_end_s" else "downlink_start_s"
        rows = df.sort_values([start_col, end_col], kind="stable")  # one on the air at a time
        opp = np.asarray(times)
        nxt, left, left_at = 0, 0.0, -1.0
        for start, size, end in zip(rows[start_col], rows[size_col], rows[end_col]):
            if left > 0 and abs(left_at - start) <= 1e-9:
                use = min(left, size)
                left, size = left - use, size - use
                if size <= 0:
                    assert end == pytest.approx(start, abs=1e-12)
                    continue
            nxt = max(nxt, int(np.searchsorted(opp, start - 1e-12)))
            m = math.ceil(size / mtu - 1e-12)
            assert end == pytest.approx(opp[nxt + m - 1], abs=1e-12)
            nxt += m
            left, left_at = m * mtu - size, end
    # the same scenario at a constant rate gives different (rate-based) times
    flat = copy.deepcopy(raw)
    del flat["link"]["packet_trace"]
    assert not np.allclose(simulate(scenario_from_dict(flat)).records["tx_end_s"], df["tx_end_s"])


def test_packet_trace_needs_shared_fifo_and_reads_mahimahi_files(tmp_path) -> None:
    from testbed.run.prepare import prepare_dict

    (tmp_path / "up.trace").write_text("1\n1\n3\n\n5\n")
    raw = two_servers("jsq", 10.0, 10.0)
    raw["cells"][0]["packet_trace"] = {"file": "up.trace"}
    res = prepare_dict(raw, tmp_path)
    assert res.scenario.cells[0].packet_trace.ms == (1, 1, 3, 5)
    assert res.scenario.link.packet_trace.ms == (1, 1, 3, 5)
    (tmp_path / "bad.trace").write_text("1\nabc\n")
    raw["cells"][0]["packet_trace"] = {"file": "bad.trace"}
    with pytest.raises(ConfigError, match=r"cells\.0\.packet_trace\.file.*line 2"):
        prepare_dict(raw, tmp_path)
    raw["cells"][0]["packet_trace"] = {"ms": [1, 2]}
    raw["cells"][0]["model"] = "fair_share"
    with pytest.raises(ConfigError, match=r"cells\.0\.packet_trace"):
        simulate(scenario_from_dict(raw))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(cells=[]), r"^cells: got \[\]"),
    (lambda r: r.update(cells="a"), r"^cells: got 'a'"),
    (lambda r: r.update(servers={"x": 1}), r"^servers: got \{'x': 1\}"),
    (lambda r: r.update(link={"datarate": "1 MB/s"}), r"^link: .*either 'link' \(one link\) or 'cells'"),
    (lambda r: r["cells"][0].update(datarate="fast"), r"^cells\.0\.datarate"),
    (lambda r: r["assignment"].update(static={"a": "x"}), r"^assignment\.static: .*no static map with policy 'jsq'"),
])
def test_topology_lists_are_reported_where_they_are_wrong(change, message) -> None:
    raw = two_servers("jsq", 10.0, 10.0)
    change(raw)
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(raw)

"""Exact event traces of tiny deterministic scenarios, computed by hand."""

import pytest

from testbed.config.load import scenario_from_dict
from testbed.sim import simulate


def two_nodes(fast_second: bool) -> dict:
    group = {"device": "pi4b", "arrivals": {"kind": "periodic", "rate": "1/s", "random_phase": False},
             "head": "10 ms", "encode": "5 ms", "payload": "1000 B", "count": 1}
    second = dict(group, datarate="1 MB/s") if fast_second else dict(group)
    return {
        "name": "trace", "seed": 0, "duration": "0.5 s", "drain": "1 s",
        "fleet": [dict(group, name="a"), dict(second, name="b")],
        "link": {"model": "shared_fifo", "datarate": "100 kB/s", "latency": "1 ms"},
        "server": {"device": "h100", "batching": {"max_batch": 2, "max_delay": "4 ms"},
                   "service": {"table": {1: "3 ms", 2: "4 ms"}}},
        "workload": {"result": "100 B"},
    }


COLUMNS = ["created_s", "head_end_s", "encode_end_s", "tx_start_s", "tx_end_s", "server_arrival_s",
           "batch_ready_s", "batch_start_s", "batch_end_s", "downlink_start_s", "downlink_end_s", "finished_s"]


def test_fifo_link_and_delay_timer_trace() -> None:
    df = simulate(scenario_from_dict(two_nodes(fast_second=False))).records
    assert list(df["status"].astype(str)) == ["ok", "ok"]
    # node a: tx 15-25 ms, server 26 ms, waits max_delay alone -> batch 30-33, downlink 33-34, +1 ms
    # node b: queued behind a on the air 25-35 ms, server 36 ms, batch 40-43, downlink 43-44, +1 ms
    expected = {
        0: [0, 10, 15, 15, 25, 26, 26, 30, 33, 33, 34, 35],
        1: [0, 10, 15, 25, 35, 36, 36, 40, 43, 43, 44, 45],
    }
    for rid, times in expected.items():
        assert df.loc[rid, COLUMNS].to_numpy() * 1e3 == pytest.approx(times, abs=1e-9)
    assert list(df["batch_size"]) == [1, 1]


def test_batch_fills_before_the_timer_trace() -> None:
    df = simulate(scenario_from_dict(two_nodes(fast_second=True))).records
    # b sends at 1 MB/s: air 25-26 ms, server 27 ms fills the batch of 2 (ready since a at 26 ms)
    # batch 27-31 ms; downlink FIFO at the 100 kB/s downlink: a 31-32, b 32-33; +1 ms each
    expected = {
        0: [0, 10, 15, 15, 25, 26, 26, 27, 31, 31, 32, 33],
        1: [0, 10, 15, 25, 26, 27, 26, 27, 31, 32, 33, 34],
    }
    for rid, times in expected.items():
        assert df.loc[rid, COLUMNS].to_numpy() * 1e3 == pytest.approx(times, abs=1e-9)
    assert list(df["batch_size"]) == [2, 2]


def test_node_queue_drop_policies() -> None:
    raw = two_nodes(False)
    raw["fleet"] = [{"device": "pi4b", "count": 1, "payload": "10 B", "head": "1 s", "encode": "0 s",
                     "arrivals": {"kind": "periodic", "rate": "4/s", "random_phase": False},
                     "queue": {"capacity": 1, "policy": "drop_newest"}}]
    raw["duration"], raw["drain"] = "1 s", "5 s"
    df = simulate(scenario_from_dict(raw)).records
    # frames at 0, .25, .5, .75: frame 0 in service, frame 1 waits, frames 2 and 3 are dropped
    assert list(df["status"].astype(str)) == ["ok", "ok", "dropped_at_node", "dropped_at_node"]
    raw["fleet"][0]["queue"]["policy"] = "drop_oldest"
    df = simulate(scenario_from_dict(raw)).records
    # each newcomer pushes out the waiting frame: 1 dropped at .5, 2 dropped at .75, 3 served
    assert list(df["status"].astype(str)) == ["ok", "dropped_at_node", "dropped_at_node", "ok"]
    assert df.loc[3, "head_start_s"] == pytest.approx(1.0)


def test_fair_share_splits_the_rate() -> None:
    raw = two_nodes(False)
    raw["link"]["model"] = "fair_share"
    df = simulate(scenario_from_dict(raw)).records
    # both start at 15 ms and share 100 kB/s: 2000 B take 20 ms together -> both end at 35 ms
    assert df["tx_start_s"].tolist() == pytest.approx([0.015, 0.015])
    assert df["tx_end_s"].tolist() == pytest.approx([0.035, 0.035])


def test_server_queue_bound_and_timeout() -> None:
    raw = two_nodes(False)
    raw["fleet"][0]["count"] = 3
    raw["link"]["datarate"] = "1 GB/s"
    raw["link"]["latency"] = "0 s"
    raw["server"] = {"device": "h100", "batching": {"max_batch": 1}, "service": {"table": {1: "100 ms"}},
                     "queue_capacity": 2, "timeout": "50 ms"}
    df = simulate(scenario_from_dict(raw)).records
    status = df["status"].astype(str).tolist()
    # four requests reach the server together: one served, two queue, one dropped (capacity 2);
    # the two queued time out after 50 ms while the GPU is still busy
    assert sorted(status) == ["dropped_at_server", "ok", "timed_out", "timed_out"]
    timed = df[df["status"] == "timed_out"]
    assert (timed["finished_s"] - timed["queued_s"]).tolist() == pytest.approx([0.05, 0.05])

"""The front computed ahead of the clock (:mod:`testbed.sim.front`) against the event-driven nodes and
uplink it replaces (``Simulation(..., ahead=False)``).

Where the front fits, a run must be the same run: every record column equal exactly (NaNs in the same
cells), the same frames per node and meta, every station level equal to rounding (1e-9 relative; the
front sums whole stays where the event path sums changes) and the peaks and open counts exactly. Also:
which scenarios the front takes, and that it schedules far fewer SimPy events than the event path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import simpy

from testbed.config.load import scenario_from_dict
from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS
from testbed.core.workload import Frame, SyntheticWorkload
from testbed.run.bench import BENCH_SCENARIO
from testbed.sim.world import SimResult, Simulation
from tests.conftest import base_scenario

SERVER = {"device": "h100", "batching": {"max_batch": 32, "max_delay": "5 ms"},
          "service": {"table": {1: "1 ms", 32: "4 ms"}}}
PERIODIC = {"kind": "periodic", "rate": "8/s", "random_phase": False}  # every node at 0, 0.125, 0.25, ...


def _group(count: int, arrivals: dict[str, Any], *, head: Any = "20 ms", encode: Any = "2 ms",
           payload: Any = "10 kB", **more: Any) -> dict[str, Any]:
    return {"name": "cams", "count": count, "device": "pi4b", "arrivals": arrivals, "head": head,
            "encode": encode, "payload": payload, **more}


def _scenario(fleet: list[dict[str, Any]], link: dict[str, Any], *, seed: int = 7, duration: str = "20 s",
              warmup: str = "2 s", drain: str = "5 s", **top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": "front", "seed": seed, "duration": duration, "warmup": warmup, "drain": drain,
                           "fleet": fleet, "link": link, "server": copy.deepcopy(SERVER)}
    raw.update(top)
    return raw


def bench(seed: int = 7) -> dict[str, Any]:
    """The bench scenario (1,000 nodes at 1/s) cut to 30 s."""
    return dict(copy.deepcopy(BENCH_SCENARIO), duration="30 s", seed=seed)


def busy_nodes(seed: int) -> dict[str, Any]:
    """50 nodes at 20/s, 22 ms of CPU a frame: each CPU 44% busy, so frames queue on their node."""
    return _scenario([_group(50, {"kind": "poisson", "rate": "20/s"})],
                     {"model": "shared_fifo", "datarate": "20 MB/s", "latency": "1 ms"}, seed=seed, duration="10 s")


def busy_uplink(seed: int) -> dict[str, Any]:
    """100 nodes at 1.8/s sending 10 kB (exponential) over 2 MB/s: the uplink 90% busy."""
    return _scenario([_group(100, {"kind": "poisson", "rate": "1.8/s"}, payload={"dist": "exponential", "mean": "10 kB"})],
                     {"model": "shared_fifo", "datarate": "2 MB/s", "latency": "1 ms"}, seed=seed, duration="30 s")


def cut_in_flight(seed: int) -> dict[str, Any]:
    """An overloaded uplink (about 1.5 times its capacity) and half a second of drain: the run ends with
    payloads queued, on the air and on the server."""
    return _scenario([_group(30, {"kind": "poisson", "rate": "5/s"}, payload={"dist": "exponential", "mean": "10 kB"})],
                     {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms"}, seed=seed, duration="10 s",
                     drain="0.5 s")


def groups(seed: int) -> dict[str, Any]:
    """Three groups with their own arrivals, head, encode, payloads and uplink rates, random latency
    and decode (the hop to the server drawn per request)."""
    fleet = [
        _group(10, {"kind": "poisson", "rate": "10/s"}, head="30 ms", encode="5 ms",
               payload={"dist": "exponential", "mean": "8 kB"}),
        dict(_group(20, {"kind": "periodic", "rate": "5/s", "jitter": "10 ms"},
                    head={"dist": "uniform", "low": "5 ms", "high": "15 ms"}, encode="1 ms",
                    payload={"dist": "uniform", "low": "1 kB", "high": "5 kB"}, datarate="500 kB/s"), name="drones"),
        dict(_group(5, {"kind": "poisson", "rate": "2/s"}, head="0 ms", encode="0 ms", payload="50 kB",
                    datarate="5 MB/s"), name="raw"),
    ]
    return _scenario(fleet, {"model": "shared_fifo", "datarate": "2 MB/s",
                             "latency": {"dist": "uniform", "low": "1 ms", "high": "2 ms"}}, seed=seed,
                     server={"device": "h100", "batching": {"max_batch": 8, "max_delay": "2 ms"},
                             "service": {"dist": "uniform", "low": "2 ms", "high": "6 ms"}, "decode": "1 ms"},
                     workload={"result": {"dist": "uniform", "low": "100 B", "high": "300 B"}})


def bounded(seed: int, policy: str, capacity: int) -> dict[str, Any]:
    """Overloaded nodes (20 ms of CPU a frame, exponential, at 40 frames/s) behind a bounded queue: frames
    are dropped at the node."""
    return _scenario([_group(20, {"kind": "poisson", "rate": "40/s"}, head={"dist": "exponential", "mean": "20 ms"},
                             queue={"capacity": capacity, "policy": policy})],
                     {"model": "shared_fifo", "datarate": "20 MB/s", "latency": "1 ms"}, seed=seed, duration="5 s",
                     drain="0.5 s")


def ties(latency: Any, **group: Any) -> dict[str, Any]:
    """20 nodes capturing at the same instants (periodic, no jitter, no random phase) with constant
    charges and payloads: equal CPU ends, equal hand-overs, deliveries at exact multiples of 1 ms."""
    return _scenario([_group(20, PERIODIC, **{"payload": "1 kB", **group})],
                     {"model": "shared_fifo", "datarate": "1 MB/s", "latency": latency}, duration="10 s")


# -- comparing two runs ---------------------------------------------------------------------------
def assert_same_levels(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> None:
    """Every level within 1e-9 relative (1e-12 absolute for levels at zero), peaks and open counts exact."""
    assert a.keys() == b.keys()
    for station in a:
        assert a[station].keys() == b[station].keys(), station
        for key, x in a[station].items():
            y = b[station][key]
            if key in ("peak_in_station", "open_at_end"):
                assert x == y, (station, key, x, y)
            else:
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (station, key, x, y)


def assert_same_run(a: SimResult, b: SimResult) -> None:
    pd.testing.assert_frame_equal(a.records, b.records, check_exact=True)
    assert a.frames == b.frames
    assert a.meta == b.meta
    assert a.end_time == b.end_time
    assert_same_levels(a.levels, b.levels)


def both(raw: dict[str, Any]) -> tuple[SimResult, SimResult]:
    """The run with the front and the same run event-driven (the front must have been taken)."""
    sc = scenario_from_dict(raw)
    ahead, driven = Simulation(sc), Simulation(sc, ahead=False)
    assert ahead.front is not None and driven.front is None
    return ahead.run(), driven.run()


# -- equivalence ----------------------------------------------------------------------------------
def test_the_bench_scenario_is_the_same_run() -> None:
    a, b = both(bench())
    assert_same_run(a, b)
    assert len(a.records) > 25_000 and (a.records["status"] == "ok").all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_busy_nodes_are_the_same_run(seed: int) -> None:
    a, b = both(busy_nodes(seed))
    assert_same_run(a, b)
    df = a.records
    waited = (df["head_start_s"] > df["created_s"]).mean()
    assert waited > 0.2  # frames queue behind their node's CPU
    assert a.levels["node"]["busy"] / 50 == pytest.approx(0.44, abs=0.03)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_busy_uplink_is_the_same_run(seed: int) -> None:
    a, b = both(busy_uplink(seed))
    assert_same_run(a, b)
    df = a.records
    assert (df["tx_start_s"] > df["encode_end_s"]).mean() > 0.5  # payloads queue for the air
    assert a.levels["uplink"]["busy"] == pytest.approx(0.9, abs=0.08)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_cut_with_requests_in_flight_is_the_same_run(seed: int) -> None:
    a, b = both(cut_in_flight(seed))
    assert_same_run(a, b)
    df = a.records
    open_ = df[df["status"] == "in_flight"]
    assert len(open_) > 100
    assert open_["tx_start_s"].isna().any() and open_["tx_end_s"].isna().any()  # still queued for the air
    assert open_["tx_start_s"].notna().any()                                   # on the air at the end
    assert a.levels["uplink"]["open_at_end"] > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_groups_with_their_own_charges_and_rates_are_the_same_run(seed: int) -> None:
    a, b = both(groups(seed))
    assert_same_run(a, b)
    assert set(a.records["group_name"]) == {"cams", "drones", "raw"}


@pytest.mark.parametrize(("policy", "capacity"), [("drop_newest", 0), ("drop_newest", 4), ("drop_oldest", 1)])
def test_bounded_node_queues_are_the_same_run(policy: str, capacity: int) -> None:
    a, b = both(bounded(5, policy, capacity))
    assert_same_run(a, b)
    assert (a.records["status"] == "dropped_at_node").sum() > 100


@pytest.mark.parametrize("latency", [
    "0 s",  # (a zero hop: the server's timers come after a delivery at their instant on both paths)
    "1 ms",
    {"dist": "exponential", "mean": "1 ms"},
], ids=["zero-latency", "1ms-latency", "random-latency"])
def test_same_instant_ties_everywhere_are_the_same_run(latency: Any) -> None:
    a, b = both(ties(latency))
    assert_same_run(a, b)
    df = a.records
    assert df["created_s"].value_counts().max() == 20  # every node captures at once
    assert df["encode_end_s"].value_counts().max() == 20
    if isinstance(latency, str):  # deliveries 1 ms apart meet the 5 ms batch timers to the last bit
        assert df["queued_s"].isin(df["batch_start_s"]).sum() > 100


def test_cpu_ends_that_meet_the_next_arrivals_are_the_same_run_but_for_the_node_peak() -> None:
    """62.5 + 62.5 ms of CPU at 8 frames/s: each CPU ends exactly when its node's next frame arrives. The
    records, means and open counts are the same; the node's peak is not: at one instant the front lets
    earlier stays leave before the enters (``StayLevel``, README "Speed"), so 20 frames are inside, where the
    event-driven levels move event by event (one node's arrival comes before the other nodes' CPU ends:
    21). The front's peak never counts more than are inside in some order of that instant's changes."""
    a, b = both(ties("1 ms", head="62.5 ms", encode="62.5 ms"))
    df = a.records
    assert (df["head_start_s"] == df["created_s"]).all() and df["encode_end_s"].isin(df["created_s"]).mean() > 0.9
    pd.testing.assert_frame_equal(a.records, b.records, check_exact=True)
    assert (a.frames, a.meta) == (b.frames, b.meta)
    peak = {"front": a.levels["node"].pop("peak_in_station"), "events": b.levels["node"].pop("peak_in_station")}
    assert_same_levels(a.levels, b.levels)
    assert peak == {"front": 20.0, "events": 21.0}


def test_same_instant_arrivals_of_nodes_with_different_periods_are_the_same_run() -> None:
    """Node 0 captures every 125 ms, node 1 every 250 ms: at 250 ms node 1's arrival was scheduled first."""
    fleet = [dict(_group(1, {"kind": "periodic", "rate": "8/s", "random_phase": False}, payload="1 kB"), name="fast"),
             dict(_group(1, {"kind": "periodic", "rate": "4/s", "random_phase": False}, payload="1 kB"), name="slow")]
    a, b = both(_scenario(fleet, {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms"}, duration="2 s",
                          warmup="0 s", drain="1 s"))
    assert_same_run(a, b)


def test_arrival_instants_are_those_simpy_gives() -> None:
    """A node's next arrival is scheduled at its previous one, so the event path stamps ``prev + (t - prev)``
    (0.03 + (0.29 - 0.03) is 0.29000000000000004): the front stamps the same instants."""
    raw = _scenario([_group(1, {"kind": "trace", "trace_times": [0.03, 0.29, 0.5]}, payload="1 kB")],
                    {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms"}, duration="1 s", warmup="0 s",
                    drain="1 s")
    a, b = both(raw)
    assert_same_run(a, b)
    assert a.records["created_s"].tolist() == [0.03, 0.03 + (0.29 - 0.03), 0.5]


# -- streamed records -----------------------------------------------------------------------------
def _streamed(raw: dict[str, Any], ahead: bool) -> tuple[SimResult, dict[str, np.ndarray], int]:
    """A run whose rows go to a sink: the result, the sink's columns end to end and the number of calls."""
    calls: list[tuple[int, dict[str, np.ndarray]]] = []
    sim = Simulation(scenario_from_dict(raw), sink=lambda first, cols: calls.append((first, cols)), ahead=ahead)
    assert (sim.front is not None) == ahead
    result = sim.run()
    sizes = [len(cols["created_s"]) for _, cols in calls]
    assert [first for first, _ in calls] == [sum(sizes[:i]) for i in range(len(calls))]  # in request order
    joined = {name: np.concatenate([cols[name] for _, cols in calls]) for name in calls[0][1]}
    return result, joined, len(calls)


def _long_busy_nodes(seed: int) -> dict[str, Any]:
    return dict(busy_nodes(seed), duration="20 s")  # about 20,000 rows: more than one flush (16,384)


@pytest.mark.parametrize("make", [_long_busy_nodes, cut_in_flight], ids=["busy-nodes", "cut-in-flight"])
def test_streamed_rows_are_the_same_ahead_and_event_driven_and_in_memory(make: Callable[[int], dict[str, Any]]) -> None:
    raw = make(1)
    a, rows_a, calls = _streamed(raw, ahead=True)
    b, rows_b, _ = _streamed(raw, ahead=False)
    assert a.streamed and b.streamed and a.records.empty
    names = [*FLOAT_COLUMNS, *(name for name, _ in INT_COLUMNS)]
    assert sorted(rows_a) == sorted(rows_b) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(rows_a[name], rows_b[name], err_msg=name)  # (NaNs equal)
    assert a.frames == b.frames and a.meta == b.meta
    assert_same_levels(a.levels, b.levels)
    memory = Simulation(scenario_from_dict(raw)).run()
    assert_same_levels(a.levels, memory.levels)
    df = memory.records
    assert len(df) == len(rows_a["created_s"])
    for name in names:
        column = df[name].cat.codes.to_numpy() if name == "status" else df[name].to_numpy()
        np.testing.assert_array_equal(rows_a[name], column, err_msg=name)
    if make is _long_busy_nodes:
        assert calls >= 2  # more rows than one flush: slots were reused


# -- which scenarios the front takes --------------------------------------------------------------
class _AdaptiveWorkload(SyntheticWorkload):
    """Synthetic charges with the two hooks an adaptive group needs (no model runs)."""

    variant_configs: ClassVar[list[tuple[int, ...]]] = [(0, 1)]

    def adaptive_drawer(self, group: int, node: int, rng: np.random.Generator) -> Callable[[int], Frame]:
        return lambda config: (-1, 1000.0 * (config + 1), 0.01, 0.001)


def _adaptive(raw: dict[str, Any]) -> None:
    raw.update(model={"name": "efficientnet_lite0", "weights": "random", "split": "stage4"},
               codec=[{"quantize": {"bits": 8}}])
    group = {k: v for k, v in raw["fleet"][0].items() if k not in ("head", "encode", "payload")}
    raw["fleet"] = [{**group, "adaptive": {
        "configs": [{"model": {"split": "input"}, "codec": [{"image": {"format": "jpeg", "quality": 80}}]}, {}],
        "policy": {"signal": "uplink_backlog", "up": 150_000, "down": 30_000, "hold_s": "100 ms"}}}]


def _topology(raw: dict[str, Any]) -> None:
    raw["cells"] = [{"name": "a", **raw.pop("link")}]
    raw["servers"] = [{"name": "x", **raw.pop("server")}]
    raw["fleet"][0]["cell"] = "a"


FITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "plain": lambda raw: None,
    "random-latency-and-decode": lambda raw: (raw["link"].update(latency={"dist": "exponential", "mean": "1 ms"}),
                                              raw["server"].update(decode={"dist": "exponential", "mean": "1 ms"})),
    "bounded-queue": lambda raw: raw["fleet"][0].update(queue={"capacity": 4}),
    "group-datarate": lambda raw: raw["fleet"][0].update(datarate="500 kB/s"),
}
DOES_NOT_FIT: dict[str, Callable[[dict[str, Any]], None]] = {
    "adaptive-group": _adaptive,
    "fair-share-link": lambda raw: raw["link"].update(model="fair_share"),
    "csma-link": lambda raw: raw["link"].update(model="csma", datarate="65 Mbit/s", csma={"standard": "802.11n"}),
    "link-rate-trace": lambda raw: raw["link"].update(rate_trace={"time_s": [0, 5], "rate": ["1 MB/s", "500 kB/s"]}),
    "node-rate-trace": lambda raw: raw["fleet"][0].update(rate_trace={"time_s": [0, 5], "rate": ["1 MB/s", "500 kB/s"]}),
    "topology": _topology,
}


@pytest.mark.parametrize(("change", "fits"), [*((f, True) for f in FITS.values()), *((f, False) for f in DOES_NOT_FIT.values())],
                         ids=[*FITS, *DOES_NOT_FIT])
def test_which_scenarios_the_front_takes(change: Callable[[dict[str, Any]], None], fits: bool) -> None:
    raw = base_scenario(duration="10 s")
    change(raw)
    sc = scenario_from_dict(raw)
    workload = _AdaptiveWorkload(sc) if change is _adaptive else None
    sim = Simulation(sc, workload)
    assert (sim.front is not None) == fits
    assert (sim.nodes == []) == fits  # the event-driven nodes exactly when there is no front
    assert Simulation(sc, workload, ahead=False).front is None


def test_the_bench_scenario_takes_the_front() -> None:
    assert Simulation(scenario_from_dict(bench())).front is not None


# -- events ---------------------------------------------------------------------------------------
def _events_per_request(raw: dict[str, Any], ahead: bool) -> float:
    """SimPy events scheduled per request (the environment's ``schedule`` wrapped, as the bench counts)."""
    sim = Simulation(scenario_from_dict(raw), ahead=ahead)
    schedule, count = sim.env.schedule, [0]

    def counting(event: simpy.Event, priority: int = 1, delay: float = 0) -> None:
        count[0] += 1
        schedule(event, priority, delay)  # type: ignore[arg-type]

    sim.env.schedule = counting  # type: ignore[method-assign]
    sim.execute()
    assert sim.rec.n > 5_000
    return count[0] / sim.rec.n


def test_the_front_schedules_far_fewer_events_than_the_event_path() -> None:
    raw = dict(bench(), duration="8 s")
    ahead, driven = _events_per_request(raw, True), _events_per_request(raw, False)
    assert ahead < 2 < 4 < driven, (ahead, driven)

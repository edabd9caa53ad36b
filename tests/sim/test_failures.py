"""Server outages (servers[].outages): scripted and random, requests lost or retried elsewhere, with
their cause in the records."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from testbed.config.load import scenario_from_dict
from testbed.core.metrics import in_window
from testbed.errors import ConfigError
from testbed.sim import simulate


def scripted(fate: str, policy: str = "jsq", **extra: object) -> dict:
    """One request every 10 ms to two servers (20 ms each, no batching); server x is down 1-2 s."""
    server = {"device": "h100", "batching": {"max_batch": 1}, "service": {"table": {1: "20 ms"}}}
    return {
        "seed": 1, "duration": "3 s", "drain": "1 s",
        "fleet": [{"name": "cams", "count": 1, "device": "pi4b", "cell": "a", "payload": "0 B",
                   "arrivals": {"kind": "periodic", "rate": "100/s", "random_phase": False}}],
        "cells": [{"name": "a", "datarate": "1 GB/s"}],
        "servers": [{"name": "x", **server, "outages": {"at": [["1 s", "2 s"]], "fate": fate, **extra}},
                    {"name": "y", **server}],
        "assignment": {"policy": policy},
        "workload": {"result": "0 B"},
    }


def test_scripted_outage_loses_what_the_server_held_and_sends_the_rest_elsewhere() -> None:
    df = simulate(scenario_from_dict(scripted("lost"))).records
    failed = df[df["status"] == "server_failed"]
    # at 1 s server x holds the request it is serving (JSQ alternates: x takes one every 20 ms)
    assert len(failed) == 1 and failed["server"].tolist() == [0]
    assert failed["finished_s"].tolist() == pytest.approx([1.0])
    assert (df["status"].isin(["ok", "server_failed"])).all()
    created = df["created_s"].to_numpy()
    during = df[(created > 1.0 + 1e-9) & (created < 2.0 - 1e-9)]
    assert len(during) > 90 and (during["server"] == 1).all()  # only y while x is down
    after = df[created > 2.05]
    assert set(after["server"]) == {0, 1}
    # y alone gets 100/s of 20 ms requests while x is down: its queue grows, then drains
    lat = during["finished_s"] - during["created_s"]
    assert lat.iloc[-1] > 0.8


def test_retry_sends_the_held_requests_again_after_the_detection_time() -> None:
    df = simulate(scenario_from_dict(scripted("retry", retry_after="50 ms"))).records
    assert (df["status"] == "ok").all()
    retried = df[df["retries"] > 0]
    assert len(retried) == 1 and retried["retries"].tolist() == [1]
    row = retried.iloc[0]
    assert row["server"] == 1
    assert row["server_arrival_s"] == pytest.approx(1.05)  # sent again 50 ms after the outage began


def test_static_group_whose_server_is_down_retries_until_the_limit() -> None:
    raw = scripted("retry", policy="static", retry_after="300 ms", max_retries=2)
    raw["assignment"]["static"] = {"cams": "x"}
    df = simulate(scenario_from_dict(raw)).records
    created = df["created_s"].to_numpy()
    # created at 1.3 s: tries at 1.3, 1.6 and 1.9 s, all while x is down -> lost after two retries
    r = df[np.isclose(created, 1.3)].iloc[0]
    assert r["status"] == "server_failed" and r["retries"] == 2 and r["finished_s"] == pytest.approx(1.9)
    # created at 1.5 s: tries at 1.5, 1.8 and 2.1 s -> served after x is back
    r = df[np.isclose(created, 1.5)].iloc[0]
    assert r["status"] == "ok" and r["retries"] == 2 and r["server_arrival_s"] == pytest.approx(2.1)
    assert (df["server"][df["status"] == "ok"] == 0).all()


def test_random_outages_match_their_availability() -> None:
    raw = scripted("lost", policy="random")
    raw["duration"], raw["drain"] = "600 s", "5 s"
    raw["fleet"][0]["arrivals"] = {"kind": "poisson", "rate": "20/s"}
    raw["servers"][0]["outages"] = {"mttf": "20 s", "mttr": "5 s"}
    raw["servers"][1]["outages"] = {"mttf": "20 s", "mttr": "5 s"}
    from testbed.run.runner import run_scenario

    result = run_scenario(scenario_from_dict(raw))
    by_server = {row["server"]: row for row in result.summary["by_server"]}
    # availability mttf / (mttf + mttr) = 0.8: each server is down about 20% of the time
    for name in ("x", "y"):
        assert by_server[name]["down_share"] == pytest.approx(0.2, abs=0.07), by_server[name]
    df = in_window(result.records, result.sim.window)
    # a request is lost when both are down (about 4% of the time) or its server fails under it
    lost = (df["status"] == "server_failed").mean()
    assert 0.01 < lost < 0.1
    assert result.summary["server_failed"] == int((df["status"] == "server_failed").sum())
    shares = ["completed_share", "dropped_share", "timed_out_share", "in_flight_share"]
    assert sum(result.summary[k] for k in shares) == pytest.approx(1.0)


def test_outage_spec_errors() -> None:
    raw = scripted("lost")
    for outages, field in (({"at": [["2 s", "1 s"]]}, "servers.0.outages"),
                           ({"mttf": "1 s"}, "servers.0.outages"),
                           ({"at": [["1 s", "2 s"]], "fate": "drop"}, "servers.0.outages.fate")):
        bad = copy.deepcopy(raw)
        bad["servers"][0]["outages"] = outages
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            scenario_from_dict(bad)


def cell_outage(fate: str) -> dict:
    """One node sends 8 kB every 10 ms over a 1 MB/s cell (8 ms on the air); the cell is down 1.004-2 s."""
    return {
        "seed": 1, "duration": "3 s", "drain": "2 s",
        "fleet": [{"name": "cams", "count": 1, "device": "pi4b", "cell": "a", "payload": "8 kB",
                   "arrivals": {"kind": "periodic", "rate": "100/s", "random_phase": False}}],
        "cells": [{"name": "a", "datarate": "1 MB/s", "outages": {"at": [["1.004 s", "2 s"]], "fate": fate}}],
        "servers": [{"name": "x", "device": "h100", "service": {"table": {1: "1 ms"}}}],
        "workload": {"result": "0 B"},
    }


def test_cell_outage_cuts_the_transmission_and_holds_the_queue() -> None:
    df = simulate(scenario_from_dict(cell_outage("wait"))).records
    assert (df["status"] == "ok").all()
    created = df["created_s"].to_numpy()
    cut = df[np.isclose(created, 1.0)].iloc[0]
    # on the air 1.000-1.008 when the cell went down at 1.004: sent again from its first bit at 2 s
    assert cut["tx_start_s"] == pytest.approx(2.0) and cut["tx_end_s"] == pytest.approx(2.008)
    waited = df[(created > 1.001) & (created < 1.999)].sort_values("created_s")
    assert len(waited) == 99
    # then the 99 frames that queued meanwhile go back to back, 8 ms each
    assert waited["tx_start_s"].to_numpy() == pytest.approx(2.008 + 0.008 * np.arange(99))


def test_cell_outage_that_loses_what_it_holds() -> None:
    df = simulate(scenario_from_dict(cell_outage("lost"))).records
    created = df["created_s"].to_numpy()
    lost = df[df["status"] == "cell_failed"]
    # the frame on the air at 1.004 and the 99 sent while the cell was down
    assert len(lost) == 100
    assert lost["created_s"].min() == pytest.approx(1.0) and lost["created_s"].max() == pytest.approx(1.99)
    assert lost["finished_s"].iloc[0] == pytest.approx(1.004)
    assert (df.loc[created >= 1.999, "status"] == "ok").all() and (df.loc[created < 0.999, "status"] == "ok").all()


def test_cell_outages_need_shared_fifo_and_are_summarised() -> None:
    from testbed.run.runner import run_scenario

    summary = run_scenario(scenario_from_dict(cell_outage("lost")), stream=False).summary
    [cell] = summary["by_cell"]
    assert cell["cell"] == "a"
    assert cell["cell_failed"] == summary["cell_failed"] == 100
    assert cell["down_share"] == pytest.approx(0.996 / 3)
    raw = cell_outage("wait")
    raw["cells"][0]["model"] = "fair_share"
    with pytest.raises(ConfigError, match=r"cells\.0\.outages"):
        simulate(scenario_from_dict(raw))


def test_requests_in_transit_to_a_failed_server_go_elsewhere() -> None:
    # a 30 ms backhaul: requests assigned to x just before it fails reach it while it is down
    raw = scripted("retry", retry_after="10 ms")
    raw["backhaul"] = {"datarate": "1 GB/s", "latency": "30 ms"}
    raw["servers"][0]["outages"]["at"] = [["1 s", "2 s"], ["2.5 s", "2.8 s"]]
    raw["drain"] = "5 s"
    df = simulate(scenario_from_dict(raw)).records
    assert (df["status"] == "ok").all()
    retried = df[df["retries"] > 0]
    assert len(retried) >= 3 and (retried["server"] == 1).all() and (retried["retries"] == 1).all()
    created = df["created_s"].to_numpy()
    assert (df.loc[(created > 1.0) & (created < 1.97), "server"] == 1).all()  # x is never chosen while down

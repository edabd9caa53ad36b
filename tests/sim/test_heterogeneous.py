"""Heterogeneous fleets (issue 16): groups of different models, splits or codecs. The server keeps one
batch queue per model and split (:class:`testbed.core.policy.QueueBatcher`) with that queue's service
times; records carry each request's configuration (``config``).

Synthetic charges (a workload of two configurations with their own service tables and decode times):
where the groups do not interact (each its own cell and server, static assignment) each group's records
are exactly those of a homogeneous run of its configuration; where they share the link and server, each
group's latency rises, as queueing predicts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from testbed.config.load import scenario_from_dict
from testbed.config.schema import Scenario
from testbed.core.calc import batch_time_fn
from testbed.core.workload import Configs, SyntheticWorkload
from testbed.dists import Deterministic, Dist
from testbed.sim import simulate

TIMES = {0: {1: 0.004, 4: 0.008}, 1: {1: 0.010, 4: 0.022}}  # service tables of configurations a and b (s)
DECODE = {0: 0.001, 1: 0.002}
COLUMNS = ["created_s", "head_end_s", "encode_end_s", "tx_start_s", "tx_end_s", "server_arrival_s", "queued_s",
           "batch_ready_s", "batch_start_s", "batch_end_s", "downlink_start_s", "finished_s", "payload_bytes",
           "batch_size", "status"]


class TwoConfigs(SyntheticWorkload):
    """Group ``g`` runs configuration ``of_group[g]``: its decode and its queue's service table."""

    def __init__(self, sc: Scenario, of_group: tuple[int, ...] = (0, 1)) -> None:
        super().__init__(sc)
        self.configs = Configs(("a", "b"), of_group, (0, 1))

    def config_decode(self, server: int, config: int) -> Dist:
        return Deterministic(DECODE[config])

    def queue_batch_time(self, server: int, queue: int, rng: np.random.Generator) -> Callable[[int], float]:
        return batch_time_fn(table=TIMES[queue])


def _service(config: int) -> dict[str, Any]:
    return {"table": {b: f"{t * 1000:g} ms" for b, t in TIMES[config].items()}}


def shared(seed: int = 5) -> dict[str, Any]:
    """Two groups of cameras on one link and one server (Poisson frames, random payloads)."""
    group = {"count": 5, "device": "pi4b", "arrivals": {"kind": "poisson", "rate": "10/s"},
             "head": {"dist": "exponential", "mean": "4 ms"}, "encode": "1 ms"}
    return {
        "name": "hetero", "seed": seed, "duration": "30 s", "warmup": "2 s", "drain": "5 s",
        "fleet": [{**group, "name": "new", "payload": {"dist": "uniform", "low": "2 kB", "high": "6 kB"}},
                  {**group, "name": "old", "payload": {"dist": "uniform", "low": "8 kB", "high": "12 kB"}}],
        "link": {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "1 ms"},
        "server": {"device": "h100", "batching": {"max_batch": 4, "max_delay": "2 ms"}, "service": _service(0)},
        "workload": {"result": "100 B"},
    }


def separate(raw: Mapping[str, Any], service: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """The same fleet, each group in its own cell with its own server (``service``: each server's table)."""
    out = copy.deepcopy(dict(raw))
    link, server = out.pop("link"), out.pop("server")
    out["cells"] = [{"name": "ca", **link}, {"name": "cb", **link}]
    out["servers"] = [{"name": f"s{i}", **server, "service": _service(k), "decode": f"{DECODE[k] * 1000:g} ms"}
                      for i, k in enumerate(service)]
    out["fleet"][0]["cell"], out["fleet"][1]["cell"] = "ca", "cb"
    out["assignment"] = {"policy": "static", "static": {"new": "s0", "old": "s1"}}
    return out


def _group(df: pd.DataFrame, g: int) -> pd.DataFrame:
    return df.loc[df["group"] == g, COLUMNS].reset_index(drop=True)


def _latency(df: pd.DataFrame, g: int) -> float:
    ok = df[(df["group"] == g) & (df["status"] == "ok") & df["in_window"]]
    return float((ok["finished_s"] - ok["created_s"]).mean())


def test_groups_that_do_not_interact_match_homogeneous_runs() -> None:
    raw = separate(shared())
    hetero = simulate(scenario_from_dict(raw), TwoConfigs(scenario_from_dict(raw))).records
    for config in (0, 1):  # a homogeneous run of each configuration (both servers serve it)
        homo_raw = separate(shared(), (config, config))
        homo = simulate(scenario_from_dict(homo_raw)).records
        assert (homo["config"] == 0).all()
        pd.testing.assert_frame_equal(_group(hetero, config), _group(homo, config))
        assert (hetero.loc[hetero["group"] == config, "config"] == config).all()
        assert (hetero.loc[hetero["group"] == config, "server"] == config).all()
    assert len(_group(hetero, 0)) > 500 and len(_group(hetero, 1)) > 500


def test_sharing_the_link_and_server_raises_each_groups_latency() -> None:
    raw = shared()
    alone = simulate(scenario_from_dict(separate(raw)), TwoConfigs(scenario_from_dict(separate(raw)))).records
    together = simulate(scenario_from_dict(raw), TwoConfigs(scenario_from_dict(raw))).records
    assert set(together["server"].unique()) == {0}
    for g in (0, 1):
        assert _latency(together, g) > _latency(alone, g)
        # the extra latency is queueing: waiting for the shared link and for the shared server's GPU
        t, a = together[together["group"] == g], alone[alone["group"] == g]
        assert (t["tx_start_s"] - t["encode_end_s"]).mean() > (a["tx_start_s"] - a["encode_end_s"]).mean()
        assert (t["batch_start_s"] - t["queued_s"]).mean() > (a["batch_start_s"] - a["queued_s"]).mean()
    # the same frames were drawn either way (node streams do not depend on where they are served)
    pd.testing.assert_frame_equal(together[["group", "created_s", "payload_bytes"]],
                                  alone[["group", "created_s", "payload_bytes"]])


def test_a_shared_servers_batches_never_mix_configurations_and_take_their_own_service_time() -> None:
    raw = shared()
    df = simulate(scenario_from_dict(raw), TwoConfigs(scenario_from_dict(raw))).records
    served = df[df["status"] == "ok"]
    assert (served["config"] == served["group"]).all()
    batches = served.groupby(["batch_start_s", "gpu"])
    assert (batches["config"].nunique() == 1).all()
    mixed_sizes = 0
    for (_, _), b in batches:
        k, size = int(b["config"].iloc[0]), len(b)
        assert (b["batch_size"] == size).all()
        expected = batch_time_fn(table=TIMES[k])(size)
        assert b["batch_end_s"].iloc[0] - b["batch_start_s"].iloc[0] == pytest.approx(expected, abs=1e-9)
        assert (b["queued_s"] - b["server_arrival_s"]).to_numpy() == pytest.approx(DECODE[k], abs=1e-9)
        mixed_sizes += size > 1
    assert mixed_sizes > 10  # batching happened, so mixing was possible


def test_one_configuration_workload_takes_the_unchanged_path() -> None:
    sc = scenario_from_dict(shared())
    one = TwoConfigs(sc)
    one.configs = Configs(("a",), (0, 0), (0,))  # one configuration: the one-queue path, unchanged
    pd.testing.assert_frame_equal(simulate(sc).records, simulate(sc, one).records)

"""The optimiser's pure parts (enumeration, screening, constraints, choice, Pareto front) and, on the real
model, that it finds the optimum an exhaustive search finds and that what it prunes fails when simulated."""

from __future__ import annotations

import math

import pytest

from testbed.errors import ConfigError
from testbed.run.capacity import parse_slo
from testbed.run.optimize import (
    Config,
    choose,
    configs,
    dataset_agreement,
    group_link_scale,
    group_view,
    meets,
    optimize,
    pareto_front,
    parse_constraints,
    parse_objective,
    screen,
)


def test_configs_expand_bits_only_for_quantize_chains_and_drop_duplicates() -> None:
    out = configs(["stem", "stage4", "stem"], [[{"quantize": {}}, {"zstd": {}}], [{"float16": {}}]], [2, 8])
    assert [c.split for c in out] == ["stem"] * 3 + ["stage4"] * 3
    assert [c.codec for c in out[:3]] == [({"quantize": {"bits": 2}}, {"zstd": {}}),
                                         ({"quantize": {"bits": 8}}, {"zstd": {}}), ({"float16": {}},)]
    assert out[0].label == "stem / quantize(bits=2) + zstd"
    assert Config("none", ()).label == "none / float32"


def test_screen_scales_one_node_to_the_fleet_and_names_why_it_prunes() -> None:
    probe = {"agreement": 0.95, "link_utilisation": 0.02, "node_utilisation": 0.3, "mean_payload_bytes": 5e3}
    ok = screen(probe, probe_nodes=1, nodes=40, min_agreement=0.9)
    assert ok.reason is None and ok.uplink_utilisation == pytest.approx(0.8)
    assert "uplink busy 1.00" in str(screen(probe, 1, 50, 0.9).reason)
    assert "agreement 0.95 < 0.99" in str(screen(probe, 1, 10, 0.99).reason)
    assert "node CPU" in str(screen({**probe, "node_utilisation": 1.2}, 1, 10, None).reason)
    two_groups = screen(probe, probe_nodes=2, nodes=40, min_agreement=None)  # 0.02 for 2 nodes: 0.01 each
    assert two_groups.uplink_utilisation == pytest.approx(0.4)


def test_screen_prunes_what_misses_the_objective_even_without_contention() -> None:
    probe = {"agreement": 0.95, "link_utilisation": 0.001, "node_utilisation": 0.3, "mean_payload_bytes": 5e3,
             "latency_p95_s": 0.130, "latency_mean_s": 0.09}
    slo = parse_slo("p95 < 100 ms")
    assert "without contention" in str(screen(probe, 1, 10, None, slo=slo).reason)
    # a batch may have waited up to 40 ms to fill alone; in a fleet it fills sooner: 90 ms can still pass
    assert screen(probe, 1, 10, None, slo=slo, batch_wait_s=0.040).reason is None
    assert screen(probe, 1, 10, None, slo=parse_slo("mean < 100 ms")).reason is None
    assert screen({**probe, "latency_p95_s": None}, 1, 10, None, slo=slo).reason is None  # no figure: no bound


def test_a_group_search_apportions_the_probe_link_share_by_offered_bytes() -> None:
    # probe: one node per group; group 0 offered 10 x 1 kB, group 1 offered 10 x 3 kB (3/4 of the bytes)
    probe = [{"requests": 10, "mean_payload_bytes": 1e3}, {"requests": 10, "mean_payload_bytes": 3e3}]
    # 20 and 4 nodes: 20 * 1/4 + 4 * 3/4 = 8 times the probe's share
    assert group_link_scale(probe, [20, 4], 1, 3e3) == pytest.approx(8.0)
    # group 1's whole dataset averages 6 kB, not the probe's sampled 3 kB: its part doubles
    assert group_link_scale(probe, [20, 4], 1, 6e3) == pytest.approx((20 * 1 + 4 * 6) / 4)
    assert math.isnan(group_link_scale([{"requests": 0, "mean_payload_bytes": 0.0}], [5], 0, 1e3))


def test_group_view_is_the_group_as_it_runs() -> None:
    raw = {"model": {"name": "efficientnet_lite0", "split": "stage4", "weights": "pretrained"},
           "codec": [{"zstd": {}}], "dataset": {"kind": "photos"}, "link": {"datarate": "1 MB/s"},
           "fleet": [{"name": "new", "count": 3}, {"name": "old", "count": 2, "model": {"split": "input"},
                                                  "codec": [{"image": {}}], "dataset": {"kind": "photos", "limit": 4}}]}
    old = group_view(raw, 1)
    assert old["model"] == {"name": "efficientnet_lite0", "split": "input", "weights": "pretrained"}
    assert old["codec"] == [{"image": {}}] and old["dataset"] == {"kind": "photos", "limit": 4}
    assert old["fleet"] == [{"name": "old", "count": 2}] and old["link"] == raw["link"]
    new = group_view(raw, 0)
    assert new["model"] == raw["model"] and new["codec"] == raw["codec"] and new["fleet"] == [raw["fleet"][0]]


def test_meets_counts_unfinished_requests_as_late() -> None:
    slo = parse_slo("p95 < 100 ms")
    assert meets({"latency_p95_all_s": 0.05, "agreement": 0.93}, slo, 0.9)
    assert not meets({"latency_p95_all_s": None, "latency_p95_s": 0.05, "agreement": 0.93}, slo, 0.9)
    assert not meets({"latency_p95_all_s": 0.05, "agreement": 0.85}, slo, 0.9)
    assert meets({"latency_p95_all_s": 0.5, "agreement": None}, None, None)
    # one group searched: every group's requests must meet the latency objective too
    assert meets({"latency_p95_all_s": 0.05, "worst_group_latency_p95_all_s": 0.09}, slo, None)
    assert not meets({"latency_p95_all_s": 0.05, "worst_group_latency_p95_all_s": 0.2}, slo, None)
    assert not meets({"latency_p95_all_s": 0.05, "worst_group_latency_p95_all_s": None}, slo, None)


def test_choose_takes_the_best_feasible_row_for_the_objective() -> None:
    rows = [{"config": "a", "feasible": True, "agreement": 0.93, "mean_payload_bytes": 5e3, "latency_p95_all_s": 0.05},
            {"config": "b", "feasible": True, "agreement": 0.99, "mean_payload_bytes": 9e3, "latency_p95_all_s": 0.07},
            {"config": "c", "feasible": False, "agreement": 1.0, "mean_payload_bytes": 2e4, "latency_p95_all_s": 0.3},
            {"config": "d", "feasible": True, "agreement": 0.99, "mean_payload_bytes": 8e3, "latency_p95_all_s": 0.08}]
    assert choose(rows, parse_objective("max-agreement"))["config"] == "b"  # tie on agreement: lower p95
    assert choose(rows, parse_objective("min-p95"))["config"] == "a"
    assert choose(rows, parse_objective("min-payload"))["config"] == "a"
    assert choose([{**r, "feasible": False} for r in rows], parse_objective("min-p95")) is None


def test_pareto_front_of_agreement_against_p95() -> None:
    pts = [(0.9, 0.05), (0.95, 0.07), (0.93, 0.08), (1.0, 0.2), (0.99, 0.3), (math.nan, 0.01)]
    assert pareto_front(pts) == [True, True, False, True, False, False]


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="--objective"):
        parse_objective("max-happiness")
    with pytest.raises(ConfigError, match="--min-agreement"):
        parse_constraints(None, 1.5)
    with pytest.raises(ConfigError, match="model"):
        optimize({"fleet": []}, [Config("stem", ())], parse_objective("min-p95"), None, None)


@pytest.mark.zoo
def _lite_fleet(duration: str, warmup: str, count: int, datarate: str) -> dict:
    """One group of Raspberry Pi cameras (2 frames/s) on the pretrained Lite0 at stage 4, 8 photos, one
    shared FIFO link at ``datarate``, an H100: the scenario the optimiser's simulated tests search over."""
    from tests.conftest import base_scenario

    raw = base_scenario(duration=duration, warmup=warmup)
    for g in raw["fleet"]:
        for k in ("head", "encode", "payload"):
            g.pop(k, None)
    raw["server"].pop("service")
    raw["fleet"][0].update(count=count, device="pi4b", arrivals={"kind": "periodic", "rate": "2/s", "jitter": "5 ms"})
    raw["link"] = {"model": "shared_fifo", "datarate": datarate, "latency": "2 ms"}
    raw["server"]["device"] = "h100"
    raw.update(model={"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage4"},
               codec=[], dataset={"kind": "photos", "limit": 8})
    return raw


def test_optimum_equals_an_exhaustive_search_and_pruned_configurations_fail(tmp_path, monkeypatch) -> None:
    """A small grid on the pretrained Lite0: the optimiser (screening, then simulation) picks the
    configuration an exhaustive simulation of every candidate picks, and the pruned ones it simulates
    anyway miss the objective."""
    from testbed.config.load import apply_overrides
    from testbed.run.prepare import prepare_dict
    from testbed.run.runner import run_scenario

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    raw = _lite_fleet("20 s", "2 s", 45, "1 MB/s")
    grid = configs(["stage3", "stage4", "stage6"], [[{"quantize": {}}, {"zstd": {}}]], [2, 8])
    slo, floor = parse_slo("p95 < 150 ms"), 0.7
    result = optimize(raw, grid, parse_objective("max-agreement"), slo, floor, replications=1, verify_pruned=10,
                      workers=2)  # the simulations on two worker processes
    assert any(r["pruned"] for r in result.rows) and any(not r["pruned"] for r in result.rows)
    # every pruned configuration was simulated (verify_pruned) and misses the objective
    assert all(r["simulated"] and not r["meets_when_simulated"] for r in result.rows if r["pruned"])
    exhaustive = []
    for c in grid:
        cell = apply_overrides(raw, {"model.split": c.split, "codec": list(c.codec)})
        s = {**run_scenario(prepare_dict(cell)).summary, "agreement": dataset_agreement(cell)}
        exhaustive.append({"config": c.label, **s, "feasible": meets(s, slo, floor)})
    best = choose(exhaustive, parse_objective("max-agreement"))
    assert best is not None and result.best is not None and result.best["config"] == best["config"]
    assert result.recommended is not None and result.recommended["model"]["split"] == result.best["split"]


def test_an_interrupted_search_resumes_from_the_rows_it_kept(tmp_path, monkeypatch) -> None:
    """Rows are kept as each candidate finishes; a rerun takes them instead of running again."""
    import testbed.run.optimize as opt

    calls: list[str] = []

    def fake_run(raw, base_dir, group=None):  # one probe or replication: a light, feasible configuration
        calls.append(raw["model"]["split"])
        return {"link_utilisation": 0.001, "node_utilisation": 0.1, "mean_payload_bytes": 1e3,
                "latency_p95_all_s": 0.05, "latency_p95_s": 0.05, "agreement": 1.0}

    monkeypatch.setattr(opt, "_run", fake_run)
    monkeypatch.setattr(opt, "_summary", lambda resolved, group=None: fake_run(resolved, None))
    monkeypatch.setattr(opt, "dataset_figures", lambda raw, base_dir=None: (0.95, 1.0, 1e3))
    monkeypatch.setattr(opt, "prepare_dict", lambda raw, base_dir=None: raw)  # "resolved": the mapping itself
    monkeypatch.setattr(opt, "batch_wait", lambda raw: 0.0)  # the mapping is not a whole scenario
    raw = {"model": {"name": "efficientnet_lite0", "split": "stem"}, "fleet": [{"count": 10}], "seed": 1}
    grid = configs(["stage2", "stage4", "stage6"], [[{"quantize": {}}]], [4])
    slo = parse_slo("p95 < 100 ms")
    stops = {"n": 0}

    def stop_after_two(kind, c, row):
        stops["n"] += 1
        if stops["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(raw, grid, parse_objective("max-agreement"), slo, 0.9, replications=1, on_step=stop_after_two,
                 state_dir=tmp_path / "state")
    # every probe first, then one replication each until the stop (after the second finished row)
    assert calls == ["stage2", "stage4", "stage6", "stage2", "stage4"]
    calls.clear()
    result = optimize(raw, grid, parse_objective("max-agreement"), slo, 0.9, replications=1,
                      state_dir=tmp_path / "state")
    assert calls == ["stage6", "stage6"] and [r["split"] for r in result.rows] == ["stage2", "stage4", "stage6"]
    assert result.best is not None and all(r["feasible"] for r in result.rows)


@pytest.mark.zoo
def test_a_group_search_equals_an_exhaustive_search_over_that_group(tmp_path, monkeypatch) -> None:
    """Two camera groups share one link; only the old cameras' split and bit width are searched. The
    optimiser picks what simulating every candidate picks when the agreement floor is the old group's
    own and every group must keep p95 under the objective; the new group's configuration is untouched."""
    from testbed.config.load import apply_overrides
    from testbed.core.metrics.groups import group_breakdown
    from testbed.run.prepare import prepare_dict
    from testbed.run.runner import run_scenario
    from tests.conftest import base_scenario

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    raw = base_scenario(duration="20 s", warmup="2 s")
    cam = {"device": "pi4b", "arrivals": {"kind": "periodic", "rate": "2/s", "jitter": "5 ms"}}
    raw["fleet"] = [{"name": "new", "count": 25, **cam},
                    {"name": "old", "count": 20, **cam, "model": {"split": "stage6"}, "codec": [{"zstd": {}}]}]
    raw["server"].pop("service")
    raw["link"] = {"model": "shared_fifo", "datarate": "1 MB/s", "latency": "2 ms"}
    raw["server"]["device"] = "h100"
    raw.update(model={"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage4"},
               codec=[{"quantize": {"bits": 8}}, {"zstd": {}}], dataset={"kind": "photos", "limit": 8})
    grid = configs(["stage3", "stage6"], [[{"quantize": {}}, {"zstd": {}}]], [2, 8])
    slo, floor = parse_slo("p95 < 150 ms"), 0.7
    result = optimize(raw, grid, parse_objective("max-agreement"), slo, floor, replications=1, verify_pruned=10,
                      group="old")
    assert all(r["simulated"] and not r["meets_when_simulated"] for r in result.rows if r["pruned"])
    exhaustive = []
    for c in grid:
        cell = apply_overrides(raw, {"fleet.1.model.split": c.split, "fleet.1.codec": list(c.codec)})
        res = run_scenario(prepare_dict(cell))
        rows = group_breakdown(res.records, res.sim.window, ["new", "old"], ["", ""])
        worst = [r["latency_p95_all_s"] for r in rows]
        s = {"agreement": dataset_agreement(group_view(cell, 1)), "latency_p95_all_s": rows[1]["latency_p95_all_s"],
             "worst_group_latency_p95_all_s": None if None in worst else max(worst)}
        exhaustive.append({"config": c.label, **s, "mean_payload_bytes": rows[1]["mean_payload_bytes"],
                           "feasible": meets(s, slo, floor)})
    assert any(r["feasible"] for r in exhaustive) and not all(r["feasible"] for r in exhaustive)
    best = choose(exhaustive, parse_objective("max-agreement"))
    assert best is not None and result.best is not None and result.best["config"] == best["config"]
    rec = result.recommended
    assert rec is not None and rec["fleet"][1]["model"]["split"] == result.best["split"]
    assert rec["fleet"][0] == raw["fleet"][0] and rec["model"] == raw["model"] and rec["codec"] == raw["codec"]


def test_max_nodes_needs_a_latency_objective_one_group_and_a_sane_limit() -> None:
    raw = {"model": {"name": "efficientnet_lite0", "split": "stem"}, "fleet": [{"count": 10}, {"count": 5}]}
    nodes = parse_objective("max-nodes")
    with pytest.raises(ConfigError, match="--slo"):
        optimize(raw, [Config("stem", ())], nodes, None, None)
    with pytest.raises(ConfigError, match="--group"):
        optimize(raw, [Config("stem", ())], nodes, parse_slo("p95 < 100 ms"), None)
    with pytest.raises(ConfigError, match="--node-limit"):
        optimize({**raw, "fleet": [{"count": 10}]}, [Config("stem", ())], nodes, parse_slo("p95 < 100 ms"), None,
                 node_limit=0)


def test_max_nodes_rows_are_feasible_when_some_fleet_meets_the_objective() -> None:
    from testbed.run.optimize import _capacity_row

    row = {"config": "a", "pruned": None, "agreement": 0.95, "screen_payload_bytes": 5e3}
    found = {"capacity": 120, "slo_value_at_capacity": 0.08, "first_failing": 121, "at_limit": False}
    slo = parse_slo("p95 < 100 ms")
    ok = _capacity_row(row, found, slo, 0.9, reps=2)
    assert ok["feasible"] and ok["latency_p95_all_s"] == 0.08 and ok["mean_payload_bytes"] == 5e3
    assert not _capacity_row(row, {**found, "capacity": 0}, slo, 0.9, 2)["feasible"]  # not even one node
    assert not _capacity_row(row, found, slo, 0.99, 2)["feasible"]  # agreement below the floor
    rows = [ok, {**ok, "config": "b", "capacity": 300}, {**ok, "config": "c", "capacity": 500, "feasible": False}]
    assert choose(rows, parse_objective("max-nodes"))["config"] == "b"


@pytest.mark.zoo
def test_max_nodes_recommends_the_largest_fleet_that_meets_the_objective(tmp_path, monkeypatch) -> None:
    """max-nodes on the pretrained Lite0: each configuration's capacity is a fleet that meets the objective
    while one node more does not (checked by running both), and the recommendation carries the most."""
    from testbed.config.load import apply_overrides
    from testbed.run.capacity import slo_value
    from testbed.run.prepare import prepare_dict
    from testbed.run.runner import run_scenario

    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "cache"))
    raw = _lite_fleet("10 s", "1 s", 10, "0.5 MB/s")
    grid = configs(["stage6"], [[{"quantize": {}}, {"zstd": {}}]], [4, 8])
    slo = parse_slo("p95 < 150 ms")
    result = optimize(raw, grid, parse_objective("max-nodes"), slo, 0.5, replications=1, node_limit=256)
    caps = {r["config"]: r["capacity"] for r in result.rows if r["simulated"]}
    assert len(caps) >= 2 and len(set(caps.values())) > 1 and max(caps.values()) < 256
    assert result.best is not None and result.best["capacity"] == max(
        r["capacity"] for r in result.rows if r["feasible"])
    rec = result.recommended
    assert rec is not None and rec["fleet"][0]["count"] == result.best["capacity"]

    def value(n: int) -> float:
        res = run_scenario(prepare_dict(apply_overrides(rec, {"fleet.0.count": n, "replications": 1})))
        return slo_value(res.records, res.sim.window, "p95")

    assert slo.met(value(rec["fleet"][0]["count"])) and not slo.met(value(rec["fleet"][0]["count"] + 1))


def test_the_server_max_batch_is_one_more_dimension() -> None:
    from testbed.run.optimize import _cell

    out = configs(["stage4"], [[{"quantize": {}}]], [4, 8], [8, 32, 8])
    assert [(c.codec[0]["quantize"]["bits"], c.max_batch) for c in out] == [(4, 8), (4, 32), (8, 8), (8, 32)]
    assert out[1].label == "stage4 / quantize(bits=4) / batch<=32"
    raw = {"model": {"name": "efficientnet_lite0", "split": "stem"}, "server": {"device": "h100"},
           "fleet": [{"count": 3}]}
    cell = _cell(raw, out[1])
    assert cell["server"]["batching"] == {"max_batch": 32} and cell["model"]["split"] == "stage4"
    assert "batching" not in _cell(raw, Config("stage4", ()))["server"]  # none given: the scenario's
    with pytest.raises(ConfigError, match="--max-batch"):
        _cell({**raw, "servers": [{"name": "a"}]}, out[1])

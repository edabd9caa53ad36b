import json
import math

import pytest

from testbed.errors import ConfigError
from testbed.run.capacity import capacity_search, parse_slo, probe
from tests.conftest import base_scenario


def small() -> dict:
    # each node sends 10 kB at 2/s; the 0.5 MB/s link saturates near 25 nodes
    raw = base_scenario(duration="20 s", warmup="2 s", drain="5 s")
    raw["fleet"][0].update(count=1, payload="10 kB", arrivals={"kind": "poisson", "rate": "2/s"})
    raw["link"] = {"model": "shared_fifo", "datarate": "0.5 MB/s"}
    return raw


def test_parse_slo():
    slo = parse_slo("p95 < 200 ms")
    assert slo.metric == "p95" and slo.bound_s == pytest.approx(0.2) and slo.strict
    assert parse_slo("mean <= 1 s").met(1.0)
    for bad in ("p97 < 2 ms", "p95 > 2 ms", "p95 < fast"):
        with pytest.raises(ConfigError, match="--slo"):
            parse_slo(bad)


def test_bisection_agrees_with_brute_force():
    slo = parse_slo("p95 < 120 ms")
    raw = small()
    (result,) = capacity_search(raw, slo, start=4, limit=64)
    brute = {n: probe(raw, "fleet.0.count", n, slo, None, 1)[0] for n in range(1, 40)}
    passing = [n for n, v in brute.items() if slo.met(v)]
    largest_prefix = max(n for n in brute if all(slo.met(brute[m]) for m in range(1, n + 1)))
    assert result.capacity == largest_prefix == max(passing)
    assert result.first_failing == result.capacity + 1
    assert result.saturating_station == "uplink"
    assert result.probes < 15


def test_capacity_per_swept_datarate():
    raw = small()
    raw["sweep"] = {"link.datarate": ["0.5 MB/s", "1 MB/s"], "fleet.0.count": [1, 2]}
    results = capacity_search(raw, parse_slo("p95 < 120 ms"), start=8, limit=256)
    assert [r.values for r in results] == [{"link.datarate": "0.5 MB/s"}, {"link.datarate": "1 MB/s"}]
    assert results[1].capacity > 1.6 * results[0].capacity
    assert not math.isnan(results[0].value_at_capacity)


def test_saturating_station_names_ties():
    from testbed.run.capacity import saturating

    assert saturating({"uplink": 1.0, "server GPU": 0.995, "node CPU": 0.05}) == "uplink + server GPU"
    assert saturating({"uplink": 0.8, "server GPU": 1.0, "node CPU": 0.05}) == "server GPU"


def test_node_cpu_is_named_when_frames_are_dropped_at_the_nodes(tmp_path):
    import json

    from testbed.cli import main

    # 10 frames/s into a 95 ms head with room for two waiting: the node CPUs saturate and drop
    raw = small()
    raw["fleet"][0].update(head="95 ms", encode="1 ms", payload="1 kB", queue={"capacity": 2},
                           arrivals={"kind": "poisson", "rate": "10/s"})
    raw["link"] = {"model": "fair_share", "datarate": "5 MB/s"}
    (result,) = capacity_search(raw, parse_slo("p95 < 300 ms"), start=2, limit=8)
    assert result.saturating_station == "node CPU"
    assert result.utilisation["node CPU"] > 0.5 and math.isfinite(result.utilisation["node CPU"])
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({**raw, "fleet": [{**raw["fleet"][0], "count": 2}]}))
    assert main(["run", str(f), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"bare {c} in summary.json"))
    assert summary["dropped_at_node"] > 0 and 0.5 < summary["node_utilisation"] <= 1.0


def test_capacity_out_is_not_overwritten_without_force(tmp_path, capsys):
    import yaml

    from testbed.cli import main

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small()))
    out = tmp_path / "cap.json"
    args = ["capacity", str(f), "--slo", "p95 < 120 ms", "--start", "16", "--limit", "32", "--out", str(out)]
    assert main(args) == 0
    first = out.read_text()
    json.loads(first, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    capsys.readouterr()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == first
    assert main([*args, "--force"]) == 0


def _slo_value_before(records, window, metric):
    """slo_value as it was before it became a call of the shared censored statistic."""
    import numpy as np

    from testbed.core.metrics import in_window, with_stages
    from testbed.run.capacity import _METRICS

    w = with_stages(in_window(records, window))
    lat = np.where(w["status"].astype(str) == "ok", w["latency_s"].to_numpy(), np.inf)
    if not len(lat):
        return math.nan
    q = _METRICS[metric]
    return float(np.mean(lat)) if q is None else float(np.percentile(lat, q, method="higher"))


@pytest.mark.parametrize("count", [5, 24, 40])  # light, near saturation, overloaded (unfinished requests)
def test_slo_value_is_the_shared_censored_statistic_unchanged(count):
    from testbed.run.capacity import _METRICS, slo_value
    from testbed.run.prepare import prepare_dict
    from testbed.run.runner import run_scenario

    raw = small()
    raw["fleet"][0]["count"] = count
    res = run_scenario(prepare_dict(raw, None))
    for metric in _METRICS:
        assert slo_value(res.records, res.sim.window, metric) == _slo_value_before(res.records, res.sim.window, metric)
    assert math.isnan(slo_value(res.records.iloc[:0], res.sim.window, "p95"))


def test_capacity_prints_units_and_the_warnings_of_the_run_at_capacity(tmp_path, capsys, monkeypatch):
    import yaml

    import testbed.run.capacity as capacity
    from testbed.cli import main

    real = capacity.probe_runs

    def warned(*args, **kwargs):
        p = real(*args, **kwargs)
        return capacity.Probe(p.value, p.utilisation, ("warm-up shorter than MSER-5 suggests",))

    monkeypatch.setattr(capacity, "probe_runs", warned)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small()))
    assert main(["capacity", str(f), "--slo", "p95 < 120 ms", "--start", "16", "--limit", "32"]) == 0
    out, err = capsys.readouterr()
    assert "milliseconds" in out and "p95_at_capacity_ms" in out
    (line,) = err.strip().splitlines()   # no progress bar: stderr is not a terminal
    assert line.startswith("warning: at capacity fleet.0.count=")
    assert line.endswith(": warm-up shorter than MSER-5 suggests")


def test_a_fleet_too_slow_even_alone_names_no_saturated_station():
    # one node whose head alone takes longer than the objective: nothing is saturated
    raw = small()
    raw["fleet"][0].update(head="150 ms", encode="1 ms", payload="1 kB",
                           arrivals={"kind": "poisson", "rate": "1/s"})
    (result,) = capacity_search(raw, parse_slo("p95 < 100 ms"), start=1, limit=4)
    assert result.capacity == 0
    assert result.saturating_station.startswith("none saturated at 1 node(s); busiest: ")

import pytest

from testbed.errors import ConfigError
from testbed.config.load import apply_overrides, load_scenario, scenario_from_dict
from tests.conftest import base_scenario


def test_valid_scenario_parses_units(scenario_dict):
    sc = scenario_from_dict(scenario_dict)
    assert sc.duration == 60.0 and sc.warmup == 5.0
    assert sc.link.datarate == 1e6
    assert sc.fleet[0].payload.mean() == 10_000
    assert sc.server.batching.max_delay == pytest.approx(0.002)
    assert sc.node_count == 20


def test_scenario_is_frozen(scenario_dict):
    sc = scenario_from_dict(scenario_dict)
    with pytest.raises(Exception):
        sc.seed = 5  # type: ignore[misc]


def test_default_scenario_is_valid():
    sc, raw = load_scenario()
    assert sc.name == "default" and raw["name"] == "default"


@pytest.mark.parametrize("path,value,needle", [
    ("link.datarate", "-5 MB/s", "link.datarate"),
    ("link.datarate", 0, "link.datarate"),
    ("link.model", "token_ring", "link.model"),
    ("fleet.0.count", 0, "fleet.0.count"),
    ("fleet.0.device", "pi5000", "available: "),
    ("server.device", "pi4b", "role"),
    ("fleet.0.arrivals.rate", "-2/s", "fleet.0.arrivals.rate"),
    ("server.batching.max_batch", "many", "server.batching.max_batch"),
    ("fleet.0.head", {"dist": "exponential", "mean": "-1 ms"}, "fleet.0.head"),
    ("warmup", "2 min", "warmup"),
])
def test_bad_values_name_the_field(path, value, needle):
    raw = apply_overrides(base_scenario(), {path: value})
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(raw)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_key_is_an_error():
    raw = base_scenario()
    raw["link"]["datarat"] = "5 MB/s"
    with pytest.raises(ConfigError, match=r"link\.datarat: .*unknown key"):
        scenario_from_dict(raw)


def test_empty_fleet_is_an_error():
    with pytest.raises(ConfigError, match="fleet"):
        scenario_from_dict(base_scenario(fleet=[]))


def test_missing_field_is_named():
    raw = base_scenario()
    del raw["link"]["datarate"]
    with pytest.raises(ConfigError, match=r"link\.datarate: .*required"):
        scenario_from_dict(raw)


def test_overrides_from_strings():
    raw = apply_overrides(base_scenario(), ["fleet.0.count=7", "link.datarate=2 MB/s"])
    sc = scenario_from_dict(raw)
    assert sc.fleet[0].count == 7 and sc.link.datarate == 2e6
    with pytest.raises(ConfigError, match="path=value"):
        apply_overrides(base_scenario(), ["fleet.0.count"])
    with pytest.raises(ConfigError, match="index below 1"):
        apply_overrides(base_scenario(), ["fleet.3.count=1"])


def test_yaml_errors_are_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nfleet: [\n  - count: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_scenario(f)
    assert "\n" not in str(info.value)


def test_trace_arrivals_from_file(tmp_path):
    (tmp_path / "t.csv").write_text("time_s,node\n0.5,0\n1.5,1\n2.5,0\n")
    raw = base_scenario()
    raw["fleet"][0]["arrivals"] = {"kind": "trace", "file": "t.csv"}
    raw["fleet"][0]["count"] = 2
    sc = scenario_from_dict(raw, base_dir=tmp_path)
    assert sc.fleet[0].arrivals.trace_times == (0.5, 1.5, 2.5)
    assert sc.fleet[0].arrivals.trace_nodes == (0, 1, 0)

import pytest
from pydantic import ValidationError

from testbed.config.frozen import FrozenDict
from testbed.config.load import apply_overrides, load_scenario, scenario_from_dict
from testbed.errors import ConfigError
from testbed.run.prepare import prepare_dict
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
    with pytest.raises(ValidationError, match="frozen"):
        sc.seed = 5  # type: ignore[misc]


def test_default_scenario_is_valid():
    sc, raw = load_scenario()
    assert sc.name == "default" and raw["name"] == "default"


@pytest.mark.parametrize("path,value,needle", [
    ("link.datarate", "-5 MB/s", "link.datarate"),
    ("link.datarate", 0, "link.datarate"),
    ("link.model", "", "link.model"),
    ("fleet.0.count", 0, "fleet.0.count"),
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


@pytest.mark.parametrize("path,value,needle", [
    ("fleet.0.device", "pi5000", "fleet.0.device: got 'pi5000'; unknown device profile 'pi5000'; available: "),
    ("server.device", "pi4b", "server.device: got 'pi4b'; a server profile (this one has role 'node')"),
    ("fleet.0.arrivals", {"kind": "trace", "file": "nope.csv"}, "fleet.0.arrivals.file: got 'nope.csv'"),
])
def test_bad_files_are_found_by_resolution_and_name_the_field(path, value, needle):
    raw = apply_overrides(base_scenario(), {path: value})
    scenario_from_dict(raw)  # the schema opens no file
    with pytest.raises(ConfigError) as info:
        prepare_dict(raw)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_containers_are_immutable(scenario_dict):
    sc = scenario_from_dict(dict(scenario_dict, codec=[{"quantize": {"bits": 4}}], sweep={"seed": [1, 2]}))
    table = sc.server.service.table
    assert isinstance(table, FrozenDict) and table == {1: 0.002, 8: 0.005}
    assert sc.sweep == {"seed": (1, 2)} and sc.codec == ({"quantize": {"bits": 4}},)
    for mapping in (table, sc.sweep, sc.codec[0], sc.codec[0]["quantize"]):
        with pytest.raises(TypeError, match="frozen"):
            mapping["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        sc.codec[0]["quantize"].update(bits=8)


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
    assert scenario_from_dict(raw).fleet[0].arrivals.trace_times == ()  # the schema keeps the name
    sc = prepare_dict(raw, base_dir=tmp_path).scenario
    assert sc.fleet[0].arrivals.trace_times == (0.5, 1.5, 2.5)
    assert sc.fleet[0].arrivals.trace_nodes == (0, 1, 0)
    assert sc.fleet[0].arrivals.file == str(tmp_path.resolve() / "t.csv")


def test_trace_without_file_is_a_load_error():
    raw = apply_overrides(base_scenario(), {"fleet.0.arrivals": {"kind": "trace"}})
    with pytest.raises(ConfigError, match=r"fleet\.0\.arrivals: .*need 'file'"):
        scenario_from_dict(raw)

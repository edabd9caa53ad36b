"""Hostile and careless scenario files, overrides and the files they name (issue 13, part A).

Each probe goes through ``testbed.cli.main`` and must end in exactly one stderr line starting
``error: `` that names the field or file, with exit code 2: no traceback, no hang, no memory bomb.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.cli import main
from testbed.config.files import MAX_YAML_BYTES
from tests.conftest import base_scenario

REPO = Path(__file__).resolve().parents[2]


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    """Run ``testbed argv``: exit 2 and one stderr line ``error: ...`` containing every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    assert len(lines[0]) < 1200, lines[0][:200]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# -- the file itself -------------------------------------------------------------------------------

def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(bytes(range(256)) * 8)
    _one_error(capsys, ["validate", str(f)], str(f), "binary")


def test_nul_bytes_in_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(b"name: x\n\x00\x00\n")
    _one_error(capsys, ["validate", str(f)], str(f))


def test_directory_as_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_error(capsys, ["validate", str(tmp_path)], str(tmp_path), "directory")


def test_oversized_file_is_refused_without_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("name: x\n" + "# padding\n" * (MAX_YAML_BYTES // 10 + 10))
    _one_error(capsys, ["validate", str(f)], str(f), "bytes", "MiB")


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    _one_error(capsys, ["validate", str(f)], str(f), "nested")


def test_billion_laughs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghi":
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = c
    f = tmp_path / "lol.yaml"
    f.write_text("\n".join(lines) + "\n")
    _one_error(capsys, ["validate", str(f)], str(f), "aliases")


def test_aliases_within_the_limit_still_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("""
duration: 60 s
fleet:
  - {count: 2, device: pi4b, arrivals: {kind: poisson, rate: 1/s}, head: &t 10 ms, encode: *t, payload: 10 kB}
  - {count: 2, device: pi4b, arrivals: {kind: poisson, rate: 1/s}, head: *t, encode: *t, payload: 10 kB}
link: {datarate: 1 MB/s}
server: {device: h100, service: {table: {1: *t}}}
""")
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err


def test_huge_values_are_not_formatted_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = base_scenario()
    raw["link"]["datarate"] = "9" * 1_000_000 + " MB/s"
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "link.datarate")
    raw = base_scenario()
    raw["fleet"][0]["x" * 100_000] = list(range(100_000))
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.xxx")


# -- overrides -------------------------------------------------------------------------------------

@pytest.mark.parametrize("override", ["fleet.².count=2", "fleet..count=2", "=2", "fleet.0.count", "fleet.9.count=2"])
def test_bad_override_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str) -> None:
    _one_error(capsys, ["validate", _write(tmp_path, base_scenario()), "--set", override])


# -- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "field"), [
    ("fleet.0.count=true", "fleet.0.count"),
    ("fleet.0.count=2.0", "fleet.0.count"),
    ("server.gpus=false", "server.gpus"),
    ("fleet.0.arrivals={kind: periodic, rate: 1/s, jitter: .inf}", "fleet.0.arrivals.jitter"),
    ("fleet.0.arrivals={kind: periodic, rate: 1/s, jitter: .nan}", "fleet.0.arrivals.jitter"),
    ("fleet.0.arrivals={kind: periodic, rate: 1/s, jitter: {dist: uniform, low: 0, high: 1e300}}",
     "fleet.0.arrivals.jitter"),
    ("fleet.0.arrivals.rate=.nan", "fleet.0.arrivals.rate"),
    ("fleet.0.arrivals.rate=1e400", "fleet.0.arrivals.rate"),
    ("fleet.0.head={dist: exponential, rate: .nan}", "fleet.0.head"),
    ("fleet.0.head={dist: exponential, rate: .inf}", "fleet.0.head"),
    ("fleet.0.head={dist: exponential, mean: .nan}", "fleet.0.head"),
    ("fleet.0.head={dist: lognormal, median: 1 ms, sigma: [1]}", "fleet.0.head"),
    ("fleet.0.head={dist: lognormal, median: 1 ms, sigma: .inf}", "fleet.0.head"),
    ("fleet.0.head={dist: lognormal, median: 1 ms, sigma: .nan}", "fleet.0.head"),
    ("fleet.0.head={dist: lognormal, median: 1 ms, sigma: true}", "fleet.0.head"),
    ("fleet.0.head={dist: empirical, values: [0.001, .nan]}", "fleet.0.head"),
    ("fleet.0.head={dist: empirical, values: [0.001, .inf]}", "fleet.0.head"),
    ("fleet.0.head={dist: empirical, values: abc}", "fleet.0.head"),
    ("fleet.0.head=1e400 s", "fleet.0.head"),
    ("fleet.0.arrivals={kind: trace, trace_times: [1, .nan]}", "fleet.0.arrivals.trace_times"),
])
def test_numbers_must_be_finite_and_in_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str,
                                             field: str) -> None:
    _one_error(capsys, ["validate", _write(tmp_path, base_scenario()), "--set", override], field)


@pytest.mark.parametrize("value", ["-1 s", ".nan", ".inf", "abc"])
def test_an_adaptive_hold_jitter_must_be_a_finite_duration(capsys: pytest.CaptureFixture[str], value: str) -> None:
    _one_error(capsys, ["validate", str(REPO / "scenarios" / "adaptive_split.yaml"), "--set",
                        f"fleet.0.adaptive.policy.hold_jitter_s={value}"], "fleet.0.adaptive.policy.hold_jitter_s")


def test_a_fleet_too_large_for_memory_says_how_much_it_needs(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["validate", _write(tmp_path, base_scenario()), "--set", "fleet.0.count=1000000000"],
                      "fleet.0.count", "1000000000", "memory")
    assert " TB " in line or " PB " in line
    line = _one_error(capsys, ["run", _write(tmp_path, base_scenario()), "--set", "duration=1e300"],
                      "duration", "memory")


# -- files a scenario names ------------------------------------------------------------------------

def test_directory_as_empirical_file_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    raw = base_scenario()
    raw["fleet"][0]["head"] = {"dist": "empirical", "file": "data"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.head.file")
    raw = base_scenario()
    raw["fleet"][0]["arrivals"] = {"kind": "trace", "file": "data"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.arrivals.file")


@pytest.mark.parametrize("text", ["0.001\nnan\n", "0.001\ninf\n", "0.001\n-1\n"])
def test_empirical_file_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    (tmp_path / "head.txt").write_text(text)
    raw = base_scenario()
    raw["fleet"][0]["head"] = {"dist": "empirical", "file": "head.txt"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.head.file")


def test_trace_timestamps_and_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = base_scenario()
    raw["fleet"][0]["arrivals"] = {"kind": "trace", "file": "t.csv"}
    raw["fleet"][0]["count"] = 2
    scenario = _write(tmp_path, raw)
    (tmp_path / "t.csv").write_text("time_s,node\n0.5,0\nnan,1\n")
    _one_error(capsys, ["validate", scenario], "fleet.0.arrivals.file", "finite")
    (tmp_path / "t.csv").write_text("time_s,node\n0.5,0\n0.7,1\n0.9,5\n")
    _one_error(capsys, ["validate", scenario], "fleet.0.arrivals.file", "node 5")
    (tmp_path / "t.csv").write_text("time_s,node\n0.5,0\n0.7,1\n")
    assert main(["validate", scenario]) == 0


@pytest.mark.parametrize(("path", "value"), [
    (("power", "busy", "watts"), float("inf")),
    (("power", "idle", "watts"), float("nan")),
    (("mac_rate", "ops_per_s"), float("inf")),
    (("provenance", "pidramble", "runs"), True),
])
def test_profile_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[str, ...],
                         value: Any) -> None:
    prof = yaml.safe_load((REPO / "nodes" / "pi4b.yaml").read_text())
    node = prof
    for key in path[:-1]:
        node = node[key]
    if path[0] == "provenance":
        node.update(kind="measured", device="pi", date="2024", command="x")
    node[path[-1]] = value
    prof["name"] = "cam"
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "cam.yaml").write_text(yaml.safe_dump(prof))
    raw = base_scenario()
    raw["fleet"][0]["device"] = "cam"
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.device", path[-1])


def test_profile_file_billion_laughs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nodes").mkdir()
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, c in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
    (tmp_path / "nodes" / "cam.yaml").write_text("\n".join(lines) + "\n")
    raw = base_scenario()
    raw["fleet"][0]["device"] = "cam"
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.device")


@pytest.mark.parametrize("drop", ["accuracy", "full_bits", "switch_bytes"])
def test_nestquant_modes_file_with_a_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 drop: str) -> None:
    modes = json.loads((REPO / "scenarios" / "nestquant" / "digits_int8_int4.modes.json").read_text())
    del modes[drop]
    (tmp_path / "m.json").write_text(json.dumps(modes))
    raw = base_scenario()
    raw["fleet"][0]["nestquant"] = {"modes": "m.json"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.nestquant.modes", drop)


def test_nestquant_modes_file_with_bad_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(REPO / "scenarios" / "nestquant" / "digits_int8_int4.modes.json", tmp_path / "m.json")
    modes = json.loads((tmp_path / "m.json").read_text())
    modes["accuracy"]["full"] = "high"
    (tmp_path / "m.json").write_text(json.dumps(modes))
    raw = base_scenario()
    raw["fleet"][0]["nestquant"] = {"modes": "m.json"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.nestquant.modes", "accuracy.full")


# -- topology (cells, servers, assignment, outages, traces) ------------------------------------------

def _topology() -> dict[str, Any]:
    raw = base_scenario()
    link, server = raw.pop("link"), raw.pop("server")
    raw["cells"] = [{"name": "a", **link}]
    raw["servers"] = [{"name": "s", **server}]
    raw["fleet"][0]["cell"] = "a"
    return raw


@pytest.mark.parametrize(("change", "needle"), [
    ({"cells": []}, "cells"),
    ({"cells": "a"}, "cells"),
    ({"servers": {"x": 1}}, "servers"),
    ({"assignment": {"policy": "fastest"}}, "fastest"),
    ({"fleet.0.cell": "nowhere"}, "nowhere"),
    ({"servers.0.outages": {"at": [["2 s", "1 s"]]}}, "servers.0.outages"),
    ({"servers.0.outages": {"mttf": "10 s"}}, "servers.0.outages"),
    ({"cells.0.packet_trace": {"ms": [5, 3, 1]}}, "cells.0.packet_trace"),
    ({"backhaul": {"datarate": "0 B/s"}}, "backhaul.datarate"),
])
def test_topology_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any],
                           needle: str) -> None:
    from testbed.config.load import apply_overrides

    raw = apply_overrides(_topology(), change)
    _one_error(capsys, ["validate", _write(tmp_path, raw)], needle)


def test_a_topology_is_valid_before_the_probes_break_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", _write(tmp_path, _topology())]) == 0, capsys.readouterr().err


# -- heterogeneous fleets (a group's own model and codec) -------------------------------------------

def _with_model() -> dict[str, Any]:
    raw = base_scenario()
    for g in raw["fleet"]:
        for k in ("head", "encode", "payload"):
            g.pop(k, None)
    raw["server"].pop("service", None)
    raw.update(model={"name": "efficientnet_lite0", "weights": "pretrained", "split": "stage4"},
               codec=[{"quantize": {"bits": 8}}], dataset={"kind": "photos", "limit": 4})
    return raw


@pytest.mark.parametrize(("change", "needle"), [
    ({"fleet.0.model": {"bogus": 1}}, "fleet.0.model"),
    ({"fleet.0.model": "lite0"}, "fleet.0.model"),
    ({"fleet.0.model": {"split": "stage99"}}, "stage99"),
    ({"fleet.0.codec": "jpeg"}, "fleet.0.codec"),
    ({"fleet.0.codec": [{"jpegg": {}}]}, "jpegg"),
])
def test_group_model_and_codec_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any],
                                        needle: str) -> None:
    from testbed.config.load import apply_overrides

    _one_error(capsys, ["validate", _write(tmp_path, apply_overrides(_with_model(), change))], needle)


def test_a_group_model_needs_a_scenario_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = base_scenario()
    raw["fleet"][0]["model"] = {"split": "input"}
    _one_error(capsys, ["validate", _write(tmp_path, raw)], "fleet.0.model")

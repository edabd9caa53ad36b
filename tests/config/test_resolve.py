"""Resolution: the one place that reads the files a scenario names (traces, empirical data, NestQuant
modes files, profiles, checkpoints, dataset paths), against the scenario's directory, each once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

import testbed.config.files as files_module
from testbed.config.load import apply_overrides, scenario_from_dict
from testbed.config.resolve import as_resolved, resolve
from testbed.dists import Empirical, EmpiricalFile
from testbed.errors import ConfigError
from testbed.run.prepare import prepare
from tests.conftest import base_scenario

REPO = Path(__file__).resolve().parents[2]
MODES = REPO / "scenarios" / "nestquant" / "digits_int8_int4.modes.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_empirical_data_and_traces_are_read_against_base_dir(tmp_path, monkeypatch):
    (tmp_path / "lat.txt").write_text("10\n20\n30\n")
    (tmp_path / "sizes.csv").write_text("run,kB\n1,5\n2,7\n")
    (tmp_path / "trace.txt").write_text("0.25\n1.5\n")
    raw = base_scenario()
    raw["fleet"][0]["head"] = {"dist": "empirical", "file": "lat.txt", "unit": "ms"}
    raw["fleet"][0]["payload"] = {"dist": "empirical", "file": "sizes.csv", "column": "kB", "unit": "kB"}
    raw["fleet"][0]["arrivals"] = {"kind": "trace", "file": "trace.txt"}
    raw["link"]["latency"] = {"dist": "empirical", "values": [1, 3], "unit": "ms"}
    sc = scenario_from_dict(raw)
    assert isinstance(sc.fleet[0].head, EmpiricalFile)
    monkeypatch.chdir(REPO)  # not where the files are
    res = resolve(sc, tmp_path)
    g = res.scenario.fleet[0]
    assert g.head == Empirical((0.01, 0.02, 0.03), "lat.txt")
    assert g.payload == Empirical((5000.0, 7000.0), "sizes.csv")
    assert g.arrivals.trace_times == (0.25, 1.5)
    assert res.scenario.link.latency.mean() == pytest.approx(0.002)  # inline: untouched
    assert sc.fleet[0].head == EmpiricalFile("lat.txt", None, 0.001)  # the input is not changed
    assert dict(res.files) == {str((tmp_path / n).resolve()): _sha(tmp_path / n)
                               for n in ("lat.txt", "sizes.csv", "trace.txt")} | {
        str(REPO / "nodes" / "pi4b.yaml"): _sha(REPO / "nodes" / "pi4b.yaml"),
        str(REPO / "nodes" / "h100.yaml"): _sha(REPO / "nodes" / "h100.yaml")}


def test_jitter_and_server_dists_are_resolved_too(tmp_path):
    (tmp_path / "j.txt").write_text("1\n2\n")
    raw = base_scenario()
    raw["fleet"][0]["arrivals"] = {"kind": "periodic", "rate": "2/s",
                                   "jitter": {"dist": "empirical", "file": "j.txt", "unit": "ms"}}
    raw["server"]["decode"] = {"dist": "empirical", "file": "j.txt", "unit": "ms"}
    res = resolve(scenario_from_dict(raw), tmp_path)
    assert res.scenario.fleet[0].arrivals.jitter == Empirical((0.001, 0.002), "j.txt")
    assert res.scenario.server.decode == Empirical((0.001, 0.002), "j.txt")
    assert len([f for f, _ in res.files if f.endswith("j.txt")]) == 1  # read once


@pytest.mark.parametrize("path,value,content,needle", [
    ("fleet.0.head", {"dist": "empirical", "file": "missing.txt"}, None,
     "fleet.0.head.file: got 'missing.txt'; an existing data file"),
    ("fleet.0.head", {"dist": "empirical", "file": "neg.txt"}, "1\n-2\n", "fleet.0.head.file: got 'neg.txt'"),
    ("fleet.0.arrivals", {"kind": "trace", "file": "bad.csv"}, "t\n1\n", "fleet.0.arrivals.file: got 'bad.csv'"),
    ("fleet.0.nestquant", {"modes": "nope.modes.json"}, None, "fleet.0.nestquant.modes: got 'nope.modes.json'"),
    ("fleet.0.nestquant", {"modes": "bad.modes.json"}, '{"full_bits": 8}', "fleet.0.nestquant.modes"),
    ("fleet.0.device", "gone.yaml", None, "fleet.0.device: got 'gone.yaml'; profile file"),
])
def test_file_errors_name_the_dotted_field(tmp_path, path, value, content, needle):
    if content is not None:
        name = value["file"] if "file" in value else value["modes"]
        (tmp_path / name).write_text(content)
    sc = scenario_from_dict(apply_overrides(base_scenario(), {path: value}))  # loads without the file
    with pytest.raises(ConfigError) as info:
        resolve(sc, tmp_path)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_nestquant_modes_are_loaded_once_and_the_path_made_absolute(tmp_path):
    raw = base_scenario()
    raw["fleet"].append(dict(raw["fleet"][0], name="second"))
    for g in raw["fleet"]:
        g["nestquant"] = {"modes": "nestquant/digits_int8_int4.modes.json"}
    res = resolve(scenario_from_dict(raw), REPO / "scenarios")
    assert res.nestquant[0] == res.nestquant[1] is not None
    assert res.nestquant[0].accuracy == json.loads(MODES.read_text())["accuracy"]
    assert res.scenario.fleet[1].nestquant.modes == str(MODES)
    assert [f for f, _ in res.files].count(str(MODES)) == 1


def test_checkpoints_weights_and_dataset_paths_are_made_absolute(tmp_path):
    (tmp_path / "ae.pt").write_bytes(b"x")
    (tmp_path / "w.pth").write_bytes(b"y")
    (tmp_path / "images").mkdir()
    raw = base_scenario(model={"name": "resnet18", "split": "layer1", "weights": "w.pth"},
                        codec=[{"autoencoder": {"checkpoint": "ae.pt"}}, {"zlib": {}}],
                        dataset={"kind": "imagefolder", "path": "images"})
    res = resolve(scenario_from_dict(raw), tmp_path)
    assert res.scenario.codec[0]["autoencoder"]["checkpoint"] == str(tmp_path.resolve() / "ae.pt")
    assert res.scenario.codec[1] == {"zlib": {}}
    assert res.scenario.model.weights == str(tmp_path.resolve() / "w.pth")
    assert res.scenario.dataset.path == str(tmp_path.resolve() / "images")
    assert res.files == ((str(REPO / "nodes" / "pi4b.yaml"), _sha(REPO / "nodes" / "pi4b.yaml")),
                         (str(REPO / "nodes" / "h100.yaml"), _sha(REPO / "nodes" / "h100.yaml")))
    for field, patch, needle in [
        ("codec", [{"autoencoder": {"checkpoint": "other.pt"}}], "codec.0.autoencoder.checkpoint: got 'other.pt'"),
        ("model.weights", "missing.pt", "model.weights: got 'missing.pt'"),
        ("dataset.path", "nowhere", "dataset.path: got 'nowhere'"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            resolve(scenario_from_dict(apply_overrides(raw, {field: patch})), tmp_path)


def test_each_profile_is_read_once_per_resolution(tmp_path, monkeypatch):
    reads: list[str] = []
    original = files_module.Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(files_module.Path, "read_bytes", counting)
    raw = base_scenario()
    raw["fleet"] += [dict(raw["fleet"][0], name=f"g{i}") for i in range(3)]  # four groups on pi4b
    raw["server"]["device"] = "cpu-x86"  # role node: rejected after one read
    with pytest.raises(ConfigError, match="server profile"):
        resolve(scenario_from_dict(raw), tmp_path)
    assert reads == ["pi4b.yaml", "cpu-x86.yaml"]


def test_as_resolved_passes_a_resolved_scenario_through(tmp_path):
    res = resolve(scenario_from_dict(base_scenario()))
    assert as_resolved(res) is res
    assert res.base_dir is None and as_resolved(res.scenario).node_profiles == res.node_profiles


def test_prepare_of_a_file_resolves_against_its_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "trace.csv").write_text("time_s\n0.5\n")
    raw = base_scenario()
    raw["fleet"][0]["arrivals"] = {"kind": "trace", "file": "trace.csv"}
    (tmp_path / "sub" / "s.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    res, _ = prepare("sub/s.yaml")
    assert res.base_dir == (tmp_path / "sub").resolve()
    assert res.scenario.fleet[0].arrivals.trace_times == (0.5,)

import copy

import pytest
import yaml

from testbed.config.profiles import available_profiles, find_profile, load_profile, profile_dirs
from testbed.core.calc import interpolate_table
from testbed.core.charges import StageCost, codec_time, head_figure, head_time, spread_dist, tail_table
from testbed.errors import ConfigError

PROFILE = {
    "name": "toy", "role": "both",
    "provenance": {
        "m": {"kind": "measured", "source": "testbed profile", "device": "toy", "date": "2026-11-23",
              "command": "testbed profile --model resnet18", "runs": 10},
        "e": {"kind": "estimated", "source": "a paper", "method": "scaled"},
    },
    "power": {"idle": {"watts": 2.0, "provenance": "e"}, "busy": {"watts": 6.0, "provenance": "e"}},
    "models": {"resnet18": {
        "blocks": {"stem": {"median": "2 ms", "iqr": "0.2 ms", "provenance": "m"},
                   "layer1": {"median": "3 ms", "provenance": "m"},
                   "layer2": {"median": "4 ms", "provenance": "e"},
                   "logits": {"median": "1 ms", "provenance": "m"}},
        "tail": {"stem": {"batches": {1: "2 ms", 8: "4 ms"}, "provenance": "m"}}}},
    "codecs": {"per_element": {"quantize": {"median": "2 ns", "provenance": "m"},
                               "dequantize": {"median": "1 ns", "provenance": "m"},
                               "pack": {"median": "1 ns", "provenance": "m"},
                               "unpack": {"median": "1 ns", "provenance": "m"}},
               "encode_throughput": {"lzma:preset=6": "1 MB/s"}, "decode_throughput": {"lzma:preset=6": "10 MB/s"},
               "provenance": "m"},
}


def write(tmp_path, data):
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_head_time_sums_blocks_up_to_the_split(tmp_path):
    from testbed.split.models import get_spec

    R18 = get_spec("resnet18").points  # blocks are summed in pipeline order, not the YAML's
    p = load_profile(write(tmp_path, PROFILE))
    assert head_time(p, "resnet18", "input") == 0.0
    assert head_time(p, "resnet18", "stem", R18) == pytest.approx(0.002)
    assert head_time(p, "resnet18", "layer2", R18) == pytest.approx(0.009)
    assert head_time(p, "resnet18", "none", R18) == pytest.approx(0.010)
    fig = head_figure(p, "resnet18", "layer2", R18)
    assert fig.iqr == pytest.approx(0.0002) and fig.provenance == "e+m"
    with pytest.raises(ConfigError, match="layer1, layer2"):
        head_time(p, "resnet18", "layer4")
    with pytest.raises(ConfigError, match="resnet18"):
        head_time(p, "vit_b_16", "stem")


def test_tail_table_and_interpolation(tmp_path):
    p = load_profile(write(tmp_path, PROFILE))
    table = tail_table(p, "resnet18", "stem")
    assert interpolate_table(table, 4) == pytest.approx(0.002 + 3 * 0.002 / 7)
    with pytest.raises(ConfigError, match="after: stem"):
        tail_table(p, "resnet18", "layer3")


def test_codec_time_charges_elements_and_bytes(tmp_path):
    p = load_profile(write(tmp_path, PROFILE))
    keys = [StageCost("element", "quantize"), StageCost("element", "pack"), StageCost("bytes", "lzma:preset=6")]
    enc = codec_time(p, keys, elements=1000, serialized_bytes=125, direction="encode")
    assert enc == pytest.approx(1000 * 2e-9 + 1000 * 1e-9 + 125 / 1e6)
    dec = codec_time(p, keys, elements=1000, serialized_bytes=125, direction="decode")
    assert dec == pytest.approx(1000 * 1e-9 + 1000 * 1e-9 + 125 / 1e7)
    with pytest.raises(ConfigError, match="lzma:preset=6"):
        codec_time(p, [StageCost("bytes", "zstd:level=3")], 10, 10, "encode")


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["models"]["resnet18"]["blocks"]["stem"].pop("provenance"), "provenance"),
    (lambda d: d["models"]["resnet18"]["blocks"]["stem"].update(provenance="nowhere"), "nowhere"),
    (lambda d: d["provenance"]["m"].pop("runs"), "runs"),
    (lambda d: d["provenance"]["e"].pop("method"), "method"),
    (lambda d: d.update(role="cloud"), "role"),
    (lambda d: d["models"]["resnet18"]["blocks"]["stem"].update(median="-2 ms"), ">= 0"),
])
def test_profile_validation(tmp_path, mutate, needle):
    data = copy.deepcopy(PROFILE)
    mutate(data)
    with pytest.raises(ConfigError, match=needle):
        load_profile(write(tmp_path, data))


def test_spread_dist_matches_median_and_iqr():
    import numpy as np

    d = spread_dist(0.010, 0.002)
    x = d.draw(np.random.default_rng(0), 200_000)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    assert med == pytest.approx(0.010, rel=0.01)
    assert q3 - q1 == pytest.approx(0.002, rel=0.02)
    assert spread_dist(0.01, 0.0).mean() == 0.01


def test_shipped_profiles_are_valid():
    for name in ("pi4b", "h100", "h100-cudagraphs", "cpu-x86"):
        p = load_profile(name)
        assert p.provenance
    pi = load_profile("pi4b")
    assert head_time(pi, "resnet50", "none") == pytest.approx(0.2252, rel=1e-4)  # the published figure
    assert pi.power is not None and pi.power.busy.watts == 6.4
    assert tail_table(load_profile("h100"), "resnet50", "stem")[1] == pytest.approx(0.003456)


def test_learned_stages_are_charged_by_macs(tmp_path):
    data = copy.deepcopy(PROFILE)
    data["mac_rate"] = {"ops_per_s": 1e9, "provenance": "e"}
    p = load_profile(write(tmp_path, data))
    keys = [StageCost("macs", "autoencoder", 2e6, 5e6), StageCost("element", "quantize"),
            StageCost("bytes", "lzma:preset=6")]
    assert codec_time(p, keys, 1000, 100, "encode") == pytest.approx(2e-3 + 2e-6 + 1e-4)
    assert codec_time(p, keys, 1000, 100, "decode") == pytest.approx(5e-3 + 1e-6 + 1e-5)
    without = load_profile(write(tmp_path, dict(copy.deepcopy(PROFILE), name="norate")))
    with pytest.raises(ConfigError, match="mac_rate"):
        codec_time(without, keys, 1000, 100, "encode")


def test_profiles_are_found_beside_the_scenario_or_above_it_never_in_the_cwd(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "scenarios" / "deep").mkdir(parents=True)
    (project / "nodes").mkdir()
    (project / "nodes" / "mine.yaml").write_text(yaml.safe_dump(dict(PROFILE, name="mine")))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "nodes").mkdir(parents=True)
    (elsewhere / "nodes" / "cwdonly.yaml").write_text(yaml.safe_dump(dict(PROFILE, name="cwdonly")))
    monkeypatch.chdir(elsewhere)
    base = project / "scenarios" / "deep"
    assert find_profile("mine", base) == (project / "nodes" / "mine.yaml").resolve()
    assert profile_dirs(base)[0] == (project / "nodes").resolve()
    assert "pi4b" in available_profiles(base) and "pi4b" in available_profiles(None)  # the repository's
    with pytest.raises(ValueError, match="unknown device profile 'cwdonly'"):
        find_profile("cwdonly", base)

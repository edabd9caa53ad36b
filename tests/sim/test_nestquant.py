"""NestQuant head switching inside the simulation: charges, policy, battery, switching cost."""

import pytest

from testbed.config.load import scenario_from_dict
from testbed.config.modes import NestQuantModes
from testbed.run.prepare import prepare_dict
from testbed.run.runner import run_scenario


@pytest.fixture
def modes_file(tmp_path):
    modes = NestQuantModes(full_bits=8, part_bits=4, accuracy={"full": 0.90, "part": 0.80},
                           compute_scale={"full": 1.0, "part": 0.5}, switch_bytes=1_000_000,
                           storage_bytes={"nested": 1, "full": 1, "part": 1, "separate": 2})
    return modes.save(tmp_path / "nq.modes.json")


def scenario(modes_file, rate: str, **nestquant) -> dict:
    return {
        "name": "nq", "seed": 1, "duration": "30 s", "warmup": "0 s", "drain": "30 s",
        "fleet": [{"count": 1, "device": "pi4b", "head": "100 ms", "encode": "0 s", "payload": "1 kB",
                   "arrivals": {"kind": "periodic", "rate": rate, "random_phase": False},
                   "nestquant": {"modes": str(modes_file), "paging_rate": "10 MB/s", **nestquant}}],
        "link": {"datarate": "10 MB/s"},
        "server": {"device": "h100", "service": {"table": {1: "1 ms"}}},
    }


def test_light_load_stays_on_the_full_head(modes_file):
    res = run_scenario(scenario_from_dict(scenario(modes_file, "5/s")))
    df = res.records
    assert (df["mode"] == 0).all()
    assert (df["head_end_s"] - df["head_start_s"]).tolist() == pytest.approx([0.1] * len(df))
    assert res.summary["nestquant_accuracy"] == pytest.approx(0.90)


def test_queue_pressure_switches_to_the_part_head_with_hysteresis(modes_file):
    raw = scenario(modes_file, "12/s", policy={"queue_high": 4, "queue_low": 1})
    res = run_scenario(scenario_from_dict(raw))
    df = res.records
    head = (df["head_end_s"] - df["head_start_s"]).to_numpy()
    part = df["mode"].to_numpy() == 1
    assert part.any() and (~part).any()
    switches = int((df["mode"].diff().fillna(0) != 0).sum())
    assert switches >= 2
    # part-bit frames cost half; the frame that switches also pages 1 MB at 10 MB/s (0.1 s)
    first_part = int(part.argmax())
    assert head[first_part] == pytest.approx(0.05 + 0.1)
    steady = part & (df["mode"].diff().fillna(0).to_numpy() == 0)
    assert head[steady] == pytest.approx([0.05] * int(steady.sum()))
    # 12 frames/s against 10/s full or 20/s part: the queue is held between the thresholds
    assert res.summary["dropped_at_node"] == 0
    assert 0.8 < res.summary["nestquant_accuracy"] < 0.9


def test_low_battery_keeps_the_part_head(modes_file):
    # 2.7 W idle + 3.7 W extra while computing: a 60 J battery at 50% falls below 20% within seconds
    res = run_scenario(scenario_from_dict(scenario(modes_file, "5/s", battery_j=60, initial_battery=0.5)))
    df = res.records
    modes = df["mode"].to_numpy()
    first = int((modes == 1).argmax())
    assert first > 0 and (modes[first:] == 1).all()


def test_bad_nestquant_config_is_named(modes_file):
    from testbed.errors import ConfigError

    with pytest.raises(ConfigError, match=r"fleet\.0\.nestquant"):
        scenario_from_dict(scenario(modes_file, "5/s", policy={"queue_hi": 3}))
    raw = scenario(modes_file, "5/s")
    raw["fleet"][0]["nestquant"]["modes"] = "missing.json"
    with pytest.raises(ConfigError, match=r"fleet\.0\.nestquant\.modes: got 'missing\.json'"):
        prepare_dict(raw)  # the modes file is opened when the scenario is resolved

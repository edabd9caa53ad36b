"""A link whose rate changes over time (``link.rate_trace``): the arithmetic, an exact trace, a constant
trace equal to a fixed rate, the CSV form, and what is refused."""

from __future__ import annotations

import pytest

from testbed.cli import main
from testbed.config.load import apply_overrides, scenario_from_dict
from testbed.core.calc import RateSchedule
from testbed.errors import ConfigError
from testbed.run.prepare import prepare_dict
from testbed.sim import simulate
from tests.conftest import base_scenario
from tests.sim.test_trace import two_nodes


def test_duration_integrates_the_rate_over_the_changes() -> None:
    s = RateSchedule([0.0, 1.0, 2.0], [1.0, 0.5, 2.0])
    assert s.duration(0.2, 0.5) == pytest.approx(0.5)          # inside the first segment
    assert s.duration(0.8, 0.5) == pytest.approx(0.2 + 0.6)    # 0.2 s at 1, then 0.3 nominal at half rate
    assert s.duration(0.5, 1.5) == pytest.approx(0.5 + 1.0 + 0.25)  # crosses both changes
    assert s.duration(5.0, 1.0) == pytest.approx(0.5)          # the last factor holds forever
    assert RateSchedule([0.0], [1.0]).duration(3.0, 0.25) == 0.25
    with pytest.raises(ValueError):
        RateSchedule([1.0], [1.0])
    with pytest.raises(ValueError):
        RateSchedule([0.0, 0.0], [1.0, 1.0])


def test_a_constant_trace_gives_the_records_of_a_fixed_rate() -> None:
    raw = base_scenario(duration="20 s", warmup="2 s")
    fixed = simulate(prepare_dict(raw)).records
    traced = apply_overrides(raw, {"link.rate_trace": {"time_s": [0, 5, 10], "rate": ["1 MB/s"] * 3}})
    assert simulate(prepare_dict(traced)).records.equals(fixed)


def test_exact_trace_when_the_rate_halves_during_a_transmission() -> None:
    """100 kB/s until 20 ms, then 50 kB/s: node a's 1000 B (10 ms nominal) starts at 15 ms, sends 500 B
    by 20 ms and the other 500 B in 10 ms, ending at 30 ms; node b waits and needs 20 ms: 30-50 ms."""
    raw = two_nodes(fast_second=False)
    raw["link"]["rate_trace"] = {"time_s": [0, 0.020], "rate": ["100 kB/s", "50 kB/s"]}
    df = simulate(scenario_from_dict(raw)).records
    assert df.loc[0, ["tx_start_s", "tx_end_s"]].to_numpy() * 1e3 == pytest.approx([15, 30], abs=1e-9)
    assert df.loc[1, ["tx_start_s", "tx_end_s"]].to_numpy() * 1e3 == pytest.approx([30, 50], abs=1e-9)
    # the downlink follows the same cell rate: 100 B at half of 100 kB/s takes 2 ms
    assert (df["downlink_end_s"] - df["downlink_start_s"]).to_numpy() * 1e3 == pytest.approx([2, 2], abs=1e-9)


def test_the_trace_is_read_from_a_csv_beside_the_scenario(tmp_path) -> None:
    import yaml

    (tmp_path / "rates.csv").write_text("time_s,rate\n0,1 MB/s\n10,250 kB/s\n")
    raw = base_scenario(duration="20 s", warmup="2 s")
    raw["link"]["rate_trace"] = {"file": "rates.csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    res = prepare_dict(raw, tmp_path)
    assert res.scenario.link.rate_trace is not None
    assert res.scenario.link.rate_trace.rate == (1e6, 250e3)
    df = simulate(res).records
    tx = (df["tx_end_s"] - df["tx_start_s"])
    early, late = tx[df["tx_start_s"] < 9.9], tx[df["tx_start_s"] > 10.1]
    assert early.median() == pytest.approx(0.010) and late.median() == pytest.approx(0.040)
    assert any(str(tmp_path / "rates.csv") == f for f, _ in res.files)


@pytest.mark.parametrize(("trace", "needle"), [
    ({"time_s": [0, 5], "rate": ["1 MB/s"]}, "same length"),
    ({"time_s": [1, 5], "rate": ["1 MB/s", "2 MB/s"]}, "start at 0"),
    ({"time_s": [0, 5, 5], "rate": ["1 MB/s"] * 3}, "increase strictly"),
    ({"time_s": [0], "rate": ["-1 MB/s"]}, "rate"),
    ({"time_s": [0, float("nan")], "rate": ["1 MB/s"] * 2}, "time_s"),
    ({}, "needs a file"),
])
def test_bad_traces_name_the_field(trace, needle) -> None:
    with pytest.raises(ConfigError, match=r"link\.rate_trace") as info:
        scenario_from_dict(apply_overrides(base_scenario(), {"link.rate_trace": trace}))
    assert needle in str(info.value)


def test_other_link_models_and_the_emulator_refuse_a_trace(tmp_path, capsys) -> None:
    import yaml

    raw = base_scenario(duration="5 s", warmup="1 s")
    raw["link"].update(model="fair_share", rate_trace={"time_s": [0], "rate": ["1 MB/s"]})
    with pytest.raises(ConfigError, match=r"link\.rate_trace: got 'fair_share'"):
        prepare_dict(raw)
    raw["link"]["model"] = "shared_fifo"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    assert main(["emulate", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.startswith("error: link.rate_trace:")
    (tmp_path / "bad.csv").write_text("time_s,rate\n0,fast\n")
    raw["link"]["rate_trace"] = {"file": "bad.csv"}
    with pytest.raises(ConfigError, match=r"link\.rate_trace\.file"):
        prepare_dict(raw, tmp_path)

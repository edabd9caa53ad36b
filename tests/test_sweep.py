import copy

import pandas as pd
import pytest

from testbed.run.sweep import largest_first, plan, prepare_jobs, replication_seed, run_job, run_sweep
from tests.conftest import base_scenario

_REAL_RUN_JOB = run_job


def sweep_raw() -> dict:
    raw = base_scenario(duration="15 s", warmup="2 s")
    raw["sweep"] = {"fleet.0.count": [5, 10], "link.datarate": ["1 MB/s", "2 MB/s"]}
    raw["replications"] = 2
    return raw


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["wall_s", "pipeline_s"]).reset_index(drop=True)


def test_plan_is_a_grid_with_common_seeds():
    jobs = plan(sweep_raw())
    assert len(jobs) == 8
    assert {j.cell for j in jobs} == {0, 1, 2, 3}
    assert jobs[0].raw["fleet"][0]["count"] == 5 and jobs[2].raw["link"]["datarate"] == "2 MB/s"
    assert jobs[0].raw["seed"] == jobs[2].raw["seed"] == replication_seed(3, 0)
    assert jobs[1].raw["seed"] != jobs[0].raw["seed"]
    assert "sweep" not in jobs[0].raw and "replications" not in jobs[0].raw


def test_workers_take_the_largest_cells_first_ties_in_plan_order():
    jobs = plan(sweep_raw())
    order = [j.name for j, _ in largest_first(list(zip(jobs, prepare_jobs(jobs, None))))]
    counts = [j.raw["fleet"][0]["count"] for j in jobs]
    big = [j.name for j, c in zip(jobs, counts) if c == 10]
    small = [j.name for j, c in zip(jobs, counts) if c == 5]
    assert order == big + small  # 10-node cells (twice the requests) first, each half in plan order


def test_interrupted_sweep_resumes_to_the_same_summary(tmp_path):
    full = run_sweep(sweep_raw(), tmp_path / "full", progress=False)
    assert len(full) == 8
    assert {"sweep.fleet.0.count", "sweep.link.datarate", "latency_p95_s_ci_low"} <= set(full.columns)

    class Stop(Exception):
        pass

    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        run_sweep(sweep_raw(), tmp_path / "cut", progress=False, on_done=interrupt)
    finished = sorted(p.name for p in (tmp_path / "cut" / "cells").iterdir() if not p.name.startswith("."))
    assert len(finished) == 3
    before = {p: (tmp_path / "cut" / "cells" / p / "summary.json").stat().st_mtime_ns for p in finished}
    ran = []
    resumed = run_sweep(sweep_raw(), tmp_path / "cut", progress=False, on_done=ran.append)
    assert len(ran) == 5  # only the unfinished jobs ran again
    assert all((tmp_path / "cut" / "cells" / p / "summary.json").stat().st_mtime_ns == t for p, t in before.items())
    pd.testing.assert_frame_equal(comparable(resumed), comparable(full))


def test_parallel_workers_match_serial(tmp_path):
    raw = sweep_raw()
    raw["replications"] = 1
    serial = run_sweep(copy.deepcopy(raw), tmp_path / "a", progress=False)
    parallel = run_sweep(copy.deepcopy(raw), tmp_path / "b", workers=2, progress=False)
    pd.testing.assert_frame_equal(comparable(serial), comparable(parallel))


def test_dask_cluster_matches_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    raw = sweep_raw()
    raw["replications"] = 1
    local = run_sweep(copy.deepcopy(raw), tmp_path / "local", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_sweep(copy.deepcopy(raw), tmp_path / "dask", scheduler=cluster.scheduler_address,
                           progress=False)
    pd.testing.assert_frame_equal(comparable(local), comparable(remote))


def test_bad_sweep_values_are_named():
    from testbed.errors import ConfigError

    raw = sweep_raw()
    raw["sweep"]["link.datarate"] = []
    with pytest.raises(ConfigError, match=r"sweep\.link\.datarate"):
        plan(raw)


def test_confidence_interval_uses_student_t():
    import numpy as np
    from scipy import stats

    from testbed.core.metrics import percentile_ci

    x = np.array([1.0, 2.0, 4.0])
    lo, hi = percentile_ci(x)
    ref = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(ref)


def test_sweeping_the_seed_gives_one_cell_per_seed(tmp_path):
    raw = base_scenario(duration="10 s", warmup="1 s")
    raw["sweep"] = {"seed": [1, 2, 3]}
    raw["replications"] = 2
    jobs = plan(raw)
    assert [j.raw["seed"] for j in jobs if j.replication == 0] == [1, 2, 3]
    assert len({j.raw["seed"] for j in jobs}) == 6            # replications of different seeds differ too
    raw["replications"] = 1
    table = run_sweep(raw, tmp_path / "s", progress=False)
    assert list(table["seed"]) == [1, 2, 3]
    assert table["latency_mean_s"].nunique() == 3


def _empirical_sweep(tmp_path):
    data = tmp_path / "head.csv"
    data.write_text("0.010\n0.012\n0.011\n")
    raw = base_scenario(duration="8 s", warmup="1 s")
    raw["fleet"][0]["head"] = {"dist": "empirical", "file": "head.csv"}
    raw["sweep"] = {"fleet.0.count": [2, 3]}
    return raw, data


def test_resuming_after_a_referenced_file_changed_is_refused(tmp_path):
    from testbed.io import OutputExistsError

    raw, data = _empirical_sweep(tmp_path)
    out = tmp_path / "out"
    run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False)
    run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False)   # same inputs: resumes
    data.write_text("0.050\n0.060\n")
    with pytest.raises(OutputExistsError, match=r"different sweep.*--force"):
        run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False)
    table = run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False, force=True)
    assert (table["mean_head_s"] > 0.04).all()                 # every cell ran on the new data


def test_cells_without_an_identity_are_refused(tmp_path):
    from testbed.io import OutputExistsError

    raw, _ = _empirical_sweep(tmp_path)
    out = tmp_path / "out"
    run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False)
    (out / "sweep.yaml").unlink()
    with pytest.raises(OutputExistsError, match="different sweep"):
        run_sweep(copy.deepcopy(raw), out, base_dir=tmp_path, progress=False)


def test_a_bad_cell_anywhere_in_the_grid_stops_the_sweep_before_it_writes(tmp_path):
    from testbed.errors import ConfigError

    raw = base_scenario(duration="8 s", warmup="1 s")
    raw["sweep"] = {"fleet.0.count": [2, 3, -1]}
    with pytest.raises(ConfigError, match=r"sweep cell 2"):
        run_sweep(raw, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_scheduler_without_dask_is_one_line(monkeypatch, tmp_path, capsys):
    import sys

    from testbed.cli import main

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    raw = base_scenario(duration="8 s", warmup="1 s")
    f = tmp_path / "s.yaml"
    import yaml

    f.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --scheduler") and "dask" in err[0]
    assert not (tmp_path / "o").exists()


def test_too_many_runs_are_refused_before_planning():
    from testbed.errors import ConfigError

    raw = base_scenario()
    raw["replications"] = 10**9
    with pytest.raises(ConfigError, match="replications"):
        plan(raw)


def test_swept_quantities_get_a_numeric_column_in_base_units(tmp_path):
    from testbed.run.sweep import field_unit, quantity, swept_fields

    table = run_sweep(sweep_raw(), tmp_path / "s", progress=False)
    assert list(table["sweep.link.datarate"].unique()) == ["1 MB/s", "2 MB/s"]     # the label, as written
    assert list(table["sweep.link.datarate_bytes_per_s"].unique()) == [1e6, 2e6]
    assert table["sweep.fleet.0.count"].dtype.kind == "i"                          # a count: no second column
    assert not any(c.startswith("sweep.fleet.0.count_") for c in table.columns)
    assert swept_fields(table.columns) == ["sweep.fleet.0.count", "sweep.link.datarate"]
    assert pd.read_parquet(tmp_path / "s" / "summary.parquet")["sweep.link.datarate_bytes_per_s"].iloc[-1] == 2e6
    assert {p: field_unit(p) for p in ("warmup", "link.latency", "link.csma.mtu", "fleet.0.arrivals.rate",
                                       "fleet.0.arrivals.jitter", "server.batching.max_delay", "fleet.0.count",
                                       "link.model", "no.such")} == {
        "warmup": "duration", "link.latency": "duration", "link.csma.mtu": "size", "fleet.0.arrivals.rate": "rate",
        "fleet.0.arrivals.jitter": "duration", "server.batching.max_delay": "duration", "fleet.0.count": None,
        "link.model": None, "no.such": None}
    assert quantity("duration", "20 ms") == pytest.approx(0.02)
    assert quantity("size", '{"dist": "deterministic", "value": "5 kB"}') == 5000.0
    assert quantity("datarate", "40 Mbit/s") == 5e6


def test_a_sweep_defaults_to_three_replications_and_says_so():
    from testbed.run.sweep import DEFAULT_REPLICATIONS, replication_notes

    raw = sweep_raw()
    del raw["replications"]
    assert DEFAULT_REPLICATIONS == 3 and len(plan(raw)) == 4 * 3
    assert len(replication_notes(raw)) == 1 and "3" in replication_notes(raw)[0]
    raw["replications"] = 2
    (note,) = replication_notes(raw)
    assert note.startswith("warning:") and "band" in note
    raw["replications"] = 3
    assert replication_notes(raw) == []
    no_sweep = base_scenario()
    assert len(plan(no_sweep)) == 1 and replication_notes(no_sweep) == []


class _CountingRunJob:
    """run_job that leaves a marker file per started run (visible across forked workers; picklable)."""

    def __init__(self, started):
        self.started = started

    def __call__(self, job, out, resolved):
        (self.started / job.name).touch()
        return _REAL_RUN_JOB(job, out, resolved)


def _counting_run_job(monkeypatch, started):
    import testbed.run.sweep as sweep

    monkeypatch.setattr(sweep, "run_job", _CountingRunJob(started))


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_cancels_pending_runs_keeps_finished_ones_and_resumes(tmp_path, monkeypatch, workers):
    from testbed.run.sweep import SweepInterrupted

    raw = sweep_raw()
    raw["replications"] = 3   # 12 runs
    started = tmp_path / "started"
    started.mkdir()
    _counting_run_job(monkeypatch, started)
    seen = []

    def ctrl_c(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as info:
        run_sweep(copy.deepcopy(raw), tmp_path / "out", workers=workers, progress=False, on_done=ctrl_c)
    assert len(list(started.iterdir())) < 12                        # queued runs were cancelled
    cells = tmp_path / "out" / "cells"
    finished = [p for p in cells.iterdir() if not p.name.startswith(".")]
    assert info.value.total == 12 and info.value.finished == len(finished) >= 2
    assert str(info.value) == (f"interrupted: {len(finished)} of 12 runs finished; "
                               "rerun the same command to resume")
    assert len(pd.read_parquet(tmp_path / "out" / "summary.parquet")) == len(finished)
    ran = []
    table = run_sweep(copy.deepcopy(raw), tmp_path / "out", workers=workers, progress=False, on_done=ran.append)
    assert len(ran) == 12 - len(finished) and len(table) == 12


def test_cli_ctrl_c_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    import yaml

    import testbed.run.sweep as sweep
    from testbed.cli import main

    real, calls = sweep.run_job, []

    def interrupted_after_two(job, out, resolved):
        calls.append(job.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, out, resolved)

    monkeypatch.setattr(sweep, "run_job", interrupted_after_two)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sweep_raw()))
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "interrupted: 2 of 8 runs finished; rerun the same command to resume"
    assert len(calls) == 3


def test_the_console_table_keeps_a_cell_whose_swept_value_is_null():
    from testbed.cli.commands.sweep import sweep_table

    table = pd.DataFrame({"cell": [0, 0, 1, 1], "replication": [0, 1, 0, 1],
                          "sweep.model.head": [None, None, "g.pt", "g.pt"],
                          "latency_p95_s": [0.1, 0.3, 0.2, 0.4]})
    lines = sweep_table(table).splitlines()
    assert len(lines) == 4  # the units line, the header and both cells
    assert lines[2].split() == ["-", "0.2"] and lines[3].split() == ["g.pt", "0.3"]  # null shown as "-"

import copy

import pandas as pd
import pytest

from testbed.run.sweep import plan, replication_seed, run_sweep
from tests.conftest import base_scenario


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

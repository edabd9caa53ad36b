"""Every scenario a user can copy from scenarios/ validates the way ``testbed run`` opens it (files
resolved against the scenario's directory, model side and profile figures checked), and so does
every cell of its sweep grid."""

from pathlib import Path

import pytest

from testbed.config.load import read_yaml
from testbed.run.prepare import prepare, scenario_dir
from testbed.run.sweep import plan, prepare_jobs

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # resolution never depends on the working directory
    resolved, _ = prepare(path)
    assert resolved.scenario.node_count >= 1
    assert resolved.base_dir == path.resolve().parent
    assert all(Path(f).is_file() and len(sha) == 64 for f, sha in resolved.files)
    jobs = plan(read_yaml(path))
    assert len(prepare_jobs(jobs, scenario_dir(path))) == len(jobs)

"""Every scenario a user can copy from scenarios/ validates, and its sweep plans."""

from pathlib import Path

import pytest

from testbed.config.load import load_scenario, read_yaml
from testbed.run.sweep import plan

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path):
    scenario, _ = load_scenario(path)
    assert scenario.node_count >= 1
    assert plan(read_yaml(path))

"""A corrupt pipeline cache entry is detected and rebuilt, never left stuck broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testbed.bridge import cache as C
from testbed.config.load import scenario_from_dict
from testbed.config.schema import Scenario
from testbed.core.charges import StageCost
from tests.conftest import base_scenario


def _scenario() -> Scenario:
    raw = base_scenario(model={"name": "resnet18", "weights": "random", "split": "layer2"},
                        codec=[{"quantize": {"bits": 8}}], dataset={"kind": "photos", "limit": 4})
    return scenario_from_dict(raw)


def _table() -> C.PipelineTable:
    n = 4
    images = C._images_table(np.full(n, 1000), np.arange(n), np.tile(np.arange(5), (n, 1)), np.arange(n),
                             np.full(n, 0.9), np.full(n, -1))
    return C.PipelineTable(images, 100, 100, (StageCost("element", "quantize"),), {"codec": "quantize:bits=8"})


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The cache under tmp_path; building an entry is counted instead of running the model."""
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    def fake(sc: Scenario) -> C.PipelineTable:
        calls.append(1)
        return _table()

    monkeypatch.setattr(C, "_run_split", fake)
    return calls


def _entry() -> Path:
    key, _ = C.pipeline_key(_scenario())
    return C.cache_dir() / key


@pytest.mark.parametrize(("name", "damage"), [
    ("meta.json", b"{not json"),
    ("meta.json", b'{"key": {}}'),
    ("meta.json", b"[]"),
    ("images.parquet", b"PAR1 truncated"),
    ("images.parquet", None),
])
def test_corrupt_entry_is_rebuilt(built: list[int], capsys: pytest.CaptureFixture[str], name: str,
                                  damage: bytes | None) -> None:
    sc = _scenario()
    first = C.pipeline_table(sc)
    assert built == [1]
    assert C.pipeline_table(sc).images.equals(first.images) and built == [1]  # a good entry is reused
    target = _entry() / name
    if damage is None:
        target.unlink()
    else:
        target.write_bytes(damage)
    capsys.readouterr()
    again = C.pipeline_table(sc)
    assert built == [1, 1] and again.images.equals(first.images)
    assert "corrupt" in capsys.readouterr().err
    assert C.pipeline_table(sc).images.equals(first.images) and built == [1, 1]  # and it stays fixed

"""A stand-in for the real pipeline runs (``cache._run_split`` and ``cache._run_image_baseline``), shared by
the bridge tests of configurations: each entry's payload is ``PAYLOAD_BASE[split] + 100 x limit + image``,
so a test can tell which entry and image a frame came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testbed.bridge import cache as C
from testbed.config.schema import Scenario
from testbed.core.charges import StageCost

PAYLOAD_BASE = {"stage4": 10_000, "input": 50_000}


def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              wrong: Callable[[str, int], np.ndarray]) -> list[tuple[str, str, int]]:
    """Replace the pipeline runs (cache in ``tmp_path``); ``wrong(split, n)`` is each image's 0/1 top-1
    disagreement. Returns the list the runs append ``(split, "jpeg" or "q8", limit)`` to."""
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path))
    calls: list[tuple[str, str, int]] = []

    def fake(sc: Scenario, params: dict[str, Any] | None = None) -> C.PipelineTable:
        assert sc.model is not None
        n = int(C.dataset_arg(sc)["limit"])
        split = sc.model.split
        calls.append((split, "jpeg" if params else "q8", n))
        images = C._images_table(PAYLOAD_BASE[split] + 100 * n + np.arange(n), wrong(split, n),
                                 np.tile(np.arange(5), (n, 1)), np.zeros(n, dtype=int), np.full(n, 0.9),
                                 np.full(n, -1))
        costs = (StageCost("element", "jpeg"),) if params else (StageCost("element", "quantize"),)
        elements = 3 * 224 * 224 if split == "input" else 80 * 14 * 14
        return C.PipelineTable(images, elements, elements, costs, {"split": split})

    monkeypatch.setattr(C, "_run_split", fake)
    monkeypatch.setattr(C, "_run_image_baseline", fake)
    return calls

"""The request records: declared typed columns, growth beyond the first allocation, the frame."""

from __future__ import annotations

import math
from array import array

import numpy as np

from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS, STATUS, Records


def test_every_column_is_declared_with_its_type() -> None:
    declared = {k: v for k, v in Records.__annotations__.items() if "array[" in str(v)}
    expected = {name: "array[float]" for name in FLOAT_COLUMNS} | {name: "array[int]" for name, _ in INT_COLUMNS}
    assert declared == expected
    rec = Records(4)
    for name in FLOAT_COLUMNS:
        assert getattr(rec, name) is rec.f[name] and rec.f[name].typecode == "d"
    for name, code in INT_COLUMNS:
        assert getattr(rec, name) is rec.i[name] and rec.i[name].typecode == code


def test_rows_grow_past_the_first_allocation_and_keep_their_handles() -> None:
    rec = Records(2, chunk=3)
    created = rec.created_s
    rids = [rec.new(node=i, group=1, frame=i, created_s=0.5 * i) for i in range(7)]
    assert rids == list(range(7)) and rec.capacity == 2 + 2 * 3
    assert rec.created_s is created and list(created[:7]) == [0.5 * i for i in range(7)]
    assert all(math.isnan(v) for v in rec.finished_s[:7])
    assert list(rec.image[:7]) == [-1] * 7 and list(rec.gpu[:7]) == [-1] * 7
    assert rec.nbytes() == sum(8 * 8 for _ in FLOAT_COLUMNS) + sum(array(c).itemsize * 8 for _, c in INT_COLUMNS)


def test_frame_columns_order_and_types() -> None:
    rec = Records(0)
    for i in range(3):
        rid = rec.new(i, i % 2, 0, float(i))
        rec.status[rid] = STATUS.index("ok") if i else STATUS.index("timed_out")
    df = rec.to_frame(("cams", "drones"))
    names = [n for n, _ in INT_COLUMNS]
    assert list(df.columns) == ["request", *names, "group_name", *FLOAT_COLUMNS]
    assert list(df["status"]) == ["timed_out", "ok", "ok"]
    assert list(df["status"].cat.categories) == list(STATUS)
    assert list(df["group_name"]) == ["cams", "drones", "cams"]
    assert df["node"].dtype == np.int32 and df["gpu"].dtype == np.int8 and df["created_s"].dtype == np.float64


def test_expected_requests_covers_the_mean_frame_count() -> None:
    from testbed.config.load import scenario_from_dict
    from testbed.core.records import expected_requests
    from tests.conftest import base_scenario

    sc = scenario_from_dict(base_scenario(duration="100 s"))  # 20 nodes at 1/s
    mean = 20 * 1 * 100
    assert mean * 1.01 + 4 * mean**0.5 <= expected_requests(sc) <= mean * 1.01 + 4 * mean**0.5 + 64

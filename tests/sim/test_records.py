"""The request records: declared typed columns, growth beyond the first allocation, the frame; many rows
started at once (``new_rows``) as ``new`` row by row, in memory and streamed."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from testbed.core.records import FLOAT_COLUMNS, INT_COLUMNS, STATUS, Records, StreamingRecords

OK = STATUS.index("ok")


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


# -- many rows at once ------------------------------------------------------------------------------
def _batch(first: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``first .. first+m-1``: node, group, frame, created_s."""
    k = np.arange(first, first + m)
    return k % 7, k % 3, k // 7, 0.25 * k + 0.1


def _columns(rec: Records, rows: list[int]) -> dict[str, list[float | None]]:
    """Every column's cells in ``rows`` (NaN written as None, so that equal rows compare equal)."""
    out: dict[str, list[float | None]] = {}
    for name, col in [*rec.f.items(), *rec.i.items()]:
        out[name] = [None if isinstance(v, float) and math.isnan(v) else v for v in (col[r] for r in rows)]
    return out


@pytest.mark.parametrize("group_config", [None, [4, 5, 6]])
def test_new_rows_writes_what_new_writes_row_by_row(group_config: list[int] | None) -> None:
    """Batches of 0 to 6 rows into records of 3 rows growing by 4: the same indices, cells, row count
    and capacity as ``new`` once per row."""
    bulk, single = Records(3, chunk=4), Records(3, chunk=4)
    bulk.group_config = single.group_config = group_config
    first = 0
    for m in [2, 0, 1, 6, 3, 5]:
        node, group, frame, created = _batch(first, m)
        rows = bulk.new_rows(node, group, frame, created)
        assert rows == [single.new(int(a), int(b), int(c), float(d)) for a, b, c, d in zip(node, group, frame, created)]
        assert rows == list(range(first, first + m))
        first += m
    assert bulk.n == single.n == first == 17
    assert bulk.capacity == single.capacity == 3 + 4 * 4
    assert all(len(c) == bulk.capacity for c in [*bulk.f.values(), *bulk.i.values()])
    assert _columns(bulk, list(range(bulk.capacity))) == _columns(single, list(range(single.capacity)))
    pd.testing.assert_frame_equal(bulk.to_frame(), single.to_frame())
    if group_config is not None:
        assert list(bulk.config[:first]) == [group_config[g] for g in _batch(0, first)[1]]


def _stream(bulk: bool, batches: list[int], finish: Callable[[int, int], bool], flush_rows: int = 4) -> tuple[
        list[list[int]], list[list[int]], list[tuple[int, dict[str, np.ndarray]]]]:
    """Streamed records fed ``batches`` of rows (``new_rows``, or ``new`` once per row); after each batch the
    requests ``finish(request, batches since it started)`` picks get a status. Returns the slots of each
    batch, their tokens and the sink's calls."""
    calls: list[tuple[int, dict[str, np.ndarray]]] = []
    rec = StreamingRecords(lambda first, cols: calls.append((first, cols)), flush_rows=flush_rows)
    slots, tokens, first, done = [], [], 0, set()
    for k, m in enumerate(batches):
        node, group, frame, created = _batch(first, m)
        if bulk:
            got = rec.new_rows(node, group, frame, created)
        else:
            got = [rec.new(int(a), int(b), int(c), float(d)) for a, b, c, d in zip(node, group, frame, created)]
        slots.append(list(got))
        tokens.append([rec.token(s) for s in got])
        first += m
        for s in list(rec.pending):  # every request still held whose turn has come
            request = rec.token(s)
            if request not in done and finish(request, k - _batch_of(request, batches)):
                done.add(request)
                rec.status[s] = OK
                rec.finished_s[s] = rec.created_s[s] + 1.0
    rec.close()
    return slots, tokens, calls


def _batch_of(request: int, batches: list[int]) -> int:
    return int(np.searchsorted(np.cumsum(batches), request, side="right"))


def _joined(calls: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    sizes = [len(cols["created_s"]) for _, cols in calls]
    assert [first for first, _ in calls] == [sum(sizes[:i]) for i in range(len(calls))]
    return {name: np.concatenate([cols[name] for _, cols in calls]) for name in calls[0][1]}


FINISH: dict[str, Callable[[int, int], bool]] = {
    "at-once": lambda request, age: True,
    "some-later": lambda request, age: request % 5 != 3 or age >= 1,  # every fifth held one batch longer
}


@pytest.mark.parametrize("finish", FINISH.values(), ids=list(FINISH))
def test_streamed_new_rows_reuses_the_slots_new_would(finish: Callable[[int, int], bool]) -> None:
    """Batches that meet the flush checks at their start (every 4 rows, at most 4 held after a flush): the
    same slots (reused after each flush), tokens and sink calls as ``new`` row by row."""
    batches = [2, 2, 4, 4, 4, 4, 4, 4]
    bulk, single = _stream(True, batches, finish), _stream(False, batches, finish)
    assert bulk[0] == single[0]
    assert bulk[1] == single[1] == [list(range(sum(batches[:i]), sum(batches[:i + 1]))) for i in range(len(batches))]
    assert len({s for batch in bulk[0] for s in batch}) < sum(batches) / 2  # slots reused after flushes
    assert [first for first, _ in bulk[2]] == [first for first, _ in single[2]]
    for (_, a), (_, b) in zip(bulk[2], single[2]):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    rows = _joined(bulk[2])
    assert rows["frame"].tolist() == _batch(0, sum(batches))[2].tolist()
    assert len(bulk[2]) >= 4


@pytest.mark.parametrize("finish", FINISH.values(), ids=list(FINISH))
def test_streamed_new_rows_hands_the_sink_the_rows_new_would(finish: Callable[[int, int], bool]) -> None:
    """Batches of any size: the tokens are the request numbers and the sink receives the same rows end to
    end as with ``new`` row by row (the calls may split them differently)."""
    batches = [3, 3, 3, 7, 1, 6, 1, 0, 9, 2]
    bulk, single = _stream(True, batches, finish), _stream(False, batches, finish)
    assert bulk[1] == single[1] == [list(range(sum(batches[:i]), sum(batches[:i + 1]))) for i in range(len(batches))]
    a, b = _joined(bulk[2]), _joined(single[2])
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert len(a["created_s"]) == sum(batches)


def test_streamed_new_rows_looks_for_a_flush_once_per_call() -> None:
    """A flush is looked for before the call, not before each row: a call that crosses the check takes other
    slots than new() row by row would, and hands the sink the same rows in the same order."""
    batches = [3, 3, 3]  # the check at 4 rows falls inside the second batch
    bulk, single = _stream(True, batches, FINISH["at-once"]), _stream(False, batches, FINISH["at-once"])
    assert bulk[0] != single[0]  # the slots
    assert bulk[1] == single[1]  # the request numbers
    joined, expected = _joined(bulk[2]), _joined(single[2])
    assert joined.keys() == expected.keys()
    for name, col in expected.items():
        np.testing.assert_array_equal(joined[name], col, err_msg=name)

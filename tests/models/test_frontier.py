"""The smallest payload that keeps an agreement floor, per split point."""

from __future__ import annotations

import pytest

from testbed.split.frontier import smallest_keeping


def _row(split: str, codec: str, size: float, agree: float | None) -> dict:
    return {"split": split, "codec": codec, "payload_bytes_mean": size, "top1_agreement": agree}


ROWS = [_row("stem", "f32", 1000, 1.0), _row("stem", "q8", 200, 0.97), _row("stem", "q1", 20, 0.3),
        _row("stage4", "q8", 50, 0.995), _row("stage4", "q4", 30, 0.93), _row("stage4", "q2", 10, None)]


def test_picks_the_smallest_payload_meeting_each_floor_per_split() -> None:
    out = smallest_keeping(ROWS, [0.9, 0.95, 0.99])
    assert [split for split, _ in out] == ["stem", "stage4"]
    (_, stem), (_, stage4) = out
    assert {f: r and r["codec"] for f, r in stem.items()} == {0.9: "q8", 0.95: "q8", 0.99: "f32"}
    assert {f: r and r["codec"] for f, r in stage4.items()} == {0.9: "q4", 0.95: "q8", 0.99: "q8"}


def test_a_floor_nothing_meets_gives_none_and_bad_floors_are_refused() -> None:
    assert smallest_keeping(ROWS, [1.0])[1][1][1.0] is None
    assert smallest_keeping(ROWS, [0.0])[1][1][0.0]["codec"] == "q4"  # type: ignore[index]  # rows without agreement never count
    with pytest.raises(ValueError, match="outside"):
        smallest_keeping(ROWS, [1.2])


def test_ties_go_to_the_higher_agreement() -> None:
    rows = [_row("s", "a", 10, 0.91), _row("s", "b", 10, 0.95)]
    assert smallest_keeping(rows, [0.9])[0][1][0.9]["codec"] == "b"  # type: ignore[index]

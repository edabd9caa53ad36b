"""Output sets on disk: committed whole or not at all, one writer per directory, modes per umask,
stale temporaries cleaned, strict JSON, and paths that cannot hold results refused in one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from testbed.io import (
    TMP_PREFIX,
    OutputError,
    OutputExistsError,
    claim_output,
    iter_tmp,
    json_text,
    write_json,
    write_output_set,
    write_text,
)


def _writers(tag: str, fail_at: str | None = None) -> dict:
    def make(name: str):
        def write(p: Path) -> None:
            if name == fail_at:
                raise RuntimeError("killed mid-write")
            p.write_text(f"{tag} {name}")
        return write
    return {n: make(n) for n in ("requests.parquet", "queues.csv", "summary.json")}


def test_a_crash_during_a_forced_rewrite_keeps_the_old_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_output_set(out, _writers("old"))
    with pytest.raises(RuntimeError):
        write_output_set(out, _writers("new", fail_at="summary.json"), force=True)
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "requests.parquet": "old requests.parquet", "queues.csv": "old queues.csv", "summary.json": "old summary.json"}
    assert not list(iter_tmp(tmp_path))
    write_output_set(out, _writers("new"), force=True)
    assert (out / "summary.json").read_text() == "new summary.json"


def test_a_directory_with_other_files_keeps_them_and_never_pairs_old_marker_with_new_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_output_set(out, _writers("old"))
    (out / "notes.txt").write_text("mine")
    write_output_set(out, _writers("new"), force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "queues.csv").read_text() == "new queues.csv"


def test_existing_results_need_force(tmp_path: Path) -> None:
    write_output_set(tmp_path / "o", _writers("a"))
    with pytest.raises(OutputExistsError, match="--force"):
        write_output_set(tmp_path / "o", _writers("b"))


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from testbed.io import claim_output
        c = claim_output({str(out)!r}, False)
        print("held", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match="being written by another run"):
            write_output_set(out, _writers("x"))
    finally:
        holder.communicate("", timeout=30)
    write_output_set(out, _writers("x"))           # free again once the holder exited
    assert not (tmp_path / ".out.lock").exists()


def test_claims_are_reentrant_in_one_process(tmp_path: Path) -> None:
    with claim_output(tmp_path / "o", False):
        write_output_set(tmp_path / "o", _writers("a"))
    assert (tmp_path / "o" / "summary.json").exists()


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_output_set(tmp_path / "set", _writers("a"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "set" / "summary.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "set").stat().st_mode & 0o777 == 0o755


def test_stale_temporaries_of_a_killed_run_are_cleaned_on_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f"{TMP_PREFIX}{dead}-summary.json.abc.tmp").write_text("half")
    (tmp_path / f"{TMP_PREFIX}{dead}-out.xyz").mkdir()
    (tmp_path / f"{TMP_PREFIX}{os.getpid()}-mine.tmp").write_text("in use")   # a live writer's: kept
    write_text(tmp_path / "f.txt", "x")
    assert [p.name for p in iter_tmp(tmp_path)] == [f"{TMP_PREFIX}{os.getpid()}-mine.tmp"]


@pytest.mark.parametrize("where", ["file/below", "/proc/testbed-out", "/sys/x"])
def test_paths_that_cannot_hold_results_are_one_line_errors(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / where if not where.startswith("/") else Path(where)
    with pytest.raises(OutputError) as exc:
        write_output_set(target, _writers("a"))
    assert "\n" not in str(exc.value) and str(exc.value).startswith("--out:")


def test_json_never_holds_nan_or_infinity(tmp_path: Path) -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float64("nan"), "d": np.int64(3),
            "e": {"f": np.float32(2.5)}, "g": (1, math.nan)}
    text = json_text(data)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": None, "d": 3, "e": {"f": 2.5},
                                "g": [1, None]}
    write_json(tmp_path / "x.json", data)
    json.loads((tmp_path / "x.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))

"""Every command against careless and hostile input: exit code 2, exactly one stderr line starting
``error: `` that names the option or file and the value, and never a traceback.

(Scenario-file contents -- NaN rates, YAML bombs, huge counts -- are probed by the config tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.cli import main
from tests.conftest import base_scenario


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good.yaml, a binary file, a directory, a regular file, a finished run and a corrupt one."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "good.yaml").write_text(yaml.safe_dump(base_scenario(duration="6 s", warmup="1 s")))
    (d / "bin.yaml").write_bytes(b"\x00\x01\xff\xfe\x80binary")
    (d / "adir").mkdir()
    (d / "afile").write_text("x")
    (d / "taken.json").write_text("[]")
    (d / "taken.pt").write_bytes(b"")
    (d / "taken.yaml").write_text("x: 1\n")
    assert main(["run", str(d / "good.yaml"), "--out", str(d / "run1")]) == 0
    assert main(["run", str(d / "good.yaml"), "--out", str(d / "run2")]) == 0
    assert main(["compare", str(d / "run1"), str(d / "run2"), "--out", str(d / "cmp")]) == 0
    bad = d / "corrupt"
    bad.mkdir()
    (bad / "summary.json").write_text("{}")
    (bad / "requests.parquet").write_bytes(b"PAR1 this is not parquet")
    (bad / "summary.parquet").write_bytes(b"PAR1 nor this")
    (d / "othersweep").mkdir()
    (d / "othersweep" / "sweep.yaml").write_text("name: other\n")
    return d


CASES = [
    # run / validate / sweep / capacity / emulate: the scenario file and overrides
    *[(cmd, [f, *extra], [name]) for cmd, extra in [
        ("run", []), ("validate", []), ("sweep", ["--out", "{d}/s0"]), ("capacity", ["--slo", "p95 < 1 s"]),
        ("emulate", []), ("optimize", [])]
      for f, name in [("{d}/missing.yaml", "missing.yaml"), ("{d}/adir", "adir"), ("{d}/bin.yaml", "bin.yaml")]],
    # optimize: a scenario without a model, bad objective, floor, bits, existing --out
    ("optimize", ["{d}/good.yaml"], ["model", "optimiser"]),
    ("optimize", ["{d}/good.yaml", "--objective", "max-joy"], ["--objective", "max-joy"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--min-agreement", "2"],
     ["--min-agreement", "2"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--bits", "9"],
     ["--bits", "9"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--split", "stage99"],
     ["stage99"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--workers", "0"],
     ["--workers", "0"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--group", "nogroup"],
     ["--group", "nogroup"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--group", "all"],
     ["--group", "all"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--objective",
                  "max-nodes"], ["--slo"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--objective",
                  "max-nodes", "--slo", "p95 < 1 s", "--node-limit", "0"], ["--node-limit", "0"]),
    ("optimize", ["{d}/good.yaml", "--set", "model={name: efficientnet_lite0, split: stem}", "--max-batch", "0"],
     ["--max-batch", "0"]),
    *[(cmd, ["{d}/good.yaml", "--set", s, *extra], [n]) for cmd, extra in [
        ("run", []), ("validate", []), ("sweep", ["--out", "{d}/s0"]), ("capacity", ["--slo", "p95 < 1 s"]),
        ("emulate", [])]
      for s, n in [("nokey", "nokey"), ("fleet.\u00b2.count=2", "\u00b2"), ("link.datarate=-1 MB/s", "link.datarate")]],
    # outputs: existing results without --force, below a regular file, under /proc
    ("run", ["{d}/good.yaml", "--out", "{d}/run1"], ["--out", "run1", "--force"]),
    ("run", ["{d}/good.yaml", "--out", "{d}/afile/x"], ["--out", "afile"]),
    ("run", ["{d}/good.yaml", "--out", "/proc/testbed-x"], ["--out", "/proc"]),
    ("sweep", ["{d}/good.yaml", "--out", "{d}/afile/x"], ["--out", "afile"]),
    ("sweep", ["{d}/good.yaml", "--out", "{d}/othersweep"], ["--out", "othersweep", "--force"]),
    ("sweep", ["{d}/good.yaml", "--out", "{d}/s1", "--workers", "0"], ["--workers", "0"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < 1 s", "--out", "{d}/taken.json"], ["--out", "taken.json", "--force"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < 1 s", "--out", "{d}/afile/x.json"], ["--out", "afile"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < 1 s", "--group", "nowhere"], ["--group", "nowhere"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < 1 s", "--start", "0"], ["--start", "0"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < 1 s", "--limit", "10000000000"], ["--limit", "10000000000"]),
    ("capacity", ["{d}/good.yaml", "--slo", "p95 < nan ms"], ["--slo", "nan"]),
    ("emulate", ["{d}/good.yaml", "--out", "{d}/run1"], ["--out", "run1", "--force"]),
    ("emulate", ["{d}/good.yaml", "--out", "{d}/afile/x"], ["--out", "afile"]),
    *[("emulate", ["{d}/good.yaml", "--time-scale", k], ["--time-scale"]) for k in ("inf", "nan", "0", "-1", "1e300")],
    ("emulate", ["{d}/good.yaml", "--max-frame", "-1"], ["--max-frame", "-1"]),
    ("emulate", ["{d}/good.yaml", "--drain-cap", "inf"], ["--drain-cap", "inf"]),
    # compare / plot: missing, a file, a corrupt parquet, an existing comparison
    ("compare", ["{d}/run1", "{d}/missing"], ["missing"]),
    ("compare", ["{d}/afile", "{d}/run1"], ["afile"]),
    ("compare", ["{d}/run1", "{d}/corrupt"], ["requests.parquet", "corrupt"]),
    ("compare", ["{d}/run1", "{d}/run2", "--out", "{d}/cmp"], ["--out", "cmp", "--force"]),
    ("compare", ["{d}/run1", "{d}/run2", "--out", "{d}/afile/c"], ["--out", "afile"]),
    ("plot", ["{d}/corrupt"], ["corrupt"]),
    ("plot", ["{d}/missing"], ["missing"]),
    ("report", ["{d}/corrupt"], ["corrupt"]),
    ("report", ["{d}/missing"], ["missing"]),
    ("report", ["{d}/run1", "--out", "{d}/taken.json"], ["--out", "taken.json", "--force"]),
    ("report", ["{d}/run1", "--out", "{d}/afile/r.html"], ["--out", "afile"]),
    # numeric options of the other commands
    *[("bench", ["--scale", s], ["--scale", v]) for s, v in (("0", "0"), ("nan", "nan"), ("-1", "-1"), ("1e9", "1000000000"))],
    ("models", ["--size", "100000"], ["--size", "100000"]),
    ("models", ["--model", "no_such_model"], ["no_such_model"]),
    ("train", ["base", "--out", "{d}/taken.pt"], ["--out", "taken.pt", "--force"]),
    ("train", ["base", "--out", "{d}/afile/x.pt"], ["--out", "afile"]),
    ("train", ["base", "--out", "{d}/t.pt", "--threads", "0"], ["--threads", "0"]),
    ("train", ["base", "--out", "{d}/t.pt", "--limit", "-5"], ["--limit", "-5"]),
    ("train", ["groupnl", "--out", "{d}/g.pt", "--kl-weight", "-1"], ["kl", "-1"]),
    ("train", ["groupnl", "--out", "{d}/g.pt", "--keep", "("], ["keep", "("]),
    ("validate", ["{d}/good.yaml", "--set", "fleet.0.dataset={kind: photos, path: nowhere}"], ["fleet.0.dataset"]),
    ("research-eval", ["--out", "{d}/afile/r"], ["--out", "afile"]),
    ("research-eval", ["--out", "{d}/r", "--epochs", "0"], ["--epochs", "0"]),
    ("research-eval", ["--out", "{d}/r", "--method", "no_such_method"], ["no_such_method"]),
    ("research-eval", ["--out", "{d}/r", "--seeds", "1,x"], ["--seeds", "1,x"]),
    ("payloads", ["--model", "no_such_model"], ["no_such_model"]),
    ("payloads", ["--bits", "99"], ["bits", "99"]),
    ("payloads", ["--limit", "-1"], ["limit", "-1"]),
    ("payloads", ["--threads", "0"], ["threads", "0"]),
    ("payloads", ["--floor", "nan"], ["floor", "nan"]),
    ("payloads", ["--image", "jpeg:quality=0"], ["image", "quality=0"]),
    ("profile", ["--model", "resnet18", "--runs", "0", "--out", "{d}/p.yaml"], ["--runs", "0"]),
    ("profile", ["--model", "resnet18", "--batches", "1,x", "--out", "{d}/p.yaml"], ["--batches", "1,x"]),
    ("profile", ["--model", "no_such_model", "--out", "{d}/p.yaml"], ["no_such_model"]),
    ("profile", ["--model", "resnet18", "--out", "{d}/taken.yaml"], ["--out", "taken.yaml", "--force"]),
    ("profile", ["--model", "resnet18", "--out", "{d}/afile/p.yaml"], ["afile"]),
]


@pytest.mark.parametrize(("cmd", "args", "names"), CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line(d: Path, capsys: pytest.CaptureFixture[str], cmd: str, args: list[str],
                               names: list[str]) -> None:
    argv = [cmd, *(a.replace("{d}", str(d)) for a in args)]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_every_command_is_probed() -> None:
    from testbed.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {c for c, _, _ in CASES}   # type: ignore[union-attr]


def test_nothing_was_written_by_the_refused_commands(d: Path) -> None:
    assert not (d / "s0").exists() and not (d / "s1").exists() and not (d / "r").exists()
    assert (d / "taken.json").read_text() == "[]" and (d / "taken.pt").read_bytes() == b""
    assert not [p for p in d.iterdir() if p.name.startswith(".testbed-tmp-")]

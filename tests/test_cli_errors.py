"""The CLI's last line of defence: library errors that only a bad input causes are one line, exit 2;
anything else (a genuine bug) still raises."""

from __future__ import annotations

import pytest
import yaml

import testbed.run.prepare as prepare_module
from testbed.cli import main


@pytest.mark.parametrize("exc", [
    IsADirectoryError(21, "Is a directory", "/data/frames"),
    PermissionError(13, "Permission denied", "/data/s.yaml"),
    FileNotFoundError(2, "No such file or directory", "/data/t.csv"),
    UnicodeDecodeError("utf-8", b"\x80", 0, 1, "invalid start byte"),
    yaml.YAMLError("mapping values are not allowed here\n  in line 3"),
])
def test_input_errors_from_libraries_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  exc: Exception) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(prepare_module, "prepare", boom)
    assert main(["validate", "s.yaml"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    filename = getattr(exc, "filename", None)
    if filename:
        assert filename in lines[0]


def test_genuine_bugs_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(prepare_module, "prepare", boom)
    with pytest.raises(ZeroDivisionError):
        main(["validate", "s.yaml"])

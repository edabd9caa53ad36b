"""Results on disk: a file appears whole or not at all, and a run's output set is committed as one.

Temporary files and directories are named ``.testbed-tmp-<pid>-...`` beside their target; the next
write to that directory removes the ones whose process is gone (a killed run). Files get the
permissions the umask allows (``0o666 & ~umask``). An output directory is claimed with an exclusive
lock (``fcntl.flock`` on ``.<name>.lock`` beside it, released when the process exits) so two runs
never write one ``--out`` at once. JSON never holds NaN or Infinity (they are written as ``null``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import yaml

from testbed.errors import TestbedError

__all__ = [
    "TMP_PREFIX",
    "OutputClaim",
    "OutputError",
    "OutputExistsError",
    "atomic_write",
    "check_out_path",
    "claim_output",
    "clean_stale",
    "iter_tmp",
    "json_text",
    "make_private_dir",
    "prepare_out_dir",
    "refuse_existing_file",
    "write_json",
    "write_output_set",
    "write_parquet",
    "write_text",
    "write_yaml",
]

TMP_PREFIX = ".testbed-tmp-"
"""Name prefix of every temporary file or directory this package writes."""


class OutputError(TestbedError):
    """An output path that cannot be written (below a file, under /proc, permission denied...)."""


class OutputExistsError(OutputError):
    """An output that already holds results (pass --force), or one another run is writing."""


# -- permissions and stale temporaries ------------------------------------------------------------
_umask_lock = threading.Lock()


def _umask() -> int:
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _chmod_default(path: Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have (temp files start at 0600/0700)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _tmp_name(stem: str) -> str:
    return f"{TMP_PREFIX}{os.getpid()}-{stem}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory: Path | str) -> list[Path]:
    """Remove this package's temporaries in ``directory`` whose writing process no longer runs."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(TMP_PREFIX):
            continue
        pid_text = p.name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(p)
    return removed


def make_private_dir(parent: Path, stem: str) -> Path:
    """A fresh temporary directory in ``parent`` (named as :func:`clean_stale` recognises), mode per umask."""
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_name(stem), dir=parent))
    _chmod_default(tmp, directory=True)
    return tmp


# -- where an output may go -------------------------------------------------------------------------
_SPECIAL = ("/proc", "/sys", "/dev")


def check_out_path(out: Path | str, option: str = "--out") -> Path:
    """``out`` as an absolute path, refused in one line when it cannot hold results: below a regular
    file, under /proc, /sys or /dev, or where a directory cannot be made."""
    text = str(out)
    if not text or "\0" in text:
        raise OutputError(f"{option}: got {text!r}; a file system path")
    path = Path(os.path.abspath(text))
    real = Path(os.path.realpath(path))
    for special in _SPECIAL:
        if real == Path(special) or str(real).startswith(special + "/"):
            raise OutputError(f"{option}: got {text!r}; a path outside {special} (not a place for results)")
    for anc in [path, *path.parents][1:]:
        if anc.exists():
            if not anc.is_dir():
                raise OutputError(f"{option}: got {text!r}; {str(anc)!r} is a file, not a directory")
            break
    return path


def _os_error(option: str, path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{option}: cannot write {str(path)!r} ({exc.strerror or type(exc).__name__})")


# -- single files -----------------------------------------------------------------------------------
def atomic_write(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place; a path that
    cannot be written (below a file, under /proc, no permission, disk full) is an :class:`OutputError`."""
    path = Path(path)
    try:
        check_out_path(path, str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_name(path.name), suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            writer(Path(tmp))
            _chmod_default(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _os_error(str(path), path, exc) from None
    return path


def write_text(path: Path | str, text: str) -> Path:
    """``text`` into ``path`` atomically."""
    def write(p: Path) -> None:
        p.write_text(text)
    return atomic_write(path, write)


def _clean_json(x: Any) -> Any:
    """``x`` with numpy scalars made plain and every NaN or infinity replaced by None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            return _clean_json(x.item())
        except (TypeError, ValueError):
            return x
    return x


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as strict JSON (NaN and infinities as ``null``; never bare ``NaN``)."""
    return json.dumps(_clean_json(data), indent=indent, sort_keys=False, allow_nan=False, default=_jsonable)


def write_json(path: Path | str, data: Any) -> Path:
    """``data`` as strict JSON (see :func:`json_text`) into ``path`` atomically."""
    return write_text(path, json_text(data) + "\n")


def write_yaml(path: Path | str, data: Any) -> Path:
    """``data`` as YAML (safe dumper) into ``path`` atomically."""
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_parquet(path: Path | str, df: pd.DataFrame) -> Path:
    """``df`` as Parquet (no index) into ``path`` atomically."""
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def refuse_existing_file(out: Path | str, force: bool, option: str = "--out") -> Path:
    """A single-file output: checked like :func:`check_out_path`, refused if it exists without ``force``."""
    path = check_out_path(out, option)
    if path.is_dir():
        raise OutputExistsError(f"{option}: got {str(out)!r}; a file path, not an existing directory")
    if path.exists() and not force:
        raise OutputExistsError(f"{option}: {str(out)!r} already exists; pass --force to overwrite or choose "
                                "another path")
    return path


# -- output sets ------------------------------------------------------------------------------------
class OutputClaim:
    """An exclusive claim on an output directory for this process (re-entrant within it)."""

    _held: ClassVar[dict[Path, OutputClaim]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, lock_path: Path, fd: int) -> None:
        self.path, self.lock_path, self.fd = path, lock_path, fd
        self.depth = 1

    def release(self) -> None:
        """Give the claim up (once every nested claim has)."""
        with OutputClaim._guard:
            self.depth -= 1
            if self.depth > 0 or self.fd < 0:
                return
            OutputClaim._held.pop(self.path, None)
            with contextlib.suppress(OSError):
                self.lock_path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@atexit.register
def _release_all() -> None:
    for claim in list(OutputClaim._held.values()):
        claim.depth = 1
        claim.release()


def _lock(path: Path, option: str) -> OutputClaim:
    """Lock ``.<name>.lock`` beside ``path`` (non-blocking); refuse when another process holds it."""
    with OutputClaim._guard:
        held = OutputClaim._held.get(path)
        if held is not None and held.fd >= 0:
            held.depth += 1
            return held
        lock_path = path.parent / f".{path.name}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(option, path.parent, exc) from None
        for _ in range(20):
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_umask())
            except OSError as exc:
                raise _os_error(option, lock_path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutputExistsError(f"{option}: {str(path)!r} is being written by another run "
                                        f"(lock {lock_path.name}); wait for it or choose another path") from None
            try:  # the file we locked may have been unlinked by its previous holder in between
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                claim = OutputClaim(path, lock_path, fd)
                OutputClaim._held[path] = claim
                return claim
            os.close(fd)
        raise OutputExistsError(f"{option}: could not lock {str(path)!r}; try again")


def claim_output(out: Path | str, force: bool, marker: str | None = "summary.json",
                 option: str = "--out") -> OutputClaim:
    """Check ``out`` (see :func:`check_out_path`), lock it for this process and refuse one that already
    holds results (``marker``) unless ``force``. Release with ``.release()`` or ``with``."""
    path = check_out_path(out, option)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{option}: {str(out)!r} exists and is not a directory; choose another path")
    claim = _lock(path, option)
    try:
        if marker and (path / marker).exists() and not force:
            raise OutputExistsError(f"{option}: {str(out)!r} already holds results ({marker}); "
                                    "pass --force to overwrite or choose another directory")
    except BaseException:
        claim.release()
        raise
    return claim


def prepare_out_dir(out: Path | str, force: bool, marker: str = "summary.json") -> Path:
    """Claim ``out`` for this process (held until it exits) and create it; refuse one holding earlier
    results unless ``force``, or one another run is writing."""
    claim = claim_output(out, force, marker)
    try:
        claim.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        claim.release()
        raise _os_error("--out", claim.path, exc) from None
    return claim.path


FileWriter = Callable[[Path], object]


def write_output_set(out: Path | str, files: Mapping[str, FileWriter], force: bool = False,
                     marker: str = "summary.json", option: str = "--out") -> Path:
    """Write ``files`` (name -> ``writer(path)``) as one set: all into a temporary sibling directory,
    then renamed into place, so a crash leaves the old set or the new one, never a mix.

    An existing ``out`` that holds only files of this set is swapped whole; one with other files in it
    keeps them: the old ``marker`` is removed first and the new one moved in last, so a crash leaves
    no marker beside new files."""
    with claim_output(out, force, marker, option) as claim:
        path = claim.path
        try:
            clean_stale(path.parent)
            tmp = make_private_dir(path.parent, path.name)
            try:
                for name, writer in files.items():
                    writer(tmp / name)
                    _chmod_default(tmp / name, directory=(tmp / name).is_dir())
                _commit(tmp, path, list(files), marker)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        except OSError as exc:
            raise _os_error(option, path, exc) from None
    return path


def _commit(tmp: Path, path: Path, names: list[str], marker: str) -> None:
    if not path.exists():
        os.rename(tmp, path)
        return
    ours = set(names) | {marker}
    if all(p.name in ours or p.name.startswith(TMP_PREFIX) for p in path.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=_tmp_name(path.name + "-old"), dir=path.parent))
        os.rmdir(old)
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return
    (path / marker).unlink(missing_ok=True)
    for name in sorted(names, key=lambda n: n == marker):  # the marker last
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp / name, target)
    shutil.rmtree(tmp, ignore_errors=True)


def iter_tmp(directory: Path | str) -> Iterator[Path]:
    """This package's temporaries in ``directory`` (for tests and tidy-ups)."""
    return (p for p in Path(directory).iterdir() if p.name.startswith(TMP_PREFIX))

"""The layers hold at run time, not only in ``lint-imports``: the simulation side runs a timing-only
scenario without loading torch, the model side loads without simpy, and the version comes from the
package metadata. Each check runs in a fresh interpreter (this one has torch loaded by other tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import testbed

ROOT = Path(__file__).resolve().parent.parent

# Imports every module below the given packages (plus single modules), runs CODE, then prints which
# of the watched top-level packages ended up in sys.modules.
_PROBE = """
import importlib, json, pkgutil, sys
def load(name):
    mod = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."):
        if not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
for name in {modules!r}:
    load(name)
{code}
print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))
"""


def _loaded_after(modules: list[str], watched: list[str], tmp_path: Path, code: str = "") -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after importing ``modules`` and running ``code``."""
    src = _PROBE.format(modules=modules, watched=watched, code=textwrap.dedent(code))
    proc = subprocess.run([sys.executable, "-c", src], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


MODEL_SIDE = ["torch", "torchvision", "testbed.split", "testbed.research", "testbed.bridge"]
SIM_SIDE = ["testbed.config", "testbed.core", "testbed.sim", "testbed.run.runner"]


def test_importing_the_simulation_core_leaves_the_model_side_unloaded(tmp_path: Path) -> None:
    assert _loaded_after(SIM_SIDE, [*MODEL_SIDE, "simpy"], tmp_path) == ["simpy"]


def test_a_timing_only_scenario_runs_without_torch(tmp_path: Path) -> None:
    run = f"""
    from testbed.run.prepare import prepare
    from testbed.run.runner import run_scenario, write_run
    resolved, raw = prepare({str(ROOT / "scenarios" / "queueing.yaml")!r}, ["duration=40 s", "warmup=5 s"])
    result = run_scenario(resolved)
    assert len(result.records) > 0 and result.summary
    write_run(result, raw, "out")
    """
    # prepare() imports the bridge's checks (run sits above the bridge); no model code is loaded
    loaded = _loaded_after(SIM_SIDE, [*MODEL_SIDE, "simpy"], tmp_path, run)
    assert loaded == ["simpy", "testbed.bridge"]
    assert (tmp_path / "out" / "requests.parquet").is_file()


def test_model_side_never_loads_simpy_or_the_simulation(tmp_path: Path) -> None:
    loaded = _loaded_after(["testbed.split", "testbed.research"],
                           ["simpy", "testbed.sim", "testbed.emulate", "testbed.run", "testbed.cli", "torch"], tmp_path)
    assert loaded == ["torch"]


def test_package_and_cli_start_light(tmp_path: Path) -> None:
    code = "import testbed.cli\ntestbed.cli.build_parser()\n"  # imports every command module
    assert _loaded_after([], [*MODEL_SIDE, "simpy"], tmp_path, code) == []


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    assert testbed.__version__ == version("testbed")
    script = Path(sys.executable).with_name("testbed")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "testbed.cli"]
    proc = subprocess.run([*cmd, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"testbed {version('testbed')}\n"


def test_every_top_level_package_sits_in_a_layer() -> None:
    import pkgutil
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    present = {f"testbed.{m.name}" for m in pkgutil.iter_modules(testbed.__path__)}
    assert present == placed, "add new top-level modules to the layers contract in pyproject.toml"

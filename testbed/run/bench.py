"""Benchmarks of the simulation core, measured side by side in one process.

``simulator_bench`` runs a 1,000-node scenario (timing only, at least 200,000 requests, each
crossing node, uplink, server and downlink) and, in the same run, a bare SimPy M/M/1 loop with one
process per customer, the floor any SimPy model is measured against; then the same scenario with every
station event-driven (no front computed ahead: :mod:`testbed.sim.front`). Peak memory per request is
measured with :mod:`tracemalloc` on a separate run of the same scenario.

``end_to_end_bench`` (``testbed bench --requests N``) times build, simulation, writing and the summary
of a streamed run in a fresh process and reports its peak resident memory from the operating system;
``long_run_bench`` (``testbed bench --hours H --nodes N``) reports that peak at 1/4, 1/2 and all of a
long run, so a flat memory profile is visible.
"""

from __future__ import annotations

import math
import random
import time
import tracemalloc
from typing import Any

import simpy

from testbed.config.load import scenario_from_dict
from testbed.config.schema import Scenario
from testbed.errors import ConfigError
from testbed.sim.world import Simulation

__all__ = ["BENCH_SCENARIO", "CSMA_BENCH_SCENARIO", "MAX_SCALE", "check_scale", "csma_bench", "end_to_end_bench",
           "long_run_bench", "machine_ceiling", "peak_rss_bytes", "simpy_floor", "simulator_bench"]

BENCH_SCENARIO: dict[str, Any] = {
    "name": "bench-1000-nodes", "seed": 7, "duration": "200 s", "warmup": "5 s", "drain": "10 s",
    "fleet": [{"name": "cams", "count": 1000, "device": "pi4b", "arrivals": {"kind": "poisson", "rate": "1/s"},
               "head": "20 ms", "encode": "2 ms", "payload": {"dist": "exponential", "mean": "10 kB"}}],
    "link": {"model": "shared_fifo", "datarate": "20 MB/s", "latency": "1 ms"},
    "server": {"device": "h100", "batching": {"max_batch": 32, "max_delay": "5 ms"},
               "service": {"table": {1: "1 ms", 32: "4 ms"}}},
}


def simpy_floor(customers: int, seed: int = 1) -> float:
    """Customers per second of a bare SimPy M/M/1 (rho = 0.9), one process per customer."""
    env = simpy.Environment()
    server = simpy.Resource(env, 1)
    rng = random.Random(seed)

    def customer() -> Any:
        with server.request() as req:
            yield req
            yield env.timeout(rng.expovariate(1.0))

    def source() -> Any:
        for _ in range(customers):
            yield env.timeout(rng.expovariate(0.9))
            env.process(customer())

    env.process(source())
    t = time.perf_counter()
    env.run()
    return customers / (time.perf_counter() - t)


def _timed(scenario: Scenario, ahead: bool = True) -> tuple[Simulation, float]:
    """A finished simulation and the seconds its events took (``ahead=False``: every station event-driven,
    :class:`~testbed.sim.world.Simulation`)."""
    sim = Simulation(scenario, ahead=ahead)
    t = time.perf_counter()
    sim.execute()
    return sim, time.perf_counter() - t


def _counted(scenario: Scenario) -> tuple[Simulation, int]:
    """A finished simulation and the number of events it scheduled (an untimed run: counting wraps
    the environment's public ``schedule``)."""
    sim = Simulation(scenario)
    env, schedule, count = sim.env, sim.env.schedule, [0]

    def counting(event: simpy.Event, priority: int = 1, delay: float = 0) -> None:
        count[0] += 1
        schedule(event, priority, delay)  # type: ignore[arg-type]

    env.schedule = counting  # type: ignore[method-assign]
    sim.execute()
    return sim, count[0]


MAX_SCALE = 10.0
"""Largest benchmark scale (ten times the standard run)."""


def check_scale(scale: float) -> None:
    """Refuse a scale that is not a finite fraction in (0, :data:`MAX_SCALE`]."""
    if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ConfigError("--scale", scale, f"a finite fraction of the standard run, above 0 and at most {MAX_SCALE:g}")


def _scaled(template: dict[str, Any], seconds: float, scale: float) -> Scenario:
    """The benchmark scenario with its duration cut to ``scale`` of ``seconds``."""
    check_scale(scale)
    return scenario_from_dict(dict(template, duration=f"{seconds * scale} s"))


def simulator_bench(scale: float = 1.0) -> dict[str, Any]:
    """Requests per second against the SimPy floor, and peak bytes per request; the same run with every
    station event-driven (``event_driven_*``: nodes and uplink not computed ahead) beside them."""
    scenario = _scaled(BENCH_SCENARIO, 200.0, scale)
    sim, elapsed = _timed(scenario)
    requests = sim.rec.n
    del sim
    floor = simpy_floor(requests)
    sim, driven = _timed(scenario, ahead=False)
    del sim
    tracemalloc.start()
    sim, events = _counted(scenario)
    frame = sim.rec.to_frame()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del frame
    return {
        "scenario": scenario.name, "nodes": scenario.node_count, "requests": requests,
        "events": events, "events_per_request": events / requests,
        "requests_per_s": requests / elapsed, "simpy_floor_per_s": floor,
        "ratio": (requests / elapsed) / floor, "peak_bytes_per_request": peak / requests,
        "event_driven_requests_per_s": requests / driven, "event_driven_ratio": (requests / driven) / floor,
    }


CSMA_BENCH_SCENARIO: dict[str, Any] = {
    "name": "bench-csma-200-nodes", "seed": 7, "duration": "100 s", "warmup": "5 s", "drain": "10 s",
    "fleet": [{"name": "cams", "count": 200, "device": "pi4b",
               "arrivals": {"kind": "periodic", "rate": "1/s", "jitter": "5 ms"},
               "head": "20 ms", "encode": "2 ms", "payload": "25 kB"}],
    "link": {"model": "csma", "datarate": "65 Mbit/s", "latency": "1 ms", "csma": {"standard": "802.11n"}},
    "server": {"device": "h100", "batching": {"max_batch": 32, "max_delay": "5 ms"},
               "service": {"table": {1: "1 ms", 32: "4 ms"}}},
    "workload": {"result": "64 B"},
}
"""200 nodes sending 25 kB at 1/s over one 65 Mbit/s 802.11n cell (about 70% of its capacity)."""


def csma_bench(scale: float = 1.0) -> dict[str, Any]:
    """Requests per second and events per request of the ``csma`` link (timing only)."""
    scenario = _scaled(CSMA_BENCH_SCENARIO, 100.0, scale)
    sim, elapsed = _timed(scenario)
    requests = sim.rec.n
    cell = sim.link.counters()
    events = _counted(scenario)[1]
    return {
        "scenario": scenario.name, "nodes": scenario.node_count, "requests": requests, "events": events,
        "events_per_request": events / requests, "requests_per_s": requests / elapsed,
        "exchanges_per_request": cell["exchanges"] / requests,
        "collision_fraction": cell["collisions"] / max(1.0, cell["exchanges"]),
        "link_utilisation": sim.levels["uplink"]["busy"].mean(sim.env.now) + sim.levels["downlink"]["busy"].mean(sim.env.now),
    }


def _floor_seconds(customers: int) -> float:
    """Seconds of one :func:`simpy_floor` loop of ``customers`` (pure Python, no I/O)."""
    t = time.perf_counter()
    simpy_floor(customers)
    return time.perf_counter() - t


def machine_ceiling(customers: int = 200_000) -> dict[str, float]:
    """How well this machine runs two CPU-bound Python processes at once: the same SimPy loop alone,
    then in two worker processes together (each timing itself). ``ceiling`` = alone / together is
    the parallel efficiency no software can beat here (1.0 on two idle, independent cores; lower on
    two hyperthreads of one core, with a shared memory bus or with other jobs running)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    alone = _floor_seconds(customers)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as pool:
        together = list(pool.map(_floor_seconds, [customers, customers]))
    return {"floor_alone_s": alone, "floor_two_at_once_s": float(sum(together) / 2),
            "ceiling": alone / (sum(together) / 2)}


def sweep_bench(cells: int = 16, scenario_path: str | None = None) -> dict[str, Any]:
    """A sweep of ``cells`` cells of the TCL scenario on 1 worker and on 2, side by side.

    Reports parallel efficiency ``t1 / (2 t2)``, the share of sweep time spent getting the model
    pipeline's results once its cache is warm (reading the cache, not running the model), and the
    machine's own ceiling for two processes (:func:`machine_ceiling`, measured before and after the
    sweeps), with the efficiency relative to it.
    """
    import tempfile
    from pathlib import Path

    from testbed.config.load import read_yaml
    from testbed.run.sweep import plan, run_sweep

    path = Path(scenario_path) if scenario_path else Path(__file__).resolve().parents[2] / "scenarios" / "tcl_setting.yaml"
    raw = read_yaml(path)
    if scenario_path is None:  # a later split whose payloads (about 14 kB) a 1-10 MB/s link can carry
        raw["model"] = dict(raw["model"], split="stage4")
        raw["codec"] = [{"quantize": {"bits": 8}}, {"zstd": {"level": 3}}]
    raw["sweep"] = {"fleet.0.count": [20, 40, 80, 160], "link.datarate": ["1 MB/s", "2 MB/s", "5 MB/s", "10 MB/s"]}
    raw["replications"] = max(1, cells // 16)
    raw["duration"] = "2 min"
    n = len(plan(raw))
    out: dict[str, Any] = {"scenario": str(path.name), "runs": n}
    before = machine_ceiling()
    with tempfile.TemporaryDirectory() as tmp:
        run_sweep(dict(raw, sweep={"fleet.0.count": [1]}, replications=1), Path(tmp) / "warm",
                  base_dir=path.parent, progress=False)  # warm the pipeline cache
        for workers in (1, 2):
            t = time.perf_counter()
            table = run_sweep(raw, Path(tmp) / f"w{workers}", workers=workers, base_dir=path.parent, progress=False)
            out[f"seconds_{workers}_worker{'s' if workers > 1 else ''}"] = time.perf_counter() - t
            if workers == 1:
                out["model_share_warm_cache"] = float(table["pipeline_s"].sum() / table["wall_s"].sum())
    out["speedup"] = out["seconds_1_worker"] / out["seconds_2_workers"]
    out["parallel_efficiency"] = out["speedup"] / 2
    after = machine_ceiling()
    out["machine_ceiling"] = (before["ceiling"] + after["ceiling"]) / 2
    out["machine_ceiling_before_after"] = [before["ceiling"], after["ceiling"]]
    out["efficiency_vs_ceiling"] = out["parallel_efficiency"] / out["machine_ceiling"]
    return out


def peak_rss_bytes() -> int:
    """This process's peak resident memory from the operating system (``VmHWM``, else ``ru_maxrss``)."""
    try:
        for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def end_to_end_scenario(nodes: int, seconds: float) -> Scenario:
    """The benchmark fleet (Poisson 1/s per node) at ``nodes`` nodes for ``seconds`` simulated seconds.

    The link's rate and the server's GPUs grow with the fleet beyond 1,000 nodes (20 MB/s and one GPU
    per 1,000), so every station carries the load it carries at 1,000 nodes (uplink about half busy)
    and the run is stable: with a fixed link, 10,000 nodes offer five times its capacity, the backlog
    grows with the run, and so does any simulator's memory."""
    fleet = [dict(BENCH_SCENARIO["fleet"][0], count=nodes)]
    scale = max(1, math.ceil(nodes / 1000))
    link = dict(BENCH_SCENARIO["link"], datarate=f"{20 * scale} MB/s")
    server = dict(BENCH_SCENARIO["server"], gpus=scale)
    return scenario_from_dict(dict(BENCH_SCENARIO, name=f"bench-{nodes}-nodes", fleet=fleet, link=link,
                                   server=server, duration=f"{seconds} s", warmup=f"{min(5.0, seconds / 10)} s"))


def end_to_end_child(nodes: int, seconds: float) -> dict[str, Any]:
    """One measurement (run it in a fresh process): build, simulate, write and summarise, timed."""
    import tempfile
    from pathlib import Path

    from testbed.run.runner import run_scenario, write_run

    base = peak_rss_bytes()
    t = time.perf_counter()
    scenario = end_to_end_scenario(nodes, seconds)
    result = run_scenario(scenario)
    with tempfile.TemporaryDirectory() as tmp:
        write_run(result, {"name": scenario.name}, Path(tmp) / "out")
    elapsed = time.perf_counter() - t
    requests = int(sum(result.sim.frames))
    return {"requests": requests, "seconds": elapsed, "peak_rss_bytes": peak_rss_bytes(),
            "rss_at_start_bytes": base, "completed_share": result.summary.get("completed_share")}


def _fresh(call: str) -> dict[str, Any]:
    """``call`` (an expression of this module) evaluated in a fresh Python process, its JSON result."""
    import json
    import subprocess
    import sys

    code = f"import json; from testbed.run import bench; print(json.dumps(bench.{call}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def floor_child(customers: int) -> dict[str, Any]:
    """The bare-SimPy floor and this process's peak memory (run it in a fresh process)."""
    return {"simpy_floor_per_s": simpy_floor(customers), "peak_rss_bytes": peak_rss_bytes()}


def end_to_end_bench(requests: int = 1_000_000, nodes: int = 1000) -> dict[str, Any]:
    """End to end at about ``requests`` requests (``nodes`` nodes at 1/s): requests per second and
    peak resident memory per request, each measurement in a fresh process, beside the SimPy floor
    measured in the same run (also in a fresh process)."""
    run = _fresh(f"end_to_end_child({nodes}, {requests / nodes})")
    floor = _fresh(f"floor_child({run['requests']})")
    rate = run["requests"] / run["seconds"]
    return {"scenario": f"bench-{nodes}-nodes", "nodes": nodes, "requests": run["requests"],
            "seconds": run["seconds"], "requests_per_s": rate, "simpy_floor_per_s": floor["simpy_floor_per_s"],
            "ratio": rate / floor["simpy_floor_per_s"], "peak_rss_mb": run["peak_rss_bytes"] / 1e6,
            "peak_rss_bytes_per_request": run["peak_rss_bytes"] / run["requests"],
            "rss_at_start_mb": run["rss_at_start_bytes"] / 1e6,
            "floor_process_peak_rss_mb": floor["peak_rss_bytes"] / 1e6}


def long_run_bench(hours: float, nodes: int, points: tuple[float, ...] = (0.25, 0.5, 1.0)) -> dict[str, Any]:
    """Peak resident memory against simulated time: the run of ``nodes`` nodes cut at each fraction of
    ``hours`` (each in a fresh process); flat peaks mean memory does not grow with the run's length."""
    out: dict[str, Any] = {"nodes": nodes, "hours": hours}
    for f in points:
        run = _fresh(f"end_to_end_child({nodes}, {hours * 3600 * f})")
        key = f"at_{f:g}"
        out[f"{key}_simulated_s"] = hours * 3600 * f
        out[f"{key}_requests"] = run["requests"]
        out[f"{key}_peak_rss_mb"] = run["peak_rss_bytes"] / 1e6
        out[f"{key}_requests_per_s"] = run["requests"] / run["seconds"]
        out[f"{key}_completed_share"] = run["completed_share"]  # near 1: a stable run, no growing backlog
    first, last = out[f"at_{points[0]:g}_peak_rss_mb"], out[f"at_{points[-1]:g}_peak_rss_mb"]
    out["peak_growth_ratio"] = last / first
    out["requests_growth_ratio"] = out[f"at_{points[-1]:g}_requests"] / max(1, out[f"at_{points[0]:g}_requests"])
    return out

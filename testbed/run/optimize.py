"""Which split point and codec to deploy: a search under the scenario's own contention.

For every split point x codec chain (x bit width) the optimiser

1. **screens** the configuration with one short run of a single node per fleet group: the real per-frame
   payload bytes, the node's busy share and the uplink's busy share per node; its agreement is the
   configuration's top-1 agreement over its whole dataset (the cached pipeline table, every image once). Scaled to the scenario's fleet, a configuration whose uplink or node CPU would be busy
   more than ``max_utilisation`` of the time, or whose agreement is below the floor, cannot meet the
   objective and is pruned (the reason is kept). Scaling one node's uplink share by the fleet size is
   exact for the offered load of identical nodes; with several groups it assumes their nodes load the
   link alike.
2. **simulates** the survivors with the scenario's replications (common random numbers) and keeps their
   latency percentiles (completed and all-requests), agreement, node energy and utilisations;
3. **chooses** the best configuration that meets every constraint for the objective, and marks the Pareto
   front of agreement against p95 latency.

Pure functions (enumeration, screening arithmetic, constraint checks, the Pareto front and the choice)
are separate from the runs, so they are tested on their own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from testbed.config.load import apply_overrides
from testbed.config.resolve import Resolved
from testbed.errors import ConfigError
from testbed.run.capacity import Slo, parse_slo, resolve_groups, saturating
from testbed.run.parallel import check_workers, run_all
from testbed.run.prepare import prepare_dict
from testbed.run.sweep import replication_seed

__all__ = [
    "OBJECTIVES",
    "Config",
    "Objective",
    "OptimizeResult",
    "choose",
    "configs",
    "group_link_scale",
    "group_view",
    "meets",
    "optimize",
    "pareto_front",
    "parse_objective",
    "screen",
    "zero_load_bound",
]

OBJECTIVES = {
    "max-agreement": ("agreement", True),
    "min-p95": ("latency_p95_all_s", False),
    "min-payload": ("mean_payload_bytes", False),
    "min-energy": ("mean_energy_j", False),
    "max-nodes": ("capacity", True),
}
"""Objectives: name -> (row metric, maximised). ``max-nodes`` searches, for each configuration, the
largest fleet (the group's node count) that meets the latency objective (:func:`capacity_search`)."""

DEFAULT_NODE_LIMIT = 10_000
"""Largest fleet size ``max-nodes`` probes by default (a configuration with no shared bottleneck, e.g.
everything on the node, would otherwise double forever)."""


@dataclass(frozen=True)
class Objective:
    """What to optimise: ``metric`` (a summary key) and its direction."""

    name: str
    metric: str
    maximise: bool


def parse_objective(text: str) -> Objective:
    if text not in OBJECTIVES:
        raise ConfigError("--objective", text, f"one of {', '.join(OBJECTIVES)}")
    metric, up = OBJECTIVES[text]
    return Objective(text, metric, up)


@dataclass(frozen=True)
class Config:
    """One candidate: a split point and a codec chain (scenario form), and optionally the server's
    largest batch (``server.batching.max_batch``; None: the scenario's)."""

    split: str
    codec: tuple[dict[str, Any], ...]
    max_batch: int | None = None

    @property
    def label(self) -> str:
        parts = []
        for stage in self.codec:
            ((name, params),) = stage.items()
            args = ",".join(f"{k}={v}" for k, v in sorted((params or {}).items()))
            parts.append(f"{name}({args})" if args else name)
        batch = "" if self.max_batch is None else f" / batch<={self.max_batch}"
        return f"{self.split} / {' + '.join(parts) or 'float32'}{batch}"


def configs(splits: Sequence[str], codecs: Sequence[Sequence[dict[str, Any]]],
            bits: Sequence[int] = (), max_batches: Sequence[int] = ()) -> list[Config]:
    """Every split x codec chain (x server max batch); a chain with a ``quantize`` stage is repeated for
    each of ``bits``."""
    from testbed.split.codecs import with_bits

    out: list[Config] = []
    for split in dict.fromkeys(splits):
        for chain in codecs:
            for v in with_bits(chain, bits):
                sizes: list[int | None] = [*dict.fromkeys(max_batches)] or [None]
                for b in sizes:
                    c = Config(split, tuple(copy.deepcopy(s) for s in v), b)
                    if c not in out:
                        out.append(c)
    return out


@dataclass(frozen=True)
class Screen:
    """What one node per group predicts for the whole fleet."""

    agreement: float | None
    payload_bytes: float
    node_utilisation: float
    uplink_utilisation: float  # predicted for the scenario's fleet
    reason: str | None  # why the configuration cannot meet the objective (None: keep it)


def screen(probe: dict[str, Any], probe_nodes: int, nodes: int, min_agreement: float | None,
           max_utilisation: float = 1.0, slo: Slo | None = None, batch_wait_s: float = 0.0) -> Screen:
    """Scale a probe summary (``probe_nodes`` nodes) to ``nodes`` and say whether it can be feasible.

    With ``slo``, the probe's own latency statistic is a lower bound on the fleet's: one node per group
    meets no contention, and more nodes only add queueing and larger (longer) batches, except that a
    batch fills sooner, so the most a batch can have waited to fill (``batch_wait_s``, the largest
    ``max_delay``) is taken off first. A configuration whose bound already misses the objective cannot
    meet it (:func:`zero_load_bound`)."""
    agree = probe.get("agreement")
    link = float(probe.get("link_utilisation") or 0.0) * nodes / max(1, probe_nodes)
    node = float(probe.get("node_utilisation") or 0.0)
    bound = zero_load_bound(probe, slo, batch_wait_s)
    reason = None
    if min_agreement is not None and (agree is None or agree < min_agreement):
        reason = f"agreement {agree if agree is None else round(agree, 3)} < {min_agreement}"
    elif node >= max_utilisation:
        reason = f"node CPU busy {node:.2f} >= {max_utilisation:g}"
    elif link >= max_utilisation:
        reason = f"uplink busy {link:.2f} >= {max_utilisation:g} with {nodes} nodes"
    elif slo is not None and bound is not None and not slo.met(bound):
        reason = f"{slo.metric} {bound * 1e3:.1f} ms without contention (less {batch_wait_s * 1e3:g} ms batching) fails {slo}"
    return Screen(agree, float(probe.get("mean_payload_bytes") or 0.0), node, link, reason)


def zero_load_bound(probe: dict[str, Any], slo: Slo | None, batch_wait_s: float = 0.0) -> float | None:
    """The probe's statistic of the objective over its completed requests, less ``batch_wait_s`` (None
    without an objective or a figure)."""
    if slo is None:
        return None
    value = probe.get(f"latency_{slo.metric}_s")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return max(0.0, float(value) - batch_wait_s)


def batch_wait(raw: dict[str, Any]) -> float:
    """The longest a batch may wait to fill on any of the scenario's servers (``max_delay``, seconds)."""
    from testbed.config.load import scenario_from_dict

    sc = scenario_from_dict(raw)
    return max((float(s.batching.max_delay) for s in sc.server_specs), default=0.0)


def meets(row: dict[str, Any], slo: Slo | None, min_agreement: float | None) -> bool:
    """True when a simulated row meets the latency objective (unfinished and dropped requests count as
    infinitely late) and the agreement floor. A row with ``worst_group_*`` figures (one fleet group
    optimised) must meet the latency objective for the worst group's requests as well."""
    if slo is not None:
        key = f"latency_{slo.metric}_all_s" if slo.metric != "mean" else "latency_mean_s"
        for k in (key, f"worst_group_{key}"):  # with a group optimised: every group's requests too
            if k == key or k in row:
                value = row.get(k)
                if value is None or not math.isfinite(value) or not slo.met(value):
                    return False
    if min_agreement is not None:
        agree = row.get("agreement")
        if agree is None or agree < min_agreement:
            return False
    return True


def _value(row: dict[str, Any], metric: str) -> float:
    v = row.get(metric)
    return float(v) if isinstance(v, (int, float)) and v is not None and math.isfinite(v) else math.nan


def choose(rows: Sequence[dict[str, Any]], objective: Objective) -> dict[str, Any] | None:
    """The feasible row best for ``objective`` (ties: lower p95, then smaller payload, then first)."""
    ok = [r for r in rows if r.get("feasible") and not math.isnan(_value(r, objective.metric))]
    if not ok:
        return None
    sign = -1.0 if objective.maximise else 1.0
    return min(ok, key=lambda r: (sign * _value(r, objective.metric), _value(r, "latency_p95_all_s"),
                                  _value(r, "mean_payload_bytes")))


def pareto_front(points: Iterable[tuple[float, float]]) -> list[bool]:
    """For (agreement, p95) pairs: True where no other point has agreement >= and p95 <= with one strict.
    NaN points are never on the front."""
    pts = list(points)
    out = []
    for i, (a, t) in enumerate(pts):
        if math.isnan(a) or math.isnan(t):
            out.append(False)
            continue
        dominated = any(not (math.isnan(b) or math.isnan(u)) and b >= a and u <= t and (b > a or u < t)
                        for j, (b, u) in enumerate(pts) if j != i)
        out.append(not dominated)
    return out


@dataclass
class OptimizeResult:
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    objective: Objective
    slo: Slo | None
    min_agreement: float | None
    recommended: dict[str, Any] | None = None  # the scenario (raw mapping) of the best configuration
    notes: list[str] = field(default_factory=list)
    group: str | None = None  # the fleet group whose configuration was searched (None: the scenario's)


_KEEP = ("agreement", "agreement_top5", "mean_payload_bytes", "latency_p50_s", "latency_p95_s", "latency_p99_s",
         "latency_p95_all_s", "latency_p99_all_s", "latency_mean_s", "latency_p95_s_run_ci_low",
         "latency_p95_s_run_ci_high", "completed_share", "link_utilisation", "gpu_utilisation", "node_utilisation",
         "mean_energy_j", "mean_head_s", "mean_encode_s")


def _cell(raw: dict[str, Any], c: Config, group: int | None = None) -> dict[str, Any]:
    """``raw`` with the candidate's split and codec: the scenario's, or with ``group`` that fleet group's
    own (``fleet[g].model.split``, merged over the scenario's model, and ``fleet[g].codec``); and its
    server max batch, if it has one."""
    where = "" if group is None else f"fleet.{group}."
    changes: dict[str, Any] = {f"{where}model.split": c.split, f"{where}codec": [dict(s) for s in c.codec]}
    if c.max_batch is not None:
        if raw.get("servers"):
            raise ConfigError("--max-batch", c.max_batch, "a scenario with one server section (not servers:)")
        changes["server.batching.max_batch"] = c.max_batch
    return apply_overrides(raw, changes)


def group_view(raw: dict[str, Any], group: int) -> dict[str, Any]:
    """A one-group scenario of fleet group ``group`` as it runs in ``raw``: its model keys merged over the
    scenario's, its own codec and dataset where it names them. Its pipeline cache entry is the group's,
    so its dataset figures are the group's configuration's."""
    grp = dict(raw["fleet"][group])
    out = {k: v for k, v in raw.items() if k != "fleet"}
    out["model"] = {**(raw.get("model") or {}), **(grp.pop("model", None) or {})}
    for key in ("codec", "dataset"):
        own = grp.pop(key, None)
        if own is not None:
            out[key] = own
    out["fleet"] = [grp]
    return copy.deepcopy(out)


def group_link_scale(probe_groups: Sequence[dict[str, Any]], counts: Sequence[int], group: int,
                     payload_bytes: float) -> float:
    """Factor from a probe's uplink share (one node per group) to the fleet's, apportioning the probe's
    share to the groups by the bytes each offered (requests x mean payload) and scaling each group's part
    by its node count; ``group``'s sampled payload is replaced by its whole dataset's mean. NaN when the
    probe offered nothing."""
    offered = [float(r.get("requests") or 0) * float(r.get("mean_payload_bytes") or 0.0) for r in probe_groups]
    total = sum(x for x in offered if math.isfinite(x))
    if total <= 0:
        return math.nan
    sampled = float(probe_groups[group].get("mean_payload_bytes") or 0.0)
    if sampled > 0 and math.isfinite(sampled):
        offered[group] *= payload_bytes / sampled
    return sum(n * x for n, x in zip(counts, offered) if math.isfinite(x)) / total


def dataset_figures(raw: dict[str, Any], base_dir: Path | None = None) -> tuple[float, float, float]:
    """Top-1 and top-5 agreement and mean payload bytes of a configuration over its whole dataset (every
    image once, from the cached pipeline table): the configuration's own figures, of which a run's
    requests are a sample. Split ``none`` sends nothing: 0 bytes."""
    from testbed.bridge.cache import pipeline_table
    from testbed.split.pipeline import agreement

    images = pipeline_table(prepare_dict(raw, base_dir).scenario).images
    a = agreement(images["prediction"].to_numpy(), images[[f"top5_{j}" for j in range(5)]].to_numpy(),
                  images["reference"].to_numpy(), images["reference_confidence"].to_numpy())
    top1, top5 = a["top1_agreement"], a["top5_agreement"]
    split = (raw.get("model") or {}).get("split")
    payload = 0.0 if split == "none" else float(images["payload_bytes"].mean())  # none: the node sends nothing
    return (math.nan if top1 is None else float(top1), math.nan if top5 is None else float(top5), payload)


def dataset_agreement(raw: dict[str, Any], base_dir: Path | None = None) -> float:
    """Top-1 agreement of a configuration over its whole dataset (see :func:`dataset_figures`)."""
    return dataset_figures(raw, base_dir)[0]


def _run(raw: dict[str, Any], base_dir: Path | None, group: int | None = None) -> dict[str, Any]:
    return _summary(prepare_dict(raw, base_dir), group)


def _summary(resolved: Resolved, group: int | None = None) -> dict[str, Any]:
    """One run's summary. Worker processes get the scenario resolved here (validation may run torch,
    which must not start its thread pool again in a forked worker). With ``group`` it gains ``groups``:
    every fleet group's own figures (:func:`~testbed.core.metrics.groups.group_breakdown`), and the
    group's figures replace the fleet's (agreement, latency, payload, energy, node CPU); the uplink and
    GPU figures stay the fleet's."""
    from testbed.run.runner import run_scenario

    res = run_scenario(resolved)
    if group is None:
        return res.summary
    from testbed.core.metrics.groups import GROUP_COLUMNS, group_breakdown

    sc = res.scenario
    records = res.records
    rows = group_breakdown(records[[c for c in GROUP_COLUMNS if c in records]], res.sim.window,
                           [g.name or f"group{i}" for i, g in enumerate(sc.fleet)], [""] * len(sc.fleet),
                           [g.count for g in sc.fleet])
    mine = rows[group]
    out = {**res.summary, "groups": rows}
    for key in ("latency_mean_s", "latency_p50_all_s", "latency_p95_all_s", "latency_p99_all_s"):
        vals = [r.get(key) for r in rows if r["requests"]]
        known = [float(v) for v in vals if v is not None and math.isfinite(v)]
        out[f"worst_group_{key}"] = max(known) if known and len(known) == len(vals) else None
    for key in ("agreement", "mean_payload_bytes", "latency_mean_s", "latency_p50_s", "latency_p95_s", "latency_p99_s",
                "latency_p95_all_s", "latency_p99_all_s", "mean_energy_j", "node_utilisation", "completed_share"):
        if key in mine:
            out[key] = mine[key]
    for key in ("agreement_top5", "latency_p95_s_run_ci_low", "latency_p95_s_run_ci_high", "mean_head_s",
                "mean_encode_s"):
        out.pop(key, None)  # fleet-wide figures: not the group's
    return out


def _pooled(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over replications of each kept figure. An all-requests percentile that is infinite (None) in
    any replication is infinite pooled; other figures average the replications that have them."""
    out: dict[str, Any] = {}
    worst = [k for k in summaries[0] if k.startswith("worst_group_")]
    for k in (*_KEEP, *worst):
        vals = [s.get(k) for s in summaries]
        known = [float(v) for v in vals if v is not None]
        if k.endswith("_all_s") and len(known) < len(vals):
            out[k] = None
        else:
            out[k] = float(np.mean(known)) if known else None
    out["replications"] = len(summaries)
    out["warnings"] = sorted({w for s in summaries for w in s.get("warnings", [])})
    return out


def _binding(row: dict[str, Any]) -> str:
    named = {"uplink": row.get("link_utilisation"), "server GPU": row.get("gpu_utilisation"),
             "node CPU": row.get("node_utilisation")}
    return saturating({k: float(v) for k, v in named.items() if v is not None}, within=0.0)


def _screened(cell: dict[str, Any], c: Config, groups: int, nodes: int, probe_duration: str,
              min_agreement: float | None, max_utilisation: float, base_dir: Path | None,
              group: int | None = None, slo: Slo | None = None) -> dict[str, Any]:
    """A configuration's screening row: one short run of one node per group, and its dataset figures (with
    ``group``: that group's configuration's, its own node CPU, and the uplink share apportioned to the
    groups by the bytes they offer, :func:`group_link_scale`)."""
    probe_raw = apply_overrides(cell, {f"fleet.{i}.count": 1 for i in range(groups)})
    probe_raw = apply_overrides(probe_raw, {"duration": probe_duration, "warmup": "2 s", "drain": "10 s"})
    probe = _run(probe_raw, base_dir, group)
    top1, top5, payload = dataset_figures(cell if group is None else group_view(cell, group), base_dir)
    if group is None:
        sampled = float(probe.get("mean_payload_bytes") or 0.0)
        if sampled > 0:  # the probe's frames are a sample of the dataset: rescale its uplink share
            probe = {**probe, "link_utilisation": float(probe.get("link_utilisation") or 0.0) * payload / sampled}
        probe_nodes = groups
    else:
        counts = [int(g.get("count", 1)) for g in cell["fleet"]]
        scale = group_link_scale(probe["groups"], counts, group, payload)
        if not math.isfinite(scale):
            scale = nodes / max(1, groups)
        probe = {**probe, "link_utilisation": float(probe.get("link_utilisation") or 0.0) * scale}
        probe_nodes = nodes  # already scaled to the fleet
    probe = {**probe, "agreement": top1, "agreement_top5": top5, "mean_payload_bytes": payload}
    fallback = isinstance(cell.get("assignment"), dict) and cell["assignment"].get("fallback") is not None
    # with a local fallback, load can send requests to the node's own (maybe faster) path: no bound
    s = screen(probe, probe_nodes, nodes, min_agreement, max_utilisation, None if fallback else slo, batch_wait(cell))
    return {"config": c.label, "split": c.split, "codec": list(c.codec),
            "screen_agreement": s.agreement, "screen_payload_bytes": s.payload_bytes,
            "predicted_uplink_utilisation": s.uplink_utilisation,
            "predicted_node_utilisation": s.node_utilisation, "pruned": s.reason,
            "agreement": top1, "agreement_top5": top5}


def _simulated(row: dict[str, Any], sums: list[dict[str, Any]], slo: Slo | None,
               min_agreement: float | None) -> dict[str, Any]:
    """The screening row completed with its replications' pooled figures."""
    top1, top5 = row["agreement"], row["agreement_top5"]
    row = {**row, **_pooled(sums)}
    row["sampled_agreement"] = row["agreement"]  # over the requests of the runs
    row.update(agreement=top1, agreement_top5=top5)
    row["simulated"] = True
    row["feasible"] = row["pruned"] is None and meets(row, slo, min_agreement)
    row["meets_when_simulated"] = meets(row, slo, min_agreement)
    row["binding"] = _binding(row)
    return row


def _capacity_of(cell: dict[str, Any], field: str, slo: Slo, base_dir: Path | None, groups: tuple[str, ...],
                 limit: int) -> dict[str, Any]:
    """One configuration's capacity: the largest ``field`` (a group's node count) meeting ``slo`` for
    every named group's requests (all replications of the cell), by doubling then bisection."""
    from testbed.run.capacity import capacity_search

    (r,) = capacity_search(cell, slo, field=field, start=1, limit=limit, base_dir=base_dir, groups=groups)
    return {"capacity": r.capacity, "slo_value_at_capacity": r.value_at_capacity, "first_failing": r.first_failing,
            "slo_value_at_failing": r.value_at_failing, "binding": r.saturating_station, "probes": r.probes,
            "at_limit": r.first_failing is None, **{f"{k}_at_capacity": v for k, v in r.utilisation.items()}}


def _capacity_row(row: dict[str, Any], found: dict[str, Any], slo: Slo, min_agreement: float | None,
                  reps: int) -> dict[str, Any]:
    """The screening row completed with its capacity search."""
    row = {**row, **found, "simulated": True, "replications": reps, "mean_payload_bytes": row["screen_payload_bytes"]}
    value = found["slo_value_at_capacity"]
    row[f"latency_{slo.metric}_all_s" if slo.metric != "mean" else "latency_mean_s"] = (
        None if isinstance(value, float) and math.isinf(value) else value)
    agree = row.get("agreement")
    ok_agree = min_agreement is None or (agree is not None and agree >= min_agreement)
    row["meets_when_simulated"] = found["capacity"] >= 1 and ok_agree
    row["feasible"] = row["pruned"] is None and row["meets_when_simulated"]
    return row


def optimize(raw: dict[str, Any], candidates: Sequence[Config], objective: Objective, slo: Slo | None,
             min_agreement: float | None, base_dir: Path | None = None, replications: int | None = None,
             probe_duration: str = "20 s", max_utilisation: float = 1.0, verify_pruned: int = 0,
             on_step: Callable[[str, Config, dict[str, Any]], None] | None = None,
             state_dir: Path | None = None, workers: int = 1, scheduler: str | None = None,
             group: str | None = None, node_limit: int = DEFAULT_NODE_LIMIT) -> OptimizeResult:
    """Screen every candidate with one node per group, simulate the survivors and choose the best.

    With ``group`` (a fleet group's name) only that group's split and codec are searched, the others
    keep theirs: the objective and the agreement floor are the group's own (its requests), and the
    latency objective must hold for its requests and for every other group's.

    With the ``max-nodes`` objective each surviving configuration gets a capacity search instead of one
    simulation (the largest node count of the group, the scenario's only group without ``group``, up
    to ``node_limit``, whose requests and every other group's meet ``slo``); screening then prunes only
    on agreement and the node's CPU (the uplink's load depends on the fleet size searched).

    ``raw`` is the scenario mapping (its ``sweep`` is ignored); ``verify_pruned`` simulates that many
    pruned candidates in full (the first ones, in order) to show they fail. Screening runs here (it
    fills the pipeline cache); the simulations run on ``workers`` local processes or the Dask cluster at
    ``scheduler`` (:func:`testbed.run.parallel.run_all`), with the same results as one process. With
    ``state_dir`` each evaluated candidate's row is kept there as it finishes, keyed by everything that
    decides it, so an interrupted search resumes where it stopped."""
    if raw.get("model") is None:
        raise ConfigError("model", None, "a model section: the optimiser chooses its split point and codec")
    if not candidates:
        raise ConfigError("--split/--codec", [], "at least one split point and one codec chain")
    fleet = raw.get("fleet")
    for i, spec in enumerate(fleet if isinstance(fleet, list) else []):
        if isinstance(spec, dict) and spec.get("adaptive") is not None:
            raise ConfigError(f"fleet.{i}.adaptive", "an adaptive group", "groups of one configuration: the "
                              "optimiser chooses the split and codec itself (compare with analysis/adaptive_split.py)")
    check_workers(workers, scheduler)
    if group == "all":
        raise ConfigError("--group", group, "one fleet group's name (the others keep their configuration)")
    g = None if group is None else resolve_groups(raw, [group])[group]  # fleet index of the group searched
    count_field = _capacity_field(raw, objective, slo, g, node_limit)
    base = {k: v for k, v in raw.items() if k not in ("sweep", "replications")}
    reps = int(replications if replications is not None else raw.get("replications", 1))
    if reps < 1:
        raise ConfigError("--replications", reps, "a positive number of replications")
    groups = len(base["fleet"])
    nodes = sum(int(g.get("count", 1)) for g in base["fleet"])
    for c in candidates:  # every candidate must be a valid scenario before anything runs
        prepare_dict(_cell(base, c, g), base_dir)
    rows: list[dict[str, Any]] = [{} for _ in candidates]
    todo: list[tuple[int, dict[str, Any], str]] = []  # (candidate, cell, state key) to simulate
    pruned_sims = 0
    for i, c in enumerate(candidates):
        cell = _cell(base, c, g)
        key = _row_key(cell, c, reps, probe_duration, max_utilisation, min_agreement, slo,
                       s_verify=pruned_sims < verify_pruned, group=g,
                       capacity=None if count_field is None else (count_field, node_limit))
        kept = _load_row(state_dir, key)
        if kept is not None:
            rows[i] = kept
            pruned_sims += bool(kept["pruned"] and kept["simulated"])
            if on_step:
                on_step("kept", c, kept)
            continue
        row = _screened(cell, c, groups, nodes, probe_duration, min_agreement, max_utilisation, base_dir, g, slo)
        if count_field is not None and str(row["pruned"] or "").startswith("uplink"):
            row["pruned"] = None  # max-nodes: the fleet size is what is searched
        if row["pruned"] is None or pruned_sims < verify_pruned:
            pruned_sims += row["pruned"] is not None
            rows[i] = row
            todo.append((i, cell, key))
            continue
        row.update({"simulated": False, "feasible": False, "meets_when_simulated": None, "binding": "-",
                    "mean_payload_bytes": row["screen_payload_bytes"]})
        rows[i] = row
        _save_row(state_dir, key, row)
        if on_step:
            on_step("pruned", c, row)
    if count_field is not None:
        assert slo is not None
        names = tuple(resolve_groups(base, ["all"]))
        found = run_all(_capacity_of, [({**cell, "replications": reps}, count_field, slo, base_dir, names, node_limit)
                                       for _, cell, _ in todo], workers, scheduler)
        for t, res in found:
            i, _, key = todo[t]
            rows[i] = _capacity_row(rows[i], res, slo, min_agreement, reps)
            _save_row(state_dir, key, rows[i])
            if on_step:
                on_step("pruned" if rows[i]["pruned"] else "simulated", candidates[i], rows[i])
        return _finish(rows, candidates, objective, slo, min_agreement, group, base, g, reps,
                       (count_field, "capacity"))
    seed = int(base.get("seed", 0))
    calls = [(prepare_dict(apply_overrides(cell, {"seed": replication_seed(seed, r)}), base_dir), g)
             for _, cell, _ in todo for r in range(reps)]
    sums: list[list[dict[str, Any] | None]] = [[None] * reps for _ in todo]
    for pos, summary in run_all(_summary, calls, workers, scheduler):
        t, rep = divmod(pos, reps)
        sums[t][rep] = summary
        if all(s is not None for s in sums[t]):
            i, _, key = todo[t]
            rows[i] = _simulated(rows[i], [s for s in sums[t] if s is not None], slo, min_agreement)
            _save_row(state_dir, key, rows[i])
            if on_step:
                on_step("pruned" if rows[i]["pruned"] else "simulated", candidates[i], rows[i])
    return _finish(rows, candidates, objective, slo, min_agreement, group, base, g, reps, None)


def _finish(rows: list[dict[str, Any]], candidates: Sequence[Config], objective: Objective, slo: Slo | None,
            min_agreement: float | None, group: str | None, base: dict[str, Any], g: int | None, reps: int,
            capacity: tuple[str, str] | None) -> OptimizeResult:
    """The Pareto front (agreement against p95, or against capacity), the choice and the recommended
    scenario (with ``capacity``: the fleet field set to the chosen configuration's capacity)."""
    second = (lambda r: -_value(r, "capacity")) if capacity else (lambda r: _value(r, "latency_p95_all_s"))
    front = pareto_front((_value(r, "agreement"), second(r)) if r["simulated"] and not r["pruned"]
                         else (math.nan, math.nan) for r in rows)
    for r, f in zip(rows, front):
        r["pareto"] = f
    best = choose(rows, objective)
    result = OptimizeResult(rows, best, objective, slo, min_agreement, group=group)
    if best is not None:
        rec = _cell(base, next(c for c in candidates if c.label == best["config"]), g)
        if capacity is not None:
            rec = apply_overrides(rec, {capacity[0]: int(best["capacity"])})
        rec["name"] = f"{base.get('name', 'scenario')}-optimised"
        rec["replications"] = reps
        result.recommended = rec
    bad = [r for r in rows if r["pruned"] and r["simulated"] and r["meets_when_simulated"]]
    if bad:
        result.notes.append(f"{len(bad)} pruned configuration(s) met the objective when simulated: "
                            + ", ".join(r["config"] for r in bad))
    if capacity is not None:
        limited = [r["config"] for r in rows if r.get("at_limit")]
        if limited:
            result.notes.append(f"{len(limited)} configuration(s) met the objective at the node limit (their capacity "
                                "is at least that; raise --node-limit): " + ", ".join(limited))
    return result


def _capacity_field(raw: dict[str, Any], objective: Objective, slo: Slo | None, g: int | None,
                    node_limit: int) -> str | None:
    """The node count ``max-nodes`` searches (None for other objectives), checked."""
    if objective.metric != "capacity":
        return None
    from testbed.run.capacity import MAX_FLEET

    if slo is None:
        raise ConfigError("--slo", None, "a latency objective for max-nodes, e.g. 'p95 < 100 ms'")
    if not 1 <= node_limit <= MAX_FLEET:
        raise ConfigError("--node-limit", node_limit, f"a fleet size from 1 to {MAX_FLEET:,}")
    fleet = raw.get("fleet") or []
    if g is None and len(fleet) > 1:
        raise ConfigError("--group", None, f"the fleet group whose node count max-nodes searches (the scenario has "
                          f"{len(fleet)} groups)")
    return f"fleet.{g or 0}.count"


def _row_key(cell: dict[str, Any], c: Config, reps: int, probe_duration: str, max_utilisation: float,
             min_agreement: float | None, slo: Slo | None, s_verify: bool, group: int | None = None,
             capacity: tuple[str, int] | None = None) -> str:
    import hashlib

    from testbed.io import json_text

    desc = {"cell": cell, "config": c.label, "replications": reps, "probe": probe_duration,
            "max_utilisation": max_utilisation, "min_agreement": min_agreement, "slo": str(slo), "verify": s_verify}
    if group is not None:  # keys of whole-fleet searches unchanged
        desc["group"] = group
    if capacity is not None:
        desc["capacity"] = list(capacity)
    return hashlib.sha256(json_text(desc, indent=None).encode()).hexdigest()[:24]


def _load_row(state_dir: Path | None, key: str) -> dict[str, Any] | None:
    import json

    if state_dir is None:
        return None
    f = state_dir / f"{key}.json"
    try:
        row = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and "config" in row else None


def _save_row(state_dir: Path | None, key: str, row: dict[str, Any]) -> None:
    if state_dir is None:
        return
    from testbed.io import json_text, write_text

    state_dir.mkdir(parents=True, exist_ok=True)
    write_text(state_dir / f"{key}.json", json_text(row))


def parse_constraints(slo: str | None, min_agreement: float | None) -> tuple[Slo | None, float | None]:
    """The ``--slo`` and ``--min-agreement`` options, checked."""
    if min_agreement is not None and not (math.isfinite(min_agreement) and 0.0 <= min_agreement <= 1.0):
        raise ConfigError("--min-agreement", min_agreement, "a share from 0 to 1, e.g. 0.9")
    return (parse_slo(slo) if slo else None), min_agreement

"""Resolution: a validated :class:`Scenario` plus its base directory -> :class:`Resolved`.

This is the only code that opens the files a scenario names: device profiles, trace files,
empirical data files, NestQuant modes files; codec checkpoints, weight files and dataset paths are
made absolute and checked to exist (loading them stays on the model side). Everything below the
configuration layer receives a :class:`Resolved` and never looks a name up again, so a scenario
resolves the same way whatever the working directory, and ``testbed validate`` and ``testbed run``
agree. Every file read is recorded with its sha256 (``Resolved.files``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from testbed.config.files import FileReader, parse_rate_trace, parse_trace, parse_values
from testbed.config.frozen import FrozenDict
from testbed.config.modes import NestQuantModes
from testbed.config.profiles import Profile, find_profile, parse_profile
from testbed.config.schema import (
    Arrivals,
    CellSpec,
    DatasetSpec,
    FleetGroup,
    LinkSpec,
    ModelSpec,
    PacketTrace,
    Scenario,
)
from testbed.dists import Dist, EmpiricalFile
from testbed.errors import ConfigError

__all__ = ["WEIGHT_SUFFIXES", "Resolved", "as_resolved", "is_weights_file", "resolve"]

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def is_weights_file(weights: str) -> bool:
    """True when ``model.weights`` names a checkpoint file rather than a torchvision weights name
    (the model side's rule, without looking at the working directory)."""
    return "/" in weights or weights.endswith(WEIGHT_SUFFIXES)
M = TypeVar("M", bound=BaseModel)
L = TypeVar("L", bound=LinkSpec)


@dataclass(frozen=True)
class Resolved:
    """A scenario with everything it names loaded.

    ``scenario`` is a copy of the validated scenario with trace times and empirical values filled
    in and every path it names absolute; ``node_profiles[g]`` and ``nestquant[g]`` belong to fleet
    group ``g``; ``base_dir`` is the directory relative paths were resolved against (None: the
    working directory, e.g. for the built-in default); ``files`` is (absolute path, sha256) of
    every file read, in reading order; ``server_profiles[s]`` belongs to topology server ``s``
    (``servers``; empty without one, ``server_profile`` being the one server's).
    """

    scenario: Scenario
    base_dir: Path | None
    node_profiles: tuple[Profile, ...]
    server_profile: Profile
    nestquant: tuple[NestQuantModes | None, ...]
    files: tuple[tuple[str, str], ...] = ()
    server_profiles: tuple[Profile, ...] = ()


class _Resolver:
    """One resolution: a file reader and the profiles loaded so far (each file parsed once)."""

    def __init__(self, base_dir: Path | None) -> None:
        self.reader = FileReader(base_dir)
        self.profiles: dict[Path, Profile] = {}

    def profile(self, name: str, role: str, field: str) -> Profile:
        try:
            path = find_profile(name, self.reader.base_dir)
        except ValueError as exc:
            raise ConfigError(field, name, str(exc)) from None
        if path not in self.profiles:
            path, data = self.reader.read(str(path), field, "profile file")
            try:
                self.profiles[path] = parse_profile(data, str(path))
            except ConfigError as exc:
                raise ConfigError(field, name, f"{exc.path}: {exc.allowed}" if exc.path else exc.allowed) from None
        prof = self.profiles[path]
        if prof.role not in (role, "both"):
            raise ConfigError(field, name, f"a {role} profile (this one has role {prof.role!r})")
        return prof

    def modes(self, name: str, field: str) -> tuple[Path, NestQuantModes]:
        path, data = self.reader.read(name, field, "NestQuant modes JSON file (write it with `testbed train nestquant`)")
        try:
            return path, NestQuantModes.from_dict(json.loads(data))
        except ConfigError as exc:
            raise ConfigError(f"{field}: {exc.path}", exc.value, exc.allowed) from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ConfigError(field, name, f"a NestQuant modes JSON file ({type(exc).__name__}: {exc})") from None

    def dist(self, dist: EmpiricalFile, field: str) -> Dist:
        path, data = self.reader.read(dist.file, f"{field}.file", "data file")
        try:
            return dist.resolved(parse_values(data, path, dist.column))
        except ValueError as exc:
            raise ConfigError(f"{field}.file", dist.file, f"a file of values >= 0 ({exc})") from None

    def arrivals(self, spec: Arrivals, field: str, count: int) -> Arrivals:
        if spec.kind != "trace":
            return spec
        if spec.trace_times or spec.file is None:
            _check_trace_nodes(spec.trace_nodes, count, f"{field}.trace_nodes", spec.trace_nodes)
            return spec
        path, data = self.reader.read(spec.file, f"{field}.file", "trace file")
        try:
            times, nodes = parse_trace(data, path)
        except ValueError as exc:
            raise ConfigError(f"{field}.file", spec.file, f"a trace of timestamps in seconds ({exc})") from None
        _check_trace_nodes(nodes, count, f"{field}.file", spec.file)
        return spec.model_copy(update={"file": str(path), "trace_times": times, "trace_nodes": nodes})


def _check_trace_nodes(nodes: tuple[int, ...], count: int, field: str, value: Any) -> None:
    """Every trace row must belong to a node of the group (indices 0..count-1): rows of other nodes
    are an error, not silently dropped."""
    bad = next((n for n in nodes if not 0 <= n < count), None)
    if bad is not None:
        rows = sum(1 for n in nodes if not 0 <= n < count)
        raise ConfigError(field, value, f"trace rows for nodes 0..{count - 1} of the group only ({rows} row(s) "
                                        f"name other nodes, e.g. node {bad})")


def _walk(model: M, field: str, leaf: Callable[[Any, str], Any]) -> M:
    """``model`` with ``leaf(value, dotted field)`` applied to every field value below it (through
    nested models and tuples); a copy only where something changed."""
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{field}.{name}" if field else name
        new: Any
        if isinstance(value, BaseModel):
            new = _walk(value, where, leaf)
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            new = tuple(_walk(v, f"{where}.{i}", leaf) for i, v in enumerate(value))
        else:
            new = leaf(value, where)
        if new is not value and new != value:
            update[name] = new
    return model.model_copy(update=update) if update else model


def _codec(codec: tuple[Mapping[str, Any], ...], r: _Resolver, field: str = "codec") -> tuple[Mapping[str, Any], ...]:
    """Codec stages with every ``checkpoint`` parameter an absolute path to an existing file."""
    out = []
    for i, stage in enumerate(codec):
        new = {}
        for name, params in stage.items():
            if isinstance(params, Mapping) and isinstance(params.get("checkpoint"), str):
                path = r.reader.existing(params["checkpoint"], f"{field}.{i}.{name}.checkpoint", "checkpoint file")
                params = FrozenDict({**params, "checkpoint": str(path)})
            new[name] = params
        out.append(FrozenDict(new))
    return tuple(out)


def _model(model: ModelSpec | None, r: _Resolver, field: str = "model") -> ModelSpec | None:
    if model is None:
        return model
    if model.head is not None:
        model = model.model_copy(update={"head": str(r.reader.existing(model.head, f"{field}.head", "head checkpoint"))})
    if not is_weights_file(model.weights):
        return model
    path = r.reader.existing(model.weights, f"{field}.weights", "weights file")
    return model.model_copy(update={"weights": str(path)})


def _dataset(ds: DatasetSpec | None, r: _Resolver, field: str = "dataset") -> DatasetSpec | None:
    if ds is None or ds.path is None:
        return ds
    p = r.reader.path(ds.path)
    if not p.exists():
        raise ConfigError(f"{field}.path", ds.path, f"an existing dataset folder or file (looked at {p})")
    return ds.model_copy(update={"path": str(p)})


def _group(group: FleetGroup, g: int, r: _Resolver) -> tuple[FleetGroup, Profile, NestQuantModes | None]:
    field = f"fleet.{g}"
    profile = r.profile(group.device, "node", f"{field}.device")
    update: dict[str, Any] = {"arrivals": r.arrivals(group.arrivals, f"{field}.arrivals", group.count)}
    modes = None
    if group.nestquant is not None:
        path, modes = r.modes(group.nestquant.modes, f"{field}.nestquant.modes")
        update["nestquant"] = group.nestquant.model_copy(update={"modes": str(path)})
    if group.dataset is not None:
        update["dataset"] = _dataset(group.dataset, r, f"{field}.dataset")
    if group.model is not None:
        update["model"] = _model(group.model, r, f"{field}.model")
    if group.codec is not None:
        update["codec"] = _codec(group.codec, r, f"{field}.codec")
    return group.model_copy(update=update), profile, modes


def _link(link: LinkSpec, r: _Resolver) -> LinkSpec:
    """The link with its rate trace file read (times and rates filled in)."""
    trace = link.rate_trace
    if trace is None or trace.time_s or trace.file is None:
        return link
    path, data = r.reader.read(trace.file, "link.rate_trace.file", "rate trace CSV (columns time_s, rate)")
    try:
        times, rates = parse_rate_trace(data, path)
    except (ValueError, KeyError) as exc:
        raise ConfigError("link.rate_trace.file", trace.file, f"a CSV of time_s and rate ({exc})") from None
    return link.model_copy(update={"rate_trace": trace.model_copy(
        update={"file": str(path), "time_s": times, "rate": rates})})


def parse_packet_trace(data: bytes) -> tuple[int, ...]:
    """A Mahimahi packet-delivery trace: one integer millisecond per line (blank lines ignored)."""
    ms = []
    for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"line {i}: {text[:40]!r} is not a whole number of milliseconds")
        ms.append(int(text))
    if not ms:
        raise ValueError("no timestamps")
    if any(b < a for a, b in itertools.pairwise(ms)) or ms[-1] <= 0:
        raise ValueError("timestamps must not decrease and must end above 0")
    return tuple(ms)


def _packet_traces(link: L, field: str, r: _Resolver) -> L:
    """``link`` with the Mahimahi files of its uplink and downlink read (``ms`` filled in)."""
    def read(trace: PacketTrace | None, where: str) -> PacketTrace | None:
        if trace is None or trace.ms or trace.file is None:
            return trace
        path, data = r.reader.read(trace.file, f"{where}.file", "Mahimahi packet trace (one millisecond per line)")
        try:
            ms = parse_packet_trace(data)
        except ValueError as exc:
            raise ConfigError(f"{where}.file", trace.file, f"a Mahimahi packet trace ({exc})") from None
        return trace.model_copy(update={"file": str(path), "ms": ms})

    up = read(link.packet_trace, f"{field}.packet_trace")
    down = read(link.downlink.packet_trace, f"{field}.downlink.packet_trace")
    if up is link.packet_trace and down is link.downlink.packet_trace:
        return link
    return link.model_copy(update={"packet_trace": up,
                                   "downlink": link.downlink.model_copy(update={"packet_trace": down})})


def _cells(cells: tuple[CellSpec, ...], r: _Resolver) -> tuple[CellSpec, ...]:
    """Every cell with its rate trace file read (cell 0's is ``link``'s, read once more here)."""
    out = []
    for c, cell in enumerate(cells):
        trace = cell.rate_trace
        if trace is None or trace.time_s or trace.file is None:
            out.append(cell)
            continue
        field = f"cells.{c}.rate_trace.file"
        path, data = r.reader.read(trace.file, field, "rate trace CSV (columns time_s, rate)")
        try:
            times, rates = parse_rate_trace(data, path)
        except (ValueError, KeyError) as exc:
            raise ConfigError(field, trace.file, f"a CSV of time_s and rate ({exc})") from None
        out.append(cell.model_copy(update={"rate_trace": trace.model_copy(
            update={"file": str(path), "time_s": times, "rate": rates})}))
    return tuple(out)


def _group_trace(group: FleetGroup, g: int, r: _Resolver) -> FleetGroup:
    """The group with its nodes' rate trace file read (times and rates filled in)."""
    trace = group.rate_trace
    if trace is None or trace.time_s or trace.file is None:
        return group
    field = f"fleet.{g}.rate_trace.file"
    path, data = r.reader.read(trace.file, field, "rate trace CSV (columns time_s, rate)")
    try:
        times, rates = parse_rate_trace(data, path)
    except (ValueError, KeyError) as exc:
        raise ConfigError(field, trace.file, f"a CSV of time_s and rate ({exc})") from None
    return group.model_copy(update={"rate_trace": trace.model_copy(
        update={"file": str(path), "time_s": times, "rate": rates})})


def resolve(scenario: Scenario, base_dir: Path | str | None = None) -> Resolved:
    """Read every file ``scenario`` names, relative paths against ``base_dir``; raises
    :class:`ConfigError` naming the dotted field of the first file that is missing or malformed."""
    r = _Resolver(Path(base_dir).resolve() if base_dir is not None else None)
    groups = [_group(group, g, r) for g, group in enumerate(scenario.fleet)]
    server = r.profile(scenario.server.device, "server", "servers.0.device" if scenario.servers else "server.device")
    servers = tuple(r.profile(s.device, "server", f"servers.{i}.device") for i, s in enumerate(scenario.servers))
    sc = scenario.model_copy(update={
        "fleet": tuple(_group_trace(grp, g, r) for g, (grp, _, _) in enumerate(groups)),
        "codec": _codec(scenario.codec, r),
        "model": _model(scenario.model, r), "dataset": _dataset(scenario.dataset, r),
        "link": _packet_traces(_link(scenario.link, r), "cells.0" if scenario.cells else "link", r),
        "cells": tuple(_packet_traces(c, f"cells.{i}", r) for i, c in enumerate(_cells(scenario.cells, r)))})
    sc = _walk(sc, "", lambda v, where: r.dist(v, where) if isinstance(v, EmpiricalFile) else v)
    return Resolved(sc, r.reader.base_dir, tuple(p for _, p, _ in groups), server,
                    tuple(m for _, _, m in groups), r.reader.files, servers)


def as_resolved(scenario: Scenario | Resolved, base_dir: Path | str | None = None) -> Resolved:
    """``scenario`` itself when already resolved, else resolved against ``base_dir``."""
    return scenario if isinstance(scenario, Resolved) else resolve(scenario, base_dir)

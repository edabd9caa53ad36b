"""The pipeline workload: frames draw a dataset image and carry its real payload size; head, encode,
decode and tail times are charged from the node and server device profiles of a resolved scenario."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from testbed.bridge.cache import PipelineTable, pipeline_table
from testbed.config.resolve import Resolved, as_resolved
from testbed.config.schema import ModelSpec, Scenario
from testbed.core.calc import batch_time_fn
from testbed.core.charges import codec_time, head_figure, spread_dist, tail_table
from testbed.core.workload import Configs, SyntheticWorkload, Workload
from testbed.dists import Deterministic, Dist, int_sampler
from testbed.errors import ConfigError

__all__ = ["PipelineWorkload", "config_label", "group_configs", "group_images", "head_mac_scale", "make_workload",
           "slot_configs", "workload_for"]


def _split_points(model: str) -> tuple[str, ...]:
    """The model's split points in pipeline order (the registry's), to sum profile blocks in order."""
    from testbed.split.models import get_spec

    return tuple(get_spec(model, "model.name").points)


class PipelineWorkload:
    """Frames draw a dataset image; charges come from the node and server profiles.

    In a heterogeneous fleet (groups of their own ``model`` or ``codec``) each group's frames, head and
    encode charges come from its own pipeline entry (``table.parts``), and ``configs`` says which
    configuration (model, split, codec) each group runs and which server queue (model and split) serves
    it: decode and batch times per configuration and queue (:meth:`config_decode`,
    :meth:`queue_batch_time`)."""

    def __init__(self, resolved: Resolved, table: PipelineTable) -> None:
        scenario = resolved.scenario
        assert scenario.model is not None
        self.sc, self.table = scenario, table
        self.payloads = table.images["payload_bytes"].to_numpy(dtype=float)
        self.node_profiles = list(resolved.node_profiles)
        self.server_profile = resolved.server_profile
        self.server_profiles = resolved.server_profiles or (resolved.server_profile,)  # topology servers
        # a slot is one configuration of one group: a group's one, or each of an adaptive group's
        self._slot_group = [g for g in range(len(scenario.fleet)) for _ in scenario.group_variants(g)]
        self._first_slot = [self._slot_group.index(g) for g in range(len(scenario.fleet))]
        self._images = group_images(table, len(self._slot_group))
        self.configs, self._models, self._slot_config = slot_configs(scenario)
        self.variant_configs = [tuple(self._slot_config[s] for s, h in enumerate(self._slot_group) if h == g)
                                for g in range(len(scenario.fleet))]  # each group's configurations, in order
        self._config_slot = [self._slot_config.index(k) for k in range(len(self.configs.labels))]
        self._config_models = [self._models[s] for s in self._config_slot]
        splits = {m.split for m in self._models}
        if "none" in splits and len(splits) > 1:
            g = self._slot_group[next(i for i, m in enumerate(self._models) if m.split == "none")]
            raise ConfigError(f"fleet.{g}.model.split", "none", "a split that sends a payload: in a fleet of "
                              "several splits every group offloads (or none does)")
        self.offload = "none" not in splits
        slots = len(self._slot_group)
        self._parts = ([table.parts[k] for k in table.part_of_group] if table.parts
                       else [table] * slots)  # each slot's own entry
        self._heads = [self._head_dist(i) for i in range(slots)]
        self._encodes = [self._encode_dist(i) for i in range(slots)]

    def _head_dist(self, slot: int) -> Dist:
        g, m = self.sc.fleet[self._slot_group[slot]], self._models[slot]
        if g.head is not None:
            return g.head
        fig = head_figure(self.node_profiles[self._slot_group[slot]], m.name, m.split, _split_points(m.name))
        if m.head is not None:  # a trained replacement head: the profile's head time scaled by MACs
            scale = head_mac_scale(self._parts[slot].meta)
            return (spread_dist(fig.median * scale, fig.iqr * scale) if m.spread
                    else Deterministic(fig.median * scale))
        return spread_dist(fig.median, fig.iqr) if m.spread else Deterministic(fig.median)

    def _encode_dist(self, slot: int) -> Dist:
        group = self._slot_group[slot]
        g = self.sc.fleet[group]
        if g.encode is not None:
            return g.encode
        t = self._parts[slot]
        return Deterministic(codec_time(self.node_profiles[group], t.costs, t.elements, t.serialized_bytes,
                                        "encode"))

    def adaptive_drawer(self, group: int, node_in_group: int,
                        rng: np.random.Generator) -> Callable[[int], tuple[int, float, float, float]]:
        """A node of adaptive group ``group``: ``draw(k)`` is the next frame served in the group's
        configuration ``k``. The frame's photo is the same draw whichever configuration serves it (its
        row in configuration ``k``'s entry); each configuration's head and encode times have streams of
        their own."""
        slots = [s for s, g in enumerate(self._slot_group) if g == group]
        streams = [np.random.default_rng(s) for s in
                   np.random.SeedSequence(int(rng.integers(2**63))).spawn(1 + 2 * len(slots))]
        spans = [self._images[s] for s in slots]
        n_images = min(n for _, n in spans)
        images = int_sampler(streams[0], n_images)
        heads = [self._heads[s].sampler(streams[1 + 2 * k]) for k, s in enumerate(slots)]
        encodes = [self._encodes[s].sampler(streams[2 + 2 * k]) for k, s in enumerate(slots)]
        firsts = [first for first, _ in spans]
        sizes = self.payloads.tolist()

        def draw(k: int) -> tuple[int, float, float, float]:
            i = firsts[k] + images()
            return i, sizes[i], heads[k](), encodes[k]()
        return draw

    def frame_drawer(self, group: int, node_in_group: int, rng: np.random.Generator) -> Callable[[], tuple[int, float, float, float]]:
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(rng.integers(2**63))).spawn(3)]
        slot = self._first_slot[group]
        first, n_images = self._images[slot]
        images = int_sampler(streams[0], n_images)
        head, encode = self._heads[slot].sampler(streams[1]), self._encodes[slot].sampler(streams[2])
        sizes = self.payloads.tolist()
        send = self.offload

        def draw() -> tuple[int, float, float, float]:
            i = first + images()
            return i, (sizes[i] if send else 0.0), head(), encode()
        return draw

    def result_drawer(self, rng: np.random.Generator) -> Callable[[], float]:
        return self.sc.workload.result.sampler(rng)

    def decode(self) -> Dist:
        if self.sc.server.decode != Deterministic(0.0):
            return self.sc.server.decode
        t = self._parts[0]
        return Deterministic(codec_time(self.server_profile, t.costs, t.elements, t.serialized_bytes, "decode"))

    def batch_time(self, rng: np.random.Generator) -> Callable[[int], float]:
        svc = self.sc.server.service
        if svc is not None:
            return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)
        m = self._config_models[0]
        if not self.offload:
            return lambda b: 0.0
        return batch_time_fn(table=tail_table(self.server_profile, m.name, m.split))

    def server_decode(self, server: int) -> Dist:
        """:meth:`decode` on topology server ``server`` (its spec's decode, else its device profile's)."""
        spec, profile, t = self.sc.server_specs[server], self.server_profiles[server], self._parts[0]
        if spec.decode != Deterministic(0.0):
            return spec.decode
        return Deterministic(codec_time(profile, t.costs, t.elements, t.serialized_bytes, "decode"))

    def server_batch_time(self, server: int, rng: np.random.Generator) -> Callable[[int], float]:
        """:meth:`batch_time` on topology server ``server`` (its spec's service, else its device's tail)."""
        svc, m = self.sc.server_specs[server].service, self._config_models[0]
        if svc is not None:
            return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)
        if not self.offload:
            return lambda b: 0.0
        return batch_time_fn(table=tail_table(self.server_profiles[server], m.name, m.split))

    def config_decode(self, server: int, config: int) -> Dist:
        """Decode time of configuration ``config``'s payloads on server ``server`` (its spec's decode,
        else its device profile's figure for that configuration's codec)."""
        spec, profile = self.sc.server_specs[server], self.server_profiles[server]
        if spec.decode != Deterministic(0.0):
            return spec.decode
        t = self._parts[self._config_slot[config]]
        return Deterministic(codec_time(profile, t.costs, t.elements, t.serialized_bytes, "decode"))

    def queue_batch_time(self, server: int, queue: int, rng: np.random.Generator) -> Callable[[int], float]:
        """Batch time of queue ``queue`` (one model and split) on server ``server``: its spec's service
        when given (the same for every queue), else its device profile's tail table for that model and
        split."""
        svc = self.sc.server_specs[server].service
        if svc is not None:
            return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)
        m = self._config_models[self.configs.queue.index(queue)]
        return batch_time_fn(table=tail_table(self.server_profiles[server], m.name, m.split))


def config_label(model: ModelSpec, codec: tuple[Mapping[str, Any], ...]) -> str:
    """A configuration's name: ``model@split`` (with the head's file name and non-default weights) and
    its codec stages, e.g. ``efficientnet_lite0@stage4 quantize(bits=8)+zstd``."""
    from pathlib import PurePath

    name = f"{model.name}@{model.split}"
    if model.weights != "pretrained":
        name += f"[{PurePath(model.weights).name}]"
    if model.head is not None:
        name += f"+head[{PurePath(model.head).name}]"
    stages = []
    for stage in codec:
        for kind, params in stage.items():
            args = ",".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, Mapping) else ""
            stages.append(f"{kind}({args})" if args else str(kind))
    return f"{name} {'+'.join(stages)}" if stages else name


def group_configs(sc: Scenario) -> tuple[Configs, list[ModelSpec]]:
    """Each distinct (model, split, codec) the fleet groups run, in first-use order (labels), each
    group's index into them (an adaptive group's: its first configuration's), each one's server queue
    (one per distinct model, weights and split: the tail the server runs), and each group's model (an
    adaptive group's first)."""
    configs, models, _ = slot_configs(sc)
    firsts = [[g for g in range(len(sc.fleet)) for _ in sc.group_variants(g)].index(g) for g in range(len(sc.fleet))]
    return configs, [models[s] for s in firsts]


def slot_configs(sc: Scenario) -> tuple[Configs, list[ModelSpec], list[int]]:
    """:func:`group_configs` over slots (each configuration of each group, :meth:`Scenario.group_variants`,
    in order): the configurations, each slot's model and each slot's configuration."""
    labels: list[str] = []
    keys: list[str] = []
    queue_keys: list[str] = []
    of_group: list[int] = []
    of_slot: list[int] = []
    queue: list[int] = []
    models: list[ModelSpec] = []
    for g, model, codec in ((h, m, c) for h in range(len(sc.fleet)) for m, c in sc.group_variants(h)):
        models.append(model)
        key = json.dumps([model.model_dump(mode="json"), json.loads(json.dumps(list(codec)))], sort_keys=True)
        if key not in keys:
            keys.append(key)
            labels.append(config_label(model, codec))
            qkey = json.dumps([model.name, model.weights, model.seed, model.split])
            if qkey not in queue_keys:
                queue_keys.append(qkey)
            queue.append(queue_keys.index(qkey))
        if len(of_group) == g:  # a group's first slot
            of_group.append(keys.index(key))
        of_slot.append(keys.index(key))
    return Configs(tuple(labels), tuple(of_group), tuple(queue)), models, of_slot


def group_images(table: PipelineTable, groups: int) -> list[tuple[int, int]]:
    """Each fleet group's frames: ``(first image, count)`` in ``table``. A table joined from per-group
    datasets (:func:`testbed.bridge.cache.merge_tables`) says so in ``meta["group_images"]``; otherwise
    every group draws from all of its rows."""
    spans = table.meta.get("group_images")
    if spans is None:
        return [(0, len(table.images))] * groups
    if len(spans) != groups:
        raise ConfigError("fleet", groups, f"the {len(spans)} groups the pipeline table was joined for")
    return [(int(f), int(n)) for f, n in spans]


def head_mac_scale(meta: Mapping[str, Any]) -> float:
    """MACs of the replacement head (``model.head``, e.g. GroupNL) over the model's own head's, from the
    pipeline table's summary: the factor the node profile's measured head time is charged at (the
    profile's blocks were measured on the original head; a GroupNL head does the same kind of
    convolutions, fewer of them, plus elementwise sinusoids that are not counted)."""
    new, old = meta.get("head_macs"), meta.get("original_head_macs")
    if not new or not old:
        raise ConfigError("model.head", meta.get("head"), "a pipeline table with the head's MAC counts "
                          "(refresh the pipeline cache)")
    return float(new) / float(old)


def workload_for(scenario: Scenario | Resolved) -> PipelineWorkload:
    """The pipeline workload of a scenario with a model section (running or reusing the cache)."""
    res = as_resolved(scenario)
    return PipelineWorkload(res, pipeline_table(res.scenario))


def make_workload(scenario: Scenario | Resolved) -> Workload:
    """The workload of a scenario: the pipeline's (profile charges) or the synthetic one."""
    res = as_resolved(scenario)
    if res.scenario.model is not None:
        return workload_for(res)
    return SyntheticWorkload(res.scenario)

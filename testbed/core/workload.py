"""What a request costs: the small interface between the simulator and whatever supplies
payload sizes and compute charges (distributions here; the real model pipeline elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np

from testbed.config.schema import Scenario
from testbed.core.calc import batch_time_fn
from testbed.dists import Deterministic, Dist, constant_of

__all__ = ["ConfigWorkload", "Configs", "Frame", "SyntheticWorkload", "Workload", "configs_of"]

Frame = tuple[int, float, float, float]
"""What a node draws per frame: (image index or -1, payload bytes, head seconds, encode seconds)."""


class Workload(Protocol):
    """Supplies per-frame payloads and compute charges, and the server's service times."""

    def frame_drawer(self, group: int, node_in_group: int, rng: np.random.Generator) -> Callable[[], Frame]:
        """Per-node function returning (image, payload bytes, head s, encode s) for each frame."""

    def result_drawer(self, rng: np.random.Generator) -> Callable[[], float]:
        """Result (downlink) size in bytes per request."""

    def decode(self) -> Dist:
        """Server-side decode time per request (seconds, before the batch queue)."""

    def batch_time(self, rng: np.random.Generator) -> Callable[[int], float]:
        """Batch service time as a function of batch size."""

    def server_decode(self, server: int) -> Dist:
        """:meth:`decode` on topology server ``server`` (``Scenario.server_specs[server]``)."""

    def server_batch_time(self, server: int, rng: np.random.Generator) -> Callable[[int], float]:
        """:meth:`batch_time` on topology server ``server`` (its own service, device and GPUs)."""


class Configs(NamedTuple):
    """The configurations of a heterogeneous fleet: each distinct (model, split, codec) the groups run
    (``labels``), each group's one (``of_group``) and each one's server queue (``queue``: one per
    distinct model and split; a batch never mixes queues)."""

    labels: tuple[str, ...]
    of_group: tuple[int, ...]
    queue: tuple[int, ...]

    @property
    def queues(self) -> int:
        return max(self.queue) + 1


class ConfigWorkload(Workload, Protocol):
    """A workload whose groups run different configurations (``configs``): decode and batch times per
    configuration and per queue on each server (``Scenario.server_specs[server]``)."""

    configs: Configs

    def config_decode(self, server: int, config: int) -> Dist:
        """Decode time of configuration ``config``'s payloads on ``server``."""

    def queue_batch_time(self, server: int, queue: int, rng: np.random.Generator) -> Callable[[int], float]:
        """Service time of a batch of queue ``queue`` (its model and split) on ``server``."""


def configs_of(workload: Workload) -> ConfigWorkload | None:
    """``workload`` when its groups run more than one configuration, else None (the one-configuration
    path, unchanged)."""
    configs = getattr(workload, "configs", None)
    if isinstance(configs, Configs) and len(configs.labels) > 1:
        return workload  # type: ignore[return-value]
    return None


class SyntheticWorkload:
    """Charges from the scenario's own distributions (timing-only and queueing studies)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    def frame_drawer(self, group: int, node_in_group: int, rng: np.random.Generator) -> Callable[[], Frame]:
        spec = self.scenario.fleet[group]
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(
            int(rng.integers(2**63))).spawn(3)]
        payload = (spec.payload or self.scenario.workload.payload).sampler(streams[0])
        head_dist, encode_dist = spec.head or Deterministic(0.0), spec.encode or Deterministic(0.0)
        head_s, encode_s = constant_of(head_dist), constant_of(encode_dist)
        if head_s is not None and encode_s is not None:  # constants are not sampled (no draws skipped)
            return lambda: (-1, payload(), head_s, encode_s)
        head, encode = head_dist.sampler(streams[1]), encode_dist.sampler(streams[2])
        return lambda: (-1, payload(), head(), encode())

    def result_drawer(self, rng: np.random.Generator) -> Callable[[], float]:
        return self.scenario.workload.result.sampler(rng)

    def decode(self) -> Dist:
        return self.scenario.server.decode

    def batch_time(self, rng: np.random.Generator) -> Callable[[int], float]:
        svc = self.scenario.server.service
        if svc is None:
            raise ValueError("server.service is needed for a synthetic workload")
        return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)

    def server_decode(self, server: int) -> Dist:
        return self.scenario.server_specs[server].decode

    def server_batch_time(self, server: int, rng: np.random.Generator) -> Callable[[int], float]:
        svc = self.scenario.server_specs[server].service
        if svc is None:
            raise ValueError(f"servers.{server}.service is needed for a synthetic workload")
        return batch_time_fn(svc.table, svc.per_batch, svc.per_item, svc.dist, rng)

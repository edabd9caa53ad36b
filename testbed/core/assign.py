"""Assignment policies: which edge server gets a request (clock-free, pure decision rules).

A policy is built by a factory registered in :data:`ASSIGNMENTS` (``assignment.policy`` names it) from an
:class:`AssignmentContext` (how many servers, each fleet group's static server, its own random stream) and
answers :meth:`AssignmentPolicy.choose` with a server index, given each server's load: the requests
assigned to it and not yet served (in transit on the backhaul, decoding, queued or on a GPU), divided by
its GPUs, ``inf`` for a server that is down. Every policy but ``static`` picks among the servers that
are up while there is one (the driver handles a choice of a server that is down: no server was up, or a
static group's server is down). The driver (the simulator) keeps the loads; a policy keeps only its own
state (a counter, its stream).

- ``static``: each fleet group's server (``assignment.static`` by group name, else by cell name; the
  only server when there is one).
- ``random``: uniformly at random (Poisson traffic split into independent Poisson streams).
- ``round_robin``: servers in turn, over all requests.
- ``jsq``: join the shortest queue, i.e. least outstanding work per GPU (Winston 1977; Weber 1978);
  ties broken uniformly at random.
- ``power_of_two``: two distinct servers drawn at random, the less loaded one (Mitzenmacher, "The power
  of two choices in randomized load balancing", IEEE TPDS 2001); a tie goes to the first drawn.

:class:`RecentRtt` and :func:`falls_back` decide the local fallback (run the whole model on the node).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from testbed.registry import Registry

__all__ = ["ASSIGNMENTS", "AssignmentContext", "AssignmentPolicy", "Jsq", "PowerOfTwo", "RandomChoice",
           "RecentRtt", "RoundRobin", "Static", "falls_back"]

_BLOCK = 1024


class AssignmentPolicy(Protocol):
    """``choose(group, loads)``: the server for a request of fleet group ``group``; ``loads[s]``: server
    ``s``'s outstanding requests per GPU (``inf``: server ``s`` is down)."""

    def choose(self, group: int, loads: Sequence[float]) -> int: ...


@dataclass(frozen=True)
class AssignmentContext:
    """What a policy is built from: ``servers`` (how many), ``static[g]`` fleet group ``g``'s server
    under ``static`` (-1: none given), and the policy's own random stream."""

    servers: int
    static: Sequence[int]
    rng: np.random.Generator


def _up(loads: Sequence[float]) -> list[int] | None:
    """The servers that are up when some are down (None when all are up, the common case)."""
    if math.inf not in loads:
        return None
    return [s for s, load in enumerate(loads) if load != math.inf]


class _Draws:
    """Uniform integers in ``[0, n)`` drawn from ``rng`` a block at a time."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng, self.n = rng, n
        self.block: list[int] = []

    def __call__(self) -> int:
        if not self.block:
            self.block = self.rng.integers(0, self.n, _BLOCK).tolist()[::-1]
        return self.block.pop()


class Static:
    """Each group's fixed server."""

    def __init__(self, static: Sequence[int]) -> None:
        if any(s < 0 for s in static):
            raise ValueError("every group needs a server under the static policy")
        self.static = list(static)

    def choose(self, group: int, loads: Sequence[float]) -> int:
        return self.static[group]


class RandomChoice:
    """A server uniformly at random (among those up), whatever the loads."""

    def __init__(self, servers: int, rng: np.random.Generator) -> None:
        self.draw, self.rng = _Draws(rng, servers), rng

    def choose(self, group: int, loads: Sequence[float]) -> int:
        up = _up(loads)
        if up is None or not up:
            return self.draw()
        return up[int(self.rng.integers(len(up)))]


class RoundRobin:
    """Servers 0, 1, ..., n-1, 0, ... over all requests (skipping those down)."""

    def __init__(self, servers: int) -> None:
        self.servers, self.next = servers, 0

    def choose(self, group: int, loads: Sequence[float]) -> int:
        s = self.next
        for _ in range(self.servers - 1):
            if loads[s] != math.inf:
                break
            s = (s + 1) % self.servers
        self.next = (s + 1) % self.servers
        return s


class Jsq:
    """The least loaded server; among equally loaded ones, one uniformly at random."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def choose(self, group: int, loads: Sequence[float]) -> int:
        best = min(loads)
        ties = [s for s, load in enumerate(loads) if load == best]
        return ties[0] if len(ties) == 1 else ties[int(self.rng.integers(len(ties)))]


class PowerOfTwo:
    """Two distinct servers at random (among those up), the less loaded (the first drawn on a tie)."""

    def __init__(self, servers: int, rng: np.random.Generator) -> None:
        self.servers, self.rng = servers, rng

    def choose(self, group: int, loads: Sequence[float]) -> int:
        up = _up(loads)
        pool = list(range(self.servers)) if up is None or not up else up
        if len(pool) == 1:
            return pool[0]
        a, b = (pool[int(x)] for x in self.rng.choice(len(pool), 2, replace=False))
        return b if loads[b] < loads[a] else a


ASSIGNMENTS: Registry[Callable[[AssignmentContext], AssignmentPolicy]] = Registry("assignment policy")
"""Assignment policies by name (``assignment.policy``)."""
ASSIGNMENTS.add("static", lambda ctx: Static(ctx.static))
ASSIGNMENTS.add("random", lambda ctx: RandomChoice(ctx.servers, ctx.rng))
ASSIGNMENTS.add("round_robin", lambda ctx: RoundRobin(ctx.servers))
ASSIGNMENTS.add("jsq", lambda ctx: Jsq(ctx.rng))
ASSIGNMENTS.add("power_of_two", lambda ctx: PowerOfTwo(ctx.servers, ctx.rng))


class RecentRtt:
    """A node's round-trip times of the last ``window_s`` seconds (those that returned since)."""

    __slots__ = ("samples", "total", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def add(self, now: float, rtt_s: float) -> None:
        self.samples.append((now, rtt_s))
        self.total += rtt_s

    def mean(self, now: float) -> float | None:
        """Mean over the samples of ``(now - window_s, now]`` (None when there are none)."""
        samples, cut = self.samples, now - self.window_s
        while samples and samples[0][0] <= cut:
            self.total -= samples.popleft()[1]
        if not samples:
            self.total = 0.0
            return None
        return self.total / len(samples)


def falls_back(outstanding: float, rtt_mean_s: float | None, queue: int | None, rtt_s: float | None) -> bool:
    """Run on the node when the least-loaded usable server has ``queue`` or more outstanding requests,
    or the node's recent mean round trip exceeds ``rtt_s`` (a threshold left None is not checked)."""
    if queue is not None and outstanding >= queue:
        return True
    return rtt_s is not None and rtt_mean_s is not None and rtt_mean_s > rtt_s

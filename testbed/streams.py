"""Named random streams from one seed (``numpy.random.SeedSequence`` spawn keys).

Every random draw in a run comes from a stream identified by a key tuple, so the simulator and the
emulator draw the same numbers for the same purpose, and adding a node leaves the others' draws
unchanged. The keys are part of the output's identity: changing one changes results.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ADAPTIVE", "EMULATION", "LINK", "NODE", "SERVER", "TOPOLOGY", "adaptive_stream", "cell_stream",
           "link_stream", "node_stream", "server_stream", "stream", "topology_stream", "unit_stream"]

NODE = 0        # (0, group, node_in_group): arrivals, then the workload's frame drawer
LINK = 1        # (1,): uplink latency; (1, 1): downlink latency; (1, 2): the 802.11 cell
SERVER = 2      # (2,): batch times; (2, 1): decode; (2, 2): result sizes
EMULATION = 3   # (3, group, node_in_group): emulator-only draws (payload filler bytes)
TOPOLOGY = 4    # (4, 0, cell, sub): cell >= 1's LINK draws; (4, 1, server, sub): server >= 1's SERVER draws;
                # (4, 2): the assignment policy; (4, 3, k): backhaul latencies (k = 0 up, 1 down);
                # (4, 4): local fallback times; (4, 5, server): outages; (4, 6, group): placement;
                # (4, 7, cell): cell outages
ADAPTIVE = 5    # (5, group, node_in_group): an adaptive node's random extra hold (hold_jitter_s)


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator for spawn key ``key`` of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def node_stream(seed: int, group: int, node_in_group: int) -> np.random.Generator:
    return stream(seed, NODE, group, node_in_group)


def link_stream(seed: int, *sub: int) -> np.random.Generator:
    return stream(seed, LINK, *sub)


def server_stream(seed: int, *sub: int) -> np.random.Generator:
    return stream(seed, SERVER, *sub)


def topology_stream(seed: int, *sub: int) -> np.random.Generator:
    return stream(seed, TOPOLOGY, *sub)


def cell_stream(seed: int, cell: int, *sub: int) -> np.random.Generator:
    """Cell ``cell``'s link stream ``sub`` (cell 0: the one-link scenario's streams, so ``cells: [one]``
    draws what ``link: one`` draws)."""
    return link_stream(seed, *sub) if cell == 0 else topology_stream(seed, 0, cell, *sub)


def adaptive_stream(seed: int, group: int, node_in_group: int) -> np.random.Generator:
    """An adaptive node's own draws (its random extra hold after each step)."""
    return stream(seed, ADAPTIVE, group, node_in_group)


def unit_stream(seed: int, server: int, *sub: int) -> np.random.Generator:
    """Server ``server``'s stream ``sub`` (server 0: the one-server scenario's streams)."""
    return server_stream(seed, *sub) if server == 0 else topology_stream(seed, 1, server, *sub)

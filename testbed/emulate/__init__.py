"""Emulation: the same scenario live, with real sockets, a shaped link and a real edge server.

The emulator drives the simulator's own decision rules (:mod:`testbed.core.policy`), named random
streams (:mod:`testbed.streams`), workload builder (:func:`testbed.bridge.workload.make_workload`)
and outcome join (:mod:`testbed.bridge.outcomes`) from one resolved scenario. See
:mod:`testbed.emulate.run` (:func:`emulate_scenario`), :mod:`.fleet` and :mod:`.nominal` (the nodes),
:mod:`.responses` (their downlink side), :mod:`.server` and :mod:`.batching` (the asyncio edge
server), :mod:`.serve` (its process), :mod:`.compute` (real head, codec and tail), :mod:`.shaper`
(application-level link), :mod:`.netns` (kernel-shaped link with tc), :mod:`.wire` (framing),
:mod:`.handoff` (the resolved scenario for child processes) and :mod:`.compare` (simulation vs
emulation).
"""

from testbed.emulate.run import LINK_MODES, EmulationResult, emulate_scenario, write_emulation

__all__ = ["LINK_MODES", "EmulationResult", "emulate_scenario", "write_emulation"]

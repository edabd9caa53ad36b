"""Emulation: the same scenario live, with real sockets, a shaped link and a real edge server.

See :mod:`testbed.emulate.run` (:func:`emulate_scenario`), :mod:`.server` (the asyncio edge
server), :mod:`.clients` (the fleet), :mod:`.shaper` (application-level link), :mod:`.netns`
(kernel-shaped link with tc), :mod:`.wire` (framing) and :mod:`.compare` (simulation vs emulation).
"""

from testbed.emulate.run import LINK_MODES, EmulationResult, emulate_scenario, write_emulation

__all__ = ["LINK_MODES", "EmulationResult", "emulate_scenario", "write_emulation"]

"""Link models of the simulator, registered by name in :data:`LINKS` (see :mod:`testbed.sim.links.base`).

One import line per model module: importing it registers the model.
"""

from testbed.sim.links import csma, fifo, sharing  # noqa: F401  (registration)
from testbed.sim.links.base import LINKS, Channel, Link, LinkContext, LinkModel, StationLevels

__all__ = ["LINKS", "Channel", "Link", "LinkContext", "LinkModel", "StationLevels"]

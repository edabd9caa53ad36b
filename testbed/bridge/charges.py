"""What the simulator charges for a codec chain: each stage's declared cost on the split's feature map."""

from __future__ import annotations

from typing import Any

from testbed.core.charges import StageCost

__all__ = ["stage_charges"]


def stage_charges(chain: Any, feature_shape: tuple[int, ...]) -> list[StageCost]:
    """The :class:`~testbed.core.charges.StageCost` of every stage of ``chain`` (a
    :class:`~testbed.split.codecs.CodecChain`) on one feature map of ``feature_shape``.

    Every stage declares its own cost (:meth:`~testbed.split.codecs.Stage.cost`): quantizers, casts
    and the bit packer per element, lossless coders per uncompressed byte, and learned stages (the
    research methods, registered by :mod:`testbed.research`) by their multiply-accumulates per image
    at the device's MAC rate.
    """
    return list(chain.costs(tuple(feature_shape)))

"""The link interface and the registry of link models.

A link model is a factory: given a :class:`LinkContext` (the environment, the records, the two
hand-off callbacks, the stations' levels, each node's rate and the link's own random stream) it
returns a :class:`Link`, whose ``uplink`` and ``downlink`` accept ``submit(rid, seconds)``.

Adding a link model is one new module in this package with a factory decorated with
``@LINKS.register("name")``, and one import line in ``testbed/sim/links/__init__.py``;
``link.model: name`` then selects it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import simpy

from testbed.config.schema import LinkSpec
from testbed.core.calc import RateSchedule
from testbed.core.monitor import Level
from testbed.core.records import Records
from testbed.registry import Registry

__all__ = ["LINKS", "Channel", "ChannelClass", "Link", "LinkContext", "LinkModel", "StationLevels",
           "one_channel_per_direction"]


class Channel(Protocol):
    """One direction of a link: ``seconds`` is the transmission time alone on the air at the
    sender's rate; the link calls its ``on_done(rid)`` when the last bit has been sent."""

    def submit(self, rid: int, seconds: float) -> None: ...


@dataclass(frozen=True)
class StationLevels:
    """The time-weighted levels a link direction keeps: requests inside it, and whether it is busy."""

    in_station: Level
    busy: Level


@dataclass(frozen=True)
class LinkContext:
    """What a link model is built from (``rates[i]``: node i's rate in bytes/s; ``node_schedules[i]``, when
    given, node i's uplink rate over time as a factor of ``rates[i]``: ``fleet[].rate_trace``)."""

    env: simpy.Environment
    rec: Records
    spec: LinkSpec
    rates: Sequence[float]
    down_rate: float
    rng: np.random.Generator
    on_delivered: Callable[[int], None]
    on_returned: Callable[[int], None]
    up: StationLevels
    down: StationLevels
    node_schedules: Sequence[RateSchedule | None] = ()  # node i's uplink rate factor over time (or none)
    # A driver that can take an answer's end as soon as it is known offers this: a model that knows the end
    # of a downlink transmission at submission may call on_sent_down(rid, end) then instead of
    # on_returned(rid) at the end (for ends before ``horizon``, the end of the run; the rows stamped as the
    # event-driven model leaves them there), and hands back a Link whose ``settle`` applies its levels.
    on_sent_down: Callable[[int, float], None] | None = None
    horizon: float = math.inf


def _no_counters() -> dict[str, float]:
    return {}


def _settled(now: float) -> None:
    """Levels kept as the events happen: nothing to settle."""


@dataclass(frozen=True)
class Link:
    """The two directions of a built link.

    ``one_on_air``: one transmission at a time, so the time-weighted number waiting is the number in
    the station minus the busy fraction; False when every transmission is in service at once (the
    waiting level is then what the link recorded). ``counters`` returns the model's own totals.
    """

    uplink: Channel
    downlink: Channel
    one_on_air: bool
    counters: Callable[[], dict[str, float]] = field(default=_no_counters)
    settle: Callable[[float], None] = field(default=_settled)  # level changes due before ``now`` (end of run)

    def waiting(self, in_station: float, busy: float, recorded: float) -> float:
        """Mean number waiting behind the transmissions, from the direction's mean levels."""
        return max(0.0, in_station - busy) if self.one_on_air else recorded


LinkModel = Callable[[LinkContext], Link]


class ChannelClass(Protocol):
    """A one-direction channel class built from the record columns it stamps and its hand-off."""

    def __call__(self, env: simpy.Environment, *, start_col: array[float], end_col: array[float],
                 on_done: Callable[[int], None], in_station: Level, busy: Level) -> Channel: ...


def one_channel_per_direction(ctx: LinkContext, channel: ChannelClass, *, one_on_air: bool) -> Link:
    """A link of two independent channels of one class: the uplink stamps ``tx_*`` and hands over to
    ``on_delivered``, the downlink stamps ``downlink_*`` and hands over to ``on_returned``."""
    rec = ctx.rec
    up = channel(ctx.env, start_col=rec.tx_start_s, end_col=rec.tx_end_s, on_done=ctx.on_delivered,
                 in_station=ctx.up.in_station, busy=ctx.up.busy)
    down = channel(ctx.env, start_col=rec.downlink_start_s, end_col=rec.downlink_end_s,
                   on_done=ctx.on_returned, in_station=ctx.down.in_station, busy=ctx.down.busy)
    return Link(up, down, one_on_air=one_on_air)
"""A link factory."""

LINKS: Registry[LinkModel] = Registry("link model")
"""Link models by name (``link.model``)."""

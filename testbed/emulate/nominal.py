"""A node's decisions on the scenario's nominal clock, in the simulator's event order.

The emulator makes a node's decisions (admission, drops, which frame next, its charges and
NestQuant mode) with the same :class:`~testbed.core.policy.NodePolicy` as the simulator, at the
nominal times the simulator would make them: arrivals at their drawn times, a frame's end at its
start plus its charges. Events at the same time keep SimPy's order (the one scheduled first goes
first) and times are computed with the same floating-point operations, so the decisions equal the
simulator's exactly, whatever the load on the machine. The wall clock only executes them
(:mod:`testbed.emulate.fleet`): real compute that overruns its charge is counted, not obeyed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from testbed.core.policy import Admission, Charge, NodePolicy

__all__ = ["Kind", "NodeEvent", "node_events"]


class Kind(Enum):
    ARRIVE = "arrive"  # frame created (``frame`` is its index on this node)
    DROP = "drop"      # ``frame`` dropped at the node (the arriving one, or the oldest waiting)
    START = "start"    # the CPU starts ``frame`` with ``charge``
    DONE = "done"      # the CPU finished ``frame`` (its payload goes to the link)


@dataclass(frozen=True)
class NodeEvent:
    time: float
    kind: Kind
    frame: int
    charge: Charge | None = None


class _Clock:
    """Timeouts as SimPy schedules them: (now + delay, order of scheduling)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._seq = 0

    def after(self, delay: float) -> tuple[float, int]:
        self._seq += 1
        return self.now + delay, self._seq


def node_events(policy: NodePolicy, arrivals: Iterator[float], stop_at: float) -> Iterator[NodeEvent]:
    """The node's events in order, driving ``policy`` exactly as :class:`testbed.sim.node.Node` does."""
    clock = _Clock()

    def next_arrival() -> tuple[float, int] | None:
        t = next(arrivals, None)
        if t is None or t >= stop_at:
            return None
        return clock.after(t - clock.now if t > clock.now else 0.0)

    arrival, done = next_arrival(), None
    frames, serving = 0, -1
    while arrival is not None or done is not None:
        if done is None or (arrival is not None and arrival < done):
            assert arrival is not None
            clock.now = arrival[0]
            arrival = next_arrival()
            frame, frames = frames, frames + 1
            yield NodeEvent(clock.now, Kind.ARRIVE, frame)
            decision, dropped = policy.arrive(frame)
            if decision is Admission.SERVE:
                serving = frame
            elif decision is not Admission.QUEUED:
                yield NodeEvent(clock.now, Kind.DROP, dropped)
                continue
            else:
                continue
        else:
            clock.now = done[0]
            yield NodeEvent(clock.now, Kind.DONE, serving)
            nxt = policy.next()
            if nxt is None:
                done = None
                continue
            serving = nxt
        charge = policy.begin(clock.now)
        done = clock.after(charge.head + charge.encode)
        yield NodeEvent(clock.now, Kind.START, serving, charge)

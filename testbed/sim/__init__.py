"""The discrete-event core (SimPy): nodes, a shared link and a batching server. Free of torch."""

from testbed.sim.world import SimResult, Simulation, simulate
from testbed.core.records import STATUS
from testbed.core.workload import SyntheticWorkload, Workload

__all__ = ["Simulation", "SimResult", "simulate", "STATUS", "SyntheticWorkload", "Workload"]

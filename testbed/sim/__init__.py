"""The discrete-event core (SimPy): nodes, a shared link and a batching server. Free of torch."""

from testbed.core.records import STATUS
from testbed.core.workload import SyntheticWorkload, Workload
from testbed.sim.world import SimResult, Simulation, simulate

__all__ = ["STATUS", "SimResult", "Simulation", "SyntheticWorkload", "Workload", "simulate"]

"""The discrete-event core (SimPy): nodes, a shared link and a batching server. Free of torch."""

from .model import SimResult, Simulation, simulate
from .records import STATUS
from .workload import SyntheticWorkload, Workload

__all__ = ["Simulation", "SimResult", "simulate", "STATUS", "SyntheticWorkload", "Workload"]

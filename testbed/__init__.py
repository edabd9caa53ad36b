"""testbed: simulation and emulation of split DNN inference in IoT fleets."""

from .errors import ConfigError, TestbedError
from .scenario import Scenario, load_scenario, scenario_from_dict

__all__ = ["ConfigError", "TestbedError", "Scenario", "load_scenario", "scenario_from_dict"]
__version__ = "0.1.0"

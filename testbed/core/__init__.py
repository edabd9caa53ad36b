"""Clock-free core shared by the simulator and the emulator: records, policies, charges, metrics.

Imports neither simpy nor torch."""

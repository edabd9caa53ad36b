"""The one place the simulation and the model side meet: pipeline cache, workload, outcome join."""

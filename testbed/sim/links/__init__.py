"""Link models of the simulator."""

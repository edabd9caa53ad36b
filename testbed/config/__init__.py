"""Configuration: the frozen scenario schema (no I/O, no torch), its loader, and the one resolver
that opens the files a scenario names."""

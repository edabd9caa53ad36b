"""The model side: models split into head and tail, codecs, datasets, the pipeline, the profiler.

Uses torch; never imports simpy or the simulation."""

"""A run is a directory: run.yaml, logs, checkpoints, callbacks, plots, PiSSA conversion."""

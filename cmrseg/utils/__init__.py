"""Run glue for the entry points: Hydra config helpers, instantiation, loggers, run extras."""

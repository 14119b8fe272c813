"""Console entry points; each is a thin wrapper over the library (see the README)."""

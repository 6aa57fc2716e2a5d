"""Server-side federation: update validation, streaming aggregation, checkpoints, metrics."""

"""Training and evaluation engine: checkpoints, teacher-feature cache, metrics and `metrics.json`."""

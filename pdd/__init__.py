"""pdd: a reproducible replication pipeline for PDD (Manifold-Prior Diverse Distillation, CVPR 2026)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`pdd.Predictor` without importing torch for every `import pdd` (the CLI and config stay light)."""
    if name == "Predictor":
        from pdd.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'pdd' has no attribute {name!r}")

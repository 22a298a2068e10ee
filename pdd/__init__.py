"""pdd: a reproducible replication pipeline for PDD (Manifold-Prior Diverse Distillation, CVPR 2026)."""

__version__ = "0.1.0"

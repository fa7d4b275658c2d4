"""Experiments that reproduce the papers' tables (one module per experiment)."""
from .baseline import BaselineConfig, BaselineResult, run_baseline

__all__ = ["BaselineConfig", "BaselineResult", "run_baseline"]

"""Experiments that reproduce the papers' tables (one module per experiment), and experiment
files: ``run("experiment.yaml")`` (``files.py``; ``advrec run FILE.yaml`` on the command line)."""
from .baseline import BaselineConfig, BaselineResult, run_baseline
from .files import ExperimentFile, resolve, run

__all__ = ["BaselineConfig", "BaselineResult", "run_baseline", "run", "resolve", "ExperimentFile"]

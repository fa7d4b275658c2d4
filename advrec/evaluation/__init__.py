"""Evaluation: ranking protocols, the EvalResult they return, and user/item groups for slicing."""
from .groups import HEAD, TAIL, exposure_by_group, items_by_popularity, users_by_activity
from .protocols import PROTOCOLS, evaluate, sample_negatives
from .result import EvalResult
from .validation import validator

__all__ = [
    "HEAD",
    "PROTOCOLS",
    "TAIL",
    "EvalResult",
    "evaluate",
    "exposure_by_group",
    "items_by_popularity",
    "sample_negatives",
    "users_by_activity",
    "validator",
]

"""Evaluation: ranking protocols, the EvalResult they return, user/item groups for slicing, and the
target-item measures of poisoning attacks (``targets``)."""
from .groups import (
    HEAD,
    TAIL,
    Groups,
    attribute_groups,
    exposure_by_group,
    item_popularity_groups,
    items_by_popularity,
    quantile_groups,
    user_activity_groups,
    user_gender_groups,
    users_by_activity,
)
from .protocols import PROTOCOLS, SampledCases, case_ranks, evaluate, sample_negatives, sampled_cases
from .result import EvalResult
from .targets import PredictionShift, TargetResult, check_targets, prediction_shift, target_exposure
from .validation import validator

__all__ = [
    "HEAD",
    "PROTOCOLS",
    "TAIL",
    "EvalResult",
    "Groups",
    "SampledCases",
    "attribute_groups",
    "case_ranks",
    "evaluate",
    "exposure_by_group",
    "item_popularity_groups",
    "items_by_popularity",
    "quantile_groups",
    "sample_negatives",
    "sampled_cases",
    "user_activity_groups",
    "user_gender_groups",
    "users_by_activity",
    "validator",
    "PredictionShift", "TargetResult", "check_targets", "prediction_shift", "target_exposure",
]

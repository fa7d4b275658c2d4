"""Recommendation metrics in pure numpy; per-user values are kept for paired significance tests."""
from .accuracy import PerUser, accuracy_metrics, auc_from_counts, hit_matrix
from .beyond import (
    gini_index,
    item_coverage,
    item_exposure,
    item_user_counts,
    novelty,
    shannon_entropy,
)
from .significance import betainc, paired_ttest, t_sf_two_sided, wilcoxon

__all__ = [
    "PerUser",
    "accuracy_metrics",
    "auc_from_counts",
    "betainc",
    "gini_index",
    "hit_matrix",
    "item_coverage",
    "item_exposure",
    "item_user_counts",
    "novelty",
    "paired_ttest",
    "shannon_entropy",
    "t_sf_two_sided",
    "wilcoxon",
]

"""Recommendation metrics in pure numpy; per-user values are kept for paired significance tests."""
from .accuracy import PerUser, accuracy_metrics, auc_from_counts, hit_matrix, per_item_ndcg
from .beyond import (
    gini_index,
    item_coverage,
    item_exposure,
    item_user_counts,
    novelty,
    shannon_entropy,
)
from .fairness import (
    DEFAULT_BETA,
    gce,
    group_means,
    group_shares,
    item_fairness,
    ideal_distribution,
    mad_ranking,
    mad_rating,
    user_fairness,
)
from .significance import betainc, paired_ttest, t_sf_two_sided, wilcoxon

__all__ = [
    "DEFAULT_BETA",
    "PerUser",
    "accuracy_metrics",
    "auc_from_counts",
    "betainc",
    "gce",
    "gini_index",
    "group_means",
    "group_shares",
    "hit_matrix",
    "ideal_distribution",
    "item_coverage",
    "item_exposure",
    "item_fairness",
    "item_user_counts",
    "mad_ranking",
    "mad_rating",
    "novelty",
    "paired_ttest",
    "per_item_ndcg",
    "shannon_entropy",
    "t_sf_two_sided",
    "user_fairness",
    "wilcoxon",
]

"""User and item groups for fairness slices: who is served well, which items get exposure.

Labels are int64 arrays indexed by user id / item id, with higher labels meaning more activity
or popularity; pass user labels to ``EvalResult.by_group`` and item labels to ``exposure_by_group``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics._validate import check_topk

HEAD, TAIL = 1, 0


def _distinct_counts(train: Any) -> tuple[np.ndarray, np.ndarray]:
    """(items per user, users per item), each (user, item) pair counted once."""
    indptr, indices = train.to_csr()
    return np.diff(indptr).astype(np.int64), np.bincount(indices, minlength=train.n_items).astype(np.int64)


def users_by_activity(train: Any, n_groups: int = 3) -> np.ndarray:
    """int64 [n_users]: 0 (least active) .. n_groups-1 (most active) by distinct training items.

    Users are sorted by activity (ties by user id) and cut into n_groups groups of equal size
    (sizes differ by at most one), so every group has users even when activity ties are heavy.
    """
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive int, got {n_groups!r}")
    activity, _ = _distinct_counts(train)
    if n_groups > len(activity):
        raise ValueError(f"n_groups={n_groups} exceeds the number of users ({len(activity)})")
    order = np.argsort(activity, kind="stable")
    labels = np.empty(len(activity), dtype=np.int64)
    for g, part in enumerate(np.array_split(order, n_groups)):
        labels[part] = g
    return labels


def items_by_popularity(train: Any, head_fraction: float = 0.2) -> np.ndarray:
    """int64 [n_items]: HEAD (1) for the ceil(head_fraction * n_items) items with the most distinct
    training users (ties by lower item id), TAIL (0) for the rest: the short head / long tail split
    of popularity-bias studies."""
    if not 0.0 < float(head_fraction) < 1.0:
        raise ValueError(f"head_fraction must lie strictly between 0 and 1, got {head_fraction!r}")
    _, popularity = _distinct_counts(train)
    n_head = int(np.ceil(head_fraction * len(popularity)))
    order = np.lexsort((np.arange(len(popularity)), -popularity))
    labels = np.full(len(popularity), TAIL, dtype=np.int64)
    labels[order[:n_head]] = HEAD
    return labels


def exposure_by_group(topk: np.ndarray, item_labels: np.ndarray, k: int) -> dict[Any, float]:
    """Share of all top-k recommendation slots that go to each item group (sums to 1).

    Every label present in ``item_labels`` appears, with 0.0 when its items are never recommended;
    an empty set of lists raises, since shares are then undefined.
    """
    topk = check_topk(topk)
    item_labels = np.asarray(item_labels)
    if item_labels.ndim != 1:
        raise ValueError("item_labels must be a 1-D array indexed by item id")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= topk.shape[1]:
        raise ValueError(f"k must be an int in 1..{topk.shape[1]}, got {k!r}")
    slots = topk[:, :k]
    slots = slots[slots >= 0]
    if slots.size and slots.max() >= len(item_labels):
        raise ValueError(f"item_labels has {len(item_labels)} entries but item {int(slots.max())} is recommended")
    if slots.size == 0:
        raise ValueError("topk holds no recommendation; exposure shares are undefined")
    groups = item_labels[slots]
    return {(g.item() if isinstance(g, np.generic) else g): float(np.count_nonzero(groups == g)) / slots.size
            for g in np.unique(item_labels)}

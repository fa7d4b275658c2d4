"""User and item groups for fairness slices: who is served well, which items get exposure.

Labels are int64 arrays indexed by user id / item id, with higher labels meaning more activity
or popularity; pass user labels to ``EvalResult.by_group`` and item labels to ``exposure_by_group``.
The ``Groups``-returning functions (quartiles, gender, any attribute column) also name each label,
for the per-group tables of the MSAP paper (Table 2) and the fairness metrics of ``advrec.metrics``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from ..data.interactions import Interactions
from ..metrics.checks import check_topk

HEAD, TAIL = 1, 0


def _distinct_counts(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(items per user, users per item), each (user, item) pair counted once."""
    indptr, indices = train.to_csr()
    return np.diff(indptr).astype(np.int64), np.bincount(indices, minlength=train.n_items).astype(np.int64)


def users_by_activity(train: Interactions, n_groups: int = 3) -> np.ndarray:
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


def items_by_popularity(train: Interactions, head_fraction: float = 0.2) -> np.ndarray:
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


class Groups(NamedTuple):
    """Integer labels (0..len(names)-1, indexed by user or item id) and the name of each label."""

    labels: np.ndarray
    names: tuple[str, ...]


def quantile_groups(values: Any, n_groups: int = 4, ties: str = "split") -> np.ndarray:
    """int64 labels 0 (lowest values) .. n_groups-1 (highest) cutting values into quantile groups.

    ``ties="split"``: sort by value, equal values by index, and cut into n_groups groups of equal
    size (sizes differ by at most one, larger groups first) -- equal values may straddle a boundary,
    but every group is filled. ``ties="together"``: an element's group is
    floor(n_groups * (number of elements with a strictly smaller value) / n), so equal values
    always share a group, at the price of unequal and possibly empty groups. Both are deterministic.
    """
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {v.shape}")
    if v.size and not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise ValueError(f"values must be numeric, got dtype {v.dtype}")
    if v.size and np.issubdtype(v.dtype, np.floating) and np.any(np.isnan(v)):
        raise ValueError("values has NaN entries")
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive int, got {n_groups!r}")
    if n_groups > len(v):
        raise ValueError(f"n_groups={n_groups} exceeds the number of values ({len(v)})")
    if ties not in ("split", "together"):
        raise ValueError(f"ties must be 'split' or 'together', got {ties!r}")
    labels = np.empty(len(v), dtype=np.int64)
    if ties == "split":
        order = np.argsort(v, kind="stable")
        for g, part in enumerate(np.array_split(order, n_groups)):
            labels[part] = g
    else:
        below = np.searchsorted(np.sort(v, kind="stable"), v, side="left")
        labels[:] = (below * n_groups) // len(v)
    return labels


def _quartile_names(n_groups: int) -> tuple[str, ...]:
    return tuple(f"C{g + 1}" for g in range(n_groups))


def item_popularity_groups(train: Interactions, n_groups: int = 4, ties: str = "split") -> Groups:
    """Item popularity quartiles (C1 = least popular .. C4 = most) by distinct training users per item."""
    _, popularity = _distinct_counts(train)
    return Groups(quantile_groups(popularity, n_groups, ties), _quartile_names(n_groups))


def user_activity_groups(train: Interactions, n_groups: int = 4, ties: str = "split") -> Groups:
    """User activity quartiles (C1 = least active .. C4 = most) by distinct training items per user."""
    activity, _ = _distinct_counts(train)
    return Groups(quantile_groups(activity, n_groups, ties), _quartile_names(n_groups))


def attribute_groups(values: Any, order: Optional[Sequence[Any]] = None) -> Groups:
    """Labels for any categorical user/item attribute column (gender, occupation, genre, ...).

    Label g is the g-th of ``order`` if given (every value must appear in it), else of the sorted
    distinct values; names are their str().
    """
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D attribute column, got shape {v.shape}")
    if order is None:
        if v.size == 0:
            raise ValueError("values is empty; no groups to name")
        cats = np.unique(v)
    else:
        cats = np.asarray(list(order))
        if cats.ndim != 1 or cats.size == 0:
            raise ValueError("order must be a non-empty sequence of attribute values")
        if len(np.unique(cats)) != len(cats):
            raise ValueError("order lists a value twice")
    lookup = {c.item() if isinstance(c, np.generic) else c: g for g, c in enumerate(cats)}
    labels = np.empty(len(v), dtype=np.int64)
    for i, x in enumerate(v.tolist()):
        if x not in lookup:
            raise ValueError(f"values holds {x!r}, which order does not list")
        labels[i] = lookup[x]
    return Groups(labels, tuple(str(c) for c in cats.tolist()))


def user_gender_groups(dataset: Any, order: Sequence[str] = ("M", "F")) -> Groups:
    """User gender groups from ``dataset.user_features["gender"]`` (ML-100K, ML-1M): M = 0, F = 1.

    The MSAP paper's f_1 = [0.75, 0.25] then favours the first group (M).
    """
    feats = getattr(dataset, "user_features", None)
    if not isinstance(feats, dict) or "gender" not in feats:
        raise ValueError("dataset has no user feature 'gender'")
    return attribute_groups(feats["gender"], order)

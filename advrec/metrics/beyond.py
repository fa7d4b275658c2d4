"""Beyond-accuracy metrics over a top-K matrix: catalogue coverage, concentration, novelty.

Coverage, entropy and Gini describe the whole set of lists (global values); EPC and EFD are
per-user novelty scores (Vargas & Castells 2011, RecSys, "Rank and relevance in novelty and
diversity metrics").
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .checks import Ks, check_csr, check_ks, check_topk, row_ids
from .accuracy import PerUser, hit_matrix


def _check_n_items(topk: np.ndarray, n_items: int) -> None:
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items must be a positive int, got {n_items!r}")
    if topk.size and topk.max() >= n_items:
        raise ValueError(f"topk holds item {int(topk.max())}, outside 0..n_items-1 = {n_items - 1}")


def item_exposure(topk: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """int64 [n_items]: how many of the top-k lists contain each item (padding ignored)."""
    topk = check_topk(topk)
    _check_n_items(topk, n_items)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be one int cut-off here, got {k!r}")
    (k,) = check_ks(k, topk.shape[1])
    head = topk[:, :k]
    return np.bincount(head[head >= 0], minlength=n_items).astype(np.int64)


def item_coverage(topk: np.ndarray, n_items: int, k: int) -> tuple[float, int]:
    """(fraction, count) of catalogue items recommended in at least one top-k list."""
    count = int(np.count_nonzero(item_exposure(topk, n_items, k)))
    return count / n_items, count


def shannon_entropy(topk: np.ndarray, n_items: int, k: int) -> float:
    """Shannon entropy (natural log, nats) of the share of top-k slots each item receives.

    0 when one item fills every slot, ln(n_items) at perfectly even exposure; NaN when there is
    no recommendation at all (the distribution does not exist).
    """
    counts = item_exposure(topk, n_items, k)
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def gini_index(topk: np.ndarray, n_items: int, k: int) -> float:
    """Gini index of item exposure over all n_items (never-recommended items count with 0).

    G = sum_i (2i - n - 1) x_(i) / ((n - 1) sum x) with x sorted ascending, i = 1..n: 0 for equal
    exposure, exactly 1 when a single item takes every slot (the (n - 1) normalisation).
    NaN when there is no recommendation; 0 for a one-item catalogue.
    """
    counts = np.sort(item_exposure(topk, n_items, k)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    n = len(counts)
    if n == 1:
        return 0.0
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float((weights * counts).sum() / ((n - 1) * total))


def item_user_counts(train: tuple[np.ndarray, np.ndarray], n_items: int) -> np.ndarray:
    """int64 [n_items]: number of distinct users who interacted with each item in ``train``.

    ``train`` is a user -> items CSR; repeated (user, item) pairs count once.
    """
    indptr, indices = check_csr(train[0], train[1], len(np.asarray(train[0])) - 1, "train")
    if indices.size and indices.max() >= n_items:
        raise ValueError(f"train holds item {int(indices.max())}, outside 0..n_items-1 = {n_items - 1}")
    width = max(n_items, 1)
    pairs = row_ids(indptr) * width + indices
    if np.any(np.diff(pairs) <= 0):  # not already sorted and unique per row
        pairs = np.unique(pairs)
    return np.bincount(pairs % width, minlength=n_items).astype(np.int64)


def novelty(
    topk: np.ndarray,
    item_users: np.ndarray,
    n_users: int,
    k: Ks = (10,),
    truth: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> PerUser:
    """EPC@k and EFD@k per row (Vargas & Castells 2011), the values Elliot reports.

    With p(seen|i) = item_users[i] / n_users (training popularity) and discount
    disc(j) = 1 / log2(j + 1) for positions j = 1..k,
    ``metric_u = sum_j disc(j) * rel(u, i_j) * nov(i_j) / sum_j disc(j)`` where the normaliser runs
    over the list's non-padding positions; nov = 1 - p(seen|i) for EPC and -log2 p(seen|i) for EFD.

    Relevance: with ``truth`` (a CSR aligned with the rows) rel is binary (1 for a relevant item),
    the relevance-aware variant, and rows without relevant items are left out; with ``truth=None``
    rel = 1 for every recommended item (plain novelty of the list). Rows whose list is empty are
    left out.

    Items never seen in training: EPC uses p = 0 (novelty 1, exact). EFD would be infinite, so such
    items are treated as seen by one user, p = 1 / n_users, i.e. as novel as the rarest seen item.
    """
    topk = check_topk(topk)
    ks = check_ks(k, topk.shape[1])
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ValueError(f"n_users must be a positive int, got {n_users!r}")
    item_users = np.asarray(item_users)
    if item_users.ndim != 1:
        raise ValueError("item_users must be a 1-D array of per-item user counts")
    if item_users.size and (item_users.min() < 0 or item_users.max() > n_users):
        raise ValueError("item_users must lie in 0..n_users")
    _check_n_items(topk, len(item_users))

    valid = topk >= 0
    keep = valid[:, 0] if topk.shape[1] else np.zeros(topk.shape[0], dtype=bool)
    rel = valid.astype(np.float64)
    if truth is not None:
        indptr, _ = check_csr(truth[0], truth[1], topk.shape[0], "truth")
        keep = keep & (np.diff(indptr) > 0)
        rel = hit_matrix(topk, truth).astype(np.float64)
    rows = np.flatnonzero(keep).astype(np.int64)

    counts = item_users.astype(np.float64)
    epc_nov = 1.0 - counts / n_users
    efd_nov = -np.log2(np.maximum(counts, 1.0) / n_users)
    items = np.where(valid, topk, 0)[rows]
    rel = rel[rows]
    disc = (1.0 / np.log2(np.arange(2, topk.shape[1] + 2, dtype=np.float64))) * valid[rows]

    values: dict[str, np.ndarray] = {}
    for kk in ks:
        d = disc[:, :kk]
        norm = d.sum(axis=1)
        weight = d * rel[:, :kk]
        values[f"EPC@{kk}"] = (weight * epc_nov[items[:, :kk]]).sum(axis=1) / norm
        values[f"EFD@{kk}"] = (weight * efd_nov[items[:, :kk]]).sum(axis=1) / norm
    return PerUser(rows, values)

"""Per-user top-K accuracy metrics (HR, Precision, Recall, nDCG, MRR, MAP) and AUC from rank counts.

Users (rows) without relevant items are left out and the evaluated rows are returned with the
values: an empty ground truth makes these metrics undefined, and counting it as 0 would bias means.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .checks import Ks, check_csr, check_ks, check_topk, row_ids


class PerUser(NamedTuple):
    """Per-row metric values: ``values[name][j]`` belongs to input row ``rows[j]``."""

    rows: np.ndarray
    values: dict[str, np.ndarray]


def hit_matrix(topk: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """bool [n_rows, K]: whether ``topk[r, j]`` is one of row r's relevant items (padding never hits).

    The relevant sets are given as a CSR aligned with the rows of ``topk``; repeated items in a row
    raise, since they would make |relevant| ambiguous.
    """
    topk = check_topk(topk)
    indptr, indices = check_csr(truth[0], truth[1], topk.shape[0], "truth")
    n_rows = topk.shape[0]
    width = int(max(indices.max(initial=-1), topk.max(initial=-1))) + 1
    keys = np.sort(row_ids(indptr) * width + indices)
    if np.any(keys[1:] == keys[:-1]):
        raise ValueError("truth lists the same item twice in a row")
    if len(keys) == 0:
        return np.zeros(topk.shape, dtype=bool)
    valid = topk >= 0
    query = np.arange(n_rows, dtype=np.int64)[:, None] * width + np.where(valid, topk, 0)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return valid & (keys[pos] == query)


def accuracy_metrics(topk: np.ndarray, truth: tuple[np.ndarray, np.ndarray], k: Ks = (10,)) -> PerUser:
    """HR@k, Precision@k, Recall@k, nDCG@k, MRR@k, MAP@k per row with at least one relevant item.

    Definitions (binary relevance, positions j = 1..k):
    HR = 1 if any hit; Precision = hits / k (padding counts as a miss); Recall = hits / |rel|;
    nDCG = sum_j hit_j / log2(j + 1) divided by the ideal DCG over min(|rel|, k) positions;
    MRR = 1 / (position of the first hit), 0 if none;
    MAP = sum_j hit_j * Precision@j / min(|rel|, k).
    """
    topk = check_topk(topk)
    indptr, _ = check_csr(truth[0], truth[1], topk.shape[0], "truth")
    ks = check_ks(k, topk.shape[1])
    n_rel_all = np.diff(indptr)
    rows = np.flatnonzero(n_rel_all > 0).astype(np.int64)
    hits = hit_matrix(topk, truth)[rows].astype(np.float64)
    n_rel = n_rel_all[rows].astype(np.float64)
    positions = np.arange(1, topk.shape[1] + 1, dtype=np.float64)
    discount = 1.0 / np.log2(positions + 1.0)
    ideal = np.cumsum(discount)

    values: dict[str, np.ndarray] = {}
    for kk in ks:
        h = hits[:, :kk]
        n_hits = h.sum(axis=1)
        n_ideal = np.minimum(n_rel, kk).astype(np.int64)
        first = np.argmax(h, axis=1)
        values[f"HR@{kk}"] = (n_hits > 0).astype(np.float64)
        values[f"Precision@{kk}"] = n_hits / kk
        values[f"Recall@{kk}"] = n_hits / n_rel
        values[f"nDCG@{kk}"] = (h @ discount[:kk]) / ideal[n_ideal - 1]
        values[f"MRR@{kk}"] = np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0)
        values[f"MAP@{kk}"] = (h * np.cumsum(h, axis=1) / positions[:kk]).sum(axis=1) / n_ideal
    return PerUser(rows, values)


def auc_from_counts(
    greater: np.ndarray, equal: np.ndarray, n_neg: np.ndarray, indptr: np.ndarray
) -> PerUser:
    """Per-row AUC = mean over the row's targets of (n_neg - greater - equal / 2) / n_neg.

    ``greater``/``equal`` count, per target (CSR order given by ``indptr``), the candidate negatives
    scoring strictly higher / the same; ties count one half, the expected AUC under random
    tie-breaking. Rows with no target or no candidate negative are undefined and left out.
    """
    greater = np.asarray(greater, dtype=np.int64)
    equal = np.asarray(equal, dtype=np.int64)
    n_neg = np.asarray(n_neg, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = len(indptr) - 1
    if n_rows < 0 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must start at 0 and be non-decreasing")
    if greater.shape != (indptr[-1],):
        raise ValueError(f"greater must have one entry per target ({indptr[-1]}), got shape {greater.shape}")
    if equal.shape != greater.shape:
        raise ValueError(f"equal must have the shape of greater {greater.shape}, got {equal.shape}")
    if n_neg.shape != (n_rows,):
        raise ValueError(f"n_neg must have one entry per row ({n_rows}), got shape {n_neg.shape}")
    row = row_ids(indptr)
    if np.any(greater < 0) or np.any(equal < 0) or np.any(greater + equal > n_neg[row]):
        raise ValueError("greater and equal must be >= 0 with greater + equal <= n_neg of the row")
    n_targets = np.diff(indptr)
    rows = np.flatnonzero((n_targets > 0) & (n_neg > 0)).astype(np.int64)
    denom = np.maximum(n_neg[row], 1).astype(np.float64)
    per_target = (n_neg[row] - greater - 0.5 * equal) / denom
    sums = np.bincount(row, weights=per_target, minlength=n_rows)
    return PerUser(rows, {"AUC": sums[rows] / n_targets[rows]})


def per_item_ndcg(topk: np.ndarray, truth: tuple[np.ndarray, np.ndarray], n_items: int, k: int = 10) -> np.ndarray:
    """float64 [n_items]: each item's nDCG@k *as a test item* (the item-side view of MSAP Tables 2-3).

    For every (row, relevant item) pair the normalised gain is 1/log2(pos + 1) / IDCG_row when the
    item sits at position pos <= k of the row's list, else 0 (IDCG over min(|rel|, k) positions, as
    in ``accuracy_metrics``); an item's value is the mean over the pairs that hold it, NaN for items
    that are nobody's relevant item. A row's gains sum to its nDCG@k, so with one relevant item per
    user (leave-one-out) an item's value is the mean nDCG@k of the users whose test item it is.
    """
    topk = check_topk(topk)
    indptr, indices = check_csr(truth[0], truth[1], topk.shape[0], "truth")
    (kk,) = check_ks(k, topk.shape[1])
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items must be a positive int, got {n_items!r}")
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise IndexError(f"truth holds item {int(indices.max())}, outside 0..n_items-1 = {n_items - 1}")
    rows = row_ids(indptr)
    discount = 1.0 / np.log2(np.arange(2, kk + 2, dtype=np.float64))
    ideal = np.cumsum(discount)
    found = topk[rows, :kk] == indices[:, None]  # padding (-1) never equals an item id
    gain = np.where(found.any(axis=1), discount[np.argmax(found, axis=1)], 0.0)
    n_rel = np.diff(indptr)[rows]
    gain = gain / ideal[np.minimum(n_rel, kk) - 1] if gain.size else gain
    counts = np.bincount(indices, minlength=n_items)
    sums = np.bincount(indices, weights=gain, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

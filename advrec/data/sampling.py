"""BPR triple sampling: (user, positive, negative not among the user's positives).

A numba loop: rejection sampling against each user's sorted positives is branchy per-element
work that numpy cannot vectorise without materialising retries, and it must be fast (an epoch
of 1M triples in well under a second).
"""
from __future__ import annotations

from typing import Tuple

import numba
import numpy as np

Triples = Tuple[np.ndarray, np.ndarray, np.ndarray]


@numba.njit(cache=True, nogil=True)
def _contains_sorted(row: np.ndarray, value: np.int64) -> bool:
    lo, hi = 0, row.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo < row.shape[0] and row[lo] == value


@numba.njit(cache=True, nogil=True)
def _draw_negatives(users, indptr, indices, n_items, seed):
    np.random.seed(seed)
    out = np.empty(users.shape[0], dtype=np.int64)
    for t in range(users.shape[0]):
        u = users[t]
        row = indices[indptr[u]:indptr[u + 1]]
        while True:
            j = np.int64(np.random.randint(0, n_items))
            if not _contains_sorted(row, j):
                out[t] = j
                break
    return out


@numba.njit(cache=True, nogil=True)
def _draw_positions(n_positions, n, seed):
    np.random.seed(seed)
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        out[t] = np.random.randint(0, n_positions)
    return out


class BPRSampler:
    """Seeded sampler of BPR triples from a user->items CSR (items sorted within each row).

    Two samplers built with the same seed yield the same sequence of batches. Users whose every
    item is a positive cannot get a negative; they are rejected at construction.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n_items: int, seed: int = 0):
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        if indptr.ndim != 1 or indptr.shape[0] < 1 or indptr[0] != 0:
            raise ValueError("indptr must be a 1-D CSR row pointer starting at 0")
        if np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
            raise ValueError("indptr must be non-decreasing and end at len(indices)")
        if int(n_items) < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        if indices.size and (indices.min() < 0 or indices.max() >= n_items):
            raise IndexError(f"indices must lie in [0, n_items={n_items})")
        row_of = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
        order = np.lexsort((indices, row_of))
        if not np.array_equal(order, np.arange(order.shape[0])):
            raise ValueError("indices must be sorted ascending within each row")
        if indices.size and np.any((np.diff(indices) == 0) & (np.diff(row_of) == 0)):
            raise ValueError("indices must not repeat within a row")
        full = np.flatnonzero(np.diff(indptr) >= n_items)
        if full.size:
            raise ValueError(f"{full.size} user(s) interacted with every item (e.g. user {full[0]}): "
                             "no negative item exists for them")
        self.indptr, self.indices, self.n_items = indptr, indices, int(n_items)
        self._users_of_position = row_of.astype(np.int64)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Number of training interactions (triples in one epoch)."""
        return int(self.indices.shape[0])

    def _next_seed(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def _triples_at(self, positions: np.ndarray) -> Triples:
        users = self._users_of_position[positions]
        pos = self.indices[positions]
        neg = _draw_negatives(users, self.indptr, self.indices, np.int64(self.n_items), self._next_seed())
        return users, pos, neg

    def epoch(self) -> Triples:
        """One triple per training interaction, in a fresh random order."""
        if len(self) == 0:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        return self._triples_at(self._rng.permutation(len(self)))

    def sample(self, n: int) -> Triples:
        """``n`` triples whose (user, positive) pairs are drawn uniformly from the interactions."""
        if int(n) < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if len(self) == 0:
            raise ValueError("cannot sample from an empty interaction set")
        return self._triples_at(_draw_positions(np.int64(len(self)), int(n), self._next_seed()))

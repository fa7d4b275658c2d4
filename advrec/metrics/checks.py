"""Argument checks of the metrics (bad input raises ValueError naming the argument); the
evaluation protocols check their top-K matrices and cut-offs with the same functions."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

Ks = Union[int, Sequence[int]]


def check_topk(topk: np.ndarray, name: str = "topk") -> np.ndarray:
    """A top-K matrix: int [n_rows, K], items >= 0, -1 padding only at the end of a row, no repeats."""
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [n_rows, K] array, got shape {topk.shape}")
    if topk.size and not np.issubdtype(topk.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item ids, got dtype {topk.dtype}")
    topk = topk.astype(np.int64, copy=False)
    if topk.size == 0:
        return topk
    if topk.min() < -1:
        raise ValueError(f"{name} has entries below -1 (only -1 marks padding)")
    valid = topk >= 0
    if np.any(~valid[:, :-1] & valid[:, 1:]):
        raise ValueError(f"{name} has an item after a -1 padding entry; padding must end a row")
    s = np.sort(topk, axis=1)
    if np.any((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)):
        raise ValueError(f"{name} recommends the same item twice in a row")
    return topk


def check_csr(indptr: np.ndarray, indices: np.ndarray, n_rows: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A CSR (indptr, indices) with n_rows rows and non-negative item ids."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if indptr.ndim != 1 or indices.ndim != 1:
        raise ValueError(f"{name} must be a pair of 1-D arrays (indptr, indices)")
    if indptr.size and not np.issubdtype(indptr.dtype, np.integer):
        raise ValueError(f"{name} indptr must be integer, got dtype {indptr.dtype}")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} indices must be integer, got dtype {indices.dtype}")
    indptr = indptr.astype(np.int64, copy=False)
    indices = indices.astype(np.int64, copy=False)
    if len(indptr) != n_rows + 1:
        raise ValueError(f"{name} indptr has length {len(indptr)}, expected n_rows + 1 = {n_rows + 1}")
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name} indptr must start at 0, be non-decreasing and end at len(indices)")
    if indices.size and indices.min() < 0:
        raise ValueError(f"{name} has negative item ids")
    return indptr, indices


def check_ks(k: Ks, max_k: Optional[int], name: str = "k") -> tuple[int, ...]:
    """Cut-offs: one int or a sequence, each 1 <= k (<= max_k if given); duplicates dropped, order kept."""
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks:
        raise ValueError(f"{name} must name at least one cut-off")
    out: list[int] = []
    for v in ks:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} entries must be ints, got {v!r}")
        if int(v) < 1:
            raise ValueError(f"{name} entries must be >= 1, got {int(v)}")
        if max_k is not None and int(v) > max_k:
            raise ValueError(f"{name}={int(v)} is outside 1..{max_k} (the width of the top-K matrix)")
        if int(v) not in out:
            out.append(int(v))
    return tuple(out)


def row_ids(indptr: np.ndarray) -> np.ndarray:
    """The row of every CSR entry."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))

"""Neighbourhood (kNN) collaborative-filtering kernels (``csrc/select/knn.{h,cpp}``; CPU only).

A rating matrix is a CSR ``(indptr, indices, values)`` over rows (users for user-based kNN, items
for item-based kNN: pass the transpose), columns strictly increasing within a row. Similarities
are accumulated over co-rated columns through an inverted index in the core, so the rows x rows
similarity matrix never exists; ``advrec.models.UserKNN`` / ``ItemKNN`` are the documented entry.

Similarity of rows a, b over their co-rated columns C (at least ``min_overlap`` of them), with
``x = value - mean`` for ``"pearson"`` and ``x = value`` for ``"cosine"``::

    sim(a, b) = sum_C x_a x_b / sqrt(A B)

``norms="co-rated"``: A, B are ``sum_C x^2`` (Surprise's definitions). ``norms="rows"``: A, B are
the squared norms of the whole rows, the usual cosine of implicit (all-ones) data, where co-rated
norms would make every overlapping pair similar 1. A pair with no similarity (too little overlap,
or A B = 0, e.g. Pearson of a constant row) is never a neighbour.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._args import INT64_MAX, as_csr, int_arg, int_array, is_tensor, positive_int
from ._native import _core

__all__ = ["SIMILARITIES", "KNN_NORMS", "knn_neighbors", "knn_predict", "knn_scores", "knn_row_means"]

SIMILARITIES = ("cosine", "pearson")
KNN_NORMS = ("co-rated", "rows")


def _values(values: Any, n: int, name: str) -> np.ndarray:
    """Finite float64 values, ``n`` of them (None: all ones, i.e. implicit data). Integers and
    floats up to float64 are taken exactly; bools, complex and long double are refused."""
    if values is None:
        return np.ones(n, dtype=np.float64)
    if is_tensor(values):
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    if v.size and (v.dtype.kind not in "iuf" or v.dtype.itemsize > 8):
        raise ValueError(f"{name} must hold real numbers (float64 or narrower), got dtype {v.dtype}")
    v = np.ascontiguousarray(v, dtype=np.float64)
    if v.shape[0] != n:
        per = ("row" if name == "means" else
               "stored index: indptr[-1]" if name == "values" else "stored index")
        raise ValueError(f"{name} must have {n} entries (one per {per}), got {v.shape[0]}")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {v[bad[0]]}: values must be finite")
    return v


def _matrix(indptr: Any, indices: Any, values: Any, n_cols: Optional[int], name: str
            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A checked CSR with float64 values and its column count (None: largest index + 1)."""
    indptr, indices = as_csr(indptr, indices, name)
    v = _values(values, len(indices), f"{name} values")
    if n_cols is None:
        n_cols = int(indices.max()) + 1 if indices.size else 0
        if n_cols > INT64_MAX:  # (a negative index is the core's IndexError)
            raise IndexError(f"{name} indices hold {INT64_MAX}: with n_cols=None the column count "
                             f"(largest index + 1) is beyond int64; pass n_cols")
    return indptr, indices, v, int_arg(n_cols, "n_cols", maximum=INT64_MAX)


def _finite_real(x: Any, name: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
    try:
        v = float(x)
    except OverflowError:  # an int beyond float64's range
        raise ValueError(f"{name} must be finite, got an int beyond float64's range") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def _mean(sums: np.ndarray, v: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sums / counts, where a sum overflowed taken as the sum of value / count (no term or
    partial sum can overflow then)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = sums / np.maximum(counts, 1)
        bad = ~np.isfinite(means)
        if bad.any():
            scaled = np.bincount(rows, weights=v / np.maximum(counts, 1)[rows], minlength=len(counts))
            means = np.where(bad, scaled, means)
    return means


def knn_row_means(indptr: Any, values: Any, empty: Optional[float] = None) -> np.ndarray:
    """Mean value of each CSR row, float64 (sums in float64); exact for a constant row (its
    Pearson norm is then exactly 0, not a rounding residue), and within the row's values when a
    sum overflows. Empty rows get ``empty``, a finite real (default: the mean of all values, 0
    without any)."""
    indptr = int_array(indptr, "indptr")
    if len(indptr) < 1 or indptr[0] != 0:
        raise ValueError("indptr must start at 0")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must be non-decreasing")
    fill = None if empty is None else _finite_real(empty, "empty")
    nnz = int(indptr[-1])
    v = _values(values, nnz, "values")  # (a length mismatch names indptr[-1] too)
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(len(counts)), counts)
    sums = np.bincount(rows, weights=v, minlength=len(counts))
    lo = np.full(len(counts), np.inf)
    hi = np.full(len(counts), -np.inf)
    np.minimum.at(lo, rows, v)
    np.maximum.at(hi, rows, v)
    if fill is None and nnz:
        with np.errstate(over="ignore"):
            total = np.array([v.sum()])
        fill = float(np.clip(_mean(total, v, np.zeros(nnz, np.int64), np.array([nnz]))[0], v.min(), v.max()))
    elif fill is None:
        fill = 0.0
    means = np.where(counts > 0, np.clip(_mean(sums, v, rows, counts), lo, hi), fill)
    return np.where((counts > 0) & (lo == hi), lo, means)


def _options(similarity: str, norms: str, min_overlap: int) -> int:
    """Checks the similarity options; returns ``min_overlap`` as an int."""
    if not isinstance(similarity, str) or similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if not isinstance(norms, str) or norms not in KNN_NORMS:
        raise ValueError(f"norms must be one of {KNN_NORMS}, got {norms!r}")
    return positive_int(min_overlap, "min_overlap")


def knn_neighbors(
    indptr: Any,
    indices: Any,
    values: Any,
    k: int,
    similarity: str = "cosine",
    min_overlap: int = 1,
    means: Any = None,
    *,
    n_cols: Optional[int] = None,
    norms: str = "co-rated",
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other rows of every row: ``(idx int64 [n_rows, k], sim float32
    [n_rows, k])``, most similar first, ties to the lower row index (compared in double).

    Rows with fewer than ``k`` neighbours are padded with index -1 and similarity -inf.
    ``values`` None: implicit data (all ones). ``means`` (Pearson only): the centre of each row,
    default ``knn_row_means``. ``k = 0`` gives ``[n_rows, 0]``.
    """
    k = int_arg(k, "k", maximum=INT64_MAX)
    indptr, indices, v, n_cols = _matrix(indptr, indices, values, n_cols, "ratings")
    min_overlap = _options(similarity, norms, min_overlap)
    centre = None
    if similarity == "pearson":
        centre = knn_row_means(indptr, v) if means is None else _values(means, len(indptr) - 1, "means")
    elif means is not None:
        raise ValueError("means centre the Pearson similarity; cosine takes none (pass means=None)")
    return _core.knn_neighbors(indptr, indices, v, n_cols, k, min_overlap, centre, norms == "rows")


def knn_predict(
    indptr: Any,
    indices: Any,
    values: Any,
    rows: Any,
    cols: Any,
    k: int,
    similarity: str = "cosine",
    min_overlap: int = 1,
    means: Any = None,
    *,
    n_cols: Optional[int] = None,
    norms: str = "co-rated",
) -> Tuple[np.ndarray, np.ndarray]:
    """Mean-centred kNN predictions (Surprise's KNNWithMeans) of the entries ``(rows[q], cols[q])``:

        pred = mean_r + sum_N sim(r, v) (x_vc - mean_v) / sum_N sim(r, v)

    over N, the ``k`` most similar rows v != r that hold column c and have sim(r, v) > 0 (ties to
    the lower index; negative neighbours never vote). With N empty the prediction is ``mean_r``.
    ``means``: the row means (default ``knn_row_means``); they centre the prediction for either
    similarity and the Pearson similarity. Returns ``(pred float64 [q], n_neighbours int64 [q])``.
    """
    k = int_arg(k, "k", maximum=INT64_MAX)
    indptr, indices, v, n_cols = _matrix(indptr, indices, values, n_cols, "ratings")
    min_overlap = _options(similarity, norms, min_overlap)
    pred_means = knn_row_means(indptr, v) if means is None else _values(means, len(indptr) - 1, "means")
    centre = pred_means if similarity == "pearson" else None
    r, c = int_array(rows, "rows"), int_array(cols, "cols")
    if r.shape != c.shape:
        raise ValueError(f"rows and cols must have the same length, got {r.shape[0]} and {c.shape[0]}")
    return _core.knn_predict(indptr, indices, v, n_cols, k, min_overlap, centre, norms == "rows",
                             pred_means, r, c)


def knn_scores(weights: Sequence[Any], rows: Any, ratings: Sequence[Any], n_cols: int) -> np.ndarray:
    """Dense rows of a sparse product, float32 ``[len(rows), n_cols]``: row t is
    ``weights[rows[t]] @ ratings``, both CSR triples ``(indptr, indices, values)``.

    User-based ranking: weights = the users' neighbour lists, ratings = the user x item matrix.
    Item-based: weights = the user x item matrix, ratings = the item neighbour lists transposed.
    """
    parts = []
    for name, csr in (("weights", weights), ("ratings", ratings)):
        if not isinstance(csr, (tuple, list)) or len(csr) != 3:
            raise ValueError(f"{name} must be a triple (indptr, indices, values)")
        ip, ix = as_csr(csr[0], csr[1], name)
        parts.append((ip, ix, _values(csr[2], len(ix), f"{name} values")))
    n_cols = int_arg(n_cols, "n_cols", maximum=INT64_MAX)
    (a_ip, a_ix, a_v), (b_ip, b_ix, b_v) = parts
    return _core.knn_scores(a_ip, a_ix, a_v, int_array(rows, "rows"), b_ip, b_ix, b_v, n_cols)

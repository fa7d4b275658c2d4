"""kNN neighbour selection: ``advrec.kernels.knn_neighbors`` against a scipy.sparse reference.

Ours: the co-rated sums accumulated through the inverted index in the core, the k best selected
per row (OpenMP over rows, no rows x rows matrix). Reference: the same sums as sparse matrix
products over a tile of rows (``X Xᵀ``, ``X² Bᵀ``, ``B X²ᵀ``, ``B Bᵀ`` with X the centred ratings
and B the rated-indicator), densified, similarities where defined, then ``np.argpartition`` top-k
and a sort of the k. Pearson (co-rated norms, min_overlap 1), k = 20, on ML-100K's users and on a
larger synthetic log with Zipf-like item popularity.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest

from advrec import kernels as K

sp = pytest.importorskip("scipy.sparse")

K_NN = 20
TILE = 1024


def scipy_reference(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_cols: int,
                    means: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k Pearson neighbours (co-rated norms) from sparse products, a tile of rows at a time."""
    n = len(indptr) - 1
    x = values - np.repeat(means, np.diff(indptr))
    X = sp.csr_matrix((x, indices, indptr), shape=(n, n_cols))
    X2 = sp.csr_matrix((x * x, indices, indptr), shape=(n, n_cols))
    B = sp.csr_matrix((np.ones_like(x), indices, indptr), shape=(n, n_cols))
    Xt, X2t, Bt = X.T.tocsr(), X2.T.tocsr(), B.T.tocsr()
    idx_out = np.empty((n, k), np.int64)
    sim_out = np.empty((n, k), np.float64)
    for start in range(0, n, TILE):
        stop = min(start + TILE, n)
        dot = (X[start:stop] @ Xt).toarray()
        aa = (X2[start:stop] @ Bt).toarray()  # sum x_a^2 over the columns b also rated
        bb = (B[start:stop] @ X2t).toarray()  # sum x_b^2 over the columns a also rated
        cnt = (B[start:stop] @ Bt).toarray()
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.clip(dot / np.sqrt(aa * bb), -1, 1)
        sim[(cnt < 1) | ~(aa * bb > 0)] = -np.inf
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not one's own neighbour
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sim, part, 1)
        order = np.lexsort((part, -vals), axis=1)
        idx_out[start:stop] = np.take_along_axis(part, order, 1)
        sim_out[start:stop] = np.take_along_axis(vals, order, 1)
    idx_out[np.isneginf(sim_out)] = -1
    return idx_out, sim_out


def ml100k_users() -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    from advrec.data import load

    inter = load("ml-100k").interactions
    order = np.lexsort((inter.item, inter.user))
    indptr = np.zeros(inter.n_users + 1, np.int64)
    np.cumsum(np.bincount(inter.user, minlength=inter.n_users), out=indptr[1:])
    return indptr, inter.item[order], inter.rating[order].astype(np.float64), inter.n_items


def zipf_log(seed: int, n_users: int, n_items: int, per_user: int
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``per_user`` distinct items per user drawn with popularity ~ 1 / (rank + 10), ratings 1..5."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(n_items) + 10.0)
    p /= p.sum()
    rows = [np.sort(rng.choice(n_items, per_user, replace=False, p=p)) for _ in range(n_users)]
    indptr = np.arange(0, (n_users + 1) * per_user, per_user, dtype=np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    return indptr, indices, rng.integers(1, 6, len(indices)).astype(np.float64), n_items


def run_case(benchmark, ratio, timed_best_of, name: str, data, rounds: int) -> None:
    indptr, indices, values, n_cols = data
    means = K.knn_row_means(indptr, values)
    args = (indptr, indices, values, K_NN, "pearson", 1, means)
    ours = benchmark.pedantic(K.knn_neighbors, args=args, kwargs={"n_cols": n_cols}, rounds=rounds,
                              iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: scipy_reference(indptr, indices, values, n_cols, means, K_NN), rounds)
    # Same answer: the selected similarities (indices may differ only among float near-ties).
    _, ref_sim = scipy_reference(indptr, indices, values, n_cols, means, K_NN)
    np.testing.assert_allclose(ours[1], ref_sim, rtol=1e-5, atol=1e-6)
    work = int(np.sum(np.bincount(indices, minlength=n_cols).astype(np.int64) ** 2))
    ratio(benchmark, name, ref_s, rows=len(indptr) - 1, cols=n_cols, nnz=int(len(indices)),
          co_rated_products=work, threads=K.info()["openmp_threads"])


def test_knn_neighbors_ml100k_users(benchmark, ratio, timed_best_of):
    """ML-100K: 943 users x 1682 items, 100k ratings, Pearson, k = 20."""
    try:
        data = ml100k_users()
    except Exception as err:  # no cached copy and no network
        pytest.skip(f"ML-100K unavailable: {err}")
    run_case(benchmark, ratio, timed_best_of, "knn_neighbors ML-100K users", data, rounds=10)


def test_knn_neighbors_synthetic_10k(benchmark, ratio, timed_best_of):
    """10k users x 10k items, 40 ratings per user (400k), Zipf-like popularity, k = 20 (about
    2.6e8 co-rated products: popular items make the inverted lists long)."""
    run_case(benchmark, ratio, timed_best_of, "knn_neighbors 10k x 10k Zipf",
             zipf_log(0, 10_000, 10_000, 40), rounds=2)

"""Profile features (``advrec.detection.profile_features``) against a straightforward scipy.sparse
reference written here.

Ours: one stable sort of the log (skipped when it is already sorted and distinct), per-row
quantities shared by every rating feature, ``np.bincount`` per user, DegSim from the compiled kNN
kernel (``kernels.knn_neighbors``: co-rated sums through an inverted index, no users x users
matrix). Reference: what one writes first with scipy: ``np.unique`` to drop repeated pairs, a CSR
user x item matrix, one pass of sparse operations per feature (``multiply``, ``sum``, ``max`` and
``argmax`` over rows), and DegSim from dense tiles of the co-rated sums (``X Xᵀ``, ``X² Bᵀ``,
``B X²ᵀ``, ``B Bᵀ``, as in ``bench_knn.py``) with ``np.sort`` of each row.

Cases: ML-100K (943 users, every feature); a synthetic log of 100K users x 20K items with
Zipf-like popularity, ~1.5M ratings (the features besides DegSim against the reference, whose
dense DegSim tiles would take minutes there; DegSim checked on a sample of users and its time
reported); the same at 10M ratings, without DegSim, is ``large``.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import numpy as np
import pytest

from advrec.data import Interactions
from advrec.detection import FEATURES, profile_features

sp = pytest.importorskip("scipy.sparse")

K_NN = 20
MIN_OVERLAP = 5
TILE = 512
NO_DEGSIM = tuple(f for f in FEATURES if f != "DegSim")


def reference_features(train: Interactions, names: Sequence[str], k: int = K_NN, min_overlap: int = MIN_OVERLAP,
                       degsim_rows: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """The features of ``names`` by sparse-matrix passes; DegSim for ``degsim_rows`` (all users
    by default) only, NaN elsewhere."""
    n_users, n_items = train.n_users, train.n_items
    key = train.user * n_items + train.item
    _, last = np.unique(key[::-1], return_index=True)  # the last row of each pair
    rows = len(key) - 1 - last
    u, i = train.user[rows], train.item[rows]
    r = train.rating[rows].astype(np.float64)
    R = sp.csr_matrix((r, (u, i)), shape=(n_users, n_items))
    R.sort_indices()
    B = sp.csr_matrix((np.ones_like(r), (u, i)), shape=(n_users, n_items))
    n_u = np.asarray(B.sum(axis=1)).ravel()
    nr = np.asarray(B.sum(axis=0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        item_mean = np.asarray(R.sum(axis=0)).ravel() / nr
        inv_nr = np.where(nr > 0, 1.0 / nr, 0.0)
        dev = R.copy()
        dev.data = R.data - item_mean[R.indices]
        absdev = abs(dev)
        sq = dev.multiply(dev).tocsr()
        none = n_u == 0
        out: Dict[str, np.ndarray] = {}
        out["RDMA"] = (absdev @ inv_nr) / n_u
        out["WDMA"] = (absdev @ (inv_nr ** 2)) / n_u
        out["WDA"] = np.where(none, np.nan, absdev @ inv_nr)
        has = n_u > 0
        mean_len = n_u[has].mean()
        ss = np.sum((n_u[has] - mean_len) ** 2)
        out["LengthVar"] = np.where(has, np.abs(n_u - mean_len) / ss, np.nan)
        r_max = r.max()
        top = R.copy()
        top.data = (R.data == r_max).astype(np.float64)
        top.eliminate_zeros()
        n_top = np.asarray(top.sum(axis=1)).ravel()
        # the hypothesised target: the r_max item of largest squared deviation (+1 keeps zero
        # deviations stored), first such column on ties
        cand = top.multiply(sq).tocsr() + top
        best = cand.max(axis=1).toarray().ravel() - 1.0
        target = np.asarray(cand.argmax(axis=1)).ravel()
        with_target = n_top > 0
        total_sq = np.asarray(sq.sum(axis=1)).ravel()
        filler = total_sq - np.where(with_target, best, 0.0)
        out["MeanVar"] = filler / n_u
        out["FMV"] = filler / (n_u - with_target)
        top_sum = np.asarray(top.multiply(R).sum(axis=1)).ravel()
        rest_sum = np.asarray(R.sum(axis=1)).ravel() - top_sum
        out["FMTD"] = np.abs(top_sum / n_top - rest_sum / (n_u - n_top))
        focus = np.bincount(target[with_target], minlength=n_items) / with_target.sum()
        out["TMF"] = np.where(none, np.nan, np.where(with_target, focus[target], 0.0))
    if "DegSim" in names:
        out["DegSim"] = np.full(n_users, np.nan)
        todo = np.arange(n_users) if degsim_rows is None else np.asarray(degsim_rows)
        user_mean = np.where(has, np.asarray(R.sum(axis=1)).ravel() / np.maximum(n_u, 1), 0.0)
        X = R.copy()
        X.data = R.data - np.repeat(user_mean, np.diff(R.indptr))
        X2 = X.multiply(X).tocsr()
        Xt, X2t, Bt = X.T.tocsr(), X2.T.tocsr(), B.T.tocsr()
        for start in range(0, len(todo), TILE):
            sel = todo[start:start + TILE]
            dot = (X[sel] @ Xt).toarray()
            aa = (X2[sel] @ Bt).toarray()
            bb = (B[sel] @ X2t).toarray()
            cnt = (B[sel] @ Bt).toarray()
            with np.errstate(invalid="ignore", divide="ignore"):
                sim = dot / np.sqrt(aa * bb)
            sim[(cnt < min_overlap) | ~(aa * bb > 0)] = -np.inf
            sim[np.arange(len(sel)), sel] = -np.inf
            best_k = -np.sort(-sim, axis=1)[:, :k]
            found = np.isfinite(best_k)
            with np.errstate(invalid="ignore"):
                out["DegSim"][sel] = np.where(found, best_k, 0.0).sum(1) / found.sum(1)
    return {name: out[name] for name in names}


def ml100k() -> Interactions:
    from advrec.data import load

    return load("ml-100k").interactions


def zipf_log(seed: int, n_users: int, n_items: int, per_user: int) -> Interactions:
    """``per_user`` ratings (1..5) per user on average, items drawn with popularity ~ 1/(rank+50),
    some pairs repeated, rows in random order."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(n_items) + 50.0)
    p /= p.sum()
    n = n_users * per_user
    user = rng.integers(0, n_users, n)
    item = rng.choice(n_items, n, p=p)
    rating = rng.integers(1, 6, n).astype(np.float32)
    return Interactions(user=user, item=item, rating=rating, timestamp=None, n_users=n_users,
                        n_items=n_items, user_ids=np.arange(n_users), item_ids=np.arange(n_items))


def check_equal(ours: np.ndarray, names: Sequence[str], ref: Dict[str, np.ndarray],
                rows: Optional[np.ndarray] = None) -> None:
    for j, name in enumerate(names):
        got, want = ours[:, j], ref[name]
        if rows is not None and name == "DegSim":
            got, want = got[rows], want[rows]
        tol = 1e-6 if name == "DegSim" else 1e-9
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)


def run_case(benchmark, ratio, timed_best_of, name: str, train: Interactions, names: Sequence[str],
             rounds: int) -> None:
    ours = benchmark.pedantic(profile_features, args=(train, names), rounds=rounds, iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: reference_features(train, names), rounds)
    check_equal(ours.matrix, names, reference_features(train, names))
    ratio(benchmark, name, ref_s, users=train.n_users, items=train.n_items, rows=len(train),
          features=len(names))


def test_profile_features_ml100k(benchmark, ratio, timed_best_of):
    """ML-100K: 943 users x 1682 items, 100k ratings, all nine features (DegSim k = 20)."""
    try:
        train = ml100k()
    except Exception as err:  # no cached copy and no network
        pytest.skip(f"ML-100K unavailable: {err}")
    run_case(benchmark, ratio, timed_best_of, "profile_features ML-100K", train, FEATURES, rounds=5)


def synthetic_case(benchmark, ratio, timed_best_of, name: str, train: Interactions, rounds: int,
                   degsim: bool = True) -> None:
    """The features besides DegSim against the reference; then (``degsim``) DegSim alone, ours
    timed and checked against the reference on 512 random users."""
    run_case(benchmark, ratio, timed_best_of, name, train, NO_DEGSIM, rounds)
    if not degsim:
        return
    t0 = time.perf_counter()
    deg = profile_features(train, ["DegSim"])
    deg_s = time.perf_counter() - t0
    rows = np.random.default_rng(1).choice(train.n_users, TILE, replace=False)
    check_equal(deg.matrix, ["DegSim"], reference_features(train, ["DegSim"], degsim_rows=rows), rows)
    benchmark.extra_info["degsim_ours_s"] = deg_s
    print(f"[{name}] DegSim alone (kNN kernel, k={K_NN}): {deg_s * 1e3:.0f} ms")


def test_profile_features_synthetic_100k(benchmark, ratio, timed_best_of):
    """100K users x 20K items, ~1.5M ratings (15 per user), Zipf-like popularity."""
    synthetic_case(benchmark, ratio, timed_best_of, "profile_features 100K users, 1.5M ratings",
                   zipf_log(0, 100_000, 20_000, 15), rounds=3)


@pytest.mark.large
def test_profile_features_synthetic_100k_10m(benchmark, ratio, timed_best_of):
    """100K users x 20K items, ~10M ratings (100 per user); the features besides DegSim (its kNN
    kernel's cost grows with the co-rated products, about 45x the 1.5M case's: ``bench_knn.py``)."""
    synthetic_case(benchmark, ratio, timed_best_of, "profile_features 100K users, 10M ratings",
                   zipf_log(0, 100_000, 20_000, 100), rounds=2, degsim=False)

"""MF-eALS (He, Zhang, Kan & Chua, SIGIR 2016): matrix factorisation for implicit feedback by
element-wise ALS with popularity-aware weights on the missing data; a baseline of AMR's Table 2.

Objective, with r_hat = P Q^T, observed pairs R (target 1, weight ``w``) and every other pair a
negative of weight c_i that grows with the item's popularity f_i:

    L = sum_{(u,i) in R} w (1 - r_hat_ui)^2 + sum_u sum_{i not in R_u} c_i r_hat_ui^2 + reg (|P|^2 + |Q|^2),
    c_i = c0 * f_i^alpha / sum_j f_j^alpha.

Each coordinate p_uf (then q_if) is set to its exact minimiser given the others. The missing-data
sum over all items is folded into the cached K x K matrix S^q = sum_i c_i q_i q_i^T (S^p = P^T P
for the item pass), so an epoch costs O((|R| + n_users + n_items) K^2) instead of
O(n_users n_items K). The result is an ``MF`` (scores p_u . q_i), so everything that evaluates or
attacks MF works on it.
"""
from __future__ import annotations

import math
import sys
from typing import Optional

import numba
import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.interactions import Interactions
from ..models import MF


@numba.njit(cache=True, nogil=True, fastmath=True)
def _pass(P, Q, indptr, indices, c, row_weighted, w, reg, S):  # pragma: no cover - compiled
    """One element-wise pass over the rows of P (users; or items with the roles swapped).

    ``row_weighted``: the missing-data weight belongs to the row being updated (the item pass:
    c_i scales S^p = P^T P), else to the column (the user pass: S^q already holds the c_i).
    ``S`` is symmetric, so its row f is read for the cross term (contiguous).

    A row's observed columns are gathered transposed first (G[f, t] = Q[j_t, f], with their
    w - c weights), so every inner loop over the row's items is contiguous and vectorises."""
    n_rows, k_dim = P.shape
    longest = 0
    for r in range(n_rows):
        longest = max(longest, indptr[r + 1] - indptr[r])
    G = np.empty((k_dim, longest))
    pred = np.empty(longest)
    wc = np.empty(longest)
    for r in range(n_rows):
        lo, n = indptr[r], indptr[r + 1] - indptr[r]
        for t in range(n):
            j = indices[lo + t]
            wc[t] = w - (c[r] if row_weighted else c[j])
            pred[t] = 0.0
            for f in range(k_dim):
                G[f, t] = Q[j, f]
        for k in range(k_dim):
            pk = P[r, k]
            for t in range(n):
                pred[t] += pk * G[k, t]
        scale = c[r] if row_weighted else 1.0
        for f in range(k_dim):
            pf = P[r, f]
            numer, denom = 0.0, 0.0
            for t in range(n):
                g = G[f, t]
                numer += (w - wc[t] * (pred[t] - pf * g)) * g
                denom += wc[t] * g * g
            cross = 0.0
            for k in range(k_dim):
                cross += P[r, k] * S[f, k]
            cross -= pf * S[f, f]
            numer -= scale * cross
            denom += scale * S[f, f] + reg
            new = numer / denom
            delta = new - pf
            if delta != 0.0:
                for t in range(n):
                    pred[t] += delta * G[f, t]
                P[r, f] = new


def popularity_weights(item_counts: np.ndarray, c0: float, alpha: float) -> np.ndarray:
    """c_i = c0 * f_i^alpha / sum_j f_j^alpha, f_i the item's number of training users (an
    unseen item gets weight 0)."""
    powered = np.asarray(item_counts, dtype=np.float64) ** alpha
    powered[np.asarray(item_counts) == 0] = 0.0
    total = powered.sum()
    return c0 * powered / total if total > 0 else np.zeros(len(powered))


def eals_objective(P: np.ndarray, Q: np.ndarray, train: Interactions, c: np.ndarray, w: float, reg: float) -> float:
    """L above, computed densely (n_users x n_items): for tests and small data."""
    r_hat = P @ Q.T
    observed = np.zeros(r_hat.shape, dtype=bool)
    observed[np.asarray(train.user), np.asarray(train.item)] = True
    loss = (w * (1.0 - r_hat[observed]) ** 2).sum() + (np.broadcast_to(c, r_hat.shape)[~observed] * r_hat[~observed] ** 2).sum()
    return float(loss + reg * ((P ** 2).sum() + (Q ** 2).sum()))


def eals_epoch(P: np.ndarray, Q: np.ndarray, user_csr, item_csr, c: np.ndarray, w: float, reg: float) -> None:
    """One epoch in place on float64 P, Q: every user coordinate, then every item coordinate."""
    _pass(P, Q, user_csr[0], user_csr[1], c, False, w, reg, (Q * c[:, None]).T @ Q)
    _pass(Q, P, item_csr[0], item_csr[1], c, True, w, reg, P.T @ P)


def fit_eals(train: Interactions, dim: int = 64, *, c0: float = 512.0, alpha: float = 0.4, w: float = 1.0,
             reg: float = 0.01, epochs: int = 50, init_std: float = 0.01, seed: int = 0,
             progress: Optional[bool] = None) -> MF:
    """Train MF-eALS on ``train`` (an ``advrec.data.Interactions``; repeated pairs count once) and
    return it as an ``MF``. ``c0`` (total weight of the missing data) and ``alpha`` (how strongly
    popularity raises an item's negative weight) are the two knobs He et al. tune per dataset;
    the defaults are a starting point, not tuned values for every dataset."""
    for name, v in (("dim", dim), ("epochs", epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("c0", c0), ("alpha", alpha), ("reg", reg)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise ValueError(f"w must be a finite number > 0, got {w!r}")
    if len(train) == 0:
        raise ValueError("train has no interactions")
    user_csr = train.to_csr()
    items_by_user = np.repeat(np.arange(train.n_users), np.diff(user_csr[0]))
    order = np.lexsort((items_by_user, user_csr[1]))
    item_indptr = np.zeros(train.n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_csr[1], minlength=train.n_items), out=item_indptr[1:])
    item_csr = (item_indptr, items_by_user[order].astype(np.int64))
    c = popularity_weights(np.diff(item_indptr), c0, alpha)
    model = MF(train.n_users, train.n_items, dim=dim, init_std=init_std, seed=seed)
    P = model.user_factors.detach().double().numpy().copy()
    Q = model.item_factors.detach().double().numpy().copy()
    show = progress if progress is not None else sys.stderr.isatty()
    for _ in tqdm(range(epochs), desc="train MF-eALS", disable=not show, leave=False):
        eals_epoch(P, Q, (user_csr[0].astype(np.int64), user_csr[1].astype(np.int64)), item_csr, c, float(w),
                   float(reg))
        if not (np.isfinite(P).all() and np.isfinite(Q).all()):
            raise FloatingPointError("eALS diverged (non-finite factors); raise reg")
    with torch.no_grad():
        model.user_factors.copy_(torch.from_numpy(P))
        model.item_factors.copy_(torch.from_numpy(Q))
    return model.eval()

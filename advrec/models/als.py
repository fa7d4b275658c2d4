"""Explicit matrix factorisation with biases, fitted by alternating least squares (ALS): the
rating-predicting victim of the poisoning experiments (prediction shift needs ratings).

Model: r_hat(u, i) = mu + b_u + b_i + p_u . q_i, with mu the mean training rating (fixed).
Objective over the training rows R (a repeated (u, i) row counts once per row), with the
weighted-lambda regularisation of ALS-WR (Zhou et al. 2008; Spark MLlib's ALS does the same):

    L = sum_{(u,i,r) in R} (r - r_hat(u, i))^2
        + reg * (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + b_i^2)),

n_u, n_i the rows of user u and item i. Scaling the penalty by the row count makes one ``reg``
fit users with 20 and with 700 ratings alike, and keeps every per-row system positive definite.

Biases by the augmented-vector trick: with the items fixed, user u's unknowns x_u = [p_u, b_u]
meet the design rows y_i = [q_i, 1] and the targets r - mu - b_i, so x_u solves the ridge system

    (sum_{i in R_u} y_i y_i^T + reg n_u I) x_u = sum_{i in R_u} (r_ui - mu - b_i) y_i,

and symmetrically for items with the users fixed. Each half-step is the exact minimiser of L
over one side, so L never rises. A user or item without training rows gets zero factors and
bias (r_hat falls back to mu plus the other side's bias).

The per-row (d+1) x (d+1) systems are built and solved by Cholesky in one numba loop
(serial and GIL-free: a poisoning experiment runs many fits, and runs them side by side).
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._checks import positive_int, seed_arg
from .base import Batch, Delta, Recommender, check_users

if TYPE_CHECKING:
    from ..data.interactions import Interactions

__all__ = ["ExplicitMF", "ratings_by", "als_solve", "als_objective"]

RatingCSR = Tuple[np.ndarray, np.ndarray, np.ndarray]
"""Ratings grouped by one side: ``(indptr, other side's ids, ratings)``, float64 ratings."""


@numba.njit(cache=True, nogil=True, fastmath=True)
def _solve_rows(indptr, indices, values, Y, y_bias, mu, reg, X, x_bias):  # pragma: no cover - compiled
    """Exact ridge solve of every row's [factors, bias] given the other side (Y, y_bias).

    A row's augmented design rows y = [Y[j], 1] are gathered transposed (G[a, k] = y_k[a]), so
    each entry of the upper triangle of A = G G^T is a contiguous dot product, four at a time
    (three zero rows of G pad the last block)."""
    d = Y.shape[1]
    m = d + 1
    n_rows = indptr.shape[0] - 1
    longest = 0
    for r in range(n_rows):
        longest = max(longest, indptr[r + 1] - indptr[r])
    G = np.zeros((m + 3, longest))
    G[d, :] = 1.0
    t = np.empty(longest)
    A = np.empty((m, m + 3))
    b = np.empty(m)
    for r in range(n_rows):
        lo, n = indptr[r], indptr[r + 1] - indptr[r]
        if n == 0:
            X[r, :] = 0.0
            x_bias[r] = 0.0
            continue
        for k in range(n):
            t[k] = values[lo + k] - mu - y_bias[indices[lo + k]]
        for a in range(d):
            for k in range(n):
                G[a, k] = Y[indices[lo + k], a]
        for a in range(m):
            s = 0.0
            for k in range(n):
                s += G[a, k] * t[k]
            b[a] = s
            for c in range(a, m, 4):
                s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
                for k in range(n):
                    g = G[a, k]
                    s0 += g * G[c, k]
                    s1 += g * G[c + 1, k]
                    s2 += g * G[c + 2, k]
                    s3 += g * G[c + 3, k]
                A[a, c], A[a, c + 1], A[a, c + 2], A[a, c + 3] = s0, s1, s2, s3
            A[a, a] += reg * n
        # A = U^T U (Cholesky, upper triangle, row by row so every inner loop is contiguous),
        # then U^T z = b and U x = z, in place in b.
        for j in range(m):
            pivot = math.sqrt(A[j, j])
            inv = 1.0 / pivot
            A[j, j] = pivot
            for c in range(j + 1, m):
                A[j, c] *= inv
            for i in range(j + 1, m):
                u = A[j, i]
                for c in range(i, m):
                    A[i, c] -= u * A[j, c]
        for i in range(m):
            b[i] /= A[i, i]
            for c in range(i + 1, m):
                b[c] -= b[i] * A[i, c]
        for i in range(m - 1, -1, -1):
            s = b[i]
            for c in range(i + 1, m):
                s -= A[i, c] * b[c]
            b[i] = s / A[i, i]
        for a in range(d):
            X[r, a] = b[a]
        x_bias[r] = b[d]


def _check_explicit(train: Any, where: str) -> np.ndarray:
    """The training ratings; an implicit log (no ratings) is refused, naming the fix."""
    if getattr(train, "rating", None) is None:
        raise ValueError(f"{where}: train has no ratings (an implicit log); ExplicitMF predicts explicit "
                         "ratings. Train MF (BPR) or advrec.training.fit_eals on implicit feedback instead")
    return np.asarray(train.rating, dtype=np.float64)


def ratings_by(train: "Interactions", side: str = "user") -> RatingCSR:
    """The training ratings grouped by ``side`` ("user" or "item"): ``(indptr, ids of the other
    side, ratings)``, rows sorted by the other side's id, repeated (u, i) rows kept."""
    if side not in ("user", "item"):
        raise ValueError(f"side must be 'user' or 'item', got {side!r}")
    rating = _check_explicit(train, "ratings_by")
    rows, cols = (train.user, train.item) if side == "user" else (train.item, train.user)
    n_rows = train.n_users if side == "user" else train.n_items
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, np.ascontiguousarray(cols[order], dtype=np.int64), np.ascontiguousarray(rating[order])


def als_solve(ratings: RatingCSR, other: np.ndarray, other_bias: np.ndarray, mu: float,
              reg: float) -> Tuple[np.ndarray, np.ndarray]:
    """One ALS half-step: the factors ``[n_rows, d]`` and biases ``[n_rows]`` of the side
    ``ratings`` is grouped by that minimise L exactly, the other side (``other``,
    ``other_bias``) held fixed. float64 throughout."""
    indptr, indices, values = ratings
    Y = np.ascontiguousarray(other, dtype=np.float64)
    y_bias = np.ascontiguousarray(other_bias, dtype=np.float64)
    if Y.ndim != 2 or y_bias.shape != (len(Y),):
        raise ValueError(f"other must be [n, d] and other_bias [n], got shapes {Y.shape} and {y_bias.shape}")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(Y)):
        raise IndexError(f"ratings name rows up to {indices.max()} of the other side, which has {len(Y)}")
    n_rows = len(indptr) - 1
    X = np.empty((n_rows, Y.shape[1]))
    x_bias = np.empty(n_rows)
    _solve_rows(indptr, indices, values, Y, y_bias, float(mu), float(reg), X, x_bias)
    return X, x_bias


def als_objective(train: "Interactions", P: np.ndarray, Q: np.ndarray, user_bias: np.ndarray,
                  item_bias: np.ndarray, mu: float, reg: float) -> float:
    """L of the module docstring at the given parameters (float64)."""
    rating = _check_explicit(train, "als_objective")
    u, i = train.user, train.item
    err = rating - (mu + user_bias[u] + item_bias[i] + np.einsum("nd,nd->n", P[u], Q[i]))
    n_u = np.bincount(u, minlength=len(P))
    n_i = np.bincount(i, minlength=len(Q))
    penalty = (n_u * ((P ** 2).sum(1) + user_bias ** 2)).sum() + (n_i * ((Q ** 2).sum(1) + item_bias ** 2)).sum()
    return float((err ** 2).sum() + reg * penalty)


class ExplicitMF(Recommender):
    """Biased MF for explicit ratings, fitted by ALS: ``ExplicitMF(dim=32).fit(train)``.

    ``predict(users, items)`` gives ratings; ``full_scores`` / ``score`` give the same values
    for ranking (``evaluate`` works on it). Perturbable like ``MF``: ``"user"`` (P) and
    ``"item"`` (Q); the biases are not. ``n_users`` / ``n_items`` are set by ``fit`` (they are
    constructor arguments only so a checkpoint can rebuild the tables before loading them).
    Item factors start as N(0, init_std^2) from ``seed``; the same seed and data give the same
    model bit for bit (on one machine: the compiled sums are reassociated for SIMD).

    On ML-100K (random 80/20 split) the defaults reach a test RMSE of about 0.918, in about a
    second of one core per fit (``tests/test_als.py``).
    """

    def __init__(self, dim: int = 32, reg: float = 0.1, iterations: int = 15, init_std: float = 0.1,
                 seed: int = 0, n_users: int = 0, n_items: int = 0):
        super().__init__()
        self.dim = positive_int(dim, "dim")
        self.iterations = positive_int(iterations, "iterations")
        self.seed = seed_arg(seed)
        for name, v in (("reg", reg), ("init_std", init_std)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        self.reg, self.init_std = float(reg), float(init_std)
        for name, v in (("n_users", n_users), ("n_items", n_items)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        self._allocate(n_users, n_items)

    def _allocate(self, n_users: int, n_items: int) -> None:
        self.n_users, self.n_items = n_users, n_items
        self.user_factors = nn.Parameter(torch.zeros(n_users, self.dim))
        self.item_factors = nn.Parameter(torch.zeros(n_items, self.dim))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.register_buffer("global_mean", torch.zeros(()))

    def config(self) -> dict:
        return {"dim": self.dim, "reg": self.reg, "iterations": self.iterations, "init_std": self.init_std,
                "seed": self.seed, "n_users": self.n_users, "n_items": self.n_items}

    def fit(self, train: "Interactions", progress: Optional[bool] = None) -> "ExplicitMF":
        """Fit from scratch on ``train`` (an ``Interactions`` with ratings): ``iterations``
        rounds of users then items, each an exact solve. Returns ``self`` (in eval mode)."""
        rating = _check_explicit(train, "ExplicitMF.fit")
        if len(rating) == 0:
            raise ValueError("ExplicitMF.fit: train has no interactions")
        by_user, by_item = ratings_by(train, "user"), ratings_by(train, "item")
        mu = float(rating.mean())
        rng = np.random.default_rng(self.seed)
        Q = rng.normal(0.0, self.init_std, (train.n_items, self.dim))
        item_bias = np.zeros(train.n_items)
        show = progress if progress is not None else sys.stderr.isatty()
        for _ in tqdm(range(self.iterations), desc="fit ExplicitMF (ALS)", disable=not show, leave=False):
            P, user_bias = als_solve(by_user, Q, item_bias, mu, self.reg)
            Q, item_bias = als_solve(by_item, P, user_bias, mu, self.reg)
        if not (np.isfinite(P).all() and np.isfinite(Q).all()):
            raise FloatingPointError("ExplicitMF.fit: ALS produced non-finite factors; check the ratings")
        self._allocate(train.n_users, train.n_items)
        with torch.no_grad():
            for table, value in ((self.user_factors, P), (self.item_factors, Q), (self.user_bias, user_bias),
                                 (self.item_bias, item_bias)):
                table.copy_(torch.from_numpy(value))
            self.global_mean.fill_(mu)
        return self.eval()

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"user": self.user_factors, "item": self.item_factors}

    def _factors(self, delta: Delta) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.n_users == 0 and self.n_items == 0:
            raise RuntimeError("ExplicitMF is not fitted: call fit(train) first")
        d = self.check_delta(delta)
        P, Q = self.user_factors, self.item_factors
        if "user" in d:
            P = P + d["user"]
        if "item" in d:
            Q = Q + d["item"]
        return P, Q

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        """Predicted ratings of ``items`` ``[b]`` or ``[b, m]`` for ``users`` ``[b]``."""
        P, Q = self._factors(delta)
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        pu, qi = P[users], Q[items]
        bu = self.user_bias[users]
        if qi.dim() == pu.dim() + 1:  # items [b, m]
            return self.global_mean + bu[:, None] + self.item_bias[items] + torch.einsum("bd,bmd->bm", pu, qi)
        return self.global_mean + bu + self.item_bias[items] + (pu * qi).sum(-1)

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        P, Q = self._factors(delta)
        users = check_users(users, self.n_users)
        return torch.addmm(self.item_bias[None, :] + (self.global_mean + self.user_bias[users])[:, None],
                           P[users], Q.t())

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Predicted ratings of aligned (user, item) pairs (array-likes of one shape), float64,
        unclipped (the model does not know the rating scale)."""
        users = torch.as_tensor(np.asarray(users) if not isinstance(users, torch.Tensor) else users)
        items = torch.as_tensor(np.asarray(items) if not isinstance(items, torch.Tensor) else items)
        if users.shape != items.shape:
            raise ValueError(f"users and items must have one shape, got {tuple(users.shape)} and {tuple(items.shape)}")
        with torch.no_grad():
            out = self.score(users.reshape(-1), items.reshape(-1))
        return out.double().cpu().numpy().reshape(tuple(users.shape))

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """With ``batch["rating"]``: the mean squared error of the (user, pos) predictions.
        Without: the BPR loss of the (user, pos, neg) triples, so the evasion attacks, which
        build BPR batches, take this model as they take ``MF``. ALS fits neither by gradients."""
        users = check_users(batch["user"], self.n_users)
        if "rating" in batch:
            return (self.score(users, batch["pos"], delta) - batch["rating"].to(self.global_mean.dtype)).pow(2).mean()
        pos, neg = self.score(users, batch["pos"], delta), self.score(users, batch["neg"], delta)
        return F.softplus(neg - pos).mean()

"""Neighbourhood models: user-based and item-based kNN, the classic victims of shilling attacks.

Both are fitted, not trained: ``UserKNN(k=20, similarity="pearson").fit(train)`` computes every
user's ``k`` most similar users in the compiled core (``advrec.kernels.knn``), summing over the
items both rated (co-rated), so no users x users matrix is ever built.
``ItemKNN`` is the same model on the transposed matrix (items are the rows).

- ``predict(users, items)``: explicit rating prediction, mean-centred (Surprise's KNNWithMeans)::

      r(u, i) = mu_u + sum_v sim(u, v) (r_vi - mu_v) / sum_v sim(u, v)

  over the ``k`` users most similar to u among those who rated i, positive similarities only.
  ItemKNN: r(u, i) = mu_i + sum_j sim(i, j) (r_uj - mu_j) / sum_j sim(i, j) over the ``k`` items
  most similar to i among those u rated.
- ``full_scores(users)``: ranking scores from the fitted neighbour lists (``neighbors``), not
  mean-centred::

      UserKNN: s(u, i) = sum_{v in N_k(u)} sim(u, v) r_vi
      ItemKNN: s(u, i) = sum_{j rated by u, j in N_k(i)} sim(i, j) r_uj

  with N_k the ``k`` most similar rows overall, positive similarities only, and r = 1 on
  implicit data (the usual top-N kNN: Sarwar et al. 2001, Deshpande & Karypis 2004).

Similarities (``advrec.kernels.knn`` has the formulas): ``"pearson"`` centres each rating on its
row's mean over all the row's ratings (a user's for UserKNN, an item's for ItemKNN); ``"cosine"``
takes the raw ratings (ones on implicit data). Both sum products over co-rated entries. They
differ in the norms: ``predict`` divides by the norms over the co-rated entries (Surprise's
definitions, the classic rating predictor), the ranking neighbour lists by the norms of the
whole rows. With co-rated norms one co-rated entry makes a pair similar +-1, so the neighbour
lists fill with users (items) that share one rare item and top-N ranking collapses (ML-100K,
random 80/20, k=20, cosine: Recall@10 0.04 for UserKNN and 0.0002 for ItemKNN with co-rated
norms, 0.21 and 0.21 with whole-row norms; Pop gets 0.12). Pearson needs explicit ratings.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Tuple, Union

import numpy as np
import torch

from .. import kernels
from .._checks import positive_int
from .base import Batch, Delta, Recommender, check_users

if TYPE_CHECKING:
    from ..data.interactions import Interactions

__all__ = ["UserKNN", "ItemKNN"]

CSR = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int) -> CSR:
    """CSR with sorted columns per row; a repeated (row, col) keeps its last value in log order."""
    order = np.lexsort((np.arange(len(rows)), cols, rows))
    r, c, v = rows[order], cols[order], values[order]
    last = np.ones(len(r), dtype=bool)
    last[:-1] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    r, c, v = r[last], c[last], v[last]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return indptr, c.astype(np.int64), v.astype(np.float64)


def _neighbour_csr(idx: np.ndarray, sim: np.ndarray, transpose: bool) -> CSR:
    """The neighbour lists as a sparse [rows x rows] weight matrix (positive similarities only),
    or its transpose (row j lists the rows whose neighbour j is)."""
    n = idx.shape[0]
    keep = (idx >= 0) & (sim > 0)
    owner = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1]).reshape(idx.shape)[keep]
    other, w = idx[keep], sim[keep].astype(np.float64)
    return _csr(other, owner, w, n) if transpose else _csr(owner, other, w, n)


class _KNN(Recommender):
    """The shared fit / predict / score of UserKNN and ItemKNN (``user_based`` picks the rows)."""

    user_based: bool

    def __init__(self, k: int = 20, similarity: str = "pearson", min_overlap: int = 1):
        super().__init__()
        if not isinstance(similarity, str) or similarity not in kernels.SIMILARITIES:
            raise ValueError(f"similarity must be one of {kernels.SIMILARITIES}, got {similarity!r}")
        self.k = positive_int(k, "k")
        self.similarity = similarity
        self.min_overlap = positive_int(min_overlap, "min_overlap")
        self._fitted = False

    def config(self) -> dict:
        return {"k": self.k, "similarity": self.similarity, "min_overlap": self.min_overlap}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, similarity={self.similarity!r}, min_overlap={self.min_overlap})"

    # ------------------------------------------------------------------------------ fitting

    def fit(self, train: "Interactions") -> "_KNN":
        """Fit on ``train`` (an ``advrec.data.Interactions``, explicit or implicit): row means,
        the neighbour lists, and the sparse matrices ``full_scores`` multiplies. Refitting on a
        poisoned log starts from scratch (nothing is kept from an earlier fit)."""
        explicit = train.rating is not None
        if self.similarity == "pearson" and not explicit:
            raise ValueError("similarity='pearson' needs explicit ratings (train.rating is None: every "
                             "rating would equal its row mean); use similarity='cosine' on implicit data")
        self.n_users, self.n_items = int(train.n_users), int(train.n_items)
        ratings = train.rating.astype(np.float64) if explicit else np.ones(len(train))
        users, items = np.asarray(train.user), np.asarray(train.item)
        rows, cols = (users, items) if self.user_based else (items, users)
        n_rows = self.n_users if self.user_based else self.n_items
        self._rows = _csr(rows, cols, ratings, n_rows)  # the kernels' rows: users or items
        self._n_cols = self.n_items if self.user_based else self.n_users
        self._explicit = explicit
        global_mean = float(ratings.mean()) if len(ratings) else 0.0
        self._means = kernels.knn_row_means(self._rows[0], self._rows[2], empty=global_mean)
        self._range = (float(ratings.min()), float(ratings.max())) if len(ratings) else (0.0, 0.0)
        # The ranking neighbourhoods, with whole-row norms (module docstring: why).
        idx, sim = kernels.knn_neighbors(*self._rows, self.k, self.similarity, self.min_overlap,
                                         self._means if self.similarity == "pearson" else None,
                                         n_cols=self._n_cols, norms="rows")
        self._neighbors = (idx, sim)
        if self.user_based:  # s(u) = W[u] @ R
            self._a, self._b = _neighbour_csr(idx, sim, transpose=False), self._rows
        else:  # s(u) = R[u] @ W^T
            self._a, self._b = _csr(users, items, ratings, self.n_users), _neighbour_csr(idx, sim, transpose=True)
        self._fitted = True
        return self

    def _require_fit(self, what: str) -> None:
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__}.{what}: call fit(train) first")

    @property
    def neighbors(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(idx int64 [n_rows, k], sim float32 [n_rows, k])``: each user's (UserKNN) or item's
        (ItemKNN) k most similar others by the whole-row-norm similarity ``full_scores`` ranks
        with, most similar first, padded with -1 / -inf. (``predict`` picks its neighbours per
        item, by the co-rated similarity.)"""
        self._require_fit("neighbors")
        return self._neighbors

    @property
    def means(self) -> np.ndarray:
        """Each user's (UserKNN) or item's (ItemKNN) mean training rating, float64; the global
        mean for one without ratings."""
        self._require_fit("means")
        return self._means

    # --------------------------------------------------------------------------- prediction

    def predict(self, users: Any, items: Any, clip: bool = True,
                return_counts: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """Predicted ratings of the pairs ``(users[q], items[q])``, float64 ``[q]`` (module
        docstring: the mean-centred formula over the k most similar raters).

        Falls back to the user's mean rating (UserKNN) or the item's (ItemKNN) when no
        positively similar neighbour rated the item (rated by the user), and to the global mean
        for a user / item without training ratings. ``clip``: clip to the training ratings'
        range, as Surprise does. ``return_counts``: also return the neighbours used per pair
        (0 where the prediction fell back to the mean).
        """
        self._require_fit("predict")
        if not self._explicit:
            raise ValueError("predict needs explicit ratings; this model was fitted on implicit data "
                             "(rank with full_scores instead)")
        u = check_users(torch.as_tensor(np.asarray(users)), self.n_users, "users").numpy()
        i = check_users(torch.as_tensor(np.asarray(items)), self.n_items, "items").numpy()
        if u.shape != i.shape or u.ndim != 1:
            raise ValueError(f"users and items must be 1-D of one length, got shapes {u.shape} and {i.shape}")
        rows, cols = (u, i) if self.user_based else (i, u)
        pred, used = kernels.knn_predict(*self._rows, rows, cols, self.k, self.similarity, self.min_overlap,
                                         self._means, n_cols=self._n_cols, norms="co-rated")
        if clip:
            pred = np.clip(pred, *self._range)
        return (pred, used) if return_counts else pred

    # ------------------------------------------------------------------- Recommender protocol

    def perturbable(self) -> dict:
        """Nothing: a kNN model has no embeddings; attack it through its data (poisoning)."""
        return {}

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        """Ranking scores of every item, float32 ``[len(users), n_items]`` (module docstring)."""
        self._require_fit("full_scores")
        self.check_delta(delta)
        u = check_users(users, self.n_users).cpu().numpy()
        return torch.from_numpy(kernels.knn_scores(self._a, u, self._b, self.n_items))

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        """``full_scores`` at ``items`` ``[b]`` or ``[b, m]``, computed once per distinct user."""
        self._require_fit("score")
        self.check_delta(delta)
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        if items.shape[:1] != users.shape:
            raise ValueError(f"items must have shape [b] or [b, m] with b = len(users) = {users.shape[0]}, "
                             f"got {tuple(items.shape)}")
        distinct, inverse = torch.unique(users, return_inverse=True)
        scores = self.full_scores(distinct)
        rows = inverse if items.ndim == 1 else inverse[:, None].expand_as(items)
        return scores[rows, items].to(items.device)

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} is fitted from co-rated similarities "
                        f"({type(self).__name__}(...).fit(train)), not trained by gradient steps; "
                        "it has no loss to attack or train")


class UserKNN(_KNN):
    """User-based kNN (rows: users). ``UserKNN(k=20, similarity="pearson").fit(train)``; see the
    module docstring for the prediction and ranking formulas."""

    user_based = True


class ItemKNN(_KNN):
    """Item-based kNN (rows: items). ``ItemKNN(k=20, similarity="cosine").fit(train)``; see the
    module docstring for the prediction and ranking formulas."""

    user_based = False

    def __init__(self, k: int = 20, similarity: str = "cosine", min_overlap: int = 1):
        super().__init__(k, similarity, min_overlap)

"""Profile features for fake-profile (shilling) detection: one row per user, one column per feature.

``profile_features(train)`` computes, for every user of an ``advrec.data.Interactions`` log, the
generic attributes of Chirita et al. 2005 and Burke et al. 2006 and the push-attack model
attributes of Burke et al. 2006 / Williams et al. 2007. ``docs/detection.md`` ("Profile
features") has each formula, its source, and how the papers' ambiguities are resolved here.

Notation: I_u the items user u rated, n_u = |I_u|, r_ui the rating, NR_i the number of users who
rated item i and r̄_i their mean rating (both over the whole log, the user's own rating included),
r_max the top of the rating scale (default: the log's largest rating).

=========  ================================================================================
RDMA       (1/n_u) sum_{i in I_u} |r_ui - r̄_i| / NR_i                    (Chirita et al. 2005)
WDMA       (1/n_u) sum_{i in I_u} |r_ui - r̄_i| / NR_i^2                  (Burke et al. 2006)
WDA        sum_{i in I_u} |r_ui - r̄_i| / NR_i                            (Burke et al. 2006)
LengthVar  |n_u - n̄| / sum_v (n_v - n̄)^2, over the users with a profile  (Burke et al. 2006)
DegSim     mean similarity of u's k most similar users (the compiled kNN kernel): Pearson over
           co-rated items (at least ``min_overlap``) on explicit logs, the binary cosine
           |I_u ∩ I_v| / sqrt(n_u n_v) on implicit ones                   (Chirita et al. 2005)
MeanVar    sum_{i in P_F} (r_ui - r̄_i)^2 / n_u, with P_T = {t_u} the one item rated r_max whose
           removal minimises it and P_F = I_u - P_T       (average-attack model, Burke et al. 2006)
FMV        the same filler sum divided by |P_F| (the filler's own mean squared deviation)
FMTD       |mean of u's ratings on T_u - mean on I_u - T_u|, T_u = the items u rated r_max
                                                  (segment-attack model, Williams et al. 2007)
TMF        F_{t_u}, F_j = #{v : t_v = j} / #{v : t_v exists}: how many profiles share u's
           hypothesised target                            (target model focus, Williams et al. 2007)
=========  ================================================================================

Conventions (each documented in ``docs/detection.md``):

- A repeated (user, item) row counts once, with its last rating in log order (as
  ``advrec.models.UserKNN`` builds its matrix): profiles are sets of items.
- A user without any rating has no profile: every feature is NaN (never 0).
- A feature whose formula is undefined for a profile is NaN: FMTD when T_u or I_u - T_u is
  empty, FMV when the filler is empty, DegSim when no other user shares ``min_overlap`` items
  (or, for Pearson, when the profile is constant). A profile without any r_max rating has no
  hypothesised target: P_F is the whole profile and TMF is 0.
- Implicit logs (``train.rating is None``) have no ratings: ``features=None`` then gives the
  features that apply (LengthVar, DegSim); a rating feature asked for by name is a NaN column
  (reported once through the ``advrec`` logger); asking only for rating features is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from .. import kernels
from .._checks import positive_int
from .._logging import report
from ..data.interactions import Interactions

__all__ = ["FEATURES", "RATING_FEATURES", "DEFAULT_K", "DEFAULT_MIN_OVERLAP", "ProfileFeatures",
           "profile_features"]

#: every feature ``profile_features`` computes, in its column order
FEATURES: Tuple[str, ...] = ("RDMA", "WDMA", "WDA", "LengthVar", "DegSim", "MeanVar", "FMV", "FMTD", "TMF")
#: the features that need explicit ratings (NaN on an implicit log)
RATING_FEATURES = frozenset({"RDMA", "WDMA", "WDA", "MeanVar", "FMV", "FMTD", "TMF"})
#: DegSim's neighbourhood size: that of the kNN victims (``advrec.models.UserKNN(k=20)``)
DEFAULT_K = 20
#: DegSim's fewest co-rated items for a pair of users to be neighbours
DEFAULT_MIN_OVERLAP = 5


@dataclass(frozen=True, eq=False)
class ProfileFeatures:
    """The feature matrix of a log: ``matrix[u, j]`` is feature ``names[j]`` of user ``users[u]``.

    ``matrix`` is float64 ``[n_users, len(names)]`` with NaN where a feature is undefined (module
    docstring); ``users`` the user indices of the log (``arange(train.n_users)``). Unpacks as
    ``names, matrix = profile_features(train)``.
    """

    names: Tuple[str, ...]
    matrix: np.ndarray
    users: np.ndarray

    def __iter__(self) -> Iterator[Any]:
        yield self.names
        yield self.matrix

    def column(self, name: str) -> np.ndarray:
        """The values of one feature, float64 ``[n_users]`` (a view of ``matrix``)."""
        if name not in self.names:
            raise ValueError(f"name must be one of {self.names}, got {name!r}")
        return self.matrix[:, self.names.index(name)]

    def to_dict(self) -> Dict[str, np.ndarray]:
        """``{name: column}`` in column order (``pandas.DataFrame(pf.to_dict())`` gives a frame)."""
        return {name: self.matrix[:, j] for j, name in enumerate(self.names)}

    def __repr__(self) -> str:
        return f"ProfileFeatures(users={len(self.users)}, names={self.names})"


# ----------------------------------------------------------------------------- arguments


def _feature_names(features: Optional[Iterable[str]], explicit: bool) -> Tuple[str, ...]:
    if features is None:
        return FEATURES if explicit else tuple(f for f in FEATURES if f not in RATING_FEATURES)
    if isinstance(features, (str, bytes)) or not isinstance(features, Iterable):
        raise ValueError(f"features must be a sequence of feature names (from {FEATURES}), "
                         f"got {type(features).__name__}")
    names = tuple(features)
    if not names:
        raise ValueError(f"features must name at least one feature (from {FEATURES}), got none")
    bad = [f for f in names if not isinstance(f, str) or f not in FEATURES]
    if bad:
        raise ValueError(f"features: unknown feature {bad[0]!r}; choose from {FEATURES}")
    repeated = sorted({f for f in names if names.count(f) > 1})
    if repeated:
        raise ValueError(f"features: {repeated} named more than once")
    return names


def _r_max(r_max: Any, ratings: Optional[np.ndarray]) -> Optional[float]:
    if r_max is None:
        return None if ratings is None else float(ratings.max())
    if isinstance(r_max, (bool, np.bool_)) or not isinstance(r_max, (int, float, np.integer, np.floating)):
        raise ValueError(f"r_max must be a real number or None, got {type(r_max).__name__}")
    value = float(r_max)
    if not np.isfinite(value):
        raise ValueError(f"r_max must be finite, got {value}")
    return value


# ------------------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class _Profiles:
    """The log as a user-major CSR of distinct (user, item) pairs, items increasing per user."""

    user: np.ndarray  # int64 [nnz], non-decreasing
    item: np.ndarray  # int64 [nnz]
    rating: Optional[np.ndarray]  # float64 [nnz] or None (implicit)
    indptr: np.ndarray  # int64 [n_users + 1]
    n_u: np.ndarray  # int64 [n_users]
    n_items: int


def _profiles(train: Interactions) -> _Profiles:
    """Sorted by (user, item); a repeated pair keeps its last row in log order."""
    user, item = train.user, train.item
    n_users, n_items = train.n_users, train.n_items
    if n_items and n_users <= np.iinfo(np.int64).max // n_items:
        key = user * n_items + item
        if np.all(key[1:] > key[:-1]):  # already sorted and distinct: no sort, no copy
            order = None
            keep = None
        else:
            order = np.argsort(key)  # not stable (faster); repeated pairs are resolved below
            key = key[order]
            keep = np.empty(len(key), dtype=bool)
            keep[-1] = True
            np.not_equal(key[1:], key[:-1], out=keep[:-1])
            if not keep.all():  # a repeated pair: keep its last row in log order
                starts = np.flatnonzero(np.concatenate(([True], keep[:-1])))
                order = order.copy()
                order[keep] = np.maximum.reduceat(order, starts)
    else:  # a catalogue too large for one int64 key
        order = np.lexsort((np.arange(len(user)), item, user))
        u, i = user[order], item[order]
        keep = np.ones(len(u), dtype=bool)
        keep[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    if order is not None:
        idx = order[keep]
        user, item = user[idx], item[idx]
        rating = None if train.rating is None else train.rating[idx].astype(np.float64)
    else:
        rating = None if train.rating is None else train.rating.astype(np.float64)
    n_u = np.bincount(user, minlength=n_users).astype(np.int64)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(n_u, out=indptr[1:])
    return _Profiles(user, item, rating, indptr, n_u, n_items)


def _per_user(p: _Profiles, weights: np.ndarray) -> np.ndarray:
    return np.bincount(p.user, weights=weights, minlength=len(p.n_u))


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0."""
    out = np.full(len(num), np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


# ------------------------------------------------------------------------------ features


def _length_var(p: _Profiles) -> np.ndarray:
    has = p.n_u > 0
    lengths = p.n_u[has].astype(np.float64)
    mean = lengths.mean()
    ss = float(np.sum((lengths - mean) ** 2))
    out = np.full(len(p.n_u), np.nan)
    out[has] = np.abs(lengths - mean) / ss if ss > 0 else 0.0
    return out


def _deg_sim(p: _Profiles, k: int, min_overlap: int) -> np.ndarray:
    if p.rating is not None:
        idx, sim = kernels.knn_neighbors(p.indptr, p.item, p.rating, k, "pearson", min_overlap,
                                         n_cols=p.n_items, norms="co-rated")
    else:
        idx, sim = kernels.knn_neighbors(p.indptr, p.item, None, k, "cosine", min_overlap,
                                         n_cols=p.n_items, norms="rows")
    found = idx >= 0
    count = found.sum(axis=1)
    total = np.where(found, sim.astype(np.float64), 0.0).sum(axis=1)
    return _divide(total, count.astype(np.float64))


class _RatingStats:
    """The per-row quantities the rating features share, computed once."""

    def __init__(self, p: _Profiles, r_max: float):
        r = p.rating
        nr = np.bincount(p.item, minlength=p.n_items).astype(np.float64)
        item_sum = np.bincount(p.item, weights=r, minlength=p.n_items)
        mean = _divide(item_sum, nr)  # NaN only for items nobody rated (never indexed)
        self.nr = nr[p.item]  # NR_i per row (>= 1)
        self.dev = r - mean[p.item]  # r_ui - r̄_i per row
        self.n_u = p.n_u.astype(np.float64)
        self.top = r == r_max  # rows rated r_max: T_u
        # The average-attack model's hypothesised target t_u: among u's r_max rows the one with
        # the largest squared deviation (removing it minimises the filler sum), ties to the lower
        # item index. Rows are sorted by (user, item), so each user's r_max rows are contiguous:
        # the group maximum, then each group's first row reaching it.
        top_rows = np.flatnonzero(self.top)
        sq = self.dev[top_rows] ** 2
        owner = p.user[top_rows]
        new_group = np.ones(len(top_rows), dtype=bool)
        new_group[1:] = owner[1:] != owner[:-1]
        starts = np.flatnonzero(new_group)
        group_max = np.maximum.reduceat(sq, starts) if len(starts) else sq
        best = top_rows[sq == np.repeat(group_max, np.diff(np.append(starts, len(top_rows))))]
        first = np.ones(len(best), dtype=bool)
        first[1:] = p.user[best[1:]] != p.user[best[:-1]]
        self.target_row = best[first]  # one row per user with a target
        self.target_user = p.user[self.target_row]
        self.target_item = p.item[self.target_row]
        self.filler = np.ones(len(r), dtype=bool)
        self.filler[self.target_row] = False


def _rating_features(p: _Profiles, names: Sequence[str], r_max: float) -> Dict[str, np.ndarray]:
    s = _RatingStats(p, r_max)
    has = p.n_u > 0
    out: Dict[str, np.ndarray] = {}
    absdev = np.abs(s.dev)
    if "RDMA" in names:
        out["RDMA"] = _divide(_per_user(p, absdev / s.nr), s.n_u)
    if "WDMA" in names:
        out["WDMA"] = _divide(_per_user(p, absdev / (s.nr * s.nr)), s.n_u)
    if "WDA" in names:
        out["WDA"] = np.where(has, _per_user(p, absdev / s.nr), np.nan)
    if "MeanVar" in names or "FMV" in names:
        filler_sq = _per_user(p, np.where(s.filler, s.dev * s.dev, 0.0))
        if "MeanVar" in names:
            out["MeanVar"] = _divide(filler_sq, s.n_u)
        if "FMV" in names:
            out["FMV"] = _divide(filler_sq, _per_user(p, s.filler.astype(np.float64)))
    if "FMTD" in names:
        n_top = _per_user(p, s.top.astype(np.float64))
        mean_top = _divide(_per_user(p, np.where(s.top, p.rating, 0.0)), n_top)
        mean_rest = _divide(_per_user(p, np.where(s.top, 0.0, p.rating)), s.n_u - n_top)
        out["FMTD"] = np.abs(mean_top - mean_rest)  # NaN when either part is empty
    if "TMF" in names:
        focus = np.bincount(s.target_item, minlength=p.n_items) / max(len(s.target_item), 1)
        tmf = np.where(has, 0.0, np.nan)
        tmf[s.target_user] = focus[s.target_item]
        out["TMF"] = tmf
    return out


def profile_features(
    train: Interactions,
    features: Optional[Iterable[str]] = None,
    *,
    k: int = DEFAULT_K,
    min_overlap: int = DEFAULT_MIN_OVERLAP,
    r_max: Union[None, int, float] = None,
) -> ProfileFeatures:
    """Detection features of every user of ``train`` (module docstring: the definitions).

    ``features``: the names to compute, in that column order (default: every feature the log
    supports, in ``FEATURES`` order). ``k``: DegSim's neighbourhood size. ``min_overlap``: the
    fewest co-rated items for two users to be DegSim neighbours. ``r_max``: the rating a push
    attack gives its targets (default: the log's largest rating); the items a user rated exactly
    ``r_max`` are the candidates of the target partitions (MeanVar, FMV, FMTD, TMF).

    Returns a ``ProfileFeatures`` (unpacks as ``names, matrix``). Bad input raises
    ``ValueError`` naming the argument: ``train`` not an ``Interactions``, an empty log, or an
    implicit log asked only for rating features; an unknown, repeated or empty ``features``;
    ``k`` or ``min_overlap`` not a positive int; ``r_max`` not a finite real.
    """
    if not isinstance(train, Interactions):
        raise ValueError(f"train must be an advrec.data.Interactions, got {type(train).__name__}")
    if len(train) == 0:
        raise ValueError("train is empty: profile features need at least one interaction")
    explicit = train.rating is not None
    names = _feature_names(features, explicit)
    k = positive_int(k, "k")
    min_overlap = positive_int(min_overlap, "min_overlap")
    top = _r_max(r_max, train.rating)
    wanted_ratings = [f for f in names if f in RATING_FEATURES]
    if not explicit and wanted_ratings:
        if len(wanted_ratings) == len(names):
            raise ValueError(f"train has no ratings (implicit log): every requested feature "
                             f"{list(names)} needs them; LengthVar and DegSim work on implicit logs")
        report(f"profile_features: train has no ratings, so {wanted_ratings} are NaN", once=True)

    p = _profiles(train)
    columns: Dict[str, np.ndarray] = {}
    if explicit and wanted_ratings:
        columns.update(_rating_features(p, wanted_ratings, top))
    if "LengthVar" in names:
        columns["LengthVar"] = _length_var(p)
    if "DegSim" in names:
        columns["DegSim"] = _deg_sim(p, k, min_overlap)
    matrix = np.full((train.n_users, len(names)), np.nan)
    for j, name in enumerate(names):
        if name in columns:
            matrix[:, j] = columns[name]
    return ProfileFeatures(names=names, matrix=matrix, users=np.arange(train.n_users, dtype=np.int64))

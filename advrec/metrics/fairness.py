"""Group fairness metrics of the MSAP paper's Table 3: GCE, MADr and MADR.

All functions take plain numpy arrays (per-user or per-entry values plus integer group labels
0..n_groups-1), so they work on any evaluation output; ``user_fairness`` is the shortcut from an
``EvalResult``.

* GCE (Deldjoo et al. 2019, "Recommender Systems Fairness Evaluation via Generalized Cross
  Entropy"): ``GCE(p_f, p_m, beta) = 1/(beta(1-beta)) * (sum_g p_f(g)^beta p_m(g)^(1-beta) - 1)``,
  where p_m is the share of a benefit (summed nDCG of a group's users, or item exposure) that each
  group receives and p_f an ideal distribution. It is 0 when p_m = p_f and negative otherwise; the
  closer to 0 the fairer w.r.t. p_f. The default beta = 2 follows Deldjoo et al.; it is also the
  only common choice that fits the MSAP Table 3 values (e.g. -2039.8): for 0 < beta < 1 GCE is
  bounded below by -1/(beta(1-beta)), whereas with beta = 2 it is -(sum p_f^2/p_m - 1)/2, which is
  unbounded as a favoured group's share p_m(g) goes to 0 (and -inf when it is exactly 0).
* MADr (Zhu, Hu & Caverlee 2018): absolute difference of the mean predicted score between two
  groups; MADR (Deldjoo et al. 2019): the same on a per-user ranking metric (nDCG@k). With more than
  two groups we report the mean of |mean_a - mean_b| over all unordered pairs of groups (Deldjoo et
  al.'s extension to several groups); for two groups this is the plain absolute difference.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Optional, Sequence

import numpy as np

DEFAULT_BETA = 2.0


def _labels(labels: Any, n: int, name: str = "labels", n_groups: Optional[int] = None) -> tuple[np.ndarray, int]:
    """Integer labels 0..n_groups-1 of length n; n_groups defaults to max label + 1."""
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of group labels, got shape {lab.shape}")
    if len(lab) != n:
        raise ValueError(f"{name} has length {len(lab)}, expected {n} (one label per value)")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{name} must hold integer group labels, got dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if lab.size and lab.min() < 0:
        raise ValueError(f"{name} has negative group labels")
    if n_groups is None:
        if lab.size == 0:
            raise ValueError(f"{name} is empty; pass n_groups or at least one labelled value")
        n_groups = int(lab.max()) + 1
    elif isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive int, got {n_groups!r}")
    elif lab.size and lab.max() >= n_groups:
        raise ValueError(f"{name} has label {int(lab.max())} but n_groups={n_groups}")
    return lab, int(n_groups)


def _values(values: Any, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {v.shape}")
    if np.any(np.isinf(v)):
        raise ValueError(f"{name} has infinite entries")
    return v


def _distribution(p: Any, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of group shares, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} has non-finite entries")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative shares")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, sums to {p.sum():.6g}")
    return p


def ideal_distribution(n_groups: int, favoured: Optional[int] = None, mass: Optional[float] = None) -> np.ndarray:
    """Ideal group distribution p_f: uniform (f0) when favoured is None, else the skewed f_k.

    ``favoured`` is 0-based (the paper's f_k, groups C_1..C_n, is ``favoured=k-1``). The favoured
    group gets ``mass`` and the others split the rest equally. The MSAP paper only states
    f_1 = [0.75, 0.25] for two groups; our default mass = 3/(n_groups+2), i.e. the favoured group
    weighs 3x any other group, reproduces that exactly and gives [0.5, 1/6, 1/6, 1/6] for quartiles.
    """
    if isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive int, got {n_groups!r}")
    if favoured is None:
        if mass is not None:
            raise ValueError("mass needs a favoured group")
        return np.full(n_groups, 1.0 / n_groups)
    if isinstance(favoured, bool) or not isinstance(favoured, (int, np.integer)) or not 0 <= favoured < n_groups:
        raise ValueError(f"favoured must be an int in 0..{n_groups - 1}, got {favoured!r}")
    if n_groups == 1:
        return np.ones(1)
    m = 3.0 / (n_groups + 2) if mass is None else float(mass)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"mass must lie in [0, 1], got {mass!r}")
    p = np.full(n_groups, (1.0 - m) / (n_groups - 1))
    p[favoured] = m
    return p


def group_shares(values: Any, labels: Any, n_groups: Optional[int] = None) -> np.ndarray:
    """p_m: each group's share of the summed benefit (e.g. per-user nDCG, per-item exposure).

    NaN values (metric undefined for that user) are left out. A group with no members gets share 0.
    Raises when a value is negative or the total benefit is 0, since shares are then undefined.
    """
    v = _values(values, "values")
    lab, n_groups = _labels(labels, len(v), "labels", n_groups)
    keep = ~np.isnan(v)
    v, lab = v[keep], lab[keep]
    if np.any(v < 0):
        raise ValueError("values must be non-negative benefits")
    sums = np.bincount(lab, weights=v, minlength=n_groups)
    total = sums.sum()
    if total <= 0:
        raise ValueError("values sum to 0: no group receives any benefit, shares are undefined")
    return sums / total


def gce(p_ideal: Any, p_model: Any, beta: float = DEFAULT_BETA) -> float:
    """Generalised cross-entropy of the model's group distribution against an ideal one (<= 0; 0 = fair).

    Groups with p_model = 0 contribute p_ideal^beta * 0^(1-beta): 0 for beta < 1, and +inf (so
    GCE = -inf) for beta > 1 when the ideal gives that group mass.
    """
    pf = _distribution(p_ideal, "p_ideal")
    pm = _distribution(p_model, "p_model")
    if pf.shape != pm.shape:
        raise ValueError(f"p_ideal has {len(pf)} groups but p_model has {len(pm)}")
    beta = float(beta)
    if not np.isfinite(beta) or beta in (0.0, 1.0):
        raise ValueError(f"beta must be finite and differ from 0 and 1, got {beta!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.power(pf, beta) * np.power(pm, 1.0 - beta)
    # 0 * inf: a group that neither the ideal nor the model serves contributes nothing
    terms[(pf == 0) & (pm == 0)] = 0.0
    return float((terms.sum() - 1.0) / (beta * (1.0 - beta)))


def _mad(values: np.ndarray, lab: np.ndarray, n_groups: int) -> float:
    keep = ~np.isnan(values)
    values, lab = values[keep], lab[keep]
    counts = np.bincount(lab, minlength=n_groups)
    if n_groups < 2:
        raise ValueError(f"MAD needs at least two groups, got n_groups={n_groups}")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"group(s) {empty.tolist()} have no (defined) values; their mean is undefined")
    means = np.bincount(lab, weights=values, minlength=n_groups) / counts
    return float(np.mean([abs(means[a] - means[b]) for a, b in combinations(range(n_groups), 2)]))


def mad_ranking(per_user: Any, user_labels: Any, n_groups: Optional[int] = None) -> float:
    """MADR: mean over group pairs of |mean metric of group a - of group b| (per-user nDCG, say).

    NaN values are left out; a group with no defined value raises ValueError.
    """
    v = _values(per_user, "per_user")
    lab, n_groups = _labels(user_labels, len(v), "user_labels", n_groups)
    return _mad(v, lab, n_groups)


def mad_rating(scores: Any, labels: Any, n_groups: Optional[int] = None) -> float:
    """MADr: mean over group pairs of |mean predicted score of group a - of group b|.

    ``scores`` is either flat (one label per score) or [n_users, K] (e.g. the scores of each user's
    top-K items) with one label per row, which then applies to every score of that row. NaN scores
    (padding) are left out.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2:
        lab, n_groups = _labels(labels, s.shape[0], "labels", n_groups)
        lab = np.repeat(lab, s.shape[1])
        s = s.reshape(-1)
    elif s.ndim == 1:
        lab, n_groups = _labels(labels, len(s), "labels", n_groups)
    else:
        raise ValueError(f"scores must be 1-D or 2-D [n_users, K], got shape {s.shape}")
    if np.any(np.isinf(s)):
        raise ValueError("scores has infinite entries")
    return _mad(s, lab, n_groups)


def group_means(values: Any, labels: Any, n_groups: Optional[int] = None) -> np.ndarray:
    """Mean of ``values`` per group (NaN values left out; NaN for a group with no defined value):
    the per-group nDCG of MSAP Table 2."""
    v = _values(values, "values")
    lab, n_groups = _labels(labels, len(v), "labels", n_groups)
    keep = ~np.isnan(v)
    counts = np.bincount(lab[keep], minlength=n_groups)
    sums = np.bincount(lab[keep], weights=v[keep], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _gce_and_madr(values: np.ndarray, lab: np.ndarray, n_groups: int, beta: float,
                  favoured: Sequence[int]) -> dict[str, float]:
    finite = values[~np.isnan(values)]
    if len(finite) and not np.any(finite < 0) and finite.sum() == 0:
        # nobody gets any benefit (a strong attack can zero every user's nDCG): GCE is undefined,
        # not an error, and every group is equally (un)served, so MADR is 0
        out = {"GCE_f0": float("nan"), **{f"GCE_f{int(f) + 1}": float("nan") for f in favoured}}
        out["MADR"] = mad_ranking(values, lab, n_groups)
        return out
    pm = group_shares(values, lab, n_groups)
    out = {"GCE_f0": gce(ideal_distribution(n_groups), pm, beta)}
    for f in favoured:
        out[f"GCE_f{int(f) + 1}"] = gce(ideal_distribution(n_groups, int(f)), pm, beta)
    out["MADR"] = mad_ranking(values, lab, n_groups)
    return out


def item_fairness(per_item: Any, item_labels: Any, beta: float = DEFAULT_BETA, favoured: Sequence[int] = (),
                  n_groups: Optional[int] = None) -> dict[str, float]:
    """GCE (f0 and each f_k) and MADR over item groups from per-item values (``per_item_ndcg``).

    The benefit of an item group is the summed nDCG of its test items (so GCE weighs how many of a
    group's items are recommended well), and MADR compares the groups' mean per-item nDCG. Items
    that are nobody's test item (NaN) are left out.
    """
    v = _values(per_item, "per_item")
    lab, n_groups = _labels(item_labels, len(v), "item_labels", n_groups)
    return _gce_and_madr(v, lab, n_groups, beta, favoured)


def user_fairness(result: Any, user_labels: Any, metric: str = "nDCG@10", beta: float = DEFAULT_BETA,
                  favoured: Sequence[int] = (), n_groups: Optional[int] = None) -> dict[str, float]:
    """GCE (uniform f0 and each skewed f_k, k = favoured+1) and MADR of one per-user metric of an EvalResult.

    ``user_labels`` is indexed by user id (as the groups functions return); only the users the
    result evaluated are used. Keys: "GCE_f0", "GCE_f{k}" (1-based, as in the paper), "MADR".
    """
    if metric not in result.per_user:
        raise ValueError(f"metric {metric!r} is not among the result's per-user metrics {sorted(result.per_user)}")
    lab = np.asarray(user_labels)
    if lab.ndim != 1:
        raise ValueError("user_labels must be a 1-D array indexed by user id")
    if result.users.size and result.users.max() >= len(lab):
        raise ValueError(f"user_labels has {len(lab)} entries but user {int(result.users.max())} was evaluated")
    lab, n_groups = _labels(lab, len(lab), "user_labels", n_groups)
    return _gce_and_madr(result.per_user[metric], lab[result.users], n_groups, beta, favoured)

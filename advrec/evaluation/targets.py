"""Target-item measures of a poisoning attack: how far the attack pushed its target items up
for the real users who have not interacted with them (issue 16, "Evaluation").

Users: the real users of the training log the model was fitted on (fake users' indices follow
the real ones, so ``real_users=n_real`` selects them; a boolean mask over the log's users also
works), and per target only those without a training row of that target.

- ``target_exposure(model, train, targets)``: per target, its rank among a user's candidates
  (every item not in the user's training rows, the full protocol of ``evaluate``; ties go to the
  lower item index, as in ``advrec.kernels.topk_scores``, so rank <= k exactly when the target is
  in the user's top-k list), HR@k (the share of users with rank <= k) and the mean rank.
- ``prediction_shift(clean, poisoned, train, targets)``: for rating models (``predict(users,
  items)``), per target the mean over users of (poisoned prediction - clean prediction).

Typical run (``fake`` from an attack, ``inject`` from ``advrec.data``)::

    clean = ExplicitMF().fit(train)
    poisoned_log = inject(train, fake)
    poisoned = ExplicitMF().fit(poisoned_log)            # the clean run's hyper-parameters
    before = target_exposure(clean, train, targets)
    after = target_exposure(poisoned, poisoned_log, targets, real_users=train.n_users)
    shift = prediction_shift(clean, poisoned, train, targets)

The normal users' accuracy before and after is ``evaluate``'s: ``evaluate(clean, test,
exclude=train)`` and ``evaluate(poisoned, test_p, exclude=poisoned_log)``, where ``test_p`` is
the same test rows in the poisoned log's id space (``Interactions(test.user, test.item,
test.rating, test.timestamp, poisoned_log.n_users, test.n_items, poisoned_log.user_ids,
test.item_ids)``); only real users have test rows, so both results cover the same users and
``after.compare(before)`` pairs them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .._checks import positive_int
from ..data.interactions import Interactions
from ..metrics.checks import check_ks
from .protocols import _as_scores, _device, _tiles

__all__ = ["TargetResult", "PredictionShift", "target_exposure", "prediction_shift", "check_targets"]

RealUsers = Union[None, int, np.ndarray, Sequence[bool]]


def check_targets(targets: Any, n_items: int, name: str = "targets") -> np.ndarray:
    """Target items as a 1-D int64 array: one int or a sequence, non-empty, distinct, in
    ``[0, n_items)`` (``IndexError`` outside it, ``ValueError`` otherwise, naming ``name``)."""
    arr = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one item id or a 1-D sequence of them, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must name at least one item")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer item ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n_items:
        raise IndexError(f"{name} must lie in [0, {n_items}) (the catalogue), got range [{arr.min()}, {arr.max()}]")
    uniq, counts = np.unique(arr, return_counts=True)
    if len(uniq) != len(arr):
        raise ValueError(f"{name} repeats items {uniq[counts > 1].tolist()}")
    return arr


def real_user_ids(real_users: RealUsers, n_users: int) -> np.ndarray:
    """The real users' ids (sorted): all ``n_users`` for None, ``[0, n)`` for an int ``n``, or the
    True entries of a boolean mask of length ``n_users``."""
    if real_users is None:
        users = np.arange(n_users, dtype=np.int64)
    elif isinstance(real_users, (int, np.integer)) and not isinstance(real_users, (bool, np.bool_)):
        if not 0 <= real_users <= n_users:
            raise ValueError(f"real_users must be in [0, {n_users}] (the log's users), got {real_users}")
        users = np.arange(int(real_users), dtype=np.int64)
    else:
        mask = np.asarray(real_users)
        if mask.dtype != bool or mask.shape != (n_users,):
            raise ValueError(f"real_users must be None, an int (the number of real users) or a boolean mask of "
                             f"shape ({n_users},), got dtype {mask.dtype} shape {mask.shape}")
        users = np.flatnonzero(mask).astype(np.int64)
    if len(users) == 0:
        raise ValueError("real_users selects no user")
    return users


def _target_seen(train: Interactions, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``seen[j, t]``: user ``users[j]`` has a training row of ``targets[t]``."""
    pos = np.full(train.n_items, -1, dtype=np.int64)
    pos[targets] = np.arange(len(targets))
    row = np.full(train.n_users, -1, dtype=np.int64)
    row[users] = np.arange(len(users))
    hit = (pos[train.item] >= 0) & (row[train.user] >= 0)
    seen = np.zeros((len(users), len(targets)), dtype=bool)
    seen[row[train.user[hit]], pos[train.item[hit]]] = True
    return seen


def _check_model(model: Any, train: Interactions, name: str) -> None:
    for attr in ("n_users", "n_items"):
        have = getattr(model, attr, None)
        if have is not None and have != getattr(train, attr):
            raise ValueError(f"{name}.{attr}={have} but train.{attr}={getattr(train, attr)}: pass the log "
                             f"{name} was trained on (and real_users to leave out its fake users)")


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


@dataclass(frozen=True, eq=False)
class TargetResult:
    """Target exposure over the real users. ``ranks[j, t]``: rank (1 = best) of ``targets[t]``
    among the candidates of user ``users[j]``, 0 where that user has the target in train
    (``eligible`` False); ``per_target[name]``: ``HR@k`` and ``MeanRank`` per target ``[n_targets]``
    (NaN for a target no real user is eligible for); ``n_users[t]``: eligible users."""

    targets: np.ndarray
    ks: tuple
    users: np.ndarray
    ranks: np.ndarray
    eligible: np.ndarray
    per_target: dict
    n_users: np.ndarray
    item_ids: Optional[np.ndarray] = None

    def summary(self) -> dict:
        """Each measure's mean over the targets (those with eligible users)."""
        return {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                for name, v in self.per_target.items()}

    def table(self) -> str:
        """Plain-text table: one row per target, then the mean."""
        names = list(self.per_target)
        head = ["target", "raw id", "users"] + names
        rows = []
        for t, item in enumerate(self.targets):
            raw = "" if self.item_ids is None else str(self.item_ids[item])
            rows.append([str(item), raw, str(self.n_users[t])] + [_fmt(self.per_target[n][t]) for n in names])
        summary = self.summary()
        rows.append(["mean", "", ""] + [_fmt(summary[n]) for n in names])
        widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [head] + rows)


def target_exposure(model: Any, train: Interactions, targets: Any, k: Union[int, Sequence[int]] = (10, 20, 50),
                    real_users: RealUsers = None, batch_size: int = 1024,
                    progress: Optional[bool] = None) -> TargetResult:
    """Rank, HR@k and mean rank of each target for the real users who have not interacted with it.

    ``model``: anything with ``full_scores(users) -> [len(users), n_items]`` (and ``n_users`` /
    ``n_items``, checked against ``train`` when present); ``train``: the log it was fitted on
    (poisoned, with its fake users); ``real_users``: see ``real_user_ids``. Users are scored in
    tiles of ``batch_size`` (``progress``: a tqdm bar, by default only on a terminal); each target's ranks come from ``advrec.kernels.rank_targets``
    (float32 scores, as in ``evaluate``).
    """
    from .. import kernels

    _check_model(model, train, "model")
    targets = check_targets(targets, train.n_items)
    ks = check_ks(k, None)
    batch_size = positive_int(batch_size, "batch_size")
    users = real_user_ids(real_users, train.n_users)
    eligible = ~_target_seen(train, users, targets)
    ranks = np.zeros(eligible.shape, dtype=np.int64)
    csr = train.to_csr()
    device = _device(model)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    with torch.no_grad():
        for start in _tiles(len(users), batch_size, show, "target exposure"):
            tile = users[start:start + batch_size]
            out = model.full_scores(torch.as_tensor(tile, device=device))
            scores = _as_scores(out, (len(tile), train.n_items), "full_scores")
            seen = None
            for t, item in enumerate(targets):
                rows = np.flatnonzero(eligible[start:start + len(tile), t])
                has = np.zeros(len(tile), dtype=np.int64)
                has[rows] = 1
                indptr = np.r_[0, np.cumsum(has)].astype(np.int64)
                greater, equal, _ = kernels.rank_targets(scores, (indptr, np.full(len(rows), item, np.int64)),
                                                         exclude=csr, rows=tile)
                below = np.zeros(len(rows), dtype=np.int64)
                tied = np.flatnonzero(equal > 0)
                if len(tied):  # ties go to the lower index: count the tied candidates below the target
                    if seen is None:
                        seen = np.zeros(scores.shape, dtype=bool)
                        lo, hi = csr[0][tile], csr[0][tile + 1]
                        seen[np.repeat(np.arange(len(tile)), hi - lo), csr[1][_ranges(lo, hi)]] = True
                    r = rows[tied]
                    same = scores[r, :item] == scores[r, item][:, None]
                    below[tied] = (same & ~seen[r, :item]).sum(1)
                ranks[start + rows, t] = 1 + greater + below
    n_users = eligible.sum(0)
    per_target = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for kk in ks:
            per_target[f"HR@{kk}"] = ((ranks >= 1) & (ranks <= kk)).sum(0) / n_users
        per_target["MeanRank"] = ranks.sum(0) / n_users
    return TargetResult(targets, ks, users, ranks, eligible, per_target, n_users, np.asarray(train.item_ids))


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(lo[j], hi[j])`` over j."""
    lens = hi - lo
    offsets = np.repeat(lo - np.r_[0, np.cumsum(lens)[:-1]], lens)
    return np.arange(lens.sum(), dtype=np.int64) + offsets


@dataclass(frozen=True, eq=False)
class PredictionShift:
    """Prediction shift per target (``per_target[t]``: mean over its eligible real users of the
    poisoned minus the clean prediction), ``per_user[j, t]`` (NaN where user ``users[j]`` has the
    target in train) and ``n_users[t]``; ``mean`` is the mean over targets."""

    targets: np.ndarray
    users: np.ndarray
    per_user: np.ndarray
    per_target: np.ndarray
    n_users: np.ndarray

    @property
    def mean(self) -> float:
        v = self.per_target[np.isfinite(self.per_target)]
        return float(v.mean()) if v.size else float("nan")


def _predictions(model: Any, users: np.ndarray, items: np.ndarray, batch_size: int, name: str) -> np.ndarray:
    if not callable(getattr(model, "predict", None)):
        raise TypeError(f"{name} has no predict(users, items); prediction shift needs a rating model "
                        "such as advrec.models.ExplicitMF")
    parts = []
    for start in range(0, len(users), batch_size):
        out = model.predict(users[start:start + batch_size], items[start:start + batch_size])
        out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        parts.append(out.astype(np.float64).reshape(-1))
    pred = np.concatenate(parts) if parts else np.zeros(0)
    if pred.shape != users.shape:
        raise ValueError(f"{name}.predict returned {pred.shape[0]} values for {len(users)} pairs")
    return pred


def prediction_shift(clean_model: Any, poisoned_model: Any, train: Interactions, targets: Any,
                     real_users: RealUsers = None, batch_size: int = 65536) -> PredictionShift:
    """Mean change of each target's predicted rating, poisoned minus clean, over the real users
    of ``train`` who have not rated it. Both models predict the same (user, target) pairs.

    ``train``: the clean log (or the poisoned one with ``real_users``; the real users' rows are the
    same in both); both models need ``predict(users, items)`` and must know every real user.
    """
    targets = check_targets(targets, train.n_items)
    batch_size = positive_int(batch_size, "batch_size")
    for name, m in (("clean_model", clean_model), ("poisoned_model", poisoned_model)):
        have = getattr(m, "n_items", None)
        if have is not None and have != train.n_items:
            raise ValueError(f"{name}.n_items={have} but train.n_items={train.n_items}")
    users = real_user_ids(real_users, train.n_users)
    eligible = ~_target_seen(train, users, targets)
    j, t = np.nonzero(eligible)
    pair_users, pair_items = users[j], targets[t]
    diff = (_predictions(poisoned_model, pair_users, pair_items, batch_size, "poisoned_model")
            - _predictions(clean_model, pair_users, pair_items, batch_size, "clean_model"))
    per_user = np.full(eligible.shape, np.nan)
    per_user[j, t] = diff
    n_users = eligible.sum(0)
    sums = np.bincount(t, weights=diff, minlength=len(targets))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_target = sums / n_users
    return PredictionShift(targets, users, per_user, per_target, n_users)

"""Evaluating fake-profile detectors: metrics at a threshold, and leave-one-attack-type-out.

- ``detection_metrics(scores, labels, threshold)``: precision, recall, F1 of ``scores >=
  threshold`` against the fake labels, ROC AUC and the ROC curve's points (for figures).
- ``leave_one_type_out(train, attacks, detector_factory, ...)``: how a supervised detector
  generalises to an attack it never saw: for each held-out attack type it trains on poisoned
  logs of the OTHER types and is scored on poisoned logs of the held-out one. The test log's
  fake users can never be among the training ones (checked, not assumed), and by default the
  real users are split too, so nothing scored was seen in training.

ROC AUC uses scikit-learn (``pip install "advrec[detect]"``), imported when called.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from .._checks import positive_int, seed_arg
from ..data.interactions import Interactions
from ..data.poison import fake_users, inject
from .detectors import _check_log, _threshold, require_sklearn

__all__ = ["detection_metrics", "leave_one_type_out"]

#: ``attacks[name](targets=..., n_fake=..., filler=..., seed=...)`` -> an attack ``a``, ``a(train)``
#: -> the fake users' rows: the constructors of ``advrec.attacks`` (``functools.partial`` fixes
#: other arguments, e.g. a ``SegmentAttack``'s ``segment``)
AttackFactory = Callable[..., Callable[[Interactions], Interactions]]


# ------------------------------------------------------------------------------- metrics


def detection_metrics(scores: Any, labels: Any, threshold: float) -> Dict[str, Any]:
    """Detection quality of ``scores`` (higher = more suspicious) against ``labels`` (True or 1
    = fake), flagging ``scores >= threshold``.

    Returns a dict: ``precision`` (tp / flagged, NaN when nothing is flagged), ``recall`` (tp /
    fakes, NaN without fakes), ``f1`` (2tp / (2tp + fp + fn), NaN when there are neither fakes nor
    flags), ``auc`` (ROC AUC, threshold-free; NaN when one class is absent), ``roc_curve``
    (``(fpr, tpr, thresholds)`` float64 arrays, empty when AUC is NaN), ``threshold``, and the
    counts ``tp``, ``fp``, ``fn``, ``n_flagged``, ``n_fake``, ``n_users``.
    """
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0 or s.dtype.kind not in "iuf":
        raise ValueError(f"scores must be a non-empty 1-D numeric array, got shape {s.shape} "
                         f"dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores contains NaN or infinite values")
    y = np.asarray(labels)
    if y.shape != s.shape:
        raise ValueError(f"labels must have the shape of scores {s.shape}, got {y.shape}")
    if y.dtype != bool:
        if y.dtype.kind not in "iu" or not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be booleans or 0/1 integers (True = fake)")
        y = y.astype(bool)
    t = _threshold(threshold)
    flag = s >= t
    tp = int(np.sum(flag & y))
    fp = int(np.sum(flag & ~y))
    fn = int(np.sum(~flag & y))
    nan = math.nan
    out: Dict[str, Any] = {
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "auc": nan,
        "roc_curve": (np.empty(0), np.empty(0), np.empty(0)),
        "threshold": t, "tp": tp, "fp": fp, "fn": fn,
        "n_flagged": int(flag.sum()), "n_fake": int(y.sum()), "n_users": int(s.size),
    }
    if 0 < out["n_fake"] < s.size:
        require_sklearn("detection_metrics (ROC AUC)")
        from sklearn.metrics import roc_auc_score, roc_curve

        out["auc"] = float(roc_auc_score(y, s))
        fpr, tpr, thr = roc_curve(y, s)
        out["roc_curve"] = (fpr.astype(np.float64), tpr.astype(np.float64), thr.astype(np.float64))
    return out


# ------------------------------------------------------------------------ leave one type out


def _user_part(train: Interactions, keep: np.ndarray) -> Interactions:
    """The log of the users in ``keep`` (a bool mask), reindexed 0..n-1 in order; same items."""
    new = np.cumsum(keep) - 1
    rows = keep[train.user]
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return Interactions(new[train.user[rows]], train.item[rows], pick(train.rating),
                        pick(train.timestamp), int(keep.sum()), train.n_items,
                        train.user_ids[keep], train.item_ids)


def _fake_profiles(log: Interactions) -> Set[Tuple[bytes, bytes]]:
    """Each fake user's profile as (items, ratings) bytes, sorted by item: identity by content."""
    fake = fake_users(log)
    rows = np.flatnonzero(fake[log.user])
    order = rows[np.lexsort((log.item[rows], log.user[rows]))]
    users, starts = np.unique(log.user[order], return_index=True)
    bounds = np.append(starts, len(order))
    out = set()
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = order[a:b]
        r = b"" if log.rating is None else log.rating[part].tobytes()
        out.add((log.item[part].tobytes(), r))
    return out


def _sizes(values: Any, name: str, check: Callable[[Any, str], Any]) -> Tuple[Any, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence, got {values!r}")
    return tuple(check(v, name) for v in values)


def _count_or_fraction(x: Any, name: str) -> Any:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, Real) or not x > 0:
        raise ValueError(f"{name}: each entry must be a positive int or a fraction, got {x!r}")
    return x


def _poison(part: Interactions, attack: AttackFactory, *, seed: int, size: Any, filler: Any,
            n_targets: int, key: Sequence[int]) -> Tuple[Interactions, np.ndarray]:
    """``part`` poisoned by one attack; its ``n_targets`` targets drawn uniformly among the
    items ``part`` rates, from a generator seeded by ``(seed, *key)``."""
    pool = np.flatnonzero(part.item_counts() > 0)
    if n_targets > len(pool):
        raise ValueError(f"n_targets: {n_targets} targets asked for, the log rates {len(pool)} items")
    rng = np.random.default_rng([seed, *key])
    targets = np.sort(rng.choice(pool, size=n_targets, replace=False))
    fake = attack(targets=targets.tolist(), n_fake=size, filler=filler, seed=seed)(part)
    return inject(part, fake), targets


def leave_one_type_out(
    train: Interactions,
    attacks: Mapping[str, AttackFactory],
    detector_factory: Callable[[], Any],
    *,
    sizes: Sequence[Any] = (0.05,),
    fillers: Sequence[Any] = (0.05,),
    seeds: Sequence[int] = (0, 1),
    test_seeds: Sequence[int] = (100,),
    n_targets: int = 1,
    test_users: Optional[float] = 0.5,
    split_seed: int = 0,
    held_out: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """Train on some attack types, test on the one left out, for each type in turn.

    ``train``: the clean log (no fake users). ``attacks``: name -> attack constructor, called
    ``attacks[name](targets=..., n_fake=size, filler=filler, seed=seed)`` and then on the log
    (``advrec.attacks.AverageAttack`` etc.; ``functools.partial`` for extra arguments).
    ``detector_factory()``: a fresh detector (``fit(logs)``, ``score(train)``,
    ``default_threshold(scores)``), e.g. ``lambda: SupervisedDetector("svm")``.

    Real users: with ``test_users`` (a fraction in (0, 1), default 0.5) they are split once,
    with ``split_seed``, into a training part and a test part of that share; the training logs
    are built on the first, the test logs on the second, so no scored user was seen in training.
    ``None`` poisons the whole ``train`` for both (real users then appear in training logs, with
    features shifted by the other attacks' fakes: optimistic for precision).

    For each held-out type (``held_out``, default every key of ``attacks``): one detector is
    trained on a poisoned log per (other type, size, filler, seed in ``seeds``), then scored on
    one poisoned log per (size, filler, seed in ``test_seeds``) of the held-out type. Each log's
    ``n_targets`` targets are drawn uniformly among the items its part rates, from a generator
    seeded by the log's seed and its position in the grid. Fakes are counted (``n_fake`` as a
    fraction) against the real users of the part they are injected into.

    Never training on a scored fake is checked three ways: the held-out type is not among the
    training logs' types, the test and training real users are disjoint (with a split), and no
    test fake profile equals, item for item and rating for rating, a training fake profile (a
    ``ValueError`` naming ``attacks``: two types that build identical profiles, e.g. with no
    filler, cannot be told apart).

    Returns one dict per (held-out type, size, filler, test seed): ``held_out``, ``trained_on``
    (the other types), ``size``, ``filler``, ``seed``, ``targets``, then ``detection_metrics`` at
    the detector's default threshold (``pandas.DataFrame`` takes the list as is).
    """
    train = _check_log(train)
    if fake_users(train).any():
        raise ValueError(f"train already has {int(fake_users(train).sum())} fake users: give the "
                         "clean log, the attacks are injected here")
    if not isinstance(attacks, Mapping) or len(attacks) < 2:
        raise ValueError("attacks must map at least two names to attack constructors "
                         "(one held out, the others to train on)")
    for name, attack in attacks.items():
        if not callable(attack):
            raise ValueError(f"attacks[{name!r}] is not callable")
    names = list(attacks)
    chosen = names if held_out is None else list(held_out)
    if not chosen or any(h not in attacks for h in chosen):
        raise ValueError(f"held_out must name attacks among {names}, got {held_out!r}")
    sizes = _sizes(sizes, "sizes", _count_or_fraction)
    fillers = _sizes(fillers, "fillers", lambda x, n: x)
    seeds = _sizes(seeds, "seeds", seed_arg)
    test_seeds = _sizes(test_seeds, "test_seeds", seed_arg)
    n_targets = positive_int(n_targets, "n_targets")
    split_seed = seed_arg(split_seed, "split_seed")

    if test_users is None:
        train_part = test_part = train
    else:
        if isinstance(test_users, (bool, np.bool_)) or not isinstance(test_users, Real) \
                or not 0.0 < float(test_users) < 1.0:
            raise ValueError(f"test_users must be a fraction in (0, 1) or None, got {test_users!r}")
        perm = np.random.default_rng(split_seed).permutation(train.n_users)
        n_test = int(round(float(test_users) * train.n_users))
        if not 0 < n_test < train.n_users:
            raise ValueError(f"test_users: {test_users} of {train.n_users} users leaves a part empty")
        in_test = np.zeros(train.n_users, dtype=bool)
        in_test[perm[:n_test]] = True
        train_part, test_part = _user_part(train, ~in_test), _user_part(train, in_test)
        if np.intersect1d(train_part.user_ids, test_part.user_ids).size:  # the split's promise
            raise AssertionError("leave_one_type_out: test real users appear in the training part")

    records: List[Dict[str, Any]] = []
    for h in chosen:
        h_idx = names.index(h)
        others = [n for n in names if n != h]
        logs: List[Interactions] = []
        trained_on: List[str] = []
        for o in others:
            o_idx = names.index(o)
            for si, size in enumerate(sizes):
                for fi, filler in enumerate(fillers):
                    for seed in seeds:
                        log, _ = _poison(train_part, attacks[o], seed=seed, size=size, filler=filler,
                                         n_targets=n_targets, key=(o_idx, si, fi, 0))
                        logs.append(log)
                        trained_on.append(o)
        if h in trained_on:  # the protocol's promise, checked
            raise AssertionError(f"leave_one_type_out: held-out attack {h!r} among the training logs")
        seen: Set[Tuple[bytes, bytes]] = set()
        for log in logs:
            seen |= _fake_profiles(log)
        detector = detector_factory()
        detector.fit(logs)
        for si, size in enumerate(sizes):
            for fi, filler in enumerate(fillers):
                for seed in test_seeds:
                    log, targets = _poison(test_part, attacks[h], seed=seed, size=size, filler=filler,
                                           n_targets=n_targets, key=(h_idx, si, fi, 1))
                    if _fake_profiles(log) & seen:
                        raise ValueError(f"attacks: {h!r} builds fake profiles identical to those of "
                                         f"the training types {others} (size={size}, filler={filler}); "
                                         "the held-out type cannot be told apart from them")
                    scores = detector.score(log)
                    metrics = detection_metrics(scores, fake_users(log), detector.default_threshold(scores))
                    records.append({"held_out": h, "trained_on": tuple(others), "size": size,
                                    "filler": filler, "seed": seed, "targets": targets.tolist(),
                                    **metrics})
    return records

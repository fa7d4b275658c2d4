"""Hand-crafted shilling attacks: fake user profiles built from a fixed template.

Sources: Lam & Riedl, "Shilling recommender systems for fun and profit" (WWW 2004: random and
average attacks); Mobasher, Burke, Bhaumik & Williams, "Toward trustworthy recommender systems:
an analysis of attack models and algorithm robustness" (ACM TOIT 7(4), 2007: bandwagon, segment,
love/hate, reverse bandwagon). Every profile has the tutorial's four parts:

- I_S, selected items: chosen by the attack from the data, the same for every fake user;
- I_F, filler items: drawn uniformly at random per fake user among the items that are neither
  selected nor targets;
- I_∅, every other item: left unrated;
- I_T, the targets: rated r_max to push them, r_min to nuke them.

The budget is ``n_fake`` profiles (an int, or a fraction alpha of the real users: floor(alpha*n))
of at most ``max_ratings`` ratings each (the filler shrinks to fit). An attack returns the fake
users' rows only; ``advrec.data.inject(train, fake)`` appends them to the real log::

    fake = AverageAttack(targets=[50], n_fake=47, filler=0.05, seed=0)(train)
    poisoned = inject(train, fake)

See ``docs/poisoning.md`` for each template and how implicit logs are handled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from .._checks import int_arg, positive_int, seed_arg
from ..data.interactions import Interactions
from ..data.poison import fake_user_ids, fake_users

__all__ = ["GOALS", "ShillingAttack", "RandomAttack", "AverageAttack", "BandwagonAttack",
           "SegmentAttack", "LoveHateAttack", "ReverseBandwagonAttack"]

GOALS = ("push", "nuke")
CountOrFraction = Union[int, float]
RatingScale = tuple[float, float, float]

_DRAW_ELEMENTS = 1 << 22  # random keys per chunk of filler draws (32 MiB of float64)


@dataclass(frozen=True)
class _Stats:
    """What the templates read off the real log (ratings are None on implicit data)."""

    scale: Optional[RatingScale]
    mean: float
    std: float
    item_count: np.ndarray
    item_mean: np.ndarray
    item_std: np.ndarray


class ShillingAttack:
    """A profile template. ``attack(train)``, or calling the object, returns the fake users'
    rows only, as an ``Interactions`` over ``train``'s catalogue whose users ``train.n_users``
    onwards are the fake ones (raw ids marked fake, see ``advrec.data.fake_users``).

    Subclasses choose the selected items and the filler ratings; the base class draws the filler
    items, rates targets and checks the budget, so every template obeys the same rules.
    """

    goals: tuple[str, ...] = GOALS  # the first is the default
    needs_ratings = False  # refused on implicit logs

    def __init__(self, *, targets: Union[int, Sequence[int], np.ndarray], n_fake: CountOrFraction,
                 filler: CountOrFraction = 0.05, goal: Optional[str] = None,
                 max_ratings: Optional[int] = None, rating_scale: Optional[Sequence[float]] = None,
                 seed: int = 0) -> None:
        self.targets = _item_list(targets, "targets")
        self.n_fake = _count_or_fraction(n_fake, "n_fake", minimum=1)
        self.filler = _count_or_fraction(filler, "filler", minimum=0)
        goal = self.goals[0] if goal is None else goal
        if goal not in self.goals:
            raise ValueError(f"goal must be one of {self.goals} for {type(self).__name__}, got {goal!r}")
        self.goal = goal
        self.max_ratings = None if max_ratings is None else positive_int(max_ratings, "max_ratings")
        self.rating_scale = None if rating_scale is None else _check_scale(rating_scale)
        self.seed = seed_arg(seed)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v.tolist() if isinstance(v, np.ndarray) else v!r}"
                         for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __call__(self, train: Interactions) -> Interactions:
        return self.attack(train)

    def selected_items(self, train: Interactions) -> np.ndarray:
        """I_S: the items every fake profile rates besides filler and targets (sorted)."""
        stats = self._stats(train)
        return np.sort(self._select(train, stats, self._targets_in(train)))

    def attack(self, train: Interactions) -> Interactions:
        """The fake profiles for ``train``: rows of the fake users only, sorted by user then item."""
        stats = self._stats(train)
        targets = self._targets_in(train)
        selected = self._select(train, stats, targets)
        n_fake = self._fake_count(train)
        pool = np.setdiff1d(np.arange(train.n_items), np.concatenate([selected, targets]))
        n_filler = self._filler_count(train.n_items, len(pool), len(selected) + len(targets))
        rng = np.random.default_rng(self.seed)
        filler = _draw_filler(pool, n_fake, n_filler, rng)
        items = np.hstack([np.broadcast_to(selected, (n_fake, len(selected))), filler,
                           np.broadcast_to(targets, (n_fake, len(targets)))])
        order = np.argsort(items, axis=1, kind="stable")
        items = np.take_along_axis(items, order, axis=1)
        rating = None
        if train.rating is not None:
            rating = self._ratings(stats, selected, filler, targets, rng)
            rating = np.take_along_axis(rating, order, axis=1).ravel()
        # fakes act after the last real row, all at once (inject refuses a timestamp mismatch)
        timestamp = None if train.timestamp is None else np.full(items.size, train.timestamp.max() + 1)
        user = np.repeat(np.arange(train.n_users, train.n_users + n_fake), items.shape[1])
        return Interactions(user, items.ravel(), rating, timestamp, train.n_users + n_fake,
                            train.n_items, np.concatenate([train.user_ids, fake_user_ids(train, n_fake)]),
                            train.item_ids)

    # ------------------------------------------------------------------ what subclasses choose

    def _select(self, train: Interactions, stats: _Stats, targets: np.ndarray) -> np.ndarray:
        """I_S as item indices (none by default)."""
        return np.empty(0, dtype=np.int64)

    def _selected_rating(self, scale: RatingScale) -> float:
        return scale[1]

    def _filler_ratings(self, stats: _Stats, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unrounded filler ratings; by default N(global mean, global std) (the random attack)."""
        return rng.normal(stats.mean, stats.std, size=filler.shape)

    # -------------------------------------------------------------------------------- shared

    def _ratings(self, stats: _Stats, selected: np.ndarray, filler: np.ndarray,
                 targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = stats.scale
        assert scale is not None
        n_fake = filler.shape[0]
        if scale[0] == scale[1]:  # one rating value (e.g. implicit() ones): every row gets it
            return np.full((n_fake, len(selected) + filler.shape[1] + len(targets)), scale[0],
                           dtype=np.float32)
        target = scale[1] if self.goal == "push" else scale[0]
        return np.hstack([np.full((n_fake, len(selected)), self._selected_rating(scale)),
                          _on_scale(self._filler_ratings(stats, filler, rng), scale),
                          np.full((n_fake, len(targets)), target)]).astype(np.float32)

    def _stats(self, train: Interactions) -> _Stats:
        if len(train) == 0:
            raise ValueError("train: the log has no rows to build profiles from")
        count = train.item_counts().astype(np.float64)
        if train.rating is None and self.rating_scale is not None:
            raise ValueError("rating_scale: train has no ratings (implicit log)")
        scale = None if train.rating is None else (self.rating_scale or _infer_scale(train.rating))
        if scale is None or scale[0] == scale[1]:
            self._check_implicit()
            nan = np.full(train.n_items, np.nan)
            return _Stats(scale, np.nan, np.nan, count, nan, nan)
        r = train.rating.astype(np.float64)
        mean, std = float(r.mean()), float(r.std())
        seen = count > 0
        total = np.bincount(train.item, weights=r, minlength=train.n_items)
        square = np.bincount(train.item, weights=r * r, minlength=train.n_items)
        item_mean = np.where(seen, total / np.maximum(count, 1), mean)  # unrated: global stats
        item_var = np.where(seen, square / np.maximum(count, 1) - item_mean ** 2, std ** 2)
        return _Stats(scale, mean, std, count, item_mean, np.sqrt(np.maximum(item_var, 0.0)))

    def _check_implicit(self) -> None:
        """On implicit logs every interaction is a positive: only ratings-free pushes make sense."""
        if self.needs_ratings or "push" not in self.goals:
            raise ValueError(f"train: {type(self).__name__} needs explicit ratings (it reads item "
                             "ratings or nukes with low ones); on implicit logs use RandomAttack, "
                             "BandwagonAttack or SegmentAttack")
        if self.goal == "nuke":
            raise ValueError("goal: 'nuke' needs explicit ratings (a fake interaction in an "
                             "implicit log can only push an item); use goal='push'")

    def _targets_in(self, train: Interactions) -> np.ndarray:
        return _in_catalogue(self.targets, "targets", train.n_items)

    def _fake_count(self, train: Interactions) -> int:
        if isinstance(self.n_fake, int):
            return self.n_fake
        n_real = int(train.n_users - fake_users(train).sum())
        n = _floor(self.n_fake * n_real)
        if n < 1:
            raise ValueError(f"n_fake: {self.n_fake} of {n_real} real users is no fake user")
        return n

    def _filler_count(self, n_items: int, n_pool: int, n_fixed: int) -> int:
        n = self.filler if isinstance(self.filler, int) else _floor(self.filler * n_items)
        if n > n_pool:
            raise ValueError(f"filler: {n} filler items asked for, but only {n_pool} items are "
                             "neither selected nor targets")
        if self.max_ratings is not None:
            if n_fixed > self.max_ratings:
                raise ValueError(f"max_ratings: {self.max_ratings} is below the {n_fixed} selected "
                                 "and target items every profile rates")
            n = min(n, self.max_ratings - n_fixed)
        return n


class RandomAttack(ShillingAttack):
    """Random attack (Lam & Riedl 2004): filler rated N(global mean, global std), no selected
    items. Needs only the log's overall rating statistics: the low-knowledge baseline."""


class AverageAttack(ShillingAttack):
    """Average attack (Lam & Riedl 2004): filler item i rated N(mean_i, std_i), its own mean and
    spread in the real log (the global ones for items nobody rated). Needs per-item knowledge;
    fakes then look like average users, which makes them near neighbours of many real users."""

    needs_ratings = True

    def _filler_ratings(self, stats: _Stats, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(stats.item_mean[filler], stats.item_std[filler])


class BandwagonAttack(ShillingAttack):
    """Bandwagon attack (Mobasher et al. 2007), push: I_S = the ``n_selected`` most popular
    items (most rows; ties to the lower index; targets excluded) rated r_max, filler as in the
    random attack. Popular items make the fakes similar to many real users at little cost."""

    goals = ("push",)

    def __init__(self, *, n_selected: int = 10, **common: Any) -> None:
        super().__init__(**common)
        self.n_selected = positive_int(n_selected, "n_selected")

    def _select(self, train: Interactions, stats: _Stats, targets: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.arange(train.n_items), -stats.item_count))
        return _first(order[~np.isin(order, targets)], self.n_selected, "n_selected",
                      "items besides the targets")


class SegmentAttack(ShillingAttack):
    """Segment attack (Mobasher et al. 2007), push: I_S = a given segment of items (those the
    targeted users like, e.g. a genre) rated r_max, filler rated r_min, so the fakes look like the
    segment's fans and the target rises for them in particular."""

    goals = ("push",)

    def __init__(self, *, segment: Union[Sequence[int], np.ndarray], **common: Any) -> None:
        super().__init__(**common)
        self.segment = _item_list(segment, "segment")
        if np.isin(self.segment, self.targets).any():
            raise ValueError(f"segment: items {np.intersect1d(self.segment, self.targets).tolist()} "
                             "are also targets")

    def _select(self, train: Interactions, stats: _Stats, targets: np.ndarray) -> np.ndarray:
        return _in_catalogue(self.segment, "segment", train.n_items)

    def _filler_ratings(self, stats: _Stats, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert stats.scale is not None
        return np.full(filler.shape, stats.scale[0])


class LoveHateAttack(ShillingAttack):
    """Love/hate attack (Mobasher et al. 2007), nuke: filler rated r_max, targets r_min, no
    selected items. Needs no knowledge of the log beyond its rating scale."""

    goals = ("nuke",)

    def _filler_ratings(self, stats: _Stats, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert stats.scale is not None
        return np.full(filler.shape, stats.scale[1])


class ReverseBandwagonAttack(ShillingAttack):
    """Reverse bandwagon attack (Mobasher et al. 2007), nuke: I_S = the ``n_selected`` least
    liked items (lowest mean rating among items with at least ``min_count`` ratings; ties to the
    lower index; targets excluded) rated r_min, filler as in the random attack, targets r_min."""

    goals = ("nuke",)
    needs_ratings = True

    def __init__(self, *, n_selected: int = 10, min_count: int = 10, **common: Any) -> None:
        super().__init__(**common)
        self.n_selected = positive_int(n_selected, "n_selected")
        self.min_count = positive_int(min_count, "min_count")

    def _select(self, train: Interactions, stats: _Stats, targets: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.arange(train.n_items), stats.item_mean))
        keep = (stats.item_count[order] >= self.min_count) & ~np.isin(order, targets)
        return _first(order[keep], self.n_selected, "n_selected",
                      f"non-target items with at least min_count={self.min_count} ratings")

    def _selected_rating(self, scale: RatingScale) -> float:
        return scale[0]


# ------------------------------------------------------------------------------------ helpers


def _draw_filler(pool: np.ndarray, n_fake: int, n_filler: int, rng: np.random.Generator) -> np.ndarray:
    """[n_fake, n_filler] items, each row a uniform draw without replacement from ``pool``:
    the n_filler smallest of one uniform key per pool item (chunked to bound memory)."""
    out = np.empty((n_fake, n_filler), dtype=np.int64)
    if n_filler == 0:
        return out
    rows = max(1, _DRAW_ELEMENTS // len(pool))
    for lo in range(0, n_fake, rows):
        keys = rng.random((min(rows, n_fake - lo), len(pool)))
        out[lo:lo + len(keys)] = pool[np.argpartition(keys, n_filler - 1, axis=1)[:, :n_filler]]
    return out


def _on_scale(x: np.ndarray, scale: RatingScale) -> np.ndarray:
    """Round to the scale's step (from r_min) and clip to [r_min, r_max]; step 0: clip only."""
    r_min, r_max, step = scale
    if step > 0:
        x = r_min + np.round((x - r_min) / step) * step
    return np.clip(x, r_min, r_max)


def _infer_scale(rating: np.ndarray) -> RatingScale:
    """(min, max, step) of the ratings: step 1 when all are integers, else the smallest gap when
    every rating sits on that grid (0.5 for half stars), else 0 (continuous: no rounding)."""
    lo, hi = float(rating.min()), float(rating.max())
    if np.array_equal(rating, np.round(rating)):
        return lo, hi, 1.0
    values = np.unique(rating.astype(np.float64))
    if len(values) == 1:
        return lo, hi, 0.0
    step = float(np.diff(values).min())
    grid = (values - lo) / step
    return lo, hi, step if np.allclose(grid, np.round(grid), rtol=0, atol=1e-6) else 0.0


def _check_scale(scale: Sequence[float]) -> RatingScale:
    try:
        r_min, r_max, step = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ValueError(f"rating_scale must be (r_min, r_max, step), got {scale!r}") from None
    if not all(np.isfinite([r_min, r_max, step])) or r_min > r_max or step < 0:
        raise ValueError(f"rating_scale must be finite with r_min <= r_max and step >= 0, got {scale!r}")
    if step > 0 and abs((r_max - r_min) / step - round((r_max - r_min) / step)) > 1e-6:
        raise ValueError(f"rating_scale: step {step} does not divide r_max - r_min = {r_max - r_min}")
    return r_min, r_max, step


def _count_or_fraction(x: Any, name: str, minimum: int) -> CountOrFraction:
    """An int count >= minimum, or a float fraction in (0, 1) (resolved against the data later)."""
    if isinstance(x, (float, np.floating)):
        if not 0 < x < 1:
            raise ValueError(f"{name} must be an int count or a fraction in (0, 1), got {x!r}")
        return float(x)
    return int_arg(x, name, minimum)


def _floor(x: float) -> int:
    return int(np.floor(x + 1e-9))  # 0.29 * 100 is 28.999999999999996: still 29


def _item_list(x: Any, name: str) -> np.ndarray:
    """A non-empty list of distinct item indices (one int is a list of one)."""
    arr = np.atleast_1d(np.asarray(x))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of item indices, got {x!r}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{name}: item indices must be >= 0, got {int(arr.min())}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name}: duplicated items {_repeated(arr).tolist()}")
    return arr.astype(np.int64)


def _repeated(arr: np.ndarray) -> np.ndarray:
    values, counts = np.unique(arr, return_counts=True)
    return values[counts > 1]


def _in_catalogue(items: np.ndarray, name: str, n_items: int) -> np.ndarray:
    if items.max() >= n_items:
        raise ValueError(f"{name}: item {int(items.max())} is outside the catalogue "
                         f"(n_items={n_items})")
    return items


def _first(candidates: np.ndarray, n: int, name: str, what: str) -> np.ndarray:
    if len(candidates) < n:
        raise ValueError(f"{name}: {n} asked for, but there are only {len(candidates)} {what}")
    return candidates[:n]

"""A synthetic interaction log of any size with a controllable popularity skew, for scale runs.

Real logs are long-tailed: a few items take most interactions and a few users are very active.
``synthetic`` draws (user, item) pairs with item probabilities proportional to rank^-skew and user
probabilities proportional to rank^-user_skew (Zipf laws; skew 0 is uniform), keeps each pair once,
and gives every user at least ``min_per_user`` items so that leave-one-out and ratio splits have
something to hold out. Ranks are shuffled into the ids, so popular items are not the low ids.
With ``rated=1`` each pair also gets a 1-5 star rating from a latent-factor score (user and item
biases, 8 factors, noise) cut at the quantiles that give ML-100K's star shares, for the
experiments whose victims predict ratings. Same arguments, same log.
"""
from __future__ import annotations

import numpy as np

from .interactions import Dataset, Interactions

__all__ = ["synthetic", "SYNTHETIC_DEFAULTS"]

#: ML-100K's shape: what ``load("synthetic")`` builds without options
SYNTHETIC_DEFAULTS = {"users": 943, "items": 1682, "interactions": 100_000, "skew": 1.0,
                      "user_skew": 0.5, "min_per_user": 5, "rated": 0, "seed": 0}
#: ML-100K's share of 1, 2, 3, 4 and 5 stars
ML100K_STAR_SHARES = (0.0611, 0.1137, 0.2715, 0.3417, 0.2120)
_MAX_DENSITY = 0.5   # beyond this, drawing distinct pairs at random stops being the way to build it


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"synthetic: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _exponent(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not np.isfinite(value) or not 0 <= value <= 10:
        raise ValueError(f"synthetic: {name} must be a number in [0, 10], got {value!r}")
    return float(value)


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities rank^-exponent, assigned to ids in a random order."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    p /= p.sum()
    return p[rng.permutation(n)]


def _draw(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` ids drawn from ``p`` (inverse CDF: fast for any n)."""
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(p) - 1)


def synthetic(users: int = 943, items: int = 1682, interactions: int = 100_000, skew: float = 1.0,
              user_skew: float = 0.5, min_per_user: int = 5, rated: int = 0, seed: int = 0) -> Dataset:
    """A log of exactly ``interactions`` distinct (user, item) pairs over ``users`` x ``items``.

    skew: item popularity exponent (0 uniform; ~1 is typical of MovieLens, larger is more
    concentrated); user_skew: the same for user activity. Every user has at least
    ``min_per_user`` items. Ratings are 1 (implicit feedback), or stars with ``rated=1``;
    timestamps are the draw order.
    """
    users, items = _count("users", users, 1), _count("items", items, 1)
    interactions = _count("interactions", interactions, 1)
    min_per_user = _count("min_per_user", min_per_user, 0)
    skew, user_skew = _exponent("skew", skew), _exponent("user_skew", user_skew)
    seed = _count("seed", seed, 0)
    if isinstance(rated, bool) or rated not in (0, 1):
        raise ValueError(f"synthetic: rated must be 0 (implicit) or 1 (1-5 stars), got {rated!r}")
    if min_per_user > items:
        raise ValueError(f"synthetic: min_per_user={min_per_user} exceeds items={items}")
    if interactions > _MAX_DENSITY * users * items:
        raise ValueError(f"synthetic: interactions={interactions:,} is over {_MAX_DENSITY:.0%} of "
                         f"users x items = {users * items:,}; use more users or items")
    if users * min_per_user > interactions:
        raise ValueError(f"synthetic: users x min_per_user = {users * min_per_user:,} exceeds "
                         f"interactions={interactions:,}")
    rng = np.random.default_rng(seed)
    p_item, p_user = _zipf(items, skew, rng), _zipf(users, user_skew, rng)
    # the floor first: min_per_user draws per user, then pairs from both laws until enough
    keys = np.unique(np.repeat(np.arange(users, dtype=np.int64), min_per_user) * items
                     + _draw(p_item, users * min_per_user, rng))
    floor = np.bincount(keys // items, minlength=users)
    for _ in range(64):
        short = np.flatnonzero(floor < min_per_user)
        if not len(short):
            break
        extra = np.repeat(short, min_per_user - floor[short]) * items
        keys = np.union1d(keys, extra + _draw(p_item, len(extra), rng))
        floor = np.bincount(keys // items, minlength=users)
    else:   # a very skewed law keeps hitting the same items: take the rest uniformly
        for u in np.flatnonzero(floor < min_per_user):
            have = keys[(keys // items) == u] % items
            free = np.setdiff1d(np.arange(items), have)
            keys = np.union1d(keys, u * items + rng.choice(free, min_per_user - len(have), replace=False))
    order = [keys]
    have, rounds, yield_ = len(keys), 0, 1.0
    uniform_u, uniform_i = np.full(users, 1 / users), np.full(items, 1 / items)
    while have < interactions:
        want = int(min((interactions - have) / max(yield_, 0.02), 5e7) * 1.1) + 16
        rounds += 1      # a very skewed law near the density cap finds few new pairs: go uniform
        pu, pi = (p_user, p_item) if rounds <= 64 else (uniform_u, uniform_i)
        new = _draw(pu, want, rng).astype(np.int64) * items + _draw(pi, want, rng)
        new = np.setdiff1d(np.unique(new), np.concatenate(order), assume_unique=True)
        yield_ = max(len(new), 1) / want      # the share of draws that were new pairs
        if len(new) > interactions - have:
            new = rng.choice(new, interactions - have, replace=False)
        order.append(rng.permutation(new))
        have += len(new)
    pairs = np.concatenate(order)
    user, item = pairs // items, pairs % items
    rating = _stars(user, item, users, items, rng) if rated else np.ones(len(pairs), dtype=np.float32)
    inter = Interactions(user, item, rating,
                         np.arange(len(pairs), dtype=np.int64), users, items,
                         np.arange(users, dtype=np.int64), np.arange(items, dtype=np.int64))
    spec = (f"users={users},items={items},interactions={interactions},skew={skew:g},"
            f"user_skew={user_skew:g},min_per_user={min_per_user},rated={rated},seed={seed}")
    return Dataset("synthetic", inter, source=f"advrec.data.synthetic({spec})",
                   origin=f"advrec synthetic generator ({spec})")


def _stars(user: np.ndarray, item: np.ndarray, users: int, items: int, rng: np.random.Generator
           ) -> np.ndarray:
    """1-5 stars: a latent-factor score per pair, cut at the quantiles of ML-100K's star shares."""
    b_u, b_i = rng.normal(0, 0.5, users), rng.normal(0, 0.5, items)
    p_u, q_i = rng.normal(0, 0.35, (users, 8)), rng.normal(0, 0.35, (items, 8))
    score = b_u[user] + b_i[item] + np.einsum("nk,nk->n", p_u[user], q_i[item]) \
        + rng.normal(0, 0.5, len(user))
    cuts = np.quantile(score, np.cumsum(ML100K_STAR_SHARES)[:-1])
    return (1 + np.searchsorted(cuts, score, side="right")).astype(np.float32)

"""Shilling attacks and injection (issue 16) on the real ML-100K and on small synthetic logs.

Every profile is checked against its template: how many selected, filler and target items it
has, which ones, and how they are rated. Rating distributions are compared with the exact law of
a rounded, clipped normal (computed from the normal CDF), with tolerances of five standard errors.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import advrec.attacks as attacks
import advrec.data as data
from advrec.attacks.shilling import (AverageAttack, BandwagonAttack, LoveHateAttack, RandomAttack,
                                     ReverseBandwagonAttack, SegmentAttack, ShillingAttack)
from advrec.data import Interactions, fake_user_ids, fake_users, inject

TARGETS = [49, 180]  # 49 is ML-100K's most rated item (Star Wars): Bandwagon must skip it
SEGMENT = [0, 1, 2, 3, 4]
LEVELS = np.arange(1.0, 6.0)


@pytest.fixture(scope="module")
def ml() -> Interactions:
    return data.load("ml-100k").interactions


@pytest.fixture(scope="module")
def ml_unrated(ml) -> Interactions:
    """ML-100K as an implicit log without ratings."""
    return Interactions(ml.user, ml.item, None, ml.timestamp, ml.n_users, ml.n_items,
                        ml.user_ids, ml.item_ids)


def make(cls, **kw) -> ShillingAttack:
    """An attack of class cls with test defaults (its own extra arguments added)."""
    kw = {"targets": TARGETS, "n_fake": 50, "filler": 0.05, "seed": 0, **kw}
    if cls is SegmentAttack:
        kw.setdefault("segment", SEGMENT)
    return cls(**kw)


ALL = [RandomAttack, AverageAttack, BandwagonAttack, SegmentAttack, LoveHateAttack,
       ReverseBandwagonAttack]


def parts(fake: Interactions, n_real: int, selected, targets) -> tuple[np.ndarray, ...]:
    """Rows per fake user that are selected, filler and target items."""
    u = fake.user - n_real
    n_fake = fake.n_users - n_real
    is_s, is_t = np.isin(fake.item, selected), np.isin(fake.item, targets)
    per = lambda m: np.bincount(u[m], minlength=n_fake)  # noqa: E731
    return per(is_s), per(~is_s & ~is_t), per(is_t)


def rounded_normal(mu, sd, levels=LEVELS) -> np.ndarray:
    """P(Y = level) for Y = N(mu, sd) rounded to the nearest level (levels evenly spaced, the
    ends taking the tails: rounding then clipping); sd 0 is a point mass."""
    mu, sd = np.atleast_1d(mu)[:, None], np.atleast_1d(sd)[:, None]
    edges = (levels[:-1] + levels[1:]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (edges - mu) / np.where(sd > 0, sd, 1), np.where(edges > mu, np.inf, -np.inf))
    cdf = np.hstack([np.zeros((len(mu), 1)), norm.cdf(z), np.ones((len(mu), 1))])
    return np.diff(cdf, axis=1)


def item_stats(inter: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean, population std) per item, by a plain loop (the reference)."""
    count, mean, std = (np.zeros(inter.n_items) for _ in range(3))
    order = np.argsort(inter.item, kind="stable")
    for i, rows in enumerate(np.split(order, np.cumsum(inter.item_counts())[:-1])):
        if len(rows):
            r = inter.rating[rows].astype(np.float64)
            count[i], mean[i], std[i] = len(r), r.mean(), r.std()
    return count, mean, std


# ------------------------------------------------------------------------- profile layouts


@pytest.mark.parametrize("cls", ALL)
def test_every_profile_has_the_template_layout(ml, cls):
    """Selected and targets once in every profile, exactly floor(filler * n_items) filler items,
    no item twice: so the filler never holds a target or a selected item."""
    attack = make(cls)
    before = (ml.user.copy(), ml.item.copy(), ml.rating.copy())
    fake = attack(ml)
    selected = attack.selected_items(ml)
    n_s, n_f, n_t = parts(fake, ml.n_users, selected, TARGETS)
    assert fake.n_users == ml.n_users + 50 and fake.n_items == ml.n_items
    assert fake.user.min() >= ml.n_users and np.all(fake.user_counts()[ml.n_users:] > 0)
    assert np.all(n_s == len(selected)) and np.all(n_t == len(TARGETS))
    assert np.all(n_f == int(0.05 * ml.n_items))  # 84
    assert len(np.unique(fake.user * ml.n_items + fake.item)) == len(fake)
    assert not np.isin(selected, TARGETS).any()
    assert np.array_equal(fake.user_ids[:ml.n_users], ml.user_ids)
    assert np.array_equal(fake.user_ids[ml.n_users:], -np.arange(1, 51))
    assert np.all(fake.timestamp == ml.timestamp.max() + 1)
    assert set(np.unique(fake.rating)) <= set(LEVELS)  # on the scale, integer
    assert all(np.array_equal(a, b) for a, b in zip(before, (ml.user, ml.item, ml.rating)))


@pytest.mark.parametrize("cls,selected_at,filler_at,target_at", [
    (BandwagonAttack, 5, None, 5), (SegmentAttack, 5, 1, 5), (LoveHateAttack, None, 5, 1),
    (ReverseBandwagonAttack, 1, None, 1), (RandomAttack, None, None, 5), (AverageAttack, None, None, 5)])
def test_fixed_ratings_follow_the_template(ml, cls, selected_at, filler_at, target_at):
    attack = make(cls)
    fake = attack(ml)
    selected = attack.selected_items(ml)
    is_s, is_t = np.isin(fake.item, selected), np.isin(fake.item, TARGETS)
    assert np.all(fake.rating[is_t] == target_at)
    assert (len(selected) == 0) == (selected_at is None)
    assert np.all(fake.rating[is_s] == selected_at)
    filler = fake.rating[~is_s & ~is_t]
    if filler_at is not None:
        assert np.all(filler == filler_at)
    else:  # drawn: several levels appear
        assert len(np.unique(filler)) >= 3


@pytest.mark.parametrize("cls", [RandomAttack, AverageAttack])
def test_nuke_rates_targets_r_min(ml, cls):
    fake = make(cls, goal="nuke")(ml)
    assert np.all(fake.rating[np.isin(fake.item, TARGETS)] == 1)


def test_bandwagon_selects_the_most_rated_items_but_the_targets(ml):
    count = ml.item_counts()
    ranked = sorted(range(ml.n_items), key=lambda i: (-count[i], i))
    want = [i for i in ranked if i not in TARGETS][:7]
    assert ranked[0] == 49
    got = make(BandwagonAttack, n_selected=7).selected_items(ml)
    assert got.tolist() == sorted(want)


def test_reverse_bandwagon_selects_the_least_liked_items_with_enough_ratings(ml):
    count, mean, _ = item_stats(ml)
    eligible = [i for i in range(ml.n_items) if count[i] >= 30 and i not in TARGETS]
    want = sorted(eligible, key=lambda i: (mean[i], i))[:6]
    attack = make(ReverseBandwagonAttack, n_selected=6, min_count=30)
    assert attack.selected_items(ml).tolist() == sorted(want)
    assert np.all(count[want] >= 30)


def test_segment_attack_rates_its_segment_and_never_fills_with_it(ml):
    fake = make(SegmentAttack, segment=[10, 20, 30])(ml)
    n_s, n_f, n_t = parts(fake, ml.n_users, [10, 20, 30], TARGETS)
    assert np.all(n_s == 3) and np.all(n_f == 84) and np.all(n_t == 2)
    assert np.all(fake.rating[np.isin(fake.item, [10, 20, 30])] == 5)


# ----------------------------------------------------------------------------- the budget


def test_fractions_resolve_against_real_users_and_items(ml):
    fake = make(RandomAttack, n_fake=0.05, filler=0.02)(ml)
    assert fake.n_users - ml.n_users == 47  # floor(0.05 * 943)
    assert np.all(fake.user_counts()[ml.n_users:] == 33 + 2)  # floor(0.02 * 1682) + targets


def test_max_ratings_caps_each_profile_by_shrinking_the_filler(ml):
    fake = make(BandwagonAttack, n_selected=5, max_ratings=20)(ml)
    sel = make(BandwagonAttack, n_selected=5).selected_items(ml)
    n_s, n_f, n_t = parts(fake, ml.n_users, sel, TARGETS)
    assert np.all(n_s == 5) and np.all(n_f == 13) and np.all(n_t == 2)
    roomy = make(BandwagonAttack, n_selected=5, max_ratings=1000)(ml)
    assert np.all(roomy.user_counts()[ml.n_users:] == 5 + 84 + 2)


def test_filler_items_are_uniform_over_the_rest_of_the_catalogue(ml):
    """Each allowed item is filler in Binomial(n_fake, f / pool) profiles; others never."""
    attack = make(BandwagonAttack, n_fake=2000, n_selected=5)
    fake = attack(ml)
    excluded = np.concatenate([attack.selected_items(ml), TARGETS])
    filler = ~np.isin(fake.item, excluded)
    hits = np.bincount(fake.item[filler], minlength=ml.n_items)
    pool = np.setdiff1d(np.arange(ml.n_items), excluded)
    p = 84 / len(pool)
    z = (hits[pool] - 2000 * p) / np.sqrt(2000 * p * (1 - p))
    assert np.all(hits[excluded] == 0)
    assert np.abs(z).max() < 5.5 and abs(z.mean()) < 5 / np.sqrt(len(pool)) and 0.9 < z.std() < 1.1


# ---------------------------------------------------------------------- rating distributions


def test_average_filler_follows_each_items_mean_and_spread(ml):
    """Filler item i is rated round(N(mean_i, std_i)) clipped to 1..5: the per-item mean of the
    fakes' ratings is that law's mean within five standard errors, and the standardised errors
    over all items are N(0, 1)-like (the rounding shifts a mean, the test knows by how much)."""
    fake = make(AverageAttack, n_fake=1000, filler=0.5, targets=[0])(ml)
    count, mean, std = item_stats(ml)
    probs = rounded_normal(mean, std)
    e = probs @ LEVELS
    var, mu4 = ((probs * (LEVELS - e[:, None]) ** k).sum(axis=1) for k in (2, 4))
    filler = fake.item != 0
    item, r = fake.item[filler], fake.rating[filler].astype(np.float64)
    n = np.bincount(item, minlength=ml.n_items)[1:]
    emp = np.bincount(item, weights=r, minlength=ml.n_items)[1:] / n
    emp_var = (np.bincount(item, weights=r * r, minlength=ml.n_items)[1:] / n - emp ** 2) * n / (n - 1)
    e, var, mu4 = e[1:], var[1:], mu4[1:]
    assert n.min() > 400  # ~500 draws per item
    se = np.sqrt(var / n)
    assert np.all(np.abs(emp - e) <= 5 * se + 1e-9)
    spread = se > 0
    z = (emp - e)[spread] / se[spread]
    assert abs(z.mean()) < 5 / np.sqrt(len(z)) and 0.9 < z.std() < 1.1
    z_var = (emp_var - var)[spread] / np.sqrt((mu4 - var ** 2)[spread] / n[spread])
    assert abs(z_var.mean()) < 5 / np.sqrt(len(z_var))  # each item's spread, not just its mean
    assert np.corrcoef(emp, mean[1:])[0, 1] > 0.95


@pytest.mark.parametrize("cls", [RandomAttack, BandwagonAttack, ReverseBandwagonAttack])
def test_random_filler_follows_the_global_mean_and_spread(ml, cls):
    """Pooled filler ratings: mean and variance of round(N(global mean, global std)) clipped,
    within five standard errors (the variance's from the law's fourth central moment)."""
    attack = make(cls, n_fake=1000, filler=0.1)
    fake = attack(ml)
    r = fake.rating[~np.isin(fake.item, np.concatenate([attack.selected_items(ml), TARGETS]))]
    r = r.astype(np.float64)
    p = rounded_normal(ml.rating.mean(dtype=np.float64), ml.rating.std(dtype=np.float64))[0]
    e = p @ LEVELS
    var = p @ (LEVELS - e) ** 2
    mu4 = p @ (LEVELS - e) ** 4
    assert len(r) == 1000 * 168
    assert abs(r.mean() - e) < 5 * np.sqrt(var / len(r))
    assert abs(r.var() - var) < 5 * np.sqrt((mu4 - var ** 2) / len(r))


def test_unrated_items_get_the_global_statistics_and_half_stars_stay_on_their_grid():
    """Average attack on a half-star log whose item 3 nobody rated."""
    rng = np.random.default_rng(1)
    n = 400
    log = Interactions(rng.integers(0, 40, n), rng.integers(0, 3, n), rng.integers(1, 11, n) / 2,
                       None, 40, 4, np.arange(40), np.arange(4))
    fake = AverageAttack(targets=[0], n_fake=4000, filler=2, seed=3)(log)
    assert np.all(fake.user_counts()[40:] == 3)
    assert np.all(np.isin(fake.rating, np.arange(1, 11) / 2))
    r = fake.rating[fake.item == 3].astype(np.float64)
    half = np.arange(1, 11) / 2
    p = rounded_normal(log.rating.mean(dtype=np.float64), log.rating.std(dtype=np.float64), half)[0]
    e = p @ half
    var, mu4 = p @ (half - e) ** 2, p @ (half - e) ** 4
    assert len(r) > 2000 and abs(r.mean() - e) < 5 * np.sqrt(var / len(r))
    assert abs(r.var() - var) < 5 * np.sqrt((mu4 - var ** 2) / len(r))


def test_an_explicit_rating_scale_is_used(ml):
    fake = make(LoveHateAttack, rating_scale=(0, 10, 2))(ml)
    assert set(np.unique(fake.rating)) == {0.0, 10.0}
    fake = make(RandomAttack, rating_scale=(1, 5, 0.5))(ml)
    assert np.all(np.isin(fake.rating, np.arange(2, 11) / 2))
    assert not np.all(fake.rating == np.round(fake.rating))


# ------------------------------------------------------------------------------- implicit


@pytest.mark.parametrize("cls", [RandomAttack, BandwagonAttack, SegmentAttack])
def test_push_attacks_on_implicit_logs_are_item_sets(ml, ml_unrated, cls):
    fake = make(cls)(ml_unrated)
    assert fake.rating is None
    assert np.array_equal(fake.item, make(cls)(ml).item)  # same draws, ratings dropped
    ones = make(cls)(data.implicit(ml, _quiet=True))
    assert np.all(ones.rating == 1) and np.array_equal(ones.item, fake.item)
    poisoned = inject(ml_unrated, fake)
    assert poisoned.rating is None and fake_users(poisoned).sum() == 50


@pytest.mark.parametrize("cls,kw,name", [
    (AverageAttack, {}, "train"), (LoveHateAttack, {}, "train"), (ReverseBandwagonAttack, {}, "train"),
    (RandomAttack, {"goal": "nuke"}, "goal"), (AverageAttack, {"goal": "nuke"}, "train"),
    (RandomAttack, {"rating_scale": (1, 5, 1)}, "rating_scale")])
def test_implicit_logs_refuse_what_needs_ratings(ml, ml_unrated, cls, kw, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        make(cls, **kw)(ml_unrated)
    if name != "rating_scale":
        with pytest.raises(ValueError, match=rf"^{name}\b"):
            make(cls, **kw)(data.implicit(ml, _quiet=True))


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_same_profiles_other_seed_other_profiles(ml, cls):
    a, b, c = make(cls)(ml), make(cls)(ml), make(cls, seed=1)(ml)
    assert np.array_equal(a.user, b.user) and np.array_equal(a.item, b.item)
    assert np.array_equal(a.rating, b.rating)
    assert not (np.array_equal(a.item, c.item) and np.array_equal(a.rating, c.rating))


# ------------------------------------------------------------------------------- injection


def test_inject_appends_fakes_and_keeps_every_real_row(ml):
    fake = make(AverageAttack)(ml)
    poisoned = inject(ml, fake)
    n = len(ml)
    for a, b in ((poisoned.user, ml.user), (poisoned.item, ml.item), (poisoned.rating, ml.rating),
                 (poisoned.timestamp, ml.timestamp)):
        assert np.array_equal(a[:n], b)
    assert np.array_equal(poisoned.item[n:], fake.item) and np.array_equal(poisoned.rating[n:], fake.rating)
    assert poisoned.n_users == ml.n_users + 50 and poisoned.n_items == ml.n_items
    assert poisoned.user_ids.dtype == ml.user_ids.dtype
    assert np.array_equal(poisoned.item_ids, ml.item_ids)
    mask = fake_users(poisoned)
    assert not mask[:ml.n_users].any() and mask[ml.n_users:].all()
    assert not fake_users(ml).any()


def test_string_ids_and_a_second_injection_continue_the_numbering():
    log = Interactions.from_raw(["ann", "bob", "bob", "cy"], ["x", "y", "z", "x"], [5, 3, 4, 1])
    once = inject(log, RandomAttack(targets=[2], n_fake=2, filler=1)(log))
    assert once.user_ids.tolist() == ["ann", "bob", "cy", "fake:0", "fake:1"]
    twice = inject(once, LoveHateAttack(targets=[0], n_fake=0.5, filler=1)(once))  # half of 3 real
    assert twice.user_ids.tolist()[3:] == ["fake:0", "fake:1", "fake:2"]
    assert fake_users(twice).tolist() == [False] * 3 + [True] * 3
    assert np.array_equal(twice.rating[:4], log.rating) and twice.user_ids.dtype.kind == "U"
    objects = Interactions(log.user, log.item, log.rating, None, 3, 3, log.user_ids.astype(object),
                           log.item_ids)
    assert inject(objects, RandomAttack(targets=[2], n_fake=1, filler=0)(objects)).user_ids[-1] == "fake:0"


def _fake(train: Interactions, n: int = 2, **change) -> Interactions:
    """A hand-made fake log: each fake user rates item 0 (ratings/timestamps as train's)."""
    fields = dict(user=np.arange(train.n_users, train.n_users + n), item=np.zeros(n, np.int64),
                  rating=None if train.rating is None else np.full(n, 5.0),
                  timestamp=None if train.timestamp is None else np.full(n, 99),
                  n_users=train.n_users + n, n_items=train.n_items,
                  user_ids=np.concatenate([train.user_ids, fake_user_ids(train, n)]),
                  item_ids=train.item_ids)
    fields.update(change)
    return Interactions(**fields)


SMALL = Interactions(np.array([0, 1, 1]), np.array([0, 1, 2]), np.array([4.0, 2.0, 5.0]),
                     np.array([10, 11, 12]), 2, 3, np.array([7, 8]), np.array([100, 101, 102]))


@pytest.mark.parametrize("change,name", [
    ({"n_items": 4, "item_ids": np.arange(4)}, "fake"),                        # another catalogue
    ({"item_ids": np.array([100, 101, 999])}, "fake"),                         # same size, other ids
    ({"user": np.array([1, 2])}, "fake"),                                      # collides with user 1
    ({"user_ids": np.array([7, 9, -1, -2])}, "fake"),                          # built on another log
    ({"user_ids": np.array([7, 8, 3, -2])}, "fake.user_ids"),                  # new id not marked fake
    ({"user_ids": np.array([7, 8, -1, -1])}, "fake.user_ids"),                 # repeated fake id
    ({"rating": None}, "fake"), ({"timestamp": None}, "fake")])
def test_inject_refuses_a_fake_log_that_does_not_fit(change, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        inject(SMALL, _fake(SMALL, **change))


def test_inject_refuses_ratings_or_timestamps_the_real_log_lacks():
    bare = Interactions(SMALL.user, SMALL.item, None, None, 2, 3, SMALL.user_ids, SMALL.item_ids)
    assert len(inject(bare, _fake(bare))) == 5
    for change in ({"rating": np.ones(2)}, {"timestamp": np.ones(2, np.int64)}):
        with pytest.raises(ValueError, match=r"^fake\b"):
            inject(bare, _fake(bare, **change))


def test_fake_ids_need_signed_or_string_raw_ids():
    unsigned = Interactions(SMALL.user, SMALL.item, SMALL.rating, None, 2, 3,
                            SMALL.user_ids.astype(np.uint32), SMALL.item_ids)
    with pytest.raises(ValueError, match=r"^train.user_ids\b"):
        RandomAttack(targets=[0], n_fake=1, filler=0)(unsigned)


# ----------------------------------------------------------------------------- bad inputs


BAD = [  # (class, arguments, the argument the message names)
    (RandomAttack, {"targets": [1682]}, "targets"), (RandomAttack, {"targets": [-1]}, "targets"),
    (RandomAttack, {"targets": []}, "targets"), (RandomAttack, {"targets": [3, 3]}, "targets"),
    (RandomAttack, {"targets": [1.0]}, "targets"), (RandomAttack, {"n_fake": 0}, "n_fake"),
    (RandomAttack, {"n_fake": -3}, "n_fake"), (RandomAttack, {"n_fake": 0.001}, "n_fake"),
    (RandomAttack, {"n_fake": 1.5}, "n_fake"), (RandomAttack, {"n_fake": True}, "n_fake"),
    (RandomAttack, {"filler": 1681}, "filler"), (RandomAttack, {"filler": -1}, "filler"),
    (RandomAttack, {"filler": 1.0}, "filler"), (RandomAttack, {"filler": "5%"}, "filler"),
    (BandwagonAttack, {"filler": 1675}, "filler"),
    (RandomAttack, {"goal": "boost"}, "goal"), (LoveHateAttack, {"goal": "push"}, "goal"),
    (BandwagonAttack, {"goal": "nuke"}, "goal"), (SegmentAttack, {"goal": "nuke"}, "goal"),
    (ReverseBandwagonAttack, {"goal": "push"}, "goal"),
    (RandomAttack, {"max_ratings": 0}, "max_ratings"), (RandomAttack, {"max_ratings": 1}, "max_ratings"),
    (RandomAttack, {"rating_scale": (5, 1, 1)}, "rating_scale"),
    (RandomAttack, {"rating_scale": (1, 5, 3)}, "rating_scale"),
    (RandomAttack, {"rating_scale": (1, 5)}, "rating_scale"),
    (RandomAttack, {"rating_scale": (1, float("nan"), 1)}, "rating_scale"),
    (RandomAttack, {"seed": -1}, "seed"),
    (BandwagonAttack, {"n_selected": 0}, "n_selected"), (BandwagonAttack, {"n_selected": 1681}, "n_selected"),
    (ReverseBandwagonAttack, {"min_count": 0}, "min_count"),
    (ReverseBandwagonAttack, {"min_count": 10 ** 6}, "n_selected"),
    (SegmentAttack, {"segment": []}, "segment"), (SegmentAttack, {"segment": [5, 49]}, "segment"),
    (SegmentAttack, {"segment": [5000]}, "segment"),
]


@pytest.mark.parametrize("cls,kw,name", BAD, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD])
def test_bad_arguments_are_named(ml, cls, kw, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        make(cls, **kw)(ml)


def test_an_empty_log_is_refused(ml):
    with pytest.raises(ValueError, match=r"^train\b"):
        make(RandomAttack)(ml.subset(np.zeros(len(ml), dtype=bool)))


def test_the_attacks_are_exported():
    assert attacks.AverageAttack is AverageAttack and issubclass(attacks.SegmentAttack, attacks.ShillingAttack)
    assert data.inject is inject and data.fake_users is fake_users
    assert "AverageAttack" in repr(make(AverageAttack)) and "targets=[49, 180]" in repr(make(AverageAttack))

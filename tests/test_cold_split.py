"""cold_item_split: cold items never in train/valid, every row accounted for, seeded, reported."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advrec.data import ColdSplit, Interactions, Split, cold_item_split, leave_one_out


def rows(inter):
    """Rows as a multiset of raw tuples (timestamps make duplicates of a pair distinguishable)."""
    if inter is None:
        return Counter()
    t = inter.timestamp if inter.timestamp is not None else np.zeros(len(inter), dtype=np.int64)
    return Counter(zip(inter.user_ids[inter.user].tolist(), inter.item_ids[inter.item].tolist(),
                       t.tolist()))


def random_log(seed=0, n=3000, n_users=150, n_items=300):
    rng = np.random.default_rng(seed)
    # skewed item popularity, as real logs have: popular items are many users' test items
    items = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1)
    return Interactions.from_raw(rng.integers(0, n_users, n), items, timestamps=np.arange(n))


def check(inter, s: ColdSplit, share: float, validation: bool = True):
    """The invariants every cold split must hold, checked from the raw rows."""
    assert isinstance(s, ColdSplit) and isinstance(s, Split)
    assert rows(s.train) + rows(s.valid) + rows(s.test) + rows(s.dropped) == rows(inter)
    for part in (s.train, s.valid, s.test, s.dropped):
        if part is not None:
            assert (part.n_users, part.n_items) == (inter.n_users, inter.n_items)
            assert part.user_ids is inter.user_ids and part.item_ids is inter.item_ids
    assert (s.valid is None) == (not validation)
    assert s.cold_items.dtype == s.cold_users.dtype == np.int64
    assert np.all(np.diff(s.cold_items) > 0) and np.all(np.diff(s.cold_users) > 0)
    # cold items: in test, never in train or valid; every other test item is in train or valid
    seen = set(s.train.item.tolist()) | (set() if s.valid is None else set(s.valid.item.tolist()))
    test_items = set(s.test.item.tolist())
    assert set(s.cold_items.tolist()) == test_items - seen
    # dropped holds train/valid rows of cold items only
    assert set(s.dropped.item.tolist()) <= set(s.cold_items.tolist())
    # one test row per user; cold users are exactly those whose test item is cold
    assert len(np.unique(s.test.user)) == len(s.test)
    cold_rows = np.isin(s.test.item, s.cold_items)
    np.testing.assert_array_equal(s.cold_users, np.sort(s.test.user[cold_rows]))
    assert len(s.cold_users) >= math.ceil(round(share * len(s.test), 9))
    np.testing.assert_array_equal(np.sort(np.r_[s.warm_items, s.cold_items]), np.arange(inter.n_items))


@pytest.mark.parametrize("share", [0.0, 0.1, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("validation", [True, False])
def test_invariants_on_a_skewed_log(share, validation):
    inter = random_log()
    s = cold_item_split(inter, share=share, seed=3, validation=validation)
    check(inter, s, share, validation)
    if share == 1.0:
        assert len(s.cold_users) == len(s.test)
        assert not np.isin(s.train.item, s.test.item).any()


def test_share_zero_is_random_leave_one_out():
    inter = random_log(1)
    for validation in (True, False):
        loo = leave_one_out(inter, order="random", seed=5, validation=validation)
        s = cold_item_split(inter, share=0.0, seed=5, validation=validation)
        assert len(s.dropped) == 0
        for a, b in ((s.train, loo.train), (s.valid, loo.valid), (s.test, loo.test)):
            if a is None:
                assert b is None
                continue
            for f in ("user", "item", "timestamp"):  # same rows in the same (input) order
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        # with share 0 the cold items are the test items with no train/valid row at all
        seen = np.r_[loo.train.item, np.zeros(0, np.int64) if loo.valid is None else loo.valid.item]
        np.testing.assert_array_equal(s.cold_items, np.setdiff1d(loo.test.item, seen))


def test_the_split_is_leave_one_out_with_cold_rows_moved_out():
    # every split is leave_one_out(order="random") with some train/valid rows moved to dropped
    inter = random_log(2)
    loo = leave_one_out(inter, order="random", seed=9)
    s = cold_item_split(inter, share=0.3, seed=9)
    assert rows(s.test) == rows(loo.test)
    assert rows(s.train) + (rows(s.dropped) & rows(loo.train)) == rows(loo.train)
    assert rows(s.valid) + (rows(s.dropped) & rows(loo.valid)) == rows(loo.valid)


def test_known_answer_small():
    # user a: items 1,2,3 ; user b: items 1,4,5 ; user c: 6 (too short: stays in train)
    inter = Interactions.from_raw(list("aaabbbc"), [1, 2, 3, 1, 4, 5, 6],
                                  timestamps=np.arange(7))
    for seed in range(20):
        s = cold_item_split(inter, share=0.5, seed=seed)
        check(inter, s, 0.5)
        # 2 test cases, ceil(0.5 * 2) = 1 drawn
        assert len(s.cold_users) >= 1
        raw_cold = set(inter.item_ids[s.cold_items].tolist())
        kept = set(inter.item_ids[np.r_[s.train.item, s.valid.item]].tolist())
        assert not raw_cold & kept and 6 in kept


def test_cold_because_another_user_drew_it():
    # every user has the same 3 items: the one drawn test item is also other users' test item
    n_users = 30
    users = np.repeat(np.arange(n_users), 3)
    items = np.tile([0, 1, 2], n_users)
    inter = Interactions.from_raw(users, items, timestamps=np.arange(len(users)))
    s = cold_item_split(inter, share=0.01, seed=0)  # one case drawn
    check(inter, s, 0.01)
    assert len(s.cold_items) == 1
    (cold,) = s.cold_items
    # every user whose test item equals the drawn one is cold, not just the drawn user
    assert len(s.cold_users) == int((s.test.item == cold).sum()) > 1
    assert not np.isin(cold, np.r_[s.train.item, s.valid.item])


def test_reports_rows_removed_and_lost_validation(reports):
    users = np.repeat(np.arange(30), 3)
    inter = Interactions.from_raw(users, np.tile([0, 1, 2], 30), timestamps=np.arange(90))
    s = cold_item_split(inter, share=0.01, seed=0)
    msg = [m for m in reports if m.startswith("cold_item_split: 1 of 30 test cases")]
    assert len(msg) == 1
    assert (f"removed {len(s.dropped) - (30 - len(s.valid))} train and {30 - len(s.valid)} valid"
            in msg[0])
    if len(s.valid) < 30:
        assert any(f"{30 - len(s.valid)} users lost their validation row" in m for m in reports)


def test_user_left_without_training_rows_is_reported_and_kept(reports):
    # user a: item 0 twice and nothing else; b: items 0 and 1. Whenever item 0 is cold, a keeps
    # its test row but loses its only training row.
    inter = Interactions.from_raw(["a", "a", "b", "b"], [0, 0, 0, 1], timestamps=[1, 2, 3, 4])
    outcomes = set()
    for seed in range(40):
        reports.clear()
        s = cold_item_split(inter, share=1.0, seed=seed, validation=False)
        check(inter, s, 1.0, validation=False)
        assert len(s.test) == 2  # nobody's test row is removed
        n_bare = 2 - len(np.unique(s.train.user))
        assert n_bare >= 1  # item 0 is a's test item and so cold: a has no training row left
        assert any(f"{n_bare} users have no training interaction left" in m for m in reports)
        outcomes.add(n_bare)
    assert outcomes == {1, 2}  # b keeps a training row (item 1) exactly when its test item is 0


def test_same_seed_same_split_different_seed_differs():
    inter = random_log(4)
    a = cold_item_split(inter, share=0.2, seed=1)
    b = cold_item_split(inter, share=0.2, seed=1)
    c = cold_item_split(inter, share=0.2, seed=2)
    for f in ("train", "valid", "test", "dropped"):
        assert rows(getattr(a, f)) == rows(getattr(b, f))
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    np.testing.assert_array_equal(a.cold_users, b.cold_users)
    assert rows(a.test) != rows(c.test) or not np.array_equal(a.cold_items, c.cold_items)


def test_cold_draw_is_not_the_shuffle_stream():
    # the same seed with a different share changes only which cases are cold, never the test rows
    inter = random_log(5)
    a, b = cold_item_split(inter, 0.1, seed=3), cold_item_split(inter, 0.6, seed=3)
    assert rows(a.test) == rows(b.test)
    assert len(b.cold_users) > len(a.cold_users)
    check(inter, a, 0.1)
    check(inter, b, 0.6)


def test_repr_fields_and_immutability():
    inter = random_log(6)
    s = cold_item_split(inter, 0.2, seed=0)
    r = repr(s)
    assert r.startswith("ColdSplit(train=") and f"dropped={len(s.dropped)}" in r
    assert f"cold_items={len(s.cold_items)}" in r and f"cold_users={len(s.cold_users)}" in r
    with pytest.raises(ValueError):
        s.cold_items[0] = 5
    with pytest.raises(AttributeError):
        s.dropped = s.train
    assert "valid=None" in repr(cold_item_split(inter, 0.2, validation=False))


def test_empty_and_single_row_logs():
    empty = Interactions.from_raw(np.zeros(0, np.int64), np.zeros(0, np.int64))
    s = cold_item_split(empty, 0.5)
    assert len(s.train) == len(s.test) == len(s.dropped) == len(s.cold_items) == 0
    one = Interactions.from_raw([7], [3])
    s = cold_item_split(one, 1.0)  # too short for a test row: stays in train, nothing cold
    assert len(s.train) == 1 and len(s.cold_items) == 0 and len(s.dropped) == 0


@pytest.mark.parametrize("kw, arg", [
    (dict(share=-0.1), "share"), (dict(share=1.5), "share"), (dict(share=float("nan")), "share"),
    (dict(share="0.2"), "share"), (dict(share=True), "share"), (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"), (dict(seed=True), "seed"), (dict(validation="yes"), "validation"),
])
def test_bad_arguments(kw, arg):
    with pytest.raises(ValueError, match=arg):
        cold_item_split(random_log(), **kw)
    with pytest.raises(ValueError, match="inter"):
        cold_item_split([(0, 1)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 8)), min_size=0, max_size=60),
       st.sampled_from([0.0, 0.2, 0.5, 1.0]), st.booleans(), st.integers(0, 5))
def test_partition_holds_on_any_log(pairs, share, validation, seed):
    u = [p[0] for p in pairs]
    i = [p[1] for p in pairs]
    inter = Interactions.from_raw(np.array(u, dtype=np.int64), np.array(i, dtype=np.int64),
                                  timestamps=np.arange(len(pairs)))
    check(inter, cold_item_split(inter, share, seed=seed, validation=validation), share,
          validation)

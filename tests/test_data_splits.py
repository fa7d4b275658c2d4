"""leave_one_out and ratio_split: known answers, ties, reproducibility, no row lost."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advrec.data import Interactions, leave_one_out, ratio_split


def rows(inter):
    """Rows as a multiset of raw tuples."""
    if inter is None:
        return Counter()
    r = inter.rating if inter.rating is not None else np.zeros(len(inter))
    t = inter.timestamp if inter.timestamp is not None else np.zeros(len(inter), dtype=np.int64)
    return Counter(zip(inter.user_ids[inter.user].tolist(), inter.item_ids[inter.item].tolist(),
                       r.tolist(), t.tolist()))


def assert_partition(inter, split):
    assert rows(split.train) + rows(split.valid) + rows(split.test) == rows(inter)
    for part in (split.train, split.valid, split.test):
        if part is not None:
            assert (part.n_users, part.n_items) == (inter.n_users, inter.n_items)
            assert part.user_ids is inter.user_ids


def tiny():
    # user 1: times 5, 1, 9, 9 (tie: row 3 is later in input than row 2) -> test row 3, valid 2
    # user 2: two rows -> too few for validation: all train
    # user 3: times 7, 3, 4 -> test t=7 (item 31), valid t=4 (item 33)
    return Interactions.from_raw(
        users=[1, 1, 1, 1, 2, 2, 3, 3, 3],
        items=[10, 11, 12, 13, 20, 21, 31, 32, 33],
        ratings=[1, 2, 3, 4, 5, 1, 2, 3, 4],
        timestamps=[5, 1, 9, 9, 2, 3, 7, 3, 4])


def items_of(part):
    return sorted(part.item_ids[part.item].tolist())


def test_leave_one_out_time_with_ties(reports):
    inter = tiny()
    s = leave_one_out(inter)
    assert items_of(s.test) == [13, 31]
    assert items_of(s.valid) == [12, 33]
    assert items_of(s.train) == [10, 11, 20, 21, 32]
    assert_partition(inter, s)
    assert any("1 users have fewer than 3" in m for m in reports)


def test_leave_one_out_without_validation():
    inter = tiny()
    s = leave_one_out(inter, validation=False)
    assert s.valid is None
    assert items_of(s.test) == [13, 21, 31]
    assert_partition(inter, s)


def test_leave_one_out_rows_keep_input_order():
    s = leave_one_out(tiny())
    assert s.train.timestamp.tolist() == [5, 1, 2, 3, 3]


def test_leave_one_out_random_reproducible():
    rng = np.random.default_rng(1)
    inter = Interactions.from_raw(rng.integers(0, 30, 600), rng.integers(0, 200, 600),
                                  timestamps=rng.integers(0, 10, 600))
    a = leave_one_out(inter, order="random", seed=3)
    b = leave_one_out(inter, order="random", seed=3)
    c = leave_one_out(inter, order="random", seed=4)
    assert rows(a.test) == rows(b.test) and rows(a.valid) == rows(b.valid)
    assert rows(a.test) != rows(c.test)
    assert_partition(inter, a)
    assert len(a.test) == len(np.unique(a.test.user)) == inter.n_users


def test_leave_one_out_argument_errors():
    with pytest.raises(ValueError, match="order"):
        leave_one_out(tiny(), order="newest")
    with pytest.raises(ValueError, match="timestamps"):
        leave_one_out(Interactions.from_raw([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="validation"):
        leave_one_out(tiny(), validation="yes")


def test_ratio_split_per_user_by_time():
    # one user, 10 rows with times 0..9 in shuffled input order
    times = [3, 9, 0, 5, 1, 8, 2, 7, 4, 6]
    inter = Interactions.from_raw([1] * 10, list(range(10)), timestamps=times)
    s = ratio_split(inter, (0.8, 0.1, 0.1))
    assert sorted(s.train.timestamp.tolist()) == list(range(8))
    assert s.valid.timestamp.tolist() == [8] and s.test.timestamp.tolist() == [9]
    s2 = ratio_split(inter, (0.7, 0.3))
    assert s2.valid is None and sorted(s2.test.timestamp.tolist()) == [7, 8, 9]
    assert_partition(inter, s)


def test_ratio_split_global_by_time():
    inter = Interactions.from_raw([1, 2, 1, 2, 3], [1, 2, 3, 4, 5], timestamps=[50, 40, 30, 20, 10])
    s = ratio_split(inter, (0.6, 0.2, 0.2), by="global")
    assert s.train.timestamp.tolist() == [30, 20, 10]
    assert s.valid.timestamp.tolist() == [40] and s.test.timestamp.tolist() == [50]


def test_ratio_split_small_users_reported(reports):
    inter = Interactions.from_raw([1, 1, 2], [1, 2, 3], timestamps=[1, 2, 3])
    s = ratio_split(inter, (0.8, 0.2))
    assert len(s.test) == 0 and len(s.train) == 3
    assert any("2 users have too few rows" in m for m in reports)


def test_ratio_split_random_reproducible():
    rng = np.random.default_rng(2)
    inter = Interactions.from_raw(rng.integers(0, 20, 500), rng.integers(0, 100, 500))
    for by in ("user", "global"):
        a = ratio_split(inter, order="random", by=by, seed=7)
        b = ratio_split(inter, order="random", by=by, seed=7)
        c = ratio_split(inter, order="random", by=by, seed=8)
        assert rows(a.test) == rows(b.test) and rows(a.train) == rows(b.train)
        assert rows(a.test) != rows(c.test)
        assert_partition(inter, a)
    g = ratio_split(inter, order="random", by="global", seed=0)
    assert (len(g.train), len(g.valid), len(g.test)) == (400, 50, 50)


@pytest.mark.parametrize("kw, arg", [
    (dict(ratios=(0.8, 0.3)), "ratios"), (dict(ratios=(1.0,)), "ratios"),
    (dict(ratios=(0.5, 0.5, 0.0)), "ratios"), (dict(ratios=(0.7, 0.2, 0.2, -0.1)), "ratios"),
    (dict(ratios="ab"), "ratios"), (dict(order="popular"), "order"), (dict(by="item"), "by"),
])
def test_ratio_split_argument_errors(kw, arg):
    with pytest.raises(ValueError, match=arg):
        ratio_split(tiny(), **kw)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7), st.integers(0, 4)),
                min_size=1, max_size=50),
       st.sampled_from(["time", "random"]), st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.5)]),
       st.sampled_from(["user", "global"]), st.booleans(), st.integers(0, 3))
def test_splits_partition_every_row(data, order, ratios, by, validation, seed):
    u, i, t = (list(c) for c in zip(*data))
    inter = Interactions.from_raw(u, i, timestamps=t)
    assert_partition(inter, ratio_split(inter, ratios, order=order, by=by, seed=seed))
    loo = leave_one_out(inter, order=order, validation=validation, seed=seed)
    assert_partition(inter, loo)
    assert len(loo.test) <= inter.n_users

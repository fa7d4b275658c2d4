"""binarize / implicit / k_core / remap / deduplicate, and what they report."""
from __future__ import annotations


import numpy as np
import pytest

from advrec.data import Interactions, binarize, deduplicate, implicit, k_core, remap


def rated():
    return Interactions.from_raw([1, 1, 2, 2, 3], [10, 20, 10, 30, 30],
                                 ratings=[5, 2, 4, 3, 1], timestamps=[1, 2, 3, 4, 5])


def test_binarize(reports):
    out = binarize(rated(), 4)
    assert len(out) == 2 and out.rating.tolist() == [1, 1]
    assert out.user_ids[out.user].tolist() == [1, 2]
    assert (out.n_users, out.n_items) == (3, 3)  # same id space
    assert any("removed 3 of 5 rows" in m for m in reports)
    with pytest.raises(ValueError, match="rating"):
        binarize(Interactions.from_raw([1], [2]), 1)


def test_implicit(reports):
    out = implicit(rated())
    assert len(out) == 5 and out.rating.tolist() == [1] * 5 and out.rating.dtype == np.float32
    assert out.timestamp.tolist() == [1, 2, 3, 4, 5]
    assert implicit(Interactions.from_raw([1], [2])).rating.tolist() == [1]


def test_k_core_iterates_until_stable(reports):
    # pass 1 drops item 'c' (1 row) and user 4 (1 row); user 3 is then left with 1 row: pass 2
    users = [1, 1, 1, 2, 2, 2, 3, 3, 4]
    items = ["a", "b", "x", "a", "b", "x", "b", "c", "x"]
    out = k_core(Interactions.from_raw(users, items), user_k=2, item_k=2)
    pairs = sorted(zip(out.user_ids[out.user].tolist(), out.item_ids[out.item].tolist()))
    assert pairs == [(1, "a"), (1, "b"), (1, "x"), (2, "a"), (2, "b"), (2, "x")]
    assert (out.n_users, out.n_items) == (2, 3)  # remapped
    assert any("removed 3 of 9 rows, 2 of 4 users, 1 of 4 items" in m for m in reports)
    same_space = k_core(Interactions.from_raw(users, items), 2, 2, remap_ids=False)
    assert (same_space.n_users, same_space.n_items) == (4, 4)
    with pytest.raises(ValueError, match="user_k"):
        k_core(rated(), -1, 1)


def test_k_core_result_satisfies_k():
    rng = np.random.default_rng(0)
    inter = Interactions.from_raw(rng.integers(0, 50, 2000), rng.integers(0, 80, 2000))
    out = k_core(inter, 5, 10)
    assert out.user_counts().min() >= 5 and out.item_counts().min() >= 10


def test_remap(reports):
    inter = rated().subset([0, 4])  # users 1 and 3, items 10 and 30
    out = remap(inter)
    assert (out.n_users, out.n_items) == (2, 2)
    assert out.user_ids.tolist() == [1, 3] and out.item_ids.tolist() == [10, 30]
    assert out.user.tolist() == [0, 1] and out.item.tolist() == [0, 1]
    assert out.rating.tolist() == [5, 1]
    assert any("dropped 1 users and 1 items" in m for m in reports)


def test_deduplicate_by_time_then_row(reports):
    inter = Interactions.from_raw([1, 1, 1, 2, 1], [5, 5, 6, 5, 5], ratings=[1, 2, 3, 4, 5],
                                  timestamps=[30, 10, 0, 0, 30])
    last = deduplicate(inter)           # (1,5): t=30 rows 0 and 4 tie -> later row 4
    assert last.rating.tolist() == [3, 4, 5]
    first = deduplicate(inter, keep="first")  # (1,5): earliest t=10 -> row 1
    assert first.rating.tolist() == [2, 3, 4]
    assert any("removed 2 of 5 rows" in m for m in reports)
    no_time = Interactions.from_raw([1, 1, 1], [5, 5, 6], ratings=[1, 2, 3])
    assert deduplicate(no_time).rating.tolist() == [2, 3]
    with pytest.raises(ValueError, match="keep"):
        deduplicate(inter, keep="middle")

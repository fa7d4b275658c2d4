"""Interactions container: validation, raw-id mapping, subsets, CSR and counts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advrec.data import Interactions, exclusion_csr


def make(user, item, n_users=None, n_items=None, **kw):
    user, item = np.asarray(user), np.asarray(item)
    nu = int(user.max()) + 1 if n_users is None else n_users
    ni = int(item.max()) + 1 if n_items is None else n_items
    return Interactions(user, item, kw.get("rating"), kw.get("timestamp"), nu, ni,
                        np.arange(nu) + 100, np.arange(ni) + 1000)


def test_construct_coerces_dtypes():
    inter = make(np.array([0, 1], dtype=np.int32), np.array([1, 0], dtype=np.uint8),
                 rating=np.array([1, 5]), timestamp=np.array([3, 4], dtype=np.int32))
    assert inter.user.dtype == inter.item.dtype == inter.timestamp.dtype == np.int64
    assert inter.rating.dtype == np.float32
    assert len(inter) == 2
    assert "n=2" in repr(inter)


@pytest.mark.parametrize("kwargs, field", [
    (dict(user=[0, 2], item=[0, 0]), "user"),              # index >= n_users
    (dict(user=[0, -1], item=[0, 0]), "user"),
    (dict(user=[0, 1], item=[0, 5]), "item"),
    (dict(user=[0, 1], item=[0]), "item"),                  # length mismatch
    (dict(user=[0.0, 1.0], item=[0, 0]), "user"),           # float ids
    (dict(user=[[0, 1]], item=[0, 0]), "user"),             # 2-D
    (dict(user=[0, 1], item=[0, 0], rating=[1.0]), "rating"),
    (dict(user=[0, 1], item=[0, 0], rating=[1.0, np.nan]), "rating"),
    (dict(user=[0, 1], item=[0, 0], timestamp=[1.5, 2.0]), "timestamp"),
    (dict(user=[0, 1], item=[0, 0], user_ids=np.arange(3)), "user_ids"),
    (dict(user=[0, 1], item=[0, 0], n_items=-1), "n_items"),
])
def test_validation_names_the_field(kwargs, field):
    base = dict(user=[0, 1], item=[0, 0], rating=None, timestamp=None, n_users=2, n_items=1,
                user_ids=np.arange(2), item_ids=np.arange(1))
    base.update(kwargs)
    with pytest.raises(ValueError, match=rf"Interactions\.{field}"):
        Interactions(**{k: np.asarray(v) if isinstance(v, list) else v for k, v in base.items()})


def test_from_raw_sorted_raw_id_order():
    inter = Interactions.from_raw([30, 10, 30, 20], ["b", "a", "c", "a"], ratings=[1, 2, 3, 4],
                                  timestamps=[5, 6, 7, 8])
    assert list(inter.user_ids) == [10, 20, 30]
    assert list(inter.item_ids) == ["a", "b", "c"]
    assert list(inter.user) == [2, 0, 2, 1]
    assert list(inter.item) == [1, 0, 2, 0]
    assert inter.rating.tolist() == [1, 2, 3, 4]
    assert inter.timestamp.tolist() == [5, 6, 7, 8]


def test_from_raw_length_mismatch():
    with pytest.raises(ValueError, match="ratings"):
        Interactions.from_raw([1, 2], [1, 2], ratings=[1.0])


def test_subset_keeps_id_space():
    inter = make([0, 1, 2, 2], [0, 1, 1, 2], rating=np.arange(4.0), timestamp=np.arange(4))
    sub = inter.subset(np.array([False, True, False, True]))
    assert (sub.n_users, sub.n_items) == (3, 3)
    assert sub.user_ids is inter.user_ids
    assert sub.user.tolist() == [1, 2] and sub.rating.tolist() == [1, 3]
    assert inter.subset([3, 0]).timestamp.tolist() == [3, 0]
    assert len(inter.subset(np.array([], dtype=np.int64))) == 0
    with pytest.raises(ValueError, match="mask"):
        inter.subset(np.array([True, False]))


def test_to_csr_sorted_and_deduplicated():
    inter = make([2, 0, 0, 2, 0], [1, 3, 1, 1, 0], n_users=4, n_items=4)
    indptr, indices = inter.to_csr()
    assert indptr.dtype == indices.dtype == np.int64
    assert indptr.tolist() == [0, 3, 3, 4, 4]
    assert indices.tolist() == [0, 1, 3, 1]


def test_counts():
    inter = make([0, 0, 1, 1, 1], [0, 0, 0, 2, 2], n_items=4)
    assert inter.item_counts().tolist() == [3, 0, 2, 0]
    assert inter.user_counts().tolist() == [2, 3]
    assert inter.item_counts().dtype == np.int64


def test_exclusion_csr_merges_parts():
    inter = make([0, 0, 1, 1], [0, 1, 1, 2])
    a, b = inter.subset([0, 2]), inter.subset([1, 2, 3])
    indptr, indices = exclusion_csr(a, b)
    assert indptr.tolist() == [0, 2, 4] and indices.tolist() == [0, 1, 1, 2]
    other = make([0, 1], [0, 1], n_items=5)
    with pytest.raises(ValueError, match="id space"):
        exclusion_csr(a, other)
    with pytest.raises(ValueError):
        exclusion_csr()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), min_size=0, max_size=60))
def test_to_csr_matches_set_of_pairs(pairs):
    user = np.array([p[0] for p in pairs], dtype=np.int64)
    item = np.array([p[1] for p in pairs], dtype=np.int64)
    inter = Interactions(user, item, None, None, 7, 10, np.arange(7), np.arange(10))
    indptr, indices = inter.to_csr()
    got = {(u, int(i)) for u in range(7) for i in indices[indptr[u]:indptr[u + 1]]}
    assert got == set(pairs)
    for u in range(7):
        row = indices[indptr[u]:indptr[u + 1]]
        assert np.all(np.diff(row) > 0)

"""advrec.kernels.serve (csrc/serve/serve_topk) against a plain NumPy reference.

The reference is a stable argsort of each row's non-excluded scores, padded with -1 / -inf.
Integer-valued scores force ties (they must go to the lower item, across blocks too); the
blocks are merged in random widths so the running lists carry across block edges.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from advrec import kernels as K


def ref_topk(scores, k, excl_sets):
    b, n = scores.shape
    idx = np.full((b, k), -1, np.int64)
    val = np.full((b, k), -np.inf, np.float32)
    for r in range(b):
        keep = np.ones(n, bool)
        keep[list(excl_sets[r])] = False
        cand = np.flatnonzero(keep)
        order = cand[np.argsort(-scores[r, cand], kind="stable")][:k]
        idx[r, :len(order)] = order
        val[r, :len(order)] = scores[r, order]
    return idx, val


def random_exclusion(rng, n_users, n_items, density):
    """Unsorted rows with duplicates, as a caller may pass them; the sets they mean."""
    rows, sets = [], []
    for _ in range(n_users):
        m = rng.binomial(n_items, density) if n_items else 0
        items = rng.integers(0, n_items, m) if n_items else np.empty(0, np.int64)
        if m and rng.random() < 0.5:
            items = np.concatenate([items, items[:2]])  # duplicates
        rows.append(items)
        sets.append(set(items.tolist()))
    if n_users and rng.random() < 0.3:  # a user with every item excluded
        rows[0] = np.arange(n_items)
        sets[0] = set(range(n_items))
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return (indptr, indices), sets


def merge_blocks(scores, k, users, ex, widths, threads=1):
    n, m = scores.shape
    best_i = np.full((n, k), -1, np.int64)
    best_v = np.full((n, k), -np.inf, np.float32)
    c0 = 0
    for w in widths:
        blk = np.ascontiguousarray(scores[:, c0:c0 + w])
        K.serve_topk_merge(blk, c0, m, k, best_i, best_v, users, ex, threads)
        c0 += w
    return best_i, best_v


def random_widths(rng, m):
    widths, left = [], m
    while left > 0:
        w = int(min(left, rng.choice([1, 7, 64, 200, 1000])))
        widths.append(w)
        left -= w
    return widths


@pytest.mark.parametrize("seed", range(40))
def test_merge_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n_users = int(rng.integers(0, 12))
    m = int(rng.choice([1, 5, 63, 64, 130, 700, 3000]))
    k = int(rng.choice([1, 3, 10, m, m + 5]))
    ties = rng.random() < 0.5
    s = (rng.integers(-3, 4, (n_users, m)) if ties else rng.standard_normal((n_users, m))).astype(np.float32)
    ex, sets = random_exclusion(rng, n_users, m, rng.choice([0.0, 0.01, 0.3]))
    ex = K.exclusion_csr(ex, n_users, m)
    users = np.arange(n_users, dtype=np.int64)
    widths = [m] if rng.random() < 0.3 else random_widths(rng, m)
    i, v = merge_blocks(s, k, users, ex, widths, threads=int(rng.integers(1, 3)))
    ri, rv = ref_topk(s, k, sets)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(v, rv)
    # no exclusion
    i, v = merge_blocks(s, k, None, None, widths)
    ri, rv = ref_topk(s, k, [set()] * n_users)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(v, rv)


def test_merge_reads_the_exclusion_row_of_each_user():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((4, 300)).astype(np.float32)
    ex_sets = [set(rng.integers(0, 300, 50).tolist()) for _ in range(9)]
    indptr = np.zeros(10, np.int64)
    np.cumsum([len(x) for x in ex_sets], out=indptr[1:])
    ex = K.exclusion_csr((indptr, np.concatenate([sorted(x) for x in ex_sets])), 9, 300)
    users = np.array([8, 0, 3, 3])
    i, v = merge_blocks(s, 12, users, ex, [100, 200])
    ri, rv = ref_topk(s, 12, [ex_sets[u] for u in users])
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(v, rv)


def test_exclusion_csr_forms_and_errors():
    indptr, indices = np.array([0, 3, 3, 5]), np.array([4, 1, 4, 0, 2])
    p, x = K.exclusion_csr((indptr, indices), 3, 5)
    np.testing.assert_array_equal(p, [0, 2, 2, 4])
    np.testing.assert_array_equal(x, [1, 4, 0, 2])
    m = sp.csr_matrix((np.ones(5), indices, indptr), shape=(3, 5))
    p2, x2 = K.exclusion_csr(m, 3, 5)
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(x2, x)
    with pytest.raises(IndexError, match="exclude indices"):
        K.exclusion_csr((indptr, np.array([4, 1, 5, 0, 2])), 3, 5)
    with pytest.raises(IndexError, match="exclude indices"):
        K.exclusion_csr((indptr, np.array([4, -1, 3, 0, 2])), 3, 5)
    with pytest.raises(ValueError, match="one row per user"):
        K.exclusion_csr((indptr, indices), 4, 5)
    with pytest.raises(ValueError, match="shape"):
        K.exclusion_csr(m, 3, 6)
    with pytest.raises(ValueError, match="non-decreasing"):
        K.exclusion_csr((np.array([0, 3, 2, 5]), indices), 3, 5)
    with pytest.raises(TypeError, match="exclude"):
        K.exclusion_csr("train", 3, 5)


def test_merge_refuses_bad_arguments():
    s = np.zeros((2, 8), np.float32)
    bi, bv = np.full((2, 3), -1, np.int64), np.full((2, 3), -np.inf, np.float32)
    u = np.array([0, 1])
    unsorted = (np.array([0, 2, 2]), np.array([3, 1]))
    with pytest.raises(ValueError, match="sorted ascending without duplicates"):
        K.serve_topk_merge(s, 0, 8, 3, bi, bv, u, unsorted)
    dup = (np.array([0, 2, 2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="sorted ascending without duplicates"):
        K.serve_topk_merge(s, 0, 8, 3, bi, bv, u, dup)
    with pytest.raises(IndexError, match="exclude indices"):
        K.serve_topk_merge(s, 0, 8, 3, bi, bv, u, (np.array([0, 1, 1]), np.array([8])))
    with pytest.raises(IndexError, match="users"):
        K.serve_topk_merge(s, 0, 8, 3, bi, bv, np.array([0, 2]), (np.array([0, 0, 0]), np.array([], np.int64)))
    with pytest.raises(ValueError, match="k must be"):
        K.serve_topk_merge(s, 0, 8, 0, bi[:, :0], bv[:, :0])
    with pytest.raises(ValueError, match="must lie in"):
        K.serve_topk_merge(s, 4, 8, 3, bi, bv)
    with pytest.raises(ValueError, match="shape"):
        K.serve_topk_merge(s, 0, 8, 2, bi, bv)
    with pytest.raises(ValueError, match="float32"):
        K.serve_topk_merge(s.astype(np.float64), 0, 8, 3, bi, bv)
    nan = s.copy()
    nan[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        K.serve_topk_merge(nan, 0, 8, 3, bi, bv)
    # a NaN that is excluded takes no part
    K.serve_topk_merge(nan, 0, 8, 3, bi, bv, u, (np.array([0, 0, 1]), np.array([5])))


@pytest.mark.parametrize("seed", range(12))
def test_topk_dot_blocked_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n_users, m, d = int(rng.integers(1, 300)), int(rng.integers(1, 900)), int(rng.integers(1, 9))
    k = int(rng.choice([1, 5, 20, m + 3]))
    # integer-valued factors: exact products, so ties are real and the reference is exact
    P = torch.from_numpy(rng.integers(-2, 3, (n_users, d)).astype(np.float32))
    Q = torch.from_numpy(rng.integers(-2, 3, (m, d)).astype(np.float32))
    bias = torch.from_numpy(rng.integers(-1, 2, m).astype(np.float32)) if rng.random() < 0.5 else None
    ex, sets = random_exclusion(rng, n_users, m, 0.05)
    ex = K.exclusion_csr(ex, n_users, m)
    users = rng.integers(0, n_users, int(rng.integers(0, 50)))
    i, v = K.topk_dot_blocked(P, Q, k, users=users, exclude=ex, item_bias=bias,
                              threads=int(rng.integers(1, 3)), user_block=int(rng.choice([1, 7, 64])),
                              item_block=int(rng.choice([16, 100, 4096])))
    s = (P @ Q.T).numpy()[users]
    if bias is not None:
        s = s + bias.numpy()
    ri, rv = ref_topk(s, k, [sets[u] for u in users])
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(v, rv)


def test_topk_dot_blocked_errors_and_progress():
    P, Q = torch.zeros(3, 2), torch.zeros(4, 2)
    with pytest.raises(IndexError, match="users"):
        K.topk_dot_blocked(P, Q, 2, users=[3])
    with pytest.raises(ValueError, match="k must be"):
        K.topk_dot_blocked(P, Q, 0)
    with pytest.raises(ValueError, match="float32"):
        K.topk_dot_blocked(P.double(), Q, 2)
    with pytest.raises(ValueError, match="columns"):
        K.topk_dot_blocked(P, torch.zeros(4, 3), 2)
    with pytest.raises(ValueError, match="one row per user"):
        K.topk_dot_blocked(P, Q, 2, exclude=K.exclusion_csr((np.zeros(3, np.int64), np.empty(0, np.int64)), 2, 4))
    seen = []
    K.topk_dot_blocked(P, Q, 2, user_block=1, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    i, v = K.topk_dot_blocked(P, Q, 2, users=np.empty(0, np.int64))
    assert i.shape == (0, 2) and v.shape == (0, 2)

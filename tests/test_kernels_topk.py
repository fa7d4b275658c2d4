"""advrec.kernels (CPU core) against plain NumPy references.

The references are deliberately naive (a stable argsort of the masked row, brute-force counts)
so that they are obviously right; the kernels must match them exactly, ties and padding
included. Integer-valued scores force ties; integer-valued factors keep topk_dot exact.
"""
from __future__ import annotations

import zlib
from typing import Optional, Tuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advrec import kernels as K
from kernel_cases import CSR, make_csr, random_exclusion, random_scores


# ----------------------------------------------------------------------------- references

def csr_row(csr: Optional[CSR], r: int) -> np.ndarray:
    if csr is None:
        return np.empty(0, np.int64)
    indptr, indices = csr
    return indices[indptr[r]:indptr[r + 1]]


def ref_topk(scores: np.ndarray, k: int, exclude: Optional[CSR] = None,
             rows: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Stable argsort of -scores over the non-excluded items of each row, padded with -1/-inf."""
    s = np.asarray(scores, dtype=np.float32)
    b, n = s.shape
    idx = np.full((b, k), -1, np.int64)
    val = np.full((b, k), -np.inf, np.float32)
    for r in range(b):
        er = r if rows is None else int(rows[r])
        keep = np.ones(n, bool)
        keep[csr_row(exclude, er)] = False
        cand = np.flatnonzero(keep)
        order = cand[np.argsort(-s[r, cand], kind="stable")][:k]
        idx[r, :order.size] = order
        val[r, :order.size] = s[r, order]
    return idx, val


def ref_rank(scores: np.ndarray, targets: CSR, exclude: Optional[CSR] = None,
             rows: Optional[np.ndarray] = None):
    """Brute force: per target, candidate negatives strictly above and tied; negatives per row."""
    s = np.asarray(scores, dtype=np.float32)
    b, n = s.shape
    greater, equal = [], []
    n_neg = np.zeros(b, np.int64)
    for r in range(b):
        er = r if rows is None else int(rows[r])
        tg = csr_row(targets, r)
        neg = np.ones(n, bool)
        neg[csr_row(exclude, er)] = False
        neg[tg] = False
        n_neg[r] = neg.sum()
        for t in tg:
            greater.append(int(np.sum(s[r, neg] > s[r, t])))
            equal.append(int(np.sum(s[r, neg] == s[r, t])))
    return np.array(greater, np.int64), np.array(equal, np.int64), n_neg


def assert_topk_equal(got, want, dtype=np.float32) -> None:
    """``dtype``: of the values, float64 for float64 scores (selected without rounding)."""
    gi, gv = got
    wi, wv = want
    assert gi.dtype == np.int64 and gv.dtype == dtype
    assert gi.shape == wi.shape and gv.shape == wv.shape
    np.testing.assert_array_equal(gi, wi)
    np.testing.assert_array_equal(gv, wv)


SHAPES = [(0, 0), (0, 5), (3, 0), (1, 1), (4, 7), (17, 40), (33, 257), (8, 1682)]
KS = [0, 1, 3, 10, 64]


# ----------------------------------------------------------------------------- topk_scores

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("kind", ["ties", "normal", "inf"])
def test_topk_matches_reference(shape, k, kind):
    rng = np.random.default_rng(zlib.crc32(repr((shape, k, kind)).encode()))
    s = random_scores(rng, *shape, kind)
    assert_topk_equal(K.topk_scores(s, k), ref_topk(s, k))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 5, 50])
def test_topk_with_exclusion(shape, k):
    rng = np.random.default_rng(1000 + shape[0] * 7 + shape[1] + k)
    s = random_scores(rng, *shape, "ties")
    ex = random_exclusion(rng, shape[0], shape[1], max_len=max(1, shape[1]))
    assert_topk_equal(K.topk_scores(s, k, ex), ref_topk(s, k, ex))


@pytest.mark.parametrize("shape", [(1, 3), (6, 20), (40, 300)])
def test_topk_rows_remap(shape):
    rng = np.random.default_rng(7)
    b, n = shape
    s = random_scores(rng, b, n, "ties")
    ex = random_exclusion(rng, 5, n, max_len=n)  # fewer CSR rows than score rows
    rows = rng.integers(0, 5, size=b)
    assert_topk_equal(K.topk_scores(s, 8, ex, rows), ref_topk(s, 8, ex, rows))
    # Same through torch and list inputs for the CSR and rows.
    got = K.topk_scores(torch.from_numpy(s), 8, (torch.from_numpy(ex[0]), ex[1].tolist()),
                        torch.from_numpy(rows))
    assert_topk_equal(got, ref_topk(s, 8, ex, rows))


def test_topk_ties_go_to_lower_index():
    s = np.array([[1, 3, 3, 2, 3], [0, 0, 0, 0, 0]], np.float32)
    idx, val = K.topk_scores(s, 4)
    assert idx.tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    assert val.tolist() == [[3, 3, 3, 2], [0, 0, 0, 0]]


def test_topk_signed_zeros_tie():
    s = np.array([[-0.0, 0.0, -0.0, -1.0]], np.float32)
    idx, val = K.topk_scores(s, 4)
    assert idx.tolist() == [[0, 1, 2, 3]]
    assert np.signbit(val[0, :3]).tolist() == [True, False, True]


def test_topk_padding_when_k_exceeds_candidates():
    s = np.array([[5, 1, 4, 2]], np.float32)
    idx, val = K.topk_scores(s, 6, make_csr([[2, 0, 2]]))  # unsorted, duplicate
    assert idx.tolist() == [[3, 1, -1, -1, -1, -1]]
    assert val[0, :2].tolist() == [2, 1] and np.all(val[0, 2:] == -np.inf)


def test_topk_neg_inf_candidates_come_before_padding():
    s = np.array([[-np.inf, 1, -np.inf]], np.float32)
    idx, val = K.topk_scores(s, 4)
    assert idx.tolist() == [[1, 0, 2, -1]]
    assert val.tolist() == [[1, -np.inf, -np.inf, -np.inf]]


def test_topk_user_with_everything_excluded():
    s = np.arange(8, dtype=np.float32).reshape(2, 4)
    ex = make_csr([[3, 2, 1, 0, 1], [0]])
    idx, val = K.topk_scores(s, 3, ex)
    assert idx.tolist() == [[-1, -1, -1], [3, 2, 1]]
    assert np.all(val[0] == -np.inf)


def test_topk_empty_shapes():
    for b, n, k in [(0, 4, 3), (3, 0, 2), (0, 0, 0), (2, 5, 0)]:
        idx, val = K.topk_scores(np.zeros((b, n), np.float32), k)
        assert idx.shape == (b, k) and val.shape == (b, k)
        assert np.all(idx == -1) or n > 0


def test_topk_k_zero_with_exclusion_and_rows():
    s = np.ones((2, 3), np.float32)
    idx, val = K.topk_scores(s, 0, make_csr([[0], [1, 2]]), np.array([1, 0]))
    assert idx.shape == (2, 0) and val.shape == (2, 0)


@pytest.mark.parametrize("make", [
    lambda s: s.astype(np.float64),
    lambda s: s.astype(np.float16),
    lambda s: torch.from_numpy(s),
    lambda s: torch.from_numpy(s.astype(np.float64)),
    lambda s: np.asfortranarray(s),
    lambda s: np.ascontiguousarray(np.repeat(s, 2, axis=1))[:, ::2],
], ids=["f64", "f16", "torch32", "torch64", "fortran", "strided"])
def test_topk_input_kinds(make):
    rng = np.random.default_rng(3)
    s = rng.integers(-5, 6, size=(9, 30)).astype(np.float32)
    x = make(s)
    want = ref_topk(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x.float().numpy(), 4)
    f64 = x.dtype in (np.float64, torch.float64)  # integer scores: the same selection either way
    assert_topk_equal(K.topk_scores(x, 4), want, np.float64 if f64 else np.float32)


def test_topk_float64_rounding_ties():
    # Distinct in float64, equal once cast to float32: float64 scores are compared in double
    # (issue 15), so no tie is invented; float32 ones tie and the lower index wins.
    s = np.array([[1.0 + 1e-12, 1.0, 0.5]], np.float64)
    idx, _ = K.topk_scores(s, 2)
    assert idx.tolist() == [[0, 1]]
    s = np.array([[1.0, 1.0 + 1e-12, 0.5]], np.float64)
    idx, val = K.topk_scores(s, 2)
    assert idx.tolist() == [[1, 0]] and val.tolist() == [[1.0 + 1e-12, 1.0]]
    idx, _ = K.topk_scores(s.astype(np.float32), 2)
    assert idx.tolist() == [[0, 1]]


def test_topk_nan_raises():
    s = np.zeros((3, 4), np.float32)
    s[2, 1] = np.nan
    with pytest.raises(ValueError, match="scores contains NaN"):
        K.topk_scores(s, 2)


@pytest.mark.parametrize("where", [0, 700, 1681])
def test_topk_nan_raises_on_rows_long_enough_for_the_block_prefilter(where):
    """Rows of 1682 items with k = 20 start from the k-th largest block maximum (NaN ignored
    there); a NaN candidate must still be found, and an excluded one still ignored."""
    rng = np.random.default_rng(where)
    s = rng.standard_normal((3, 1682)).astype(np.float32)
    s[1, where] = np.nan
    with pytest.raises(ValueError, match="scores contains NaN"):
        K.topk_scores(s, 20)
    ex = make_csr([[], [where], []])
    assert_topk_equal(K.topk_scores(s, 20, ex), ref_topk(np.nan_to_num(s, nan=-np.inf), 20, ex))


def test_topk_nan_in_excluded_item_is_ignored():
    s = np.array([[np.nan, 1, 2]], np.float32)
    idx, _ = K.topk_scores(s, 3, make_csr([[0]]))
    assert idx.tolist() == [[2, 1, -1]]


def test_topk_large_k():
    rng = np.random.default_rng(11)
    s = rng.integers(0, 50, size=(5, 3000)).astype(np.float32)
    ex = random_exclusion(rng, 5, 3000, 500)
    for k in (1024, 2999, 5000):
        assert_topk_equal(K.topk_scores(s, k, ex), ref_topk(s, k, ex))


@st.composite
def topk_problems(draw):
    b = draw(st.integers(0, 6))
    n = draw(st.integers(0, 40))
    k = draw(st.integers(0, 45))
    vals = st.sampled_from([-np.inf, -2.0, -0.0, 0.0, 1.0, 1.5, 3.0, np.inf])
    s = np.array(draw(st.lists(st.lists(vals, min_size=n, max_size=n), min_size=b, max_size=b)),
                 dtype=np.float32).reshape(b, n)
    ex = rows = None
    if draw(st.booleans()):
        n_ex = draw(st.integers(1, 4)) if draw(st.booleans()) else b
        lists = draw(st.lists(st.lists(st.integers(0, max(n - 1, 0)), max_size=2 * n if n else 0),
                              min_size=n_ex, max_size=n_ex))
        ex = make_csr(lists)
        if n_ex == 0:
            rows = np.zeros(0, np.int64) if draw(st.booleans()) else None
        elif n_ex != b or draw(st.booleans()):
            rows = np.array(draw(st.lists(st.integers(0, n_ex - 1), min_size=b, max_size=b)),
                            dtype=np.int64)
    return s, k, ex, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topk_problems())
def test_topk_property(problem):
    s, k, ex, rows = problem
    got = K.topk_scores(s, k, ex, rows)
    assert_topk_equal(got, ref_topk(s, k, ex, rows))
    # Invariants that do not lean on the reference.
    idx, val = got
    for r in range(s.shape[0]):
        real = idx[r][idx[r] >= 0]
        assert len(set(real.tolist())) == real.size
        assert np.all(idx[r][real.size:] == -1)
        if ex is not None:
            assert not set(real.tolist()) & set(csr_row(ex, r if rows is None else rows[r]).tolist())


# ----------------------------------------------------------------------------- rank_targets

@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (4, 7), (20, 60), (12, 400)])
@pytest.mark.parametrize("n_targets", [0, 1, 3, 9])  # <= 4 and > 4 take different paths
@pytest.mark.parametrize("with_excl", [False, True])
def test_rank_targets_matches_reference(shape, n_targets, with_excl):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + n_targets)
    b, n = shape
    s = random_scores(rng, b, n, "ties")
    tg = make_csr([rng.choice(n, size=min(n_targets, n), replace=False).tolist() for _ in range(b)])
    ex = random_exclusion(rng, b, n, max_len=n) if with_excl else None
    got = K.rank_targets(s, tg, ex)
    for g, w in zip(got, ref_rank(s, tg, ex)):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w)


def test_rank_targets_rows_remap_and_inputs():
    rng = np.random.default_rng(5)
    s = random_scores(rng, 7, 30, "inf")
    tg = make_csr([rng.choice(30, size=6, replace=False).tolist() for _ in range(7)])
    ex = random_exclusion(rng, 3, 30, max_len=20)
    rows = rng.integers(0, 3, size=7)
    want = ref_rank(s, tg, ex, rows)
    for got in (K.rank_targets(s, tg, ex, rows),
                K.rank_targets(torch.from_numpy(s).double(), tuple(map(torch.from_numpy, tg)),
                               ex, torch.from_numpy(rows))):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_rank_targets_hand_worked():
    s = np.array([[3, 1, 2, 2, 0]], np.float32)
    # Targets 2 and 4; item 0 excluded. Negatives: items 1 and 3 (scores 1, 2).
    g, e, n_neg = K.rank_targets(s, make_csr([[2, 4]]), make_csr([[0]]))
    assert g.tolist() == [0, 2] and e.tolist() == [1, 0] and n_neg.tolist() == [2]


def test_rank_targets_all_excluded_and_empty():
    s = np.ones((2, 3), np.float32)
    g, e, n_neg = K.rank_targets(s, make_csr([[0], []]), make_csr([[1, 2, 1], [0, 1, 2]]))
    assert g.tolist() == [0] and e.tolist() == [0] and n_neg.tolist() == [0, 0]
    g, e, n_neg = K.rank_targets(np.zeros((0, 3), np.float32), make_csr([]))
    assert g.shape == e.shape == (0,) and n_neg.shape == (0,)


def test_rank_targets_nan_raises():
    s = np.array([[1, np.nan, 2]], np.float32)
    with pytest.raises(ValueError, match="scores contains NaN"):
        K.rank_targets(s, make_csr([[0]]))


def test_rank_targets_nan_in_excluded_item_is_ignored():
    s = np.array([[np.nan, 1, 2, 0.5]], np.float32)
    g, e, n_neg = K.rank_targets(s, make_csr([[1]]), make_csr([[0]]))
    assert g.tolist() == [1] and e.tolist() == [0] and n_neg.tolist() == [2]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topk_problems(), st.data())
def test_rank_targets_property(problem, data):
    s, _, ex, rows = problem
    b, n = s.shape
    lists = [data.draw(st.lists(st.integers(0, n - 1), max_size=8, unique=True)) if n else []
             for _ in range(b)]
    tg = make_csr(lists)
    for g, w in zip(K.rank_targets(s, tg, ex, rows), ref_rank(s, tg, ex, rows)):
        np.testing.assert_array_equal(g, w)


# ----------------------------------------------------------------------------- topk_dot

def int_factors(rng: np.random.Generator, m: int, n: int, d: int):
    """Small integer factors: every dot product is exact in float32, and ties are common."""
    return (rng.integers(-2, 3, size=(m, d)).astype(np.float32),
            rng.integers(-2, 3, size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("m,n,d", [(0, 5, 3), (1, 1, 1), (7, 12, 4), (50, 90, 8), (130, 200, 16)])
@pytest.mark.parametrize("tile_rows", [1, 64, 2048])
def test_topk_dot_matches_reference(m, n, d, tile_rows):
    rng = np.random.default_rng(m + n + d + tile_rows)
    U, V = int_factors(rng, m, n, d)
    bias = rng.integers(-1, 2, size=n).astype(np.float32)
    ex = random_exclusion(rng, m, n, max_len=max(1, n // 2))
    s = U @ V.T
    assert_topk_equal(K.topk_dot(U, V, 10, tile_rows=tile_rows), ref_topk(s, 10))
    assert_topk_equal(K.topk_dot(U, V, 10, ex, tile_rows=tile_rows), ref_topk(s, 10, ex))
    assert_topk_equal(K.topk_dot(U, V, 10, ex, item_bias=bias, tile_rows=tile_rows),
                      ref_topk(s + bias, 10, ex))


def test_topk_dot_rows_and_input_kinds():
    rng = np.random.default_rng(21)
    U, V = int_factors(rng, 40, 25, 6)
    ex = random_exclusion(rng, 9, 25, max_len=20)
    rows = rng.integers(0, 9, size=40)
    want = ref_topk(U @ V.T, 30, ex, rows)  # k > candidates for some users: padding
    assert_topk_equal(K.topk_dot(U, V, 30, ex, rows, tile_rows=16), want)
    # float64 factors (a double tensor, Python floats): the product and values in float64.
    assert_topk_equal(K.topk_dot(torch.from_numpy(U).double(), torch.from_numpy(V), 30, ex,
                                 torch.from_numpy(rows), tile_rows=3), want, np.float64)
    assert_topk_equal(K.topk_dot(U.tolist(), V.tolist(), 30, ex, rows.tolist()), want, np.float64)


def test_topk_dot_k_zero_and_empty():
    rng = np.random.default_rng(2)
    U, V = int_factors(rng, 5, 4, 3)
    idx, val = K.topk_dot(U, V, 0)
    assert idx.shape == (5, 0) and val.shape == (5, 0)
    idx, val = K.topk_dot(np.zeros((0, 3), np.float32), V, 2)
    assert idx.shape == (0, 2) and idx.dtype == np.int64 and val.dtype == np.float32
    idx, val = K.topk_dot(U, np.zeros((0, 3), np.float32), 2)
    assert np.all(idx == -1) and np.all(val == -np.inf)


def test_topk_dot_nan_raises():
    U = np.ones((3, 2), np.float32)
    U[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        K.topk_dot(U, np.ones((4, 2), np.float32), 2)


# ----------------------------------------------------------------------------- bad arguments

S = np.arange(12, dtype=np.float32).reshape(3, 4)
EX = make_csr([[0], [], [3, 1]])
TG = make_csr([[1], [2], [0]])

BAD_TOPK = [
    # (kwargs overriding (scores=S, k=2, exclude=None, rows=None), error, match)
    (dict(scores=[[1.0, 2.0]]), ValueError, "scores must be a numpy array or torch tensor"),
    (dict(scores="abc"), ValueError, "scores must be a numpy array"),
    (dict(scores=np.ones(4, np.float32)), ValueError, r"scores must be 2-D"),
    (dict(scores=np.ones((2, 2, 2), np.float32)), ValueError, r"scores must be 2-D"),
    (dict(scores=torch.ones(4)), ValueError, r"scores must be 2-D"),
    (dict(scores=np.ones((2, 2), np.int64)), ValueError, "scores must hold floating-point"),
    (dict(scores=np.ones((2, 2), bool)), ValueError, "scores must hold floating-point"),
    (dict(scores=np.ones((2, 2), np.complex64)), ValueError, "scores must hold floating-point"),
    (dict(scores=np.array([[1, np.nan]], np.float32)), ValueError, "scores contains NaN"),
    (dict(k=-1), ValueError, r"k must be >= 0"),
    (dict(k=1.0), ValueError, "k must be an int"),
    (dict(k=None), ValueError, "k must be an int"),
    (dict(k=True), ValueError, "k must be an int"),
    (dict(exclude=(EX[0],)), ValueError, r"exclude must be a pair \(indptr, indices\)"),
    (dict(exclude=(EX[0], EX[1], EX[1])), ValueError, r"exclude must be a pair"),
    (dict(exclude=(EX[0][None], EX[1])), ValueError, "exclude indptr must be 1-D"),
    (dict(exclude=(EX[0], EX[1][None])), ValueError, "exclude indices must be 1-D"),
    (dict(exclude=(EX[0].astype(float), EX[1])), ValueError, "exclude indptr must hold integers"),
    (dict(exclude=(EX[0], EX[1].astype(np.float32))), ValueError, "exclude indices must hold integers"),
    (dict(exclude=(EX[0] > 0, EX[1])), ValueError, "exclude indptr must hold integers"),
    (dict(exclude=(np.zeros(0, np.int64), EX[1])), ValueError, "exclude indptr must not be empty"),
    (dict(exclude=(EX[0] + 1, EX[1])), ValueError, "exclude indptr must start at 0"),
    (dict(exclude=(np.array([0, 2, 1, 3]), EX[1])), ValueError, "exclude indptr must be non-decreasing"),
    (dict(exclude=(np.array([0, 1, 1, 2]), EX[1])), ValueError, r"exclude indptr\[-1\] \(2\) must equal len\(indices\) \(3\)"),
    (dict(exclude=(EX[0], np.array([0, 4, 1]))), IndexError, r"exclude indices\[1\] = 4 is outside \[0, 4\)"),
    (dict(exclude=(EX[0], np.array([0, 1, -1]))), IndexError, r"exclude indices\[2\] = -1"),
    (dict(exclude=make_csr([[0], [1]])), ValueError, "without rows, the exclusion CSR must have one row per score row"),
    (dict(rows=np.array([0, 1, 2])), ValueError, "rows is only meaningful with an exclusion CSR"),
    (dict(exclude=EX, rows=np.array([[0, 1, 2]])), ValueError, "rows must be 1-D"),
    (dict(exclude=EX, rows=np.array([0.0, 1.0, 2.0])), ValueError, "rows must hold integers"),
    (dict(exclude=EX, rows=np.array([0, 1])), ValueError, r"rows must have one entry per score row \(3\), got 2"),
    (dict(exclude=EX, rows=np.array([0, 3, 1])), IndexError, r"rows\[1\] = 3 is outside the exclusion CSR's 3 rows"),
    (dict(exclude=EX, rows=np.array([0, 1, -2])), IndexError, r"rows\[2\] = -2"),
]


@pytest.mark.parametrize("override,err,match", BAD_TOPK)
def test_topk_scores_bad_arguments(override, err, match):
    kw = dict(scores=S, k=2, exclude=None, rows=None)
    kw.update(override)
    with pytest.raises(err, match=match):
        K.topk_scores(**kw)


BAD_RANK = [
    (dict(scores=np.ones(4, np.float32)), ValueError, r"scores must be 2-D"),
    (dict(scores=np.ones((3, 4), np.int32)), ValueError, "scores must hold floating-point"),
    (dict(scores=np.full((3, 4), np.nan, np.float32)), ValueError, "scores contains NaN"),
    (dict(targets=None), ValueError, "targets must be a pair"),
    (dict(targets=(TG[0],)), ValueError, "targets must be a pair"),
    (dict(targets=(TG[0][:-1], TG[1][:-1])), ValueError, r"targets indptr must have length 4, got 3"),
    (dict(targets=(TG[0][None], TG[1])), ValueError, "targets indptr must be 1-D"),
    (dict(targets=(TG[0], TG[1].astype(float))), ValueError, "targets indices must hold integers"),
    (dict(targets=(np.array([0, 1, 2, 2]), TG[1])), ValueError, r"targets indptr\[-1\] \(2\) must equal len\(indices\) \(3\)"),
    (dict(targets=(np.array([0, 2, 1, 3]), TG[1])), ValueError, "targets indptr must be non-decreasing"),
    (dict(targets=(TG[0], np.array([1, 2, 4]))), IndexError, r"targets indices\[2\] = 4 is outside"),
    (dict(exclude=(EX[0], np.array([0, 9, 1]))), IndexError, r"exclude indices\[1\] = 9"),
    (dict(exclude=(EX[0] + 1, EX[1])), ValueError, "exclude indptr must start at 0"),
    (dict(exclude=make_csr([[0]])), ValueError, "without rows"),
    (dict(rows=np.array([0, 1, 2])), ValueError, "rows is only meaningful"),
    (dict(exclude=EX, rows=np.array([0, 1])), ValueError, "rows must have one entry per score row"),
    (dict(exclude=EX, rows=np.array([0, 1, 7])), IndexError, r"rows\[2\] = 7"),
]


@pytest.mark.parametrize("override,err,match", BAD_RANK)
def test_rank_targets_bad_arguments(override, err, match):
    kw = dict(scores=S, targets=TG, exclude=None, rows=None)
    kw.update(override)
    with pytest.raises(err, match=match):
        K.rank_targets(**kw)


U3 = np.ones((3, 2), np.float32)
V4 = np.ones((4, 2), np.float32)
BAD_DOT = [
    (dict(user_factors=np.ones(3, np.float32)), ValueError, "user_factors must be 2-D"),
    (dict(item_factors=np.ones((4, 2, 1), np.float32)), ValueError, "item_factors must be 2-D"),
    (dict(user_factors=np.ones((3, 5), np.float32)), ValueError, "user_factors has 5 columns but item_factors has 2"),
    (dict(k=-3), ValueError, r"k must be >= 0"),
    (dict(k=2.5), ValueError, "k must be an int"),
    (dict(tile_rows=0), ValueError, "tile_rows must be a positive int"),
    (dict(tile_rows=2.0), ValueError, "tile_rows must be a positive int"),
    (dict(tile_rows=True), ValueError, "tile_rows must be a positive int"),
    (dict(item_bias=np.ones(3)), ValueError, r"item_bias must have shape \(4,\)"),
    (dict(item_bias=np.ones((4, 1))), ValueError, r"item_bias must have shape \(4,\)"),
    (dict(exclude=EX, rows=np.array([0, 1])), ValueError, r"rows must have one entry per user row \(3\), got 2"),
    (dict(exclude=EX, rows=np.array([[0, 1, 2]])), ValueError, "rows must be 1-D"),
    (dict(exclude=EX, rows=np.array([0, 1, 5])), IndexError, r"rows\[2\] = 5 is outside"),
    (dict(exclude=(EX[0], np.array([0, 9, 1]))), IndexError, r"exclude indices\[1\] = 9"),
    (dict(exclude=(EX[0], EX[1].astype(float))), ValueError, "exclude indices must hold integers"),
]


@pytest.mark.parametrize("override,err,match", BAD_DOT)
def test_topk_dot_bad_arguments(override, err, match):
    kw = dict(user_factors=U3, item_factors=V4, k=2, exclude=None, rows=None, item_bias=None)
    kw.update(override)
    with pytest.raises(err, match=match):
        K.topk_dot(**kw)


# Bad arguments that once escaped as TypeError/RuntimeError or were silently accepted.
ARGUMENT_GAPS = [
    pytest.param(lambda: K.topk_scores(S, 2, 5), ValueError, "exclude must be a pair", id="exclude-not-a-sequence"),
    pytest.param(lambda: K.rank_targets(S, 3), ValueError, "targets must be a pair", id="targets-not-a-sequence"),
    pytest.param(lambda: K.topk_scores(torch.ones((2, 2), dtype=torch.int64), 1), ValueError,
                 "scores must hold floating-point", id="scores-torch-int"),
    pytest.param(lambda: K.topk_dot("abc", V4, 1), ValueError, "user_factors", id="user-factors-str"),
    pytest.param(lambda: K.topk_dot(None, V4, 1), ValueError, "user_factors", id="user-factors-none"),
    pytest.param(lambda: K.topk_dot(np.ones((3, 2), np.int64), V4, 1), ValueError, "user_factors",
                 id="user-factors-int"),
    pytest.param(lambda: K.topk_dot(U3, V4, 1, item_bias="abc"), ValueError, "item_bias", id="item-bias-str"),
    pytest.param(lambda: K.topk_dot(U3, V4, 1, rows=np.array([0, 1, 5])), ValueError,
                 "rows is only meaningful", id="dot-rows-without-exclude"),
    # Once an IndexError about `rows`, an argument the caller never passed.
    pytest.param(lambda: K.topk_dot(U3, V4, 1, make_csr([[0]])), ValueError, "without rows",
                 id="dot-exclude-row-count"),
]


@pytest.mark.parametrize("call,err,match", ARGUMENT_GAPS)
def test_argument_gaps_are_closed(call, err, match):
    with pytest.raises(err, match=match):
        call()

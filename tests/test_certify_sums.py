"""The rows' double sums s passed through to the certification kernels (``s=``).

``FMCertifier`` sums each tile's ``s = Σ_{i∈x} v_i`` in double once (``fm_scores_sums(...,
double_sums=True)``), rounds it to float32 for the BLAS product p, and hands the double sums to
``fm_certify_budgets_batch`` / ``fm_max_q_batch`` so that they do not sum them again. These tests
check that the handed-over sums are the ones the kernels would sum themselves (every output bit
for bit the same with and without ``s``, at 1 and 2 threads), that their float32 rounding is the
float32 ``s`` of the plain call, and that a bad ``s`` is refused by name.
"""
from __future__ import annotations

import numpy as np
import pytest

from advrec import kernels as K
from test_certify_budgets import GIVEN, assert_same, fused, inputs
from test_kernels_bpr import _omp_set_num_threads
from test_kernels_certify import CASES, make_case


def sums64(case) -> np.ndarray:
    c = case
    return K.fm_scores_sums(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], double_sums=True)[1]


def max_q(case, q_max, method, p=None, gram=None, **kw) -> np.ndarray:
    c = case
    return K.fm_max_q_batch(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
                            *c["tables"], q_max, method, p=p, gram=gram, **kw)


@pytest.mark.parametrize("seed", sorted(CASES))
def test_double_sums_round_to_the_float32_sums(seed):
    c = CASES[seed]
    f32, s32 = K.fm_scores_sums(c["indptr"], c["indices"], c["w0"], c["w"], c["V"])
    f64, s64 = K.fm_scores_sums(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], double_sums=True)
    assert s64.dtype == np.float64 and s32.dtype == np.float32 and s64.shape == s32.shape
    np.testing.assert_array_equal(f64, f32)
    np.testing.assert_array_equal(s64.astype(np.float32), s32)  # the same sums, rounded
    # against a plain NumPy sum in double (another order: equal to rounding)
    V = c["V"].astype(np.float64)
    ref = np.stack([V[c["indices"][a:b]].sum(0) for a, b in zip(c["indptr"][:-1], c["indptr"][1:])])
    np.testing.assert_allclose(s64, ref, rtol=1e-12, atol=1e-12)


def test_double_sums_of_empty_rows_and_batches():
    c = CASES[sorted(CASES)[0]]
    k = c["V"].shape[1]
    f, s = K.fm_scores_sums(np.zeros(4, np.int64), np.zeros(0, np.int64), 0.25, c["w"], c["V"],
                            double_sums=True)
    np.testing.assert_array_equal(f, np.full(3, 0.25))
    assert s.shape == (3, k) and s.dtype == np.float64 and not s.any()
    f, s = K.fm_scores_sums(np.zeros(1, np.int64), np.zeros(0, np.int64), 0.0, c["w"], c["V"],
                            double_sums=True)
    assert f.shape == (0,) and s.shape == (0, k)


@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("given", GIVEN)
def test_passed_sums_give_the_same_results(seed, given):
    c = CASES[seed]
    p, gram = inputs(c, given)
    s = sums64(c)
    for method in K.METHODS:
        want = fused(c, range(5), method, p=p, gram=gram)
        assert_same(fused(c, range(5), method, p=p, gram=gram, s=s), want, f"{method} {given}")
        if method != "greedy":
            np.testing.assert_array_equal(max_q(c, 4, method, p=p, gram=gram, s=s),
                                          max_q(c, 4, method, p=p, gram=gram))


def test_passed_sums_are_read_not_ignored():
    """Other sums give other scores: the kernel really reads s (so the test above can fail)."""
    c = CASES[sorted(CASES)[1]]
    s = sums64(c)
    base = fused(c, [1], "best", p=c["p"], gram=c["gram"])[1]
    moved = fused(c, [1], "best", p=c["p"], gram=c["gram"], s=s + 0.5)[1]
    assert not np.array_equal(moved.score, base.score)


def test_passed_sums_at_one_and_two_threads():
    set_threads = _omp_set_num_threads()
    if set_threads is None:
        pytest.skip("the OpenMP runtime of the core cannot be reached through ctypes here")
    from advrec.kernels._native import _core
    before = _core.build_info()["openmp_threads"]
    c = make_case(13, m=200, n_range=(30, 40))
    s = sums64(c)
    try:
        results = {}
        for t in (1, 2):
            set_threads(t)
            results[t] = {m: fused(c, range(5), m, p=c["p"], gram=c["gram"], s=s) for m in K.METHODS}
    finally:
        set_threads(before)
    for m in K.METHODS:
        assert_same(results[2][m], results[1][m], f"2 threads {m}")
        assert_same(results[1][m], fused(c, range(5), m, p=c["p"], gram=c["gram"]), m)


def test_bad_sums():
    c = CASES[sorted(CASES)[0]]
    s = sums64(c)
    with pytest.raises(TypeError, match="s must be a float64 array"):
        fused(c, [1], "best", s=s.astype(np.float32))
    with pytest.raises(TypeError, match="s must be a float64 array"):
        fused(c, [1], "best", s=s.tolist())
    with pytest.raises(TypeError, match="s must be a float64 array"):
        max_q(c, 2, "best", s=s.astype(np.float32))
    with pytest.raises(ValueError, match=r"s must have shape \(rows, k\)"):
        fused(c, [1], "best", s=s[:-1])
    with pytest.raises(ValueError, match=r"s must have shape \(rows, k\)"):
        max_q(c, 2, "best", s=s[:, :-1])
    with pytest.raises(ValueError, match="s must be 2-D"):
        fused(c, [1], "best", s=s.ravel())
    bad = s.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="s contains NaN or inf"):
        fused(c, [1], "best", s=bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="s contains NaN or inf"):
        max_q(c, 2, "best", s=bad)
    with pytest.raises(TypeError, match="double_sums must be a bool"):
        K.fm_scores_sums(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], double_sums=1)

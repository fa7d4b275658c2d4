"""The fused multi-budget certification pass (``kernels.fm_certify_budgets_batch``) against the
per-budget kernel it replaces, field for field and bit for bit.

The fused pass shares, per instance, the score, p's row, the paper bound's selection, the square
bound's selections (over a pre-filtered candidate set) and one greedy search whose stopping test
is replayed per budget. Every one of these is claimed to give exactly what ``fm_certify_batch``
gives at each q: checked on the random FMs of test_kernels_certify (rows empty, without history,
with every perturbable feature; n = 0 and 1; q beyond the candidates; integer FMs whose gains tie
and whose scores hit the threshold exactly; greedy-trap FMs for ``exact``), on the real ML-100K
test split with a trained FM, at 1 and 2 OpenMP threads, and through ``FMCertifier``. Soundness
of what the per-q kernel returns is checked against brute force in test_kernels_certify.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import pytest
import torch

from advrec import kernels as K
from advrec.certify import FMCertifier
from test_kernels_bpr import _omp_set_num_threads
from test_kernels_certify import (CASES, brute, check_consistent, check_flip, make_case,
                                  make_integer_case, make_trap_case)

GIVEN = ("none", "p", "p+gram", "gram")


def per_q(case: Dict, qs: Sequence[int], method: str, p=None, gram=None, **kw) -> Dict[int, K.FMCertBatch]:
    c = case
    return {q: K.fm_certify_batch(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
                                  *c["tables"], q, method, p=p, gram=gram, **kw) for q in qs}


def fused(case: Dict, qs: Sequence[int], method: str, p=None, gram=None, **kw) -> Dict[int, K.FMCertBatch]:
    c = case
    return K.fm_certify_budgets_batch(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
                                      *c["tables"], qs, method, p=p, gram=gram, **kw)


def assert_same(got: Dict[int, K.FMCertBatch], want: Dict[int, K.FMCertBatch], what: str) -> None:
    """Every field of every budget equal (NaN bounds of greedy included), dtypes too."""
    assert sorted(got) == sorted(want), what
    for q in want:
        for name in K.FMCertBatch._fields:
            a, b = getattr(got[q], name), getattr(want[q], name)
            assert a.dtype == b.dtype, (what, q, name)
            np.testing.assert_array_equal(a, b, err_msg=f"{what} q={q} {name}")


def inputs(case: Dict, given: str):
    return (case["p"] if "p" in given else None, case["gram"] if "gram" in given else None)


# ----------------------------------------------------------------------------- random FMs

@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("given", GIVEN)
def test_equals_per_q_on_random_fms(seed, given):
    c = CASES[seed]
    p, gram = inputs(c, given)
    for method in K.METHODS:
        want = per_q(c, range(5), method, p=p, gram=gram)
        got = fused(c, range(5), method, p=p, gram=gram)
        assert_same(got, want, f"{method} {given}")
        for out in got.values():
            check_consistent(out)
        # any subset, any order, duplicates: the same per-budget results
        assert_same(fused(c, [3, 1, 3], method, p=p, gram=gram),
                    {q: want[q] for q in (1, 3)}, f"{method} {given} subset")
        assert_same(fused(c, [4], method, p=p, gram=gram), {4: want[4]}, f"{method} {given} one")


def test_the_shared_paths_are_exercised():
    """The cases above reach what the fusion shares: square bounds at several budgets of one
    instance (label +1 rows the cheaper bounds leave open) and greedy flips found at a smaller
    budget and re-read at a larger one, or found only at a larger one (greedy ran further)."""
    square_rows = flips_shared = flips_later = 0
    for c in CASES.values():
        res = per_q(c, range(1, 5), "best", p=c["p"], gram=c["gram"])
        paper_joint = {q: np.minimum(per_q(c, [q], "paper")[q].bound,
                                     per_q(c, [q], "joint")[q].bound) for q in range(1, 5)}
        for r, inst in enumerate(c["insts"]):
            if inst.label == 1:  # best's bound above min(paper, joint): the square bound won
                square_rows += sum(res[q].bound[r] > paper_joint[q][r] + 1e-12 for q in (2, 3, 4)) >= 2
            st = [res[q].status[r] for q in range(1, 5)]
            flips_shared += st.count(-1) >= 2
            flips_later += any(st[a] == 0 and -1 in st[a + 1:] for a in range(3))
    assert square_rows > 0 and flips_shared > 0 and flips_later > 0


@pytest.mark.parametrize("seed", range(4))
def test_ties_and_exact_thresholds(seed):
    """Integer FMs: gains tie (lowest position wins), scores of exactly 0, thresholds reached
    exactly; the fused pass makes the same choices."""
    c = make_integer_case(seed)
    for given in ("none", "p+gram"):
        p, gram = inputs(c, given)
        for method in K.METHODS:
            assert_same(fused(c, range(5), method, p=p, gram=gram),
                        per_q(c, range(5), method, p=p, gram=gram), f"{method} {given}")


def test_exact_on_greedy_traps_with_small_node_budgets():
    """``exact`` runs branch and bound per budget after the shared greedy: same statuses,
    flips and node counts, whether the budget of nodes runs out (1) or not."""
    for seed in range(4):
        c = make_trap_case(seed)
        for node_budget in (1, 100_000):
            for given in ("none", "p+gram"):
                p, gram = inputs(c, given)
                got = fused(c, [1, 2, 3, 4], "exact", p=p, gram=gram, node_budget=node_budget)
                assert_same(got, per_q(c, [1, 2, 3, 4], "exact", p=p, gram=gram,
                                       node_budget=node_budget), f"{seed} {node_budget} {given}")
        truth = brute(c, 3)
        got = fused(c, [3], "exact", p=c["p"], gram=c["gram"])[3]
        for r, (_, _, flipped, dist) in enumerate(truth):
            if got.status[r] == -1:
                check_flip(c, got, r, 3)
            if dist > 1e-9:
                assert (got.status[r] == 1) == (not flipped)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_perturbable_sets_and_q_beyond_candidates(n):
    c = make_case(5 + n, n_range=(n, n), m=12, q_max=7)
    for method in K.METHODS:
        for given in ("none", "p+gram"):
            p, gram = inputs(c, given)
            assert_same(fused(c, range(8), method, p=p, gram=gram),
                        per_q(c, range(8), method, p=p, gram=gram), f"n={n} {method} {given}")


def test_q_beyond_candidates_with_many_features():
    c = make_case(3, scale=1.0, n_range=(4, 5), m=12, q_max=7)
    for method in K.METHODS:
        assert_same(fused(c, [2, 5, 7], method, p=c["p"], gram=c["gram"]),
                    per_q(c, [2, 5, 7], method, p=c["p"], gram=c["gram"]), method)


def test_budgets_beyond_the_small_selection():
    """Past 16 budgets the shared selections switch from the small sorted array to the general
    one (TopSum): both must give the per-q results."""
    c = make_case(4, scale=1.0, n_range=(22, 25), m=30, q_max=18)
    for method in ("paper", "joint", "best"):
        for qs in ([1, 5, 16], [2, 17, 18]):
            assert_same(fused(c, qs, method, p=c["p"], gram=c["gram"]),
                        per_q(c, qs, method, p=c["p"], gram=c["gram"]), f"{method} {qs}")


def test_empty_batch_and_empty_budgets():
    c = CASES[0]
    empty = dict(c, indptr=np.zeros(1, np.int64), indices=np.zeros(0, np.int64))
    for method in K.METHODS:
        got = fused(empty, [0, 2], method)
        assert_same(got, per_q(empty, [0, 2], method), method)
        assert all(len(o.status) == 0 and o.flips_indptr.tolist() == [0] for o in got.values())
    assert fused(c, [], "best") == {}


def test_only_q_zero_never_reads_p():
    """At q = 0 every row is robust without looking at p (as the per-q kernel): a NaN in p is
    only an error when some budget reads it."""
    c = CASES[0]
    p = c["p"].clone()
    p[3, 0] = float("nan")
    assert_same(fused(c, [0], "best", p=p), per_q(c, [0], "best", p=p), "q=0")
    with pytest.raises(ValueError, match="p contains NaN or inf in row 3"):
        fused(c, [0, 1], "best", p=p)


# ----------------------------------------------------------------------------- threads

def test_thread_count_does_not_change_the_result():
    set_threads = _omp_set_num_threads()
    if set_threads is None:
        pytest.skip("the OpenMP runtime of the core cannot be reached through ctypes here")
    from advrec.kernels._native import _core
    before = _core.build_info()["openmp_threads"]
    c = make_case(11, m=200, n_range=(30, 40))
    try:
        results = {}
        for t in (1, 2, 3):
            set_threads(t)
            results[t] = {m: fused(c, range(5), m, p=c["p"], gram=c["gram"]) for m in K.METHODS}
    finally:
        set_threads(before)
    for t in (2, 3):
        for m in K.METHODS:
            assert_same(results[t][m], results[1][m], f"{t} threads {m}")
    for m in K.METHODS:
        assert_same(results[1][m], per_q(c, range(5), m, p=c["p"], gram=c["gram"]), m)


# ----------------------------------------------------------------------------- bad input

def test_bad_budgets():
    c = CASES[0]
    with pytest.raises(ValueError, match="qs entry must be >= 0"):
        fused(c, [1, -1], "best")
    with pytest.raises(ValueError, match="qs entry must be an int"):
        fused(c, [1, 2.0], "best")
    with pytest.raises(ValueError, match="qs entry must be an int"):
        fused(c, [True], "best")
    with pytest.raises(TypeError, match="qs must be an iterable of ints"):
        fused(c, 3, "best")
    with pytest.raises(ValueError, match="qs.* too large"):
        fused(c, [1, 1 << 31], "greedy")
    with pytest.raises(ValueError, match="pair_top/pair_bot have .* q = 5"):
        fused(c, [1, 5], "best")  # tables sized for 4
    with pytest.raises(ValueError, match="method must be one of"):
        fused(c, [1], "fast")
    with pytest.raises(ValueError, match="node_budget"):
        fused(c, [1], "exact", node_budget=0)
    from advrec.kernels._native import _core
    args = [c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
            *[np.asarray(t, np.float64) for t in c["tables"]]]
    with pytest.raises(ValueError, match="qs must be strictly increasing"):
        _core.fm_certify_budgets_batch(*args, np.array([2, 1]), "best", None, None, 10)
    with pytest.raises(ValueError, match="qs must have dtype int64"):
        _core.fm_certify_budgets_batch(*args, np.array([1, 2], np.int32), "best", None, None, 10)


# ----------------------------------------------------------------------------- certifier

def blas_inputs(w, V, P, indptr, indices):
    """p and gram as FMCertifier computes them for one tile (s summed in double by the core,
    then torch's float32 addmm; V_P V_Pᵀ by torch), for the per-q kernel to compare against."""
    VP = torch.from_numpy(np.ascontiguousarray(V[P]))
    s = torch.from_numpy(K.fm_scores_sums(indptr, indices, 0.0, w, V)[1])
    p = torch.addmm(torch.from_numpy(np.ascontiguousarray(w[P])), s, VP.T).numpy()
    return np.ascontiguousarray(p), np.ascontiguousarray((VP @ VP.T).numpy())


def tables_of(cert: FMCertifier, q: int):
    t = cert.tables(q)
    return (t.pair_top_val, t.pair_bot_val, t.row_top_val, t.row_bot_val)


def test_certifier_budgets_equal_one_call_per_budget():
    """``FMCertifier.certify_budgets`` (fused, tiled) gives each budget's ``certify`` and the
    per-q kernel's results, whatever the tiling."""
    c = make_case(12, m=150, n_range=(30, 40))
    p, gram = blas_inputs(c["w"], c["V"], c["P"], c["indptr"], c["indices"])
    for tile_rows in (7, 2048):
        cert = FMCertifier(c["w0"], c["w"], c["V"], c["P"], tile_rows=tile_rows)
        for method in K.METHODS:
            by_q = cert.certify_budgets(c["indptr"], c["indices"], [4, 0, 2, 1, 3, 2], method,
                                        node_budget=500, progress=False)
            assert sorted(by_q) == [0, 1, 2, 3, 4]
            want = per_q(dict(c, tables=tables_of(cert, 4)), range(5), method, p=p, gram=gram,
                         node_budget=500)
            for q, res in by_q.items():
                one = cert.certify(c["indptr"], c["indices"], q, method, node_budget=500,
                                   progress=False)
                for name in K.FMCertBatch._fields:
                    np.testing.assert_array_equal(getattr(res, name), getattr(one, name))
                    if tile_rows == 2048:  # one tile: the same BLAS call as blas_inputs
                        np.testing.assert_array_equal(getattr(res, name), getattr(want[q], name))
                assert res.q == q and res.method == method
                if tile_rows == 7:  # statuses do not depend on the tiling
                    np.testing.assert_array_equal(res.status, want[q].status)


# ----------------------------------------------------------------------------- ML-100K

@pytest.fixture(scope="module")
def ml100k():
    """The ML-100K test split (10,000 instances, history field perturbable) and an FM (k = 16)
    trained one epoch (seeded): the instances the certification bench runs on."""
    from advrec.data.fields import ml100k_fm
    from advrec.models import FM
    from advrec.training.classifier import ClassifierTrainer
    torch.manual_seed(0)
    data = ml100k_fm(seed=0)
    fm = FM(data.train.n_features, 16, seed=0)
    ClassifierTrainer(lr=1e-2, epochs=1, batch_size=2048, patience=None, seed=0,
                      progress=False).fit(fm, data.train, data.valid)
    test = data.test
    return (fm, np.asarray(test.feature_ids("history"), np.int64),
            np.asarray(test.indptr, np.int64), np.asarray(test.indices, np.int64))


def test_ml100k_equals_per_q(ml100k):
    fm, P, indptr, indices = ml100k
    m = len(indptr) - 1
    cert = FMCertifier.from_model(fm, P, tile_rows=m)  # one tile: p as blas_inputs computes it
    case = dict(indptr=indptr, indices=indices, w0=cert.w0, w=cert.w, V=cert.V, P=P,
                tables=tables_of(cert, 4))
    p, gram = blas_inputs(cert.w, cert.V, P, indptr, indices)
    seen = set()
    for method in ("greedy", "paper", "joint", "best"):
        want = per_q(case, [1, 2, 3, 4], method, p=p, gram=gram)
        assert_same(fused(case, [1, 2, 3, 4], method, p=p, gram=gram), want, method)
        seen |= {int(s) for o in want.values() for s in np.unique(o.status)}
        if method == "best":
            best = want
    assert seen == {-1, 0, 1}
    # exact on a slice (its branch and bound dominates; a small node budget keeps it short)
    sub = dict(case, indptr=indptr[:301], indices=indices[:indptr[300]])
    assert_same(fused(sub, [1, 2, 3, 4], "exact", p=p[:300], gram=gram, node_budget=300),
                per_q(sub, [1, 2, 3, 4], "exact", p=p[:300], gram=gram, node_budget=300), "exact")
    # through the certifier; and max_q (shared square bound and greedy) against the per-q loop
    by_q = cert.certify_budgets(indptr, indices, [1, 2, 3, 4], "best", progress=False)
    alive = np.ones(m, bool)
    want_max = np.zeros(m, np.int32)
    for q in (1, 2, 3, 4):
        for name in K.FMCertBatch._fields:
            np.testing.assert_array_equal(getattr(by_q[q], name), getattr(best[q], name))
        alive &= best[q].status == 1
        want_max[alive] = q
    assert 0 < want_max.mean() < 4
    np.testing.assert_array_equal(cert.max_q(indptr, indices, 4, "best", progress=False), want_max)

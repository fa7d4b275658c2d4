"""FM certification kernels against the naive references of certify_reference.py and brute force.

Random FMs (d 30..60, n 10..25 perturbable, k 1..8) with rows that are empty, without history
and with history, w0 shifted so that both labels occur. Soundness is checked against every flip
set of size <= q (q <= 3) in float64; bounds and greedy must match the references; the exact
search must agree with brute force whenever it answers.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest
import torch

import certify_reference as R
from advrec import kernels as K

BOUND_METHODS = ("paper", "joint", "best")


# ----------------------------------------------------------------------------- cases

def make_case(seed: int, scale: float = 0.5, n_range=(10, 25), m: int = 24, q_max: int = 4,
              full_row: bool = True) -> Dict:
    """A random FM, its tables for q_max, CSR rows (one with every perturbable feature active
    when full_row), float32 p and gram computed with torch, w0 near the median score."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(30, 61))
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    k = int(rng.integers(1, 9))
    w, V = R.random_fm(rng, d, k, scale)
    P = np.sort(rng.choice(d, n, replace=False)).astype(np.int64)
    indptr, indices = R.random_rows(rng, m, d, P)
    if full_row and n:
        other = np.setdiff1d(np.arange(d), P)[:2]
        row = np.unique(np.concatenate([P, other]))
        indices = np.concatenate([indices, row])
        indptr = np.append(indptr, indptr[-1] + len(row))
    # w0 halfway between two distinct scores around the median: both labels, no f near 0
    sc = np.unique(R.ref_scores(indptr, indices, 0.0, w, V))
    mid = len(sc) // 2
    w0 = float(-(sc[mid - 1] + sc[mid]) / 2) if len(sc) > 1 else 0.5
    case = dict(indptr=indptr, indices=indices, w0=w0, w=w, V=V, P=P, q_max=q_max,
                tables=R.ref_tables(V, P, q_max))
    case["p"], case["gram"] = torch_p_gram(case)
    case["insts"] = [R.instance(indices[indptr[r]:indptr[r + 1]], w0, w, V, P)
                     for r in range(len(indptr) - 1)]
    return case


def make_trap_case(seed: int, m: int = 24) -> Dict:
    """FMs where greedy (Alg. 1) misses flips: one "bait" feature with the largest gain whose
    factor points against every other perturbable feature, so after taking it nothing helps,
    while two of the others together flip the label (k = 1..2, every row label -1)."""
    rng = np.random.default_rng(seed)
    d = 40
    n = int(rng.integers(12, 20))
    k = int(rng.integers(1, 3))
    P = np.sort(rng.choice(d, n, replace=False)).astype(np.int64)
    w = (rng.standard_normal(d) * 0.1).astype(np.float32)
    V = (rng.standard_normal((d, k)) * 0.1).astype(np.float32)
    bait = rng.choice(P, size=1, replace=False)
    rest = np.setdiff1d(P, bait)
    w[bait] = rng.uniform(1, 2, 1)
    V[bait, 0] = rng.uniform(1.5, 2.5, 1)
    w[rest] = rng.uniform(-0.5, 0.5, len(rest))
    V[rest, 0] = -rng.uniform(1, 2, len(rest))
    indptr, indices = R.random_rows(rng, m, d, P, max_other=3, max_hist=2)
    w0 = float(-rng.uniform(5.2, 7.0))
    case = dict(indptr=indptr, indices=indices, w0=w0, w=w, V=V, P=P, q_max=4,
                tables=R.ref_tables(V, P, 4))
    case["p"], case["gram"] = torch_p_gram(case)
    case["insts"] = [R.instance(indices[indptr[r]:indptr[r + 1]], w0, w, V, P)
                     for r in range(len(indptr) - 1)]
    return case


def torch_p_gram(case: Dict):
    """The caller's float32 BLAS inputs: p = w_P + s V_P^T and gram = V_P V_P^T."""
    m = len(case["indptr"]) - 1
    X = torch.zeros(m, len(case["w"]))
    for r in range(m):
        X[r, torch.from_numpy(case["indices"][case["indptr"][r]:case["indptr"][r + 1]])] = 1.0
    V = torch.from_numpy(case["V"])
    P = torch.from_numpy(case["P"])
    VP = V[P]
    p = torch.from_numpy(case["w"])[P] + (X @ V) @ VP.T
    return p, VP @ VP.T


def certify(case: Dict, q: int, method: str, p=None, gram=None, **kw) -> K.FMCertBatch:
    c = case
    return K.fm_certify_batch(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
                              *c["tables"], q, method, p=p, gram=gram, **kw)


def max_q(case: Dict, q_max: int, method: str, p=None, gram=None, **kw) -> np.ndarray:
    c = case
    return K.fm_max_q_batch(c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"],
                            *c["tables"], q_max, method, p=p, gram=gram, **kw)


def flip_set(out: K.FMCertBatch, r: int) -> np.ndarray:
    return out.flips_indices[out.flips_indptr[r]:out.flips_indptr[r + 1]]


def positions(case: Dict, feats) -> List[int]:
    return [int(np.searchsorted(case["P"], f)) for f in feats]


def check_flip(case: Dict, out: K.FMCertBatch, r: int, q: int) -> None:
    """A non-robust claim: a set of at most q candidates, ascending, that flips on re-scoring."""
    inst = case["insts"][r]
    S = flip_set(out, r)
    assert 1 <= len(S) <= q
    assert np.all(np.diff(S) > 0)
    pos = positions(case, S)
    assert set(pos) <= set(inst.C.tolist())
    assert R.flips(inst, R.rescore(inst, pos, case["w0"], case["w"], case["V"], case["P"]))


def check_consistent(out: K.FMCertBatch) -> None:
    lens = np.diff(out.flips_indptr)
    assert out.flips_indptr[0] == 0 and out.flips_indptr[-1] == len(out.flips_indices)
    assert np.all((lens > 0) == (out.status == -1))
    assert out.status.dtype == np.int8 and out.score.dtype == np.float64
    assert out.bound.dtype == np.float64 and out.nodes.dtype == np.int64
    assert out.flips_indptr.dtype == np.int64 and out.flips_indices.dtype == np.int64


SEEDS = list(range(8))
CASES = {s: make_case(s, scale=(0.5, 1.0, 1.5)[s % 3]) for s in SEEDS}


# ----------------------------------------------------------------------------- references

@pytest.mark.parametrize("seed", SEEDS)
def test_scores_match_reference(seed):
    c = CASES[seed]
    got = K.fm_scores(c["indptr"], c["indices"], c["w0"], c["w"], c["V"])
    want = R.ref_scores(c["indptr"], c["indices"], c["w0"], c["w"], c["V"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert set(np.sign(want)) >= {-1.0, 1.0}  # both labels present
    # torch tensors are accepted too
    got_t = K.fm_scores(torch.from_numpy(c["indptr"]), torch.from_numpy(c["indices"]), c["w0"],
                        torch.from_numpy(c["w"]), torch.from_numpy(c["V"]))
    np.testing.assert_array_equal(got_t, got)


@pytest.mark.parametrize("seed", SEEDS)
def test_bounds_and_status_match_reference(seed):
    """p computed in double by the kernel: bounds equal the naive formulas; a row is certified
    exactly when the reference bound clears the tolerance; otherwise greedy decides."""
    c = CASES[seed]
    for q in range(0, 5):
        greedy = certify(c, q, "greedy")
        for method in BOUND_METHODS:
            out = certify(c, q, method)
            check_consistent(out)
            for r, inst in enumerate(c["insts"]):
                want = R.ref_bounds(inst, c["tables"], q)[method]
                tl = R.tol(inst, c["V"], c["w"], c["P"], q)
                if (method == "best" and inst.label == 1 and q > 0
                        and not R.certified_by_bound(inst, want, tl)):
                    # best adds the square bound where paper and joint fall short: at least as
                    # tight as they are, and equal to the square bound's maximum over beta up to
                    # the resolution of the grid and of the kernel's golden-section search.
                    sq = R.ref_square_max(inst, c["w"], c["P"], q)
                    assert out.bound[r] >= want - 1e-9
                    assert out.bound[r] == pytest.approx(max(want, sq), rel=1e-3, abs=1e-3)
                    want = out.bound[r]
                assert out.bound[r] == pytest.approx(want, rel=1e-9, abs=1e-12)
                assert out.score[r] == pytest.approx(inst.f, rel=1e-12, abs=1e-12)
                if q == 0:
                    assert out.status[r] == 1
                    continue
                margin = inst.f + want + (tl if inst.label == -1 else -tl)
                if abs(margin) < 1e-9:
                    continue
                if R.certified_by_bound(inst, want, tl):
                    assert out.status[r] == 1
                else:
                    assert out.status[r] == greedy.status[r]
                    np.testing.assert_array_equal(flip_set(out, r), flip_set(greedy, r))
            assert np.all(out.nodes == 0)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_square_bound_is_sound_at_every_beta(seed):
    """The square bound holds for every beta, not only the best one: min delta >= it (any q)."""
    c = CASES[seed]
    for inst in c["insts"]:
        for q in (1, 2, 3):
            _, min_delta, _, _ = R.brute_force(inst, q)
            for beta in (-0.99, -0.7, -0.3, 0.0, 0.5, 2.0):
                assert R.ref_square(inst, c["w"], c["P"], q, beta) <= min_delta + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_matches_reference(seed):
    c = CASES[seed]
    for q in range(1, 5):
        out = certify(c, q, "greedy")
        check_consistent(out)
        assert np.all(np.isnan(out.bound))
        assert np.all(out.status <= 0)
        for r, inst in enumerate(c["insts"]):
            want = R.ref_greedy(inst, q, c["w0"], c["w"], c["V"], c["P"])
            if want is None:
                assert out.status[r] == 0
            else:
                assert out.status[r] == -1
                assert positions(c, flip_set(out, r)) == want


# ----------------------------------------------------------------------------- brute force

def brute(case: Dict, q: int):
    return [R.brute_force(inst, q) for inst in case["insts"]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("given", ["none", "p", "p+gram", "gram"])
def test_sound_against_brute_force(seed, given):
    c = CASES[seed]
    p = c["p"] if "p" in given else None
    gram = c["gram"] if "gram" in given else None
    for q in range(1, 4):
        truth = brute(c, q)
        for method in K.METHODS:
            out = certify(c, q, method, p=p, gram=gram)
            check_consistent(out)
            for r, (mx, mn, flipped, dist) in enumerate(truth):
                inst = c["insts"][r]
                if out.status[r] == 1:
                    assert not flipped, (method, r)
                if out.status[r] == -1:
                    check_flip(c, out, r, q)
                if method in BOUND_METHODS + ("exact",):
                    # float32 p moves the bound by at most the tolerance
                    slack = R.tol(inst, c["V"], c["w"], c["P"], q) if p is not None else 1e-9
                    if inst.label == -1:
                        assert out.bound[r] >= mx - slack
                    else:
                        assert out.bound[r] <= mn + slack
                if method == "exact" and dist > 1e-9:
                    assert out.status[r] != 0
                    assert (out.status[r] == 1) == (not flipped)


def test_exact_finds_what_greedy_misses():
    """On trap FMs greedy misses flips; branch and bound must find them (expanding nodes) and
    agree with brute force everywhere, with p and gram from float32 BLAS or computed here."""
    missed = 0
    for seed in range(6):
        c = make_trap_case(seed)
        for q in (2, 3):
            truth = brute(c, q)
            gr = certify(c, q, "greedy")
            for p, gram in ((None, None), (c["p"], c["gram"])):
                ex = certify(c, q, "exact", p=p, gram=gram)
                check_consistent(ex)
                for r, (_, _, flipped, dist) in enumerate(truth):
                    if dist <= 1e-9:
                        continue
                    assert ex.status[r] != 0
                    assert (ex.status[r] == 1) == (not flipped)
                    if ex.status[r] == -1:
                        check_flip(c, ex, r, q)
                    if flipped and gr.status[r] == 0:
                        missed += 1
                        assert ex.nodes[r] > 0
    assert missed > 0


def make_integer_case(seed: int) -> Dict:
    """Small-integer w, V and w0: every quantity is exact in float32 and double, so gains tie,
    scores land exactly on 0 (label -1) and f + delta(S) hits the threshold exactly."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(30, 41))
    n = int(rng.integers(10, 16))
    k = int(rng.integers(1, 4))
    w = rng.integers(-2, 3, d).astype(np.float32)
    V = rng.integers(-1, 2, (d, k)).astype(np.float32)
    P = np.sort(rng.choice(d, n, replace=False)).astype(np.int64)
    indptr, indices = R.random_rows(rng, 24, d, P, max_other=4, max_hist=4)
    sc = R.ref_scores(indptr, indices, 0.0, w, V)
    w0 = float(-np.sort(sc)[len(sc) // 2])  # one row (at least) scores exactly 0
    case = dict(indptr=indptr, indices=indices, w0=w0, w=w, V=V, P=P, q_max=4,
                tables=R.ref_tables(V, P, 4))
    case["p"], case["gram"] = torch_p_gram(case)
    case["insts"] = [R.instance(indices[indptr[r]:indptr[r + 1]], w0, w, V, P)
                     for r in range(len(indptr) - 1)]
    return case


@pytest.mark.parametrize("seed", range(4))
def test_ties_and_exact_thresholds(seed):
    """Greedy breaks ties by the lowest position; f = 0 is label -1; a set reaching the
    threshold exactly flips label +1 (f + delta <= 0) but not label -1 (f + delta > 0)."""
    c = make_integer_case(seed)
    insts = c["insts"]
    assert any(i.f == 0 for i in insts)
    for q in (1, 2, 3):
        truth = brute(c, q)
        assert any(dist == 0 for *_, dist in truth) or q == 1
        gr = certify(c, q, "greedy")
        for r, inst in enumerate(insts):
            want = R.ref_greedy(inst, q, c["w0"], c["w"], c["V"], c["P"])
            assert (gr.status[r] == -1) == (want is not None)
            if want is not None:
                assert positions(c, flip_set(gr, r)) == want
        for p, gram in ((None, None), (c["p"], c["gram"])):
            for method in ("best", "exact"):
                out = certify(c, q, method, p=p, gram=gram)
                for r, (_, _, flipped, _) in enumerate(truth):
                    if out.status[r] == 1:
                        assert not flipped
                    if out.status[r] == -1:
                        check_flip(c, out, r, q)
                    if method == "exact":
                        assert (out.status[r] == 1) == (not flipped)


# ----------------------------------------------------------------------------- max_q

@pytest.mark.parametrize("seed", SEEDS[:4])
@pytest.mark.parametrize("method", ["paper", "joint", "best", "exact"])
def test_max_q_equals_per_q_loop(seed, method):
    c = CASES[seed]
    for p, gram in ((None, None), (c["p"], c["gram"])):
        got = max_q(c, 4, method, p=p, gram=gram)
        assert got.dtype == np.int32
        want = np.zeros(len(c["insts"]), np.int32)
        alive = np.ones(len(c["insts"]), bool)
        for q in range(1, 5):
            alive &= certify(c, q, method, p=p, gram=gram).status == 1
            want[alive] = q
        np.testing.assert_array_equal(got, want)
        assert np.all(max_q(c, 0, method) == 0)


# ----------------------------------------------------------------------------- edge cases

def test_q_zero_is_robust():
    c = CASES[0]
    for method in K.METHODS:
        out = certify(c, 0, method)
        assert np.all(out.status == 1) and np.all(out.bound == 0) and np.all(out.nodes == 0)
        assert len(out.flips_indices) == 0


def test_q_larger_than_candidates():
    c = make_case(3, scale=1.0, n_range=(4, 5), m=12, q_max=7)
    q = 7  # > n >= |C|
    truth = brute(c, q)
    for method in K.METHODS:
        out = certify(c, q, method, p=c["p"], gram=c["gram"])
        for r, (_, _, flipped, dist) in enumerate(truth):
            if out.status[r] == 1:
                assert not flipped
            if out.status[r] == -1:
                check_flip(c, out, r, q)
            if method == "exact" and dist > 1e-9:
                assert (out.status[r] == 1) == (not flipped)


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_perturbable_sets(n):
    c = make_case(5, n_range=(n, n), m=12)
    for q in (1, 2, 3):
        truth = brute(c, q)
        for method in K.METHODS:
            out = certify(c, q, method)
            for r, (_, _, flipped, dist) in enumerate(truth):
                if out.status[r] == 1:
                    assert not flipped
                if out.status[r] == -1:
                    check_flip(c, out, r, q)
                if method == "exact" and dist > 1e-9:
                    assert (out.status[r] == 1) == (not flipped)
    if n == 0:
        assert np.all(certify(c, 2, "exact").status == 1)
        assert np.all(certify(c, 2, "greedy").status == 0)


def test_every_perturbable_feature_active():
    c = CASES[1]
    r = len(c["insts"]) - 1  # the row make_case filled with all of P
    assert len(c["insts"][r].C) == 0
    for q in (1, 3):
        assert certify(c, q, "exact").status[r] == 1
        assert certify(c, q, "greedy").status[r] == 0
        out = certify(c, q, "joint")
        assert out.bound[r] == 0.0


def test_node_budget_one_never_wrong():
    unknown = 0
    for seed in range(6):
        c = make_trap_case(seed)
        for q in (2, 3):
            truth = brute(c, q)
            out = certify(c, q, "exact", node_budget=1)
            assert np.all(out.nodes <= 1)
            for r, (_, _, flipped, dist) in enumerate(truth):
                if dist <= 1e-9:
                    continue
                if out.status[r] == 0:
                    unknown += 1
                else:
                    assert (out.status[r] == 1) == (not flipped)
                if out.status[r] == -1:
                    check_flip(c, out, r, q)
    assert unknown > 0


def test_deterministic():
    c = CASES[2]
    a = certify(c, 3, "exact", p=c["p"], gram=c["gram"])
    b = certify(c, 3, "exact", p=c["p"], gram=c["gram"])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- bad input

def args(case: Dict, **over):
    c = case
    a = dict(indptr=c["indptr"], indices=c["indices"], w0=c["w0"], w=c["w"], V=c["V"],
             perturbable=c["P"], pair_top=c["tables"].pair_top, pair_bot=c["tables"].pair_bot,
             row_top=c["tables"].row_top, row_bot=c["tables"].row_bot, q=2)
    a.update(over)
    return a


@pytest.mark.parametrize("over,exc,match", [
    (dict(q=-1), ValueError, "q must be >= 0"),
    (dict(q=1.5), ValueError, "q must be an int"),
    (dict(q=True), ValueError, "q must be an int"),
    (dict(method="fancy"), ValueError, "method must be one of"),
    (dict(node_budget=0), ValueError, "node_budget must be >= 1"),
    (dict(q=5), ValueError, "pair_top/pair_bot have 10 entries"),
    (dict(w=None), ValueError, "w must hold real numbers"),
])
def test_bad_scalars(over, exc, match):
    c = CASES[0]
    a = args(c, **{k: v for k, v in over.items() if k not in ("method", "node_budget")})
    kw = {k: v for k, v in over.items() if k in ("method", "node_budget")}
    if "w" in over and over["w"] is None:
        a["w"] = np.array(["a"] * len(c["w"]))
    with pytest.raises(exc, match=match):
        K.fm_certify_batch(**a, **kw)


def test_bad_tables_and_shapes():
    c = CASES[0]
    n = len(c["P"])
    T = c["tables"]
    with pytest.raises(ValueError, match="row_top/row_bot have 1 columns"):
        K.fm_certify_batch(**args(c, q=3, row_top=T.row_top[:, :1].copy(),
                                  row_bot=T.row_bot[:, :1].copy()))
    with pytest.raises(ValueError, match="pair_bot must have as many"):
        K.fm_certify_batch(**args(c, pair_bot=T.pair_bot[:-1]))
    with pytest.raises(ValueError, match="row_top must have one row per perturbable"):
        K.fm_certify_batch(**args(c, row_top=T.row_top[:-1], row_bot=T.row_bot[:-1]))
    bad = T.pair_top.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="pair_top contains NaN"):
        K.fm_certify_batch(**args(c, pair_top=bad))
    with pytest.raises(ValueError, match=r"p must have shape"):
        K.fm_certify_batch(**args(c), p=np.zeros((1, n), np.float32))
    with pytest.raises(ValueError, match=r"gram must have shape"):
        K.fm_certify_batch(**args(c), gram=np.zeros((n, n + 1), np.float32))
    p = c["p"].numpy().copy()
    p[3, 0] = np.inf
    with pytest.raises(ValueError, match="p contains NaN or inf in row 3"):
        K.fm_certify_batch(**args(c), p=p)
    g = c["gram"].numpy().copy()
    g[1, 1] = np.nan
    with pytest.raises(ValueError, match="gram contains NaN or inf"):
        K.fm_certify_batch(**args(c), gram=g)
    with pytest.raises(ValueError, match="V must have one row per feature"):
        K.fm_certify_batch(**args(c, V=c["V"][:-1]))
    # greedy reads no tables, so their sizes do not matter
    K.fm_certify_batch(**args(c, q=9), method="greedy")


@pytest.mark.parametrize("name", ["w", "V"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_model(name, value):
    c = CASES[0]
    x = c[name].copy()
    x.flat[3] = value
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
        K.fm_certify_batch(**args(c, **{name: x}))
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
        K.fm_scores(c["indptr"], c["indices"], c["w0"], **{"w": c["w"], "V": c["V"], name: x})
    with pytest.raises(ValueError, match="w0 must be finite"):
        K.fm_scores(c["indptr"], c["indices"], value, c["w"], c["V"])


def test_bad_csr():
    c = CASES[0]
    ip, ix = c["indptr"], c["indices"]
    r = int(np.flatnonzero(np.diff(ip) >= 2)[0])
    swapped = ix.copy()
    a, b = ip[r], ip[r] + 1
    swapped[a], swapped[b] = swapped[b], swapped[a]
    with pytest.raises(ValueError, match=f"indices of row {r} must be strictly increasing"):
        K.fm_certify_batch(**args(c, indices=swapped))
    dup = ix.copy()
    dup[b] = dup[a]
    with pytest.raises(ValueError, match=f"indices of row {r} must be strictly increasing"):
        K.fm_scores(ip, dup, 0.0, c["w"], c["V"])
    neg = ip.copy()
    neg[0] = -1
    with pytest.raises(ValueError, match="indptr must start at 0"):
        K.fm_certify_batch(**args(c, indptr=neg))
    uns = ip.copy()
    uns[2], uns[3] = ip[3] + 1, ip[2]
    with pytest.raises(ValueError, match="indptr must be non-decreasing"):
        K.fm_certify_batch(**args(c, indptr=uns))
    with pytest.raises(ValueError, match=r"indptr\[-1\]"):
        K.fm_certify_batch(**args(c, indptr=ip[:-1]))
    with pytest.raises(ValueError, match="indices must hold integers"):
        K.fm_certify_batch(**args(c, indices=ix.astype(np.float64)))
    out = ix.copy()
    out[-1] = len(c["w"])
    with pytest.raises(IndexError, match="is outside"):
        K.fm_certify_batch(**args(c, indices=out))
    out[-1] = -1
    with pytest.raises(IndexError, match="is outside"):
        K.fm_scores(ip, out, 0.0, c["w"], c["V"])


def test_bad_perturbable():
    c = CASES[0]
    P = c["P"]
    with pytest.raises(IndexError, match="perturbable"):
        K.fm_certify_batch(**args(c, perturbable=np.append(P[:-1], len(c["w"]))))
    with pytest.raises(ValueError, match="perturbable must be sorted and unique"):
        K.fm_certify_batch(**args(c, perturbable=P[::-1].copy()))
    with pytest.raises(ValueError, match="perturbable must be sorted and unique"):
        K.fm_certify_batch(**args(c, perturbable=np.concatenate([P[:1], P[:-1]])))


def test_max_q_refuses_greedy_and_bad_args():
    c = CASES[0]
    a = args(c)
    a["q_max"] = a.pop("q")
    with pytest.raises(ValueError, match="greedy"):
        K.fm_max_q_batch(**a, method="greedy")
    with pytest.raises(ValueError, match="q_max must be >= 0"):
        K.fm_max_q_batch(**{**a, "q_max": -2})
    with pytest.raises(ValueError, match="pair_top/pair_bot have 10 entries"):
        K.fm_max_q_batch(**{**a, "q_max": 6})


def test_strict_core_binding_checks_dtypes():
    """The compiled binding never copies: a wrong dtype is an error there (the wrapper casts)."""
    from advrec import _core

    c = CASES[0]
    T = c["tables"]
    good = [c["indptr"], c["indices"], c["w0"], c["w"], c["V"], c["P"], *T, 2, "best", None,
            None, 10]
    _core.fm_certify_batch(*good)
    for i, name in [(0, "indptr"), (3, "w"), (4, "V"), (6, "pair_top")]:
        bad = list(good)
        bad[i] = np.asarray(good[i]).astype(np.float16 if i else np.int32)
        with pytest.raises(ValueError, match=name):
            _core.fm_certify_batch(*bad)
    bad = list(good)
    bad[4] = np.asfortranarray(c["V"])
    if not bad[4].flags.c_contiguous:
        with pytest.raises(ValueError, match="V must be C-contiguous"):
            _core.fm_certify_batch(*bad)

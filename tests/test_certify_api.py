"""advrec.certify.FMCertifier: the user-facing certifier over the compiled kernels.

Soundness of every method against brute force lives in test_kernels_certify.py; here the
certifier itself is checked: tiling, the BLAS-computed p, table growth, max_q, CertResult, the
random-injection baseline, and argument errors.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from advrec.certify import METHODS, CertResult, FMCertifier


def random_fm(seed: int, d: int = 40, k: int = 6, n_hist: int = 14, scale: float = 0.35):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=d) * scale).astype(np.float32)
    V = (rng.normal(size=(d, k)) * scale).astype(np.float32)
    P = np.arange(d - n_hist, d, dtype=np.int64)  # the last field is the history
    return float(rng.normal() * 0.3), w, V, P


def random_instances(seed: int, d: int, P: np.ndarray, m: int, max_hist: int = 5):
    rng = np.random.default_rng(seed)
    rows = []
    n_other = d - len(P)
    for i in range(m):
        base = rng.choice(n_other, size=int(rng.integers(0, 4)), replace=False)
        hist = rng.choice(P, size=int(rng.integers(0, max_hist + 1)), replace=False)
        rows.append(np.sort(np.concatenate([base, hist]).astype(np.int64)))
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return indptr, np.concatenate(rows).astype(np.int64)


def brute_force_flippable(w0, w, V, P, row, q) -> bool:
    """Whether some set of at most q candidate flips changes the label (float64, exhaustive)."""
    V64, w64 = V.astype(np.float64), w.astype(np.float64)

    def f(active):
        s = V64[active].sum(0)
        return w0 + w64[active].sum() + 0.5 * (s @ s + (V64[active] ** 2).sum())

    base = f(row) > 0
    cand = [j for j in P if j not in set(row)]
    for size in range(1, q + 1):
        for S in itertools.combinations(cand, size):
            if (f(np.concatenate([row, S]).astype(np.int64)) > 0) != base:
                return True
    return False


@pytest.fixture(scope="module")
def case():
    w0, w, V, P = random_fm(0)
    indptr, indices = random_instances(1, len(w), P, 60)
    return w0, w, V, P, indptr, indices


@pytest.mark.parametrize("method", ["paper", "joint", "best", "exact"])
def test_certificates_are_sound_through_the_certifier(case, method):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P, tile_rows=7)  # several tiles, one partial
    for q in (1, 2, 3):
        r = cert.certify(indptr, indices, q, method)
        assert isinstance(r, CertResult) and len(r) == len(indptr) - 1
        for i in range(len(r)):
            row = indices[indptr[i]:indptr[i + 1]]
            truth = brute_force_flippable(w0, w, V, P, row, q)
            if r.status[i] == 1:
                assert not truth, (method, q, i)
            if r.status[i] == -1:
                assert truth
                flipped = np.union1d(row, r.flip_set(i))
                assert len(r.flip_set(i)) <= q
                assert (cert.scores(np.array([0, len(flipped)]), flipped)[0] > 0) != (r.score[i] > 0)
        if method == "exact":  # a generous node budget answers every instance of this size
            assert np.all(r.status != 0)


def test_tiling_and_progress_do_not_change_results(case):
    w0, w, V, P, indptr, indices = case
    a = FMCertifier(w0, w, V, P, tile_rows=5).certify(indptr, indices, 2, "best", progress=False)
    b = FMCertifier(w0, w, V, P, tile_rows=1000, gram_max_bytes=0).certify(indptr, indices, 2, "best")
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_allclose(a.bound, b.bound, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.flips_indptr, b.flips_indptr)
    np.testing.assert_array_equal(a.flips_indices, b.flips_indices)


def test_an_instance_gets_the_same_certificate_alone_and_in_any_tile():
    """BLAS rounds a 1- or 2-row product differently (another kernel); the certifier pads short
    tiles, so every field is the same bit for bit whatever tile an instance lands in."""
    w0, w, V, P = random_fm(3, d=120, k=64, n_hist=80, scale=0.2)
    indptr, indices = random_instances(4, len(w), P, 23, max_hist=12)
    big = FMCertifier(w0, w, V, P).certify_budgets(indptr, indices, [1, 2, 3], "best")
    for tile_rows in (1, 2, 7):
        small = FMCertifier(w0, w, V, P, tile_rows=tile_rows).certify_budgets(indptr, indices, [1, 2, 3], "best")
        for q in (1, 2, 3):
            for field in ("status", "score", "bound", "flips_indptr", "flips_indices", "nodes"):
                np.testing.assert_array_equal(getattr(small[q], field), getattr(big[q], field),
                                              err_msg=f"tile_rows={tile_rows} q={q} {field}")
    cert = FMCertifier(w0, w, V, P)
    for i in (0, 11, 22):
        one = cert.certify(indptr[i:i + 2] - indptr[i], indices[indptr[i]:indptr[i + 1]], 2, "best")
        assert one.bound[0] == big[2].bound[i] and one.status[0] == big[2].status[i]


def test_scores_match_a_hand_computation(case):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P)
    got = cert.scores(indptr, indices)
    for i in range(len(got)):
        row = indices[indptr[i]:indptr[i + 1]]
        want = w0 + sum(float(w[a]) for a in row)
        for x, a in enumerate(row):
            for b in row[x:]:
                want += float(np.dot(V[a].astype(np.float64), V[b].astype(np.float64)))
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_max_q_is_the_first_budget_not_certified(case):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P)
    mq = cert.max_q(indptr, indices, 5, "best")
    assert mq.dtype == np.int32 and mq.min() >= 0 and mq.max() <= 5
    robust = np.stack([cert.certify(indptr, indices, q, "best").status == 1 for q in range(1, 6)], 1)
    want = np.where(robust.all(1), 5, np.argmin(robust, axis=1))
    np.testing.assert_array_equal(mq, want)
    assert np.all(cert.max_q(indptr, indices, 0) == 0)
    # The tables were grown on demand (q_max 5 needs 15 pairs); a later small q reuses them.
    assert len(cert.tables(2).pair_top_val) >= 15


def test_q_zero_is_always_robust(case):
    w0, w, V, P, indptr, indices = case
    r = FMCertifier(w0, w, V, P).certify(indptr, indices, 0, "best")
    assert np.all(r.status == 1) and np.all(r.bound == 0)


def test_greedy_never_certifies_robustness(case):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P)
    r = cert.certify(indptr, indices, 3, "greedy")
    assert set(np.unique(r.status)) <= {-1, 0} and np.all(np.isnan(r.bound))
    with pytest.raises(ValueError, match="greedy"):
        cert.max_q(indptr, indices, 3, "greedy")


def test_fractions_and_summary(case):
    w0, w, V, P, indptr, indices = case
    r = FMCertifier(w0, w, V, P).certify(indptr, indices, 2, "best")
    fr = r.fractions()
    assert set(fr) == {"robust", "non-robust", "unknown"}
    assert sum(fr.values()) == pytest.approx(1.0)
    assert fr["robust"] == pytest.approx(np.mean(r.status == 1))
    assert r.summary()["q"] == 2 and r.summary()["method"] == "best"
    np.testing.assert_array_equal(r.label, np.where(r.score > 0, 1, -1))


def test_random_injection_is_seeded_and_real(case):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P)
    a = cert.random_injection(indptr, indices, 3, seed=5)
    b = cert.random_injection(indptr, indices, 3, seed=5)
    np.testing.assert_array_equal(a, b)
    # A random injection that flips proves the instance non-robust: no robust certificate there.
    robust = cert.certify(indptr, indices, 3, "best").status == 1
    assert not np.any(a & robust)


def test_from_model_and_torch_inputs(case):
    w0, w, V, P, indptr, indices = case

    class Params:
        def parameters_numpy(self):
            return w0, w, V

    a = FMCertifier.from_model(Params(), torch.from_numpy(P)).certify(
        torch.from_numpy(indptr), torch.from_numpy(indices), 2, "joint")
    b = FMCertifier(w0, w, V, P).certify(indptr, indices, 2, "joint")
    np.testing.assert_array_equal(a.status, b.status)


def test_empty_batch(case):
    w0, w, V, P, _, _ = case
    r = FMCertifier(w0, w, V, P).certify(np.zeros(1, np.int64), np.zeros(0, np.int64), 2)
    assert len(r) == 0 and r.flips_indptr.tolist() == [0]


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(q=-1), ValueError, "q"),
    (dict(q=1.5), ValueError, "q"),
    (dict(method="fast"), ValueError, "method"),
    (dict(indptr=np.array([1, 2])), ValueError, "indptr"),
    (dict(indptr=np.array([0, 3, 2, 4])), ValueError, "indptr"),
    (dict(indptr=np.array([0, 2]), indices=np.array([1, 99])), IndexError, "indices"),
    (dict(indptr=np.array([0, 2]), indices=np.array([3, 1])), ValueError, "increasing"),
    (dict(indptr=np.array([0, 2]), indices=np.array([0.0, 1.0])), ValueError, "indices"),
])
def test_bad_certify_arguments(case, kwargs, err, match):
    w0, w, V, P, indptr, indices = case
    args = dict(indptr=indptr, indices=indices, q=2, method="best")
    args.update(kwargs)
    with pytest.raises(err, match=match):
        FMCertifier(w0, w, V, P).certify(args["indptr"], args["indices"], args["q"], args["method"])


def test_bad_model_arguments(case):
    w0, w, V, P, _, _ = case
    with pytest.raises(ValueError, match="V"):
        FMCertifier(w0, w, V[:, 0], P)
    with pytest.raises(ValueError, match="rows"):
        FMCertifier(w0, w[:-1], V, P)
    bad = V.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FMCertifier(w0, w, bad, P)
    with pytest.raises(IndexError, match="perturbable"):
        FMCertifier(w0, w, V, np.array([0, len(w)]))
    with pytest.raises(ValueError, match="sorted"):
        FMCertifier(w0, w, V, P[::-1].copy())
    with pytest.raises(ValueError, match="w0"):
        FMCertifier(float("nan"), w, V, P)
    assert set(METHODS) == {"greedy", "paper", "joint", "best", "exact"}


def test_device_argument(case):
    w0, w, V, P, _, _ = case
    with pytest.raises(ValueError, match="device"):
        FMCertifier(w0, w, V, P, device="tpu")
    if not __import__("advrec").kernels.has_cuda():
        with pytest.raises(ValueError, match="CUDA"):
            FMCertifier(w0, w, V, P, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("advrec").kernels.has_cuda(), reason="needs a CUDA device")
def test_cuda_certifier_matches_cpu(case):
    """GPU tables and GPU greedy (re-scored on the CPU) agree with the CPU certifier."""
    w0, w, V, P, indptr, indices = case
    cpu, gpu = FMCertifier(w0, w, V, P), FMCertifier(w0, w, V, P, device="cuda")
    for q in (1, 2, 3):
        for method in ("greedy", "best"):
            a = cpu.certify(indptr, indices, q, method)
            b = gpu.certify(indptr, indices, q, method)
            np.testing.assert_array_equal(a.status, b.status)
            np.testing.assert_array_equal(a.flips_indices, b.flips_indices)


def test_certify_budgets_equals_one_call_per_budget(case):
    w0, w, V, P, indptr, indices = case
    cert = FMCertifier(w0, w, V, P, tile_rows=9)
    many = cert.certify_budgets(indptr, indices, [3, 1, 2, 2], "best")
    assert sorted(many) == [1, 2, 3]
    for q, r in many.items():
        one = cert.certify(indptr, indices, q, "best")
        np.testing.assert_array_equal(r.status, one.status)
        np.testing.assert_array_equal(r.bound, one.bound)
        np.testing.assert_array_equal(r.flips_indices, one.flips_indices)
        assert r.q == q


def test_scores_and_sums_kernel(case):
    from advrec import kernels
    w0, w, V, P, indptr, indices = case
    f, s = kernels.fm_scores_sums(indptr, indices, w0, w, V)
    np.testing.assert_array_equal(f, kernels.fm_scores(indptr, indices, w0, w, V))
    want = np.stack([V[indices[indptr[i]:indptr[i + 1]]].astype(np.float64).sum(0)
                     for i in range(len(indptr) - 1)])
    assert s.dtype == np.float32 and s.shape == want.shape
    np.testing.assert_allclose(s, want, rtol=1e-6, atol=1e-6)

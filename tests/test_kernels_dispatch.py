"""The kernels package's own logic around the core: the GPU greedy's host side (history
positions, exact re-scoring of claimed flips) run against the CPU kernel with the CUDA twin
replaced by a NumPy reference, and the shared argument helpers (``kernels/_args.py``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advrec import kernels as K
from advrec.kernels import _args, certify_cuda
from certify_reference import random_fm, random_rows, ref_scores
from test_kernels_certify_cuda import ref_greedy


class _FakeCudaTensor(torch.Tensor):
    """A CPU tensor that reports is_cuda, so the dispatch runs without a GPU."""

    @property
    def is_cuda(self):  # noqa: D401
        return True


def _case(seed: int, m: int = 60, d: int = 40, k: int = 4):
    rng = np.random.default_rng(seed)
    w, V = random_fm(rng, d, k, scale=0.8)
    perturbable = np.sort(rng.choice(d, size=25, replace=False)).astype(np.int64)
    indptr, indices = random_rows(rng, m, d, perturbable)
    w0 = -0.3
    s = np.zeros((m, k))
    for r in range(m):
        s[r] = V[indices[indptr[r]:indptr[r + 1]]].astype(np.float64).sum(0)
    p = (w[perturbable] + s @ V[perturbable].T.astype(np.float64)).astype(np.float32)
    return w0, w, V, perturbable, indptr, indices, p


def _numpy_twin(calls):
    def twin(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q):
        args = [x.numpy() for x in (p, hist_indptr, hist_indices, diag, V_P, sigma, threshold)]
        calls.append(args)
        sel, delta, flipped = ref_greedy(*args, q)
        return torch.from_numpy(sel), torch.from_numpy(delta), torch.from_numpy(flipped)
    return twin


@pytest.mark.parametrize("seed,q", [(0, 1), (1, 3), (2, 6)])
def test_gpu_greedy_host_side_matches_the_cpu_kernel(monkeypatch, seed, q):
    w0, w, V, P, indptr, indices, p = _case(seed)
    calls = []
    monkeypatch.setattr(certify_cuda, "fm_greedy_cuda", _numpy_twin(calls))
    got = K.fm_greedy_batch(indptr, indices, w0, w, V, P, q,
                            p=torch.from_numpy(p).as_subclass(_FakeCudaTensor),
                            V_P=torch.from_numpy(V[P]))
    # The history handed to the twin: each row's perturbable features, as positions in P.
    hist_ptr, hist_ix = calls[0][1], calls[0][2]
    for r in range(len(indptr) - 1):
        row = indices[indptr[r]:indptr[r + 1]]
        want = [int(np.flatnonzero(P == f)[0]) for f in row if f in P]
        assert list(hist_ix[hist_ptr[r]:hist_ptr[r + 1]]) == want
    np.testing.assert_allclose(got.score, ref_scores(indptr, indices, w0, w, V), rtol=1e-6, atol=1e-6)
    # Same verdicts and flip sets as the CPU kernel's greedy (Alg. 1 there too).
    cpu = K.fm_certify_batch(indptr, indices, w0, w, V, P, np.zeros(q * (q + 1) // 2),
                             np.zeros(q * (q + 1) // 2), np.zeros((len(P), max(q - 1, 0))),
                             np.zeros((len(P), max(q - 1, 0))), q, "greedy")
    np.testing.assert_array_equal(got.status, cpu.status)
    np.testing.assert_array_equal(got.flips_indptr, cpu.flips_indptr)
    np.testing.assert_array_equal(got.flips_indices, cpu.flips_indices)
    assert (got.status == -1).any() or q == 1
    assert np.isnan(got.bound).all() and not got.nodes.any()


def test_gpu_greedy_claims_are_rescored_exactly(monkeypatch):
    """A twin that claims every row flips is believed only where the exact score agrees."""
    w0, w, V, P, indptr, indices, p = _case(3)
    m = len(indptr) - 1

    def liar(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q):
        sel = torch.full((m, q), -1, dtype=torch.int64)
        sel[:, 0] = 0  # always "flip" perturbable position 0
        return sel, torch.zeros(m, dtype=torch.float64), torch.ones(m, dtype=torch.bool)

    monkeypatch.setattr(certify_cuda, "fm_greedy_cuda", liar)
    got = K.fm_greedy_batch(indptr, indices, w0, w, V, P, 2,
                            p=torch.from_numpy(p).as_subclass(_FakeCudaTensor), V_P=torch.from_numpy(V[P]))
    for r in range(m):
        row = indices[indptr[r]:indptr[r + 1]]
        after = ref_scores(np.array([0, len(np.union1d(row, P[:1]))]), np.union1d(row, P[:1]), w0, w, V)[0]
        really = (after > 0) != (got.score[r] > 0)
        assert got.status[r] == (-1 if really else 0), r
        assert list(got.flips_indices[got.flips_indptr[r]:got.flips_indptr[r + 1]]) == ([P[0]] if really else [])
    assert 0 < (got.status == -1).sum() < m  # the case has both kinds of row


def test_gpu_greedy_refuses_a_cpu_p():
    w0, w, V, P, indptr, indices, p = _case(0)
    with pytest.raises(ValueError, match="p must be a CUDA tensor.*fm_certify_batch"):
        K.fm_greedy_batch(indptr, indices, w0, w, V, P, 2, p=torch.from_numpy(p), V_P=torch.from_numpy(V[P]))


# ----------------------------------------------------------------------------- _args helpers


@pytest.mark.parametrize("value,err,match", [
    (np.array([1.0, 2.0]), ValueError, "ids must hold integers, got dtype float64"),
    (np.array([True, False]), ValueError, "ids must hold integers, got dtype bool"),
    (np.array([[1, 2]]), ValueError, r"ids must be 1-D, got shape \(1, 2\)"),
    (np.array([2 ** 63], np.uint64), IndexError, "outside the int64 range"),
    ([[1], [2, 3]], ValueError, "ids must be array-like"),
    (torch.tensor([0.5]), ValueError, "ids must hold integers, got dtype float32"),
])
def test_int_array_refuses(value, err, match):
    with pytest.raises(err, match=match):
        _args.int_array(value, "ids")


def test_int_array_converts_without_changing_values():
    for value in ([3, 1, 2], np.array([3, 1, 2], np.int32), torch.tensor([3, 1, 2]), np.array([3, 1, 2], np.uint8)):
        out = _args.int_array(value, "ids")
        assert out.dtype == np.int64 and out.flags.c_contiguous and out.tolist() == [3, 1, 2]
    assert _args.int_array(np.zeros((2, 3), np.int16), "x", ndim=None).shape == (2, 3)
    assert _args.int_array(np.zeros(0), "x").dtype == np.int64  # an empty float array is no id


@pytest.mark.parametrize("indptr,indices,match", [
    ([1, 2], [0, 1], "indptr must start at 0"),
    ([0, 2, 1], [0, 1], "indptr must be non-decreasing"),
    ([0, 1], [0, 1], r"indptr\[-1\] \(1\) must equal len\(indices\) \(2\)"),
    ([], [], "indptr must start at 0"),
])
def test_as_csr_checks_the_structure(indptr, indices, match):
    with pytest.raises(ValueError, match=match):
        K.as_csr(indptr, indices)
    with pytest.raises(ValueError, match="hist " + match):
        K.as_csr(indptr, indices, "hist")


@pytest.mark.parametrize("x,kw,match", [
    (True, {}, "n must be an int, got bool"),
    (2.0, {}, "n must be an int, got float"),
    (-1, {}, "n must be >= 0, got -1"),
    (0, {"minimum": 1}, "n must be >= 1, got 0"),
    (9, {"maximum": 8, "where": " on CUDA"}, r"n must be in \[0, 8\] on CUDA, got 9"),
])
def test_int_arg(x, kw, match):
    with pytest.raises(ValueError, match=match):
        _args.int_arg(x, "n", **kw)
    assert _args.int_arg(np.int32(3), "n") == 3 and type(_args.int_arg(np.int32(3), "n")) is int


@pytest.mark.parametrize("x,message", [
    (0, "t must be a positive int, got 0"), (True, "t must be a positive int, got bool"),
    (1.5, "t must be a positive int, got float"), (10, "t must be at most 9, got 10"),
])
def test_positive_int(x, message):
    with pytest.raises(ValueError) as err:
        _args.positive_int(x, "t", maximum=9)
    assert str(err.value) == message
    assert _args.positive_int(9, "t", maximum=9) == 9

"""The CUDA twins of the Gram tables and the greedy flip search against plain NumPy references.

GPU tests carry ``@pytest.mark.cuda`` and are skipped unless the core was built with CUDA and a
device is visible. The argument checks (``check_gram_args``, ``check_greedy_args``) and the
references themselves are device-agnostic and run everywhere.

Integer-valued inputs make every float32 sum exact, so the GPU must match the float64
references bit for bit there, ties included; float inputs are checked with a tolerance.
"""
from __future__ import annotations

import itertools
import zlib
from typing import List, Sequence, Tuple

import numpy as np
import pytest
import torch

from advrec.kernels import certify_cuda as C
from advrec.kernels import pairs_cuda as G
from advrec import kernels as K

cuda = pytest.mark.skipif(not K.has_cuda(), reason="needs a CUDA build of advrec and a GPU")

GRAM_FIELDS = ("pair_top_val", "pair_top_idx", "pair_bot_val", "pair_bot_idx",
               "row_top_val", "row_top_idx", "row_bot_val", "row_bot_idx")


def seeded(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ----------------------------------------------------------------------------- NumPy references

def ref_gram_extremes(V: np.ndarray, M: int, t: int) -> Tuple[np.ndarray, ...]:
    """Full G in float64, sorted: pairs i <= j in row-major order, so a stable sort breaks ties
    by the lower (i, j); per row, a stable sort of the off-diagonal entries (lower partner)."""
    G = V.astype(np.float64) @ V.astype(np.float64).T
    n = G.shape[0]
    iu, ju = np.triu_indices(n)
    vals = G[iu, ju]
    out: List[np.ndarray] = []
    for sign, pad in ((-1.0, -np.inf), (1.0, np.inf)):
        order = np.argsort(sign * vals, kind="stable")[:M]
        pv = np.full(M, pad)
        pi = np.full((M, 2), -1, dtype=np.int64)
        pv[: len(order)] = vals[order]
        pi[: len(order), 0] = iu[order]
        pi[: len(order), 1] = ju[order]
        out += [pv, pi]
    for sign, pad in ((-1.0, -np.inf), (1.0, np.inf)):
        rv = np.full((n, t), pad)
        ri = np.full((n, t), -1, dtype=np.int64)
        for j in range(n):
            partners = np.delete(np.arange(n), j)
            order = np.argsort(sign * G[j, partners], kind="stable")[:t]
            rv[j, : len(order)] = G[j, partners[order]]
            ri[j, : len(order)] = partners[order]
        out += [rv, ri]
    return tuple(out)


def ref_greedy(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q):
    """Alg. 1, one row at a time, in float64."""
    m, n = p.shape
    Vd = V_P.astype(np.float64)  # columns of G on demand: n may be too large for all of G
    selected = np.full((m, q), -1, dtype=np.int64)
    delta = np.zeros(m)
    flipped = np.zeros(m, dtype=bool)
    for r in range(m):
        cand = np.ones(n, dtype=bool)
        cand[hist_indices[hist_indptr[r]:hist_indptr[r + 1]]] = False
        g = p[r].astype(np.float64) + diag.astype(np.float64)
        d = 0.0
        for s in range(q):
            c = np.flatnonzero(cand)
            if c.size == 0:
                break
            j = c[np.argmax(sigma[r] * g[c])]  # first maximum: the lowest position
            selected[r, s] = j
            d += g[j]
            cand[j] = False
            if (d > threshold[r]) if sigma[r] > 0 else (d <= threshold[r]):
                flipped[r] = True
                break
            g = g + Vd @ Vd[j]
        delta[r] = d
    return selected, delta, flipped


# ----------------------------------------------------------------------------- input makers

def int_factors(rng: np.random.Generator, n: int, k: int, lo: int = -2, hi: int = 2) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=(n, k)).astype(np.float32)


def history_csr(rng: np.random.Generator, m: int, n: int, full_rows: Sequence[int] = ()
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Unsorted histories with duplicates; rows in `full_rows` cover every position."""
    rows = []
    for r in range(m):
        if r in full_rows:
            h = rng.permutation(n).tolist()
        else:
            h = rng.integers(0, n, size=int(rng.integers(0, n // 2 + 1))).tolist() if n else []
            h += h[: len(h) // 4]
            rng.shuffle(h)
        rows.append(h)
    indptr = np.cumsum([0] + [len(h) for h in rows]).astype(np.int64)
    indices = np.array([i for h in rows for i in h], dtype=np.int64)
    return indptr, indices


def greedy_inputs(rng: np.random.Generator, m: int, n: int, k: int, integer: bool = True,
                  full_rows: Sequence[int] = ()):
    if integer:
        V = int_factors(rng, n, k)
        p = rng.integers(-6, 7, size=(m, n)).astype(np.float32)
        threshold = rng.integers(-12, 25, size=m).astype(np.float64)
        threshold *= np.where(rng.random(m) < 0.5, 1.0, 30.0)  # long paths for some rows
    else:
        V = (rng.standard_normal((n, k)) * 0.5).astype(np.float32)
        p = rng.standard_normal((m, n)).astype(np.float32)
        threshold = rng.standard_normal(m) * 3.0
    diag = (V.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    sigma = rng.choice(np.array([-1, 1], dtype=np.int8), size=m)
    threshold = np.where(sigma > 0, np.abs(threshold), -np.abs(threshold) - 0.5)
    indptr, indices = history_csr(rng, m, n, full_rows)
    return dict(p=p, hist_indptr=indptr, hist_indices=indices, diag=diag, V_P=V, sigma=sigma,
                threshold=threshold)


def to_torch(args: dict, device: str) -> dict:
    return {k: (torch.from_numpy(np.ascontiguousarray(v)).to(device)
                if isinstance(v, np.ndarray) else v) for k, v in args.items()}


def run_greedy_cuda(args: dict, q: int):
    sel, delta, flipped = C.fm_greedy_cuda(**to_torch(args, "cuda"), q=q)
    assert sel.is_cuda and delta.is_cuda and flipped.is_cuda
    assert sel.dtype == torch.int64 and delta.dtype == torch.float64 and flipped.dtype == torch.bool
    return sel.cpu().numpy(), delta.cpu().numpy(), flipped.cpu().numpy()


def assert_gram_equal(got, want) -> None:
    assert tuple(got._fields) == GRAM_FIELDS
    for name, g, w in zip(GRAM_FIELDS, got, want):
        assert isinstance(g, np.ndarray), name
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=name)


# -------------------------------------------------------------------------- references, any device

@pytest.mark.parametrize("n,k,M,t", [(0, 2, 3, 2), (1, 2, 3, 2), (4, 1, 4, 2), (6, 2, 30, 7),
                                     (7, 0, 5, 3)])
def test_ref_gram_extremes_by_enumeration(n, k, M, t):
    V = int_factors(seeded(n, k), n, k, -1, 1)
    G = V.astype(np.float64) @ V.astype(np.float64).T
    upper = itertools.combinations_with_replacement(range(n), 2)
    pairs = sorted(((G[i, j], i, j) for i, j in upper), key=lambda e: (-e[0], e[1], e[2]))[:M]
    r = ref_gram_extremes(V, M, t)
    assert [(v, i, j) for v, (i, j) in zip(r[0], r[1]) if i >= 0] == pairs
    assert np.all(r[1][len(pairs):] == -1) and np.all(r[0][len(pairs):] == -np.inf)
    for j in range(n):
        row = sorted(((G[j, l], l) for l in range(n) if l != j), key=lambda e: (e[0], e[1]))[:t]
        assert [(v, l) for v, l in zip(r[6][j], r[7][j]) if l >= 0] == row


def test_ref_greedy_hand_example():
    # g = p + e = [1, 3, 3]; sigma = +1 picks position 1 (tie with 2: lower position), delta 3;
    # then g += G[:, 1] = [0, -, 1] -> [1, -, 4]: picks 2, delta 7 > threshold 5: flipped.
    V = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    diag = np.ones(3, np.float32)
    p = np.array([[0.0, 2.0, 2.0], [0.0, 2.0, 2.0]], np.float32)
    sel, delta, fl = ref_greedy(p, np.array([0, 0, 1]), np.array([1]), diag, V,
                                np.array([1, -1], np.int8), np.array([5.0, -0.5]), 3)
    assert sel.tolist() == [[1, 2, -1], [0, 2, -1]] and delta.tolist() == [7.0, 4.0]
    assert fl.tolist() == [True, False]


# --------------------------------------------------------------------- argument checks, any device

def good_greedy_args() -> dict:
    return dict(p=torch.zeros((3, 5)), hist_indptr=torch.tensor([0, 1, 1, 3]),
                hist_indices=torch.tensor([4, 0, 2]), diag=torch.ones(5),
                V_P=torch.zeros((5, 2)), sigma=torch.tensor([1, -1, 1], dtype=torch.int8),
                threshold=torch.zeros(3, dtype=torch.float64), q=2)


BAD_GREEDY = [
    (dict(q=-1), ValueError, r"q must be >= 0, got -1"),
    (dict(q=1.5), ValueError, r"q must be an int, got float"),
    (dict(q=True), ValueError, r"q must be an int, got bool"),
    (dict(p=np.zeros((3, 5), np.float32)), ValueError, r"p must be a torch tensor, got ndarray"),
    (dict(p=torch.zeros((3, 5), dtype=torch.float64)), ValueError,
     r"p must have dtype float32, got float64"),
    (dict(p=torch.zeros(5)), ValueError, r"p must be 2-D, got 1-D"),
    (dict(hist_indptr=torch.tensor([0, 1, 1, 3], dtype=torch.int32)), ValueError,
     r"hist_indptr must have dtype int64, got int32"),
    (dict(hist_indices=torch.tensor([[4, 0, 2]])), ValueError, r"hist_indices must be 1-D"),
    (dict(diag=torch.ones(5, dtype=torch.float64)), ValueError, r"diag must have dtype float32"),
    (dict(V_P=torch.zeros(5)), ValueError, r"V_P must be 2-D"),
    (dict(sigma=torch.tensor([1, -1, 1])), ValueError, r"sigma must have dtype int8, got int64"),
    (dict(threshold=torch.zeros(3)), ValueError, r"threshold must have dtype float64, got float32"),
    (dict(hist_indptr=torch.tensor([0, 1, 3])), ValueError,
     r"hist indptr must have length 4, got 3"),
    (dict(diag=torch.ones(4)), ValueError, r"diag must have length n = 5 \(columns of p\), got 4"),
    (dict(V_P=torch.zeros((4, 2))), ValueError, r"V_P must have n = 5 rows"),
    (dict(sigma=torch.ones(2, dtype=torch.int8)), ValueError, r"sigma must have length m = 3"),
    (dict(threshold=torch.zeros(4, dtype=torch.float64)), ValueError,
     r"threshold must have length m = 3"),
    (dict(hist_indptr=torch.tensor([1, 1, 1, 3])), ValueError, r"hist indptr must start at 0"),
    (dict(hist_indptr=torch.tensor([0, 2, 1, 3])), ValueError,
     r"hist indptr must be non-decreasing"),
    (dict(hist_indptr=torch.tensor([0, 1, 1, 2])), ValueError,
     r"hist indptr\[-1\] \(2\) must equal len\(indices\) \(3\)"),
    (dict(hist_indices=torch.tensor([4, 5, 2])), IndexError,
     r"hist indices\[1\] = 5 is outside \[0, 5\)"),
    (dict(hist_indices=torch.tensor([4, 0, -1])), IndexError,
     r"hist indices\[2\] = -1 is outside \[0, 5\)"),
    (dict(sigma=torch.tensor([1, 0, 1], dtype=torch.int8)), ValueError,
     r"sigma must be \+1 or -1, got sigma\[1\] = 0"),
    (dict(p=torch.tensor([[0.0] * 5, [0.0, float("nan"), 0, 0, 0], [0.0] * 5])), ValueError,
     r"p must be finite"),
    (dict(diag=torch.tensor([1.0, 1, float("inf"), 1, 1])), ValueError, r"diag must be finite"),
    (dict(V_P=torch.full((5, 2), float("-inf"))), ValueError, r"V_P must be finite"),
    (dict(threshold=torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)), ValueError,
     r"threshold must not be NaN"),
]


@pytest.mark.parametrize("override,err,match", BAD_GREEDY)
def test_check_greedy_args_rejects(override, err, match):
    kw = good_greedy_args()
    kw.update(override)
    with pytest.raises(err, match=match):
        C.check_greedy_args(**kw)


def test_check_greedy_args_accepts_and_normalises():
    kw = good_greedy_args()
    kw["p"] = torch.zeros((5, 3)).t()  # non-contiguous
    kw["threshold"] = torch.tensor([float("inf"), -float("inf"), 0.0], dtype=torch.float64)
    a = C.check_greedy_args(**kw)
    assert a.p.is_contiguous() and a.q == 2 and isinstance(a.q, int)
    # Empty cases: no rows, no positions (then every history must be empty).
    C.check_greedy_args(torch.zeros((0, 4)), torch.zeros(1, dtype=torch.int64),
                        torch.zeros(0, dtype=torch.int64), torch.ones(4), torch.zeros((4, 3)),
                        torch.zeros(0, dtype=torch.int8), torch.zeros(0, dtype=torch.float64), 0)
    with pytest.raises(IndexError, match=r"hist indices\[0\] = 0 is outside \[0, 0\)"):
        C.check_greedy_args(torch.zeros((1, 0)), torch.tensor([0, 1]), torch.tensor([0]),
                            torch.ones(0), torch.zeros((0, 3)), torch.ones(1, dtype=torch.int8),
                            torch.zeros(1, dtype=torch.float64), 3)


BAD_GRAM = [
    (dict(n_pairs=-1), ValueError, r"n_pairs must be >= 0, got -1"),
    (dict(n_row=-2), ValueError, r"n_row must be >= 0, got -2"),
    (dict(n_pairs=2.0), ValueError, r"n_pairs must be an int, got float"),
    (dict(n_row=None), ValueError, r"n_row must be an int, got NoneType"),
    (dict(n_pairs=G.MAX_PAIRS + 1), ValueError,
     rf"n_pairs must be in \[0, {G.MAX_PAIRS}\] on CUDA, got {G.MAX_PAIRS + 1}"),
    (dict(n_row=G.MAX_ROW + 1), ValueError, rf"n_row must be in \[0, {G.MAX_ROW}\] on CUDA"),
    (dict(tile_rows=-3), ValueError, r"tile_rows must be >= 0"),
    (dict(V=np.zeros((3, 2), np.float32)), ValueError, r"V must be a torch tensor"),
    (dict(V=torch.zeros((3, 2), dtype=torch.float64)), ValueError,
     r"V must have dtype float32, got float64"),
    (dict(V=torch.zeros(3)), ValueError, r"V must be 2-D, got 1-D"),
    (dict(V=torch.tensor([[1.0, float("nan")]])), ValueError, r"V must be finite"),
    (dict(V=torch.tensor([[1.0, float("inf")]])), ValueError, r"V must be finite"),
]


@pytest.mark.parametrize("override,err,match", BAD_GRAM)
def test_check_gram_args_rejects(override, err, match):
    kw = dict(V=torch.zeros((3, 2)), n_pairs=3, n_row=2, tile_rows=None)
    kw.update(override)
    with pytest.raises(err, match=match):
        G.check_gram_args(**kw)


def test_check_gram_args_accepts():
    a = G.check_gram_args(torch.zeros((4, 3)).t(), np.int64(5), 0)
    assert a.V.is_contiguous() and a.n_pairs == 5 and a.n_row == 0 and a.tile_rows == 0
    assert G.check_gram_args(torch.zeros((0, 3)), 0, 0, 7).tile_rows == 7


def test_cuda_entry_points_reject_cpu_tensors():
    with pytest.raises(ValueError, match="V must be a CUDA tensor"):
        G.gram_extremes_cuda(torch.zeros((3, 2)), 1, 1)
    with pytest.raises(ValueError, match="p must be a CUDA tensor"):
        C.fm_greedy_cuda(**good_greedy_args())


# -------------------------------------------------------------------------- Gram tables on the GPU

GRAM_CASES = [
    # (n, k, n_pairs, n_row, tile_rows)
    (0, 3, 4, 2, None), (0, 3, 0, 0, None), (1, 3, 1, 1, None), (1, 2, 5, 3, None),
    (2, 2, 3, 1, None), (5, 0, 7, 3, None), (9, 2, 45, 8, None), (9, 2, 100, 20, 2),
    (40, 3, 10, 3, None), (40, 3, 10, 3, 1), (40, 3, 10, 3, 7), (40, 1, 820, 39, 16),
    (300, 4, 55, 9, None), (300, 4, 55, 9, 33), (300, 2, 1000, 300, 64),
    (600, 8, 2000, 17, 100), (513, 3, 1, 0, 5), (513, 3, 0, 2, 5),
]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("n,k,M,t,tile_rows", GRAM_CASES)
def test_cuda_gram_extremes_matches_reference_with_ties(n, k, M, t, tile_rows):
    V = int_factors(seeded("gram", n, k, M, t), n, k)
    got = K.gram_extremes(torch.from_numpy(V).cuda(), M, t, tile_rows=tile_rows)
    assert_gram_equal(got, ref_gram_extremes(V, M, t))


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("tile_rows", [None, 1, 3, 64])
def test_cuda_gram_extremes_all_equal(tile_rows):
    # k = 0 and constant rows: every entry ties, so the order is (i, j) / partner order alone.
    for V in (np.zeros((23, 0), np.float32), np.ones((23, 2), np.float32)):
        got = K.gram_extremes(torch.from_numpy(V).cuda(), 100, 30, tile_rows=tile_rows)
        assert_gram_equal(got, ref_gram_extremes(V, 100, 30))


@pytest.mark.cuda
@cuda
def test_cuda_gram_extremes_large_and_tiled():
    rng = seeded("large")
    V = int_factors(rng, 2500, 6, -3, 3)
    want = ref_gram_extremes(V, 210, 19)
    for tile_rows in (None, 97):
        got = K.gram_extremes(torch.from_numpy(V).cuda(), 210, 19, tile_rows=tile_rows)
        assert_gram_equal(got, want)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("n,k,M,t", [(50, 8, 30, 5), (700, 16, 500, 12)])
def test_cuda_gram_extremes_float_inputs(n, k, M, t):
    rng = seeded("float", n, k)
    V = rng.standard_normal((n, k)).astype(np.float32)
    got = K.gram_extremes(torch.from_numpy(V).cuda(), M, t, tile_rows=37)
    want = ref_gram_extremes(V, M, t)
    G = V.astype(np.float64) @ V.astype(np.float64).T
    tol = 4 * (k + 2) * 2.0 ** -24 * float((V.astype(np.float64) ** 2).sum(1).max())
    for (gv, gi), (wv, _), sign in (((got[0], got[1]), (want[0], want[1]), -1),
                                     ((got[2], got[3]), (want[2], want[3]), 1)):
        np.testing.assert_allclose(gv, wv, rtol=0, atol=tol)
        assert np.all(np.diff(sign * gv) >= 0)  # sorted
        assert np.all(gi[:, 0] <= gi[:, 1]) and len({tuple(x) for x in gi}) == len(gi)
        np.testing.assert_allclose(G[gi[:, 0], gi[:, 1]], gv, rtol=0, atol=tol)
    for (gv, gi), (wv, _) in (((got[4], got[5]), (want[4], want[5])),
                              ((got[6], got[7]), (want[6], want[7]))):
        np.testing.assert_allclose(gv, wv, rtol=0, atol=tol)
        rows = np.repeat(np.arange(n)[:, None], t, axis=1)
        assert np.all(gi != rows) and all(len(set(r)) == t for r in gi)
        np.testing.assert_allclose(G[rows, gi], gv, rtol=0, atol=tol)


@pytest.mark.cuda
@cuda
def test_cuda_gram_extremes_output_types_and_non_contiguous_input():
    rng = seeded("types")
    base = int_factors(rng, 6, 30)
    V = torch.from_numpy(base).cuda().t()[:, ::3]  # [30, 2], non-contiguous
    got = K.gram_extremes(V, 12, 4)
    assert_gram_equal(got, ref_gram_extremes(V.cpu().numpy(), 12, 4))
    assert got.pair_top_idx.dtype == np.int64 and got.row_bot_val.dtype == np.float64


@pytest.mark.cuda
@cuda
def test_cuda_gram_extremes_side_stream():
    V = int_factors(seeded("stream"), 200, 5)
    Vc = torch.from_numpy(V).cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = K.gram_extremes(Vc, 40, 6, tile_rows=17)
    assert_gram_equal(got, ref_gram_extremes(V, 40, 6))


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("override,err,match", BAD_GRAM)
def test_cuda_gram_extremes_bad_arguments(override, err, match):
    kw = dict(V=torch.zeros((3, 2)), n_pairs=3, n_row=2, tile_rows=None)
    kw.update(override)
    if isinstance(kw["V"], torch.Tensor):
        kw["V"] = kw["V"].cuda()
    else:
        pytest.skip("not a tensor: rejected before the device is known")
    with pytest.raises(err, match=match):
        G.gram_extremes_cuda(kw["V"], kw["n_pairs"], kw["n_row"], tile_rows=kw["tile_rows"])


@pytest.mark.cuda
@cuda
def test_cuda_gram_extremes_overflow_nan():
    V = torch.tensor([[3e38, 3e38], [3e38, -3e38]], device="cuda")
    with pytest.raises(ValueError, match="NaN entries"):
        G.gram_extremes_cuda(V, 3, 1)


# ----------------------------------------------------------------------------- greedy on the GPU

GREEDY_CASES = [
    # (m, n, k, q)
    (0, 5, 2, 3), (4, 0, 2, 3), (5, 1, 2, 1), (5, 1, 2, 4), (6, 7, 0, 3), (8, 7, 3, 0),
    (8, 7, 3, 20), (30, 64, 4, 5), (30, 300, 3, 12), (7, 300, 2, 400), (3, 1000, 8, 30),
]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("m,n,k,q", GREEDY_CASES)
def test_cuda_greedy_matches_reference_with_ties(m, n, k, q):
    rng = seeded("greedy", m, n, k, q)
    args = greedy_inputs(rng, m, n, k, integer=True, full_rows=(1,) if m > 1 else ())
    got = run_greedy_cuda(args, q)
    want = ref_greedy(**args, q=q)
    for name, g, w in zip(("selected", "delta", "flipped"), got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)
    if m > 1 and q > 0:  # row 1's history covers every position
        assert np.all(got[0][1] == -1) and got[1][1] == 0.0 and not got[2][1]


@pytest.mark.cuda
@cuda
def test_cuda_greedy_large_n_global_scratch():
    # n above the shared-memory limit (8192 positions): gains live in global scratch.
    rng = seeded("greedy-large")
    args = greedy_inputs(rng, 5, 9000, 3, integer=True)
    got = run_greedy_cuda(args, 15)
    want = ref_greedy(**args, q=15)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.cuda
@cuda
def test_cuda_greedy_flip_rules_and_no_flip():
    # sigma = +1 flips on delta > threshold (strict), sigma = -1 on delta <= threshold.
    V = np.zeros((3, 1), np.float32)
    diag = np.zeros(3, np.float32)
    p = np.array([[2.0, 1.0, 0.0]] * 2 + [[-2.0, -1.0, 0.0]] * 2, np.float32)
    args = dict(p=p, hist_indptr=np.zeros(5, np.int64), hist_indices=np.zeros(0, np.int64),
                diag=diag, V_P=V, sigma=np.array([1, 1, -1, -1], np.int8),
                threshold=np.array([3.0, 2.5, -3.0, -3.5]))
    sel, delta, fl = run_greedy_cuda(args, 3)
    assert sel.tolist() == [[0, 1, 2], [0, 1, -1], [0, 1, -1], [0, 1, 2]]
    assert delta.tolist() == [3.0, 3.0, -3.0, -3.0]
    assert fl.tolist() == [False, True, True, False]


@pytest.mark.cuda
@cuda
def test_cuda_greedy_float_inputs_follow_the_greedy_rule():
    """Float gains can order near-ties differently from float64, so replay the GPU's own picks
    in float64 and check each was a maximum within rounding, and delta/flipped agree."""
    rng = seeded("greedy-float")
    m, n, k, q = 40, 200, 8, 10
    args = greedy_inputs(rng, m, n, k, integer=False)
    sel, delta, fl = run_greedy_cuda(args, q)
    G = args["V_P"].astype(np.float64) @ args["V_P"].astype(np.float64).T
    tol = 1e-3
    for r in range(m):
        cand = np.ones(n, bool)
        cand[args["hist_indices"][args["hist_indptr"][r]:args["hist_indptr"][r + 1]]] = False
        g = args["p"][r].astype(np.float64) + args["diag"]
        s_r = args["sigma"][r]
        d = 0.0
        picks = [j for j in sel[r] if j >= 0]
        for j in picks:
            assert cand[j]
            assert s_r * g[j] >= np.max(s_r * g[cand]) - tol
            d += g[j]
            cand[j] = False
            g = g + G[:, j]
        assert abs(d - delta[r]) <= tol
        thr = args["threshold"][r]
        reached = (d > thr) if s_r > 0 else (d <= thr)
        if abs(d - thr) > tol:
            assert fl[r] == reached
        if fl[r]:
            assert np.all(sel[r, len(picks):] == -1)
        else:
            assert len(picks) == min(q, len(picks) + int(cand.sum()))


@pytest.mark.cuda
@cuda
def test_cuda_greedy_non_contiguous_and_side_stream():
    rng = seeded("greedy-stream")
    args = greedy_inputs(rng, 12, 50, 3, integer=True)
    want = ref_greedy(**args, q=6)
    t = to_torch(args, "cuda")
    t["p"] = t["p"].t().contiguous().t()  # same values, column-major
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        sel, delta, fl = C.fm_greedy_cuda(**t, q=6)
    stream.synchronize()
    np.testing.assert_array_equal(sel.cpu().numpy(), want[0])
    np.testing.assert_array_equal(delta.cpu().numpy(), want[1])


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("override,err,match", BAD_GREEDY)
def test_cuda_greedy_bad_arguments(override, err, match):
    kw = good_greedy_args()
    kw.update(override)
    kw = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    if not isinstance(kw["p"], torch.Tensor):
        pytest.skip("a non-tensor p is rejected before the device is known")
    with pytest.raises(err, match=match):
        C.fm_greedy_cuda(**kw)


@pytest.mark.cuda
@cuda
def test_cuda_greedy_mixed_devices():
    kw = good_greedy_args()
    kw["p"] = kw["p"].cuda()
    with pytest.raises(ValueError,
                       match=r"hist_indptr must be on cuda:0 \(the device of p\), got cpu"):
        C.fm_greedy_cuda(**kw)

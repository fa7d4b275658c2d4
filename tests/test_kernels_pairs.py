"""advrec.kernels.gram_extremes and the raw _core.gram_extremes_update against a NumPy reference.

The reference builds the whole Gram matrix and sorts with the tie rule (value, then the lower
(i, j) / partner) by np.lexsort, so it is obviously right. Integer-valued factors make every
product exact in float32 (and force many ties): the kernel must then match bit for bit,
padding included. Float factors match to float32 GEMM precision, and the selections match
wherever the reference values are not near-ties.
"""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advrec import _core
import advrec
from advrec import kernels as K

FIELDS = K.GramExtremes._fields


# ----------------------------------------------------------------------------- reference

def ref_from_gram(G: np.ndarray, M: int, t: int) -> K.GramExtremes:
    """Extreme entries of a full symmetric matrix G, sorted with the tie rule, padded."""
    G = np.asarray(G, np.float64)
    n = G.shape[0]
    iu, ju = np.triu_indices(n)  # every pair i <= j once
    vals = G[iu, ju]
    out = {}
    for name, sign in (("top", -1.0), ("bot", 1.0)):
        pad = sign * np.inf  # -inf for top lists, +inf for bottom lists
        order = np.lexsort((ju, iu, sign * vals))[:M]  # last key first: value, then i, then j
        pv = np.full(M, pad)
        pi = np.full((M, 2), -1, np.int64)
        pv[:order.size] = vals[order]
        pi[:order.size] = np.stack([iu[order], ju[order]], axis=1)
        rv = np.full((n, t), pad)
        ri = np.full((n, t), -1, np.int64)
        for j in range(n):
            partners = np.delete(np.arange(n), j)
            best = partners[np.lexsort((partners, sign * G[j, partners]))][:t]
            rv[j, :best.size] = G[j, best]
            ri[j, :best.size] = best
        out[name] = (pv, pi, rv, ri)
    (ptv, pti, rtv, rti), (pbv, pbi, rbv, rbi) = out["top"], out["bot"]
    return K.GramExtremes(ptv, pti, pbv, pbi, rtv, rti, rbv, rbi)


def ref_gram_extremes(V: np.ndarray, M: int, t: int) -> K.GramExtremes:
    V = np.asarray(V, np.float64)
    return ref_from_gram(V @ V.T, M, t)


def assert_equal_result(got: Sequence[np.ndarray], exp: Sequence[np.ndarray]) -> None:
    for name, g, e in zip(FIELDS, got, exp):
        assert g.dtype == e.dtype and g.shape == e.shape, (name, g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_array_equal(g, e, err_msg=name)


def assert_close_selection(got: K.GramExtremes, G: np.ndarray, M: int, t: int, tol: float) -> None:
    """Float inputs: values rank by rank within tol, each value belongs to its index, and the
    index equals the reference's wherever the reference value is more than 2 tol from its
    neighbours in the ranking (the entries just outside the list included)."""
    ext = ref_from_gram(G, M + 1, t + 1)  # one more, to see the first entry left out
    lists = [(got.pair_top_val[None], got.pair_top_idx[None], ext.pair_top_val[None], ext.pair_top_idx[None]),
             (got.pair_bot_val[None], got.pair_bot_idx[None], ext.pair_bot_val[None], ext.pair_bot_idx[None]),
             (got.row_top_val, got.row_top_idx[..., None], ext.row_top_val, ext.row_top_idx[..., None]),
             (got.row_bot_val, got.row_bot_idx[..., None], ext.row_bot_val, ext.row_bot_idx[..., None])]
    rows = np.arange(G.shape[0])[:, None]
    for li, (gv, gi, ev_ext, ei_ext) in enumerate(lists):
        L = gv.shape[1]
        if L == 0 or gv.shape[0] == 0:
            continue
        ev, ei = ev_ext[:, :L], ei_ext[:, :L]
        np.testing.assert_allclose(gv, ev, rtol=0, atol=tol)
        real = gi[..., 0] >= 0
        np.testing.assert_array_equal(real, ei[..., 0] >= 0)
        if li < 2:  # pair lists: the value is G[i, j]
            at = G[np.where(real, gi[..., 0], 0), np.where(real, gi[..., 1], 0)]
        else:  # row lists: the value is G[row, partner]
            at = G[np.broadcast_to(rows, real.shape), np.where(real, gi[..., 0], 0)]
        assert np.all(np.abs(np.where(real, at - gv, 0)) <= tol)
        with np.errstate(invalid="ignore"):
            gap = np.abs(np.diff(ev_ext, axis=1)) > 2 * tol  # gap[:, s]: between s and s + 1
        before = np.concatenate([np.ones((gap.shape[0], 1), bool), gap[:, :L - 1]], axis=1)
        separated = before & gap[:, :L] & real
        np.testing.assert_array_equal(np.where(separated[..., None], gi, -2),
                                      np.where(separated[..., None], ei, -2))


def fresh_state(n: int, M: int, t: int) -> List[np.ndarray]:
    return [np.full(M, -np.inf), np.full((M, 2), -1, np.int64),
            np.full(M, np.inf), np.full((M, 2), -1, np.int64),
            np.full((n, t), -np.inf), np.full((n, t), -1, np.int64),
            np.full((n, t), np.inf), np.full((n, t), -1, np.int64)]


def run_blocks(G: np.ndarray, M: int, t: int, row_cuts: Sequence[int], col_cuts: Sequence[int],
               order: Optional[np.random.Generator] = None) -> K.GramExtremes:
    """Feed the raw kernel every block of a grid over G (below-diagonal blocks included: the
    kernel must ignore entries with column < row), optionally in a shuffled order."""
    n = G.shape[0]
    state = fresh_state(n, M, t)
    blocks = [(r0, r1, c0, c1) for r0, r1 in zip(row_cuts[:-1], row_cuts[1:])
              for c0, c1 in zip(col_cuts[:-1], col_cuts[1:])]
    if order is not None:
        blocks = [blocks[b] for b in order.permutation(len(blocks))]
    for r0, r1, c0, c1 in blocks:
        tile = np.ascontiguousarray(G[r0:r1, c0:c1], dtype=np.float32)
        _core.gram_extremes_update(tile, r0, c0, *state)
    return K.GramExtremes(*state)


def int_factors(rng: np.random.Generator, n: int, k: int, lo: int = -2, hi: int = 2) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=(n, k)).astype(np.float32)


# ----------------------------------------------------------------------------- exact (integers)

SHAPES = [(n, k) for n in (0, 1, 2, 3, 50, 300) for k in (1, 8, 64)]


@pytest.mark.parametrize("n,k", SHAPES)
def test_integer_factors_match_reference_exactly(n, k):
    rng = np.random.default_rng(1000 * n + k)
    V = int_factors(rng, n, k)
    cases = [(10, 3), (1, 1), (0, 2), (4, 0)]
    if n <= 50:  # more pairs and partners asked for than exist (n = 300: once, below)
        cases.append((n * (n + 1) // 2 + 3, n + 2))
    for M, t in cases:
        exp = ref_gram_extremes(V, M, t)
        for tile_rows in (1, 7, max(n, 1), None):
            got = K.gram_extremes(V, M, t, tile_rows=tile_rows)
            assert_equal_result(got, exp)
    if n == 300:
        M, t = n * (n + 1) // 2 + 3, n + 2
        assert_equal_result(K.gram_extremes(V, M, t, tile_rows=128), ref_gram_extremes(V, M, t))


def test_heavy_ties_pick_lower_indices():
    # All-ones factors: every entry of G equals k, so the order is decided by the indices alone.
    V = np.ones((6, 3), np.float32)
    got = K.gram_extremes(V, 4, 2, tile_rows=2)
    np.testing.assert_array_equal(got.pair_top_val, [3.0] * 4)
    np.testing.assert_array_equal(got.pair_top_idx, [[0, 0], [0, 1], [0, 2], [0, 3]])
    np.testing.assert_array_equal(got.pair_bot_idx, [[0, 0], [0, 1], [0, 2], [0, 3]])
    np.testing.assert_array_equal(got.row_top_idx, [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]])
    np.testing.assert_array_equal(got.row_bot_idx, got.row_top_idx)


def test_padding_when_fewer_candidates():
    V = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)  # G = [[5, 1], [1, 10]]
    got = K.gram_extremes(V, 5, 3)
    np.testing.assert_array_equal(got.pair_top_val, [10, 5, 1, -np.inf, -np.inf])
    np.testing.assert_array_equal(got.pair_top_idx, [[1, 1], [0, 0], [0, 1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(got.pair_bot_val, [1, 5, 10, np.inf, np.inf])
    np.testing.assert_array_equal(got.pair_bot_idx, [[0, 1], [0, 0], [1, 1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(got.row_top_val, [[1, -np.inf, -np.inf], [1, -np.inf, -np.inf]])
    np.testing.assert_array_equal(got.row_top_idx, [[1, -1, -1], [0, -1, -1]])
    np.testing.assert_array_equal(got.row_bot_val, [[1, np.inf, np.inf], [1, np.inf, np.inf]])
    np.testing.assert_array_equal(got.row_bot_idx, [[1, -1, -1], [0, -1, -1]])


def test_zero_counts_and_empty_shapes():
    V = np.arange(12, dtype=np.float32).reshape(4, 3)
    got = K.gram_extremes(V, 0, 0)
    assert [a.shape for a in got] == [(0,), (0, 2), (0,), (0, 2), (4, 0), (4, 0), (4, 0), (4, 0)]
    assert [a.dtype for a in got] == [np.float64, np.int64] * 4
    got = K.gram_extremes(np.zeros((0, 5), np.float32), 3, 2)
    assert_equal_result(got, ref_gram_extremes(np.zeros((0, 5)), 3, 2))
    got = K.gram_extremes(np.zeros((5, 0), np.float32), 3, 2)  # k = 0: G is all zeros
    assert_equal_result(got, ref_gram_extremes(np.zeros((5, 0)), 3, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 14), k=st.integers(0, 4), M=st.integers(0, 120), t=st.integers(0, 15),
       tile_rows=st.integers(1, 16), lo=st.sampled_from([-1, -3]), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_integer_factors(n, k, M, t, tile_rows, lo, seed):
    V = int_factors(np.random.default_rng(seed), n, k, lo, -lo)
    assert_equal_result(K.gram_extremes(V, M, t, tile_rows=tile_rows), ref_gram_extremes(V, M, t))


def test_long_rows_and_lists_exact():
    # Rows long enough for the pre-pass of pass 1: exact depth (t <= 3), capped depth (4 <= t <= 16)
    # and none (t > 16).
    rng = np.random.default_rng(7)
    V = int_factors(rng, 400, 3, -3, 3)
    for M, t in [(30, 1), (12, 3), (12, 4), (5, 9), (3, 16), (3, 40)]:
        assert_equal_result(K.gram_extremes(V, M, t, tile_rows=160), ref_gram_extremes(V, M, t))


def test_thread_count_does_not_change_the_result(tmp_path):
    # The selection is deterministic by construction; check it against the reference with the
    # default threads here and with 3 OpenMP threads (more than the cores) in a subprocess.
    V = int_factors(np.random.default_rng(5), 400, 4, -2, 2)
    cases = [(10, 3, None), (40, 6, 64)]
    np.save(tmp_path / "V.npy", V)
    code = (
        "import sys, numpy as np\n"
        "from advrec import kernels as K\n"
        "d = sys.argv[1]\n"
        "V = np.load(d + '/V.npy')\n"
        f"for c, (M, t, tr) in enumerate({cases!r}):\n"
        "    np.savez(d + f'/out{c}.npz', *K.gram_extremes(V, M, t, tile_rows=tr))\n")
    package_root = Path(advrec.__file__).resolve().parents[1]  # the advrec these tests import
    env = dict(os.environ, OMP_NUM_THREADS="3")
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for c, (M, t, tr) in enumerate(cases):
        exp = ref_gram_extremes(V, M, t)
        assert_equal_result(K.gram_extremes(V, M, t, tile_rows=tr), exp)
        with np.load(tmp_path / f"out{c}.npz") as f:
            assert_equal_result([f[f"arr_{x}"] for x in range(8)], exp)


# ----------------------------------------------------------------------------- float factors

@pytest.mark.parametrize("n,k", [(3, 1), (50, 8), (300, 64), (300, 8)])
@pytest.mark.parametrize("tile_rows", [1, 7, None])
def test_float_factors_match_to_float32_precision(n, k, tile_rows):
    rng = np.random.default_rng(n * 7 + k)
    V = rng.standard_normal((n, k)).astype(np.float32)
    G = V.astype(np.float64) @ V.T.astype(np.float64)
    tol = 4 * (k + 2) * 2.0**-24 * float(np.max(np.sum(V.astype(np.float64) ** 2, axis=1))) + 1e-12
    for M, t in [(10, 3), (55, 9)]:
        got = K.gram_extremes(V, M, t, tile_rows=tile_rows)
        assert_close_selection(got, G, M, t, tol)


def test_torch_input_equals_numpy_input():
    rng = np.random.default_rng(3)
    V = rng.standard_normal((120, 16)).astype(np.float32)
    a = K.gram_extremes(V, 10, 3, tile_rows=50)
    Vt = torch.from_numpy(V).requires_grad_(True)  # detached inside
    b = K.gram_extremes(Vt, 10, 3, tile_rows=50)
    assert_equal_result(b, a)
    c = K.gram_extremes(Vt.detach().double(), 10, 3, tile_rows=50)  # float64 is used as float32
    assert_equal_result(c, a)
    d = K.gram_extremes(V.astype(np.float64), 10, 3, tile_rows=50)
    assert_equal_result(d, a)
    e = K.gram_extremes(np.asfortranarray(V), 10, 3, tile_rows=50)
    assert_equal_result(e, a)


# ----------------------------------------------------------------------------- raw kernel

def test_raw_kernel_arbitrary_blocks_in_any_order():
    rng = np.random.default_rng(11)
    n = 90
    V = int_factors(rng, n, 5, -3, 3)
    G = V.astype(np.float64) @ V.T.astype(np.float64)
    exp = ref_from_gram(G, 25, 4)
    for _ in range(4):
        rc = np.unique(np.concatenate([[0, n], rng.integers(0, n, 4)]))
        cc = np.unique(np.concatenate([[0, n], rng.integers(0, n, 5)]))
        assert_equal_result(run_blocks(G, 25, 4, rc, cc, order=rng), exp)
    # Tiles with 32+ columns and ragged ends exercise the vectorised scans' masked last block.
    assert_equal_result(run_blocks(G, 25, 4, [0, 33, 34, 90], [0, 5, 70, 90]), exp)


def test_raw_kernel_infinite_entries():
    # +-inf entries are real values: a real -inf still ranks before padding in a top list.
    G = np.array([[1.0, -np.inf, 2.0, np.inf],
                  [-np.inf, 0.0, -np.inf, 3.0],
                  [2.0, -np.inf, np.inf, -1.0],
                  [np.inf, 3.0, -1.0, -np.inf]])
    for M, t in [(12, 5), (3, 2)]:
        exp = ref_from_gram(G, M, t)
        assert_equal_result(run_blocks(G, M, t, [0, 4], [0, 4]), exp)
        assert_equal_result(run_blocks(G, M, t, [0, 1, 2, 3, 4], [0, 2, 4]), exp)


def test_raw_kernel_no_tile_changes_nothing():
    state = fresh_state(4, 3, 2)
    before = [a.copy() for a in state]
    _core.gram_extremes_update(np.zeros((0, 4), np.float32), 0, 0, *state)
    _core.gram_extremes_update(np.zeros((2, 0), np.float32), 2, 4, *state)
    _core.gram_extremes_update(np.zeros((2, 2), np.float32), 2, 0, *state)  # below the diagonal
    assert_equal_result(state, before)


def _bad_call(**over):
    """Call the raw kernel on a valid 3x3 problem with some arguments replaced."""
    args = dict(zip(["tile", "row0", "col0"] + list(FIELDS),
                    [np.ones((2, 3), np.float32), 0, 0] + fresh_state(3, 4, 2)))
    args.update(over)
    return _core.gram_extremes_update(*args.values())


@pytest.mark.parametrize("over,exc,match", [
    (dict(tile=np.ones((2, 3), np.float64)), ValueError, "tile must have dtype float32"),
    (dict(tile=np.ones((2, 6), np.float32)[:, ::2]), ValueError, "tile must be C-contiguous"),
    (dict(tile=np.ones(3, np.float32)), ValueError, "tile must be 2-D"),
    (dict(tile=[[1.0, 2.0]]), ValueError, "tile must be a numpy array"),
    (dict(pair_top_val=np.full(4, -np.inf, np.float32)), ValueError, "pair_top_val must have dtype float64"),
    (dict(pair_top_idx=np.full((4, 2), -1, np.int32)), ValueError, "pair_top_idx must have dtype int64"),
    (dict(pair_top_idx=np.full((4, 3), -1, np.int64)), ValueError, r"pair_top_idx must have shape \(4, 2\)"),
    (dict(pair_bot_val=np.full(5, np.inf)), ValueError, r"pair_bot_val must have shape \(4,\)"),
    (dict(pair_bot_idx=np.full(8, -1, np.int64)), ValueError, "pair_bot_idx must have shape"),
    (dict(row_top_val=np.full(6, -np.inf)), ValueError, "row_top_val must be 2-D"),
    (dict(row_top_idx=np.full((3, 3), -1, np.int64)), ValueError, r"row_top_idx must have shape \(3, 2\)"),
    (dict(row_bot_val=np.full((4, 2), np.inf)), ValueError, r"row_bot_val must have shape \(3, 2\)"),
    (dict(row_bot_idx=np.zeros((3, 2), np.uint64)), ValueError, "row_bot_idx must have dtype int64"),
    (dict(row0=-1), IndexError, "tile rows"),
    (dict(row0=2), IndexError, "tile rows"),
    (dict(col0=1), IndexError, "tile columns"),
    (dict(col0=-1), IndexError, "tile columns"),
    (dict(tile=np.ones((4, 3), np.float32)), IndexError, "tile rows"),
    (dict(pair_top_idx=np.array([[0, 3], [-1, -1], [-1, -1], [-1, -1]])), IndexError, r"pair_top_idx\[0\]"),
    (dict(pair_top_idx=np.array([[2, 1], [-1, -1], [-1, -1], [-1, -1]])), IndexError, "0 <= i <= j"),
    (dict(pair_bot_idx=np.array([[0, -1], [-1, -1], [-1, -1], [-1, -1]])), IndexError, "pair_bot_idx"),
    (dict(pair_top_idx=np.array([[-1, -1], [0, 0], [-1, -1], [-1, -1]]),
          pair_top_val=np.array([-np.inf, 1.0, -np.inf, -np.inf])), ValueError, "follows padding"),
    (dict(pair_top_idx=np.array([[0, 0], [0, 1], [-1, -1], [-1, -1]]),
          pair_top_val=np.array([1.0, 2.0, -np.inf, -np.inf])), ValueError, "descending"),
    (dict(pair_bot_idx=np.array([[0, 1], [0, 0], [-1, -1], [-1, -1]]),
          pair_bot_val=np.array([1.0, 1.0, np.inf, np.inf])), ValueError, "ascending"),
    (dict(pair_top_idx=np.array([[0, 0], [-1, -1], [-1, -1], [-1, -1]]),
          pair_top_val=np.array([np.nan, -np.inf, -np.inf, -np.inf])), ValueError, "NaN"),
    (dict(row_top_idx=np.array([[0, -1], [-1, -1], [-1, -1]])), IndexError, r"row_top_idx\[0, 0\]"),
    (dict(row_bot_idx=np.array([[-1, -1], [3, -1], [-1, -1]])), IndexError, "row_bot_idx"),
    (dict(row_top_idx=np.array([[-1, 1], [-1, -1], [-1, -1]])), ValueError, "follows padding"),
    (dict(row_top_idx=np.array([[1, 2], [-1, -1], [-1, -1]]),
          row_top_val=np.array([[0.0, 1.0], [-np.inf] * 2, [-np.inf] * 2])), ValueError, "descending"),
])
def test_raw_kernel_rejects_bad_arguments(over, exc, match):
    with pytest.raises(exc, match=match):
        _bad_call(**over)


@pytest.mark.parametrize("where", [(150, 20), (250, 280), (200, 200), (298, 299)])
def test_raw_kernel_rejects_nan_and_leaves_state_untouched(where):
    # Below the diagonal (ignored, still checked), late in the upper part (after rows that the
    # kernel has already updated: they must be put back), on the diagonal, in the last row.
    rng = np.random.default_rng(2)
    V = int_factors(rng, 300, 4)
    G = (V.astype(np.float64) @ V.T).astype(np.float32)
    state = fresh_state(300, 5, 2)
    _core.gram_extremes_update(np.ascontiguousarray(G[:1]), 0, 0, *state)
    before = [a.copy() for a in state]
    tile = np.ascontiguousarray(G[1:])  # 299 x 300: big enough for the parallel path
    tile[where[0] - 1, where[1]] = np.nan
    with pytest.raises(ValueError, match="tile contains NaN"):
        _core.gram_extremes_update(tile, 1, 0, *state)
    assert_equal_result(state, before)
    for counts in [(0, 0), (3, 0), (0, 3)]:
        with pytest.raises(ValueError, match="tile contains NaN"):
            _core.gram_extremes_update(tile, 1, 0, *fresh_state(300, *counts))
    with pytest.raises(ValueError, match="tile contains NaN"):
        _bad_call(tile=np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]], np.float32))


def test_raw_kernel_rejects_read_only_and_shared_state():
    state = fresh_state(3, 4, 2)
    state[5].flags.writeable = False
    with pytest.raises(ValueError, match="row_top_idx must be writeable"):
        _core.gram_extremes_update(np.ones((1, 3), np.float32), 0, 0, *state)
    state = fresh_state(3, 4, 2)
    state[6] = state[4]  # row_bot_val is row_top_val
    with pytest.raises(ValueError, match="row_top_val and row_bot_val share memory"):
        _core.gram_extremes_update(np.ones((1, 3), np.float32), 0, 0, *state)
    state = fresh_state(3, 4, 2)
    buf = np.full(14, -1, np.int64)  # two overlapping views of one buffer
    state[1], state[3] = buf[:8].reshape(4, 2), buf[6:].reshape(4, 2)
    with pytest.raises(ValueError, match="pair_top_idx and pair_bot_idx share memory"):
        _core.gram_extremes_update(np.ones((1, 3), np.float32), 0, 0, *state)


# ----------------------------------------------------------------------------- wrapper errors

@pytest.mark.parametrize("kwargs,match", [
    (dict(n_pairs=-1), "n_pairs must be >= 0"),
    (dict(n_row=-2), "n_row must be >= 0"),
    (dict(n_pairs=1.5), "n_pairs must be an int"),
    (dict(n_row=True), "n_row must be an int"),
    (dict(n_pairs="3"), "n_pairs must be an int"),
    (dict(tile_rows=0), "tile_rows must be a positive int"),
    (dict(tile_rows=2.0), "tile_rows must be a positive int"),
    (dict(tile_rows=False), "tile_rows must be a positive int"),
    (dict(V=np.ones(4, np.float32)), "V must be 2-D"),
    (dict(V=np.ones((2, 2, 2), np.float32)), "V must be 2-D"),
    (dict(V=np.ones((3, 2), np.int64)), "V must hold floating-point values"),
    (dict(V=torch.ones(3, 2, dtype=torch.int32)), "V must hold floating-point values"),
    (dict(V=[[1.0, 2.0]]), "V must be a numpy array or torch tensor"),
    (dict(V=np.array([[1.0, np.nan], [0.0, 1.0]])), "NaN"),
    (dict(V=np.array([[1.0, np.nan]]), n_pairs=0, n_row=0), "V contains NaN"),
])
def test_wrapper_rejects_bad_arguments(kwargs, match):
    args = dict(V=np.ones((3, 2), np.float32), n_pairs=2, n_row=1)
    args.update(kwargs)
    V = args.pop("V")
    with pytest.raises(ValueError, match=match):
        K.gram_extremes(V, **args)


class _FakeCudaTensor(torch.Tensor):
    """A CPU tensor that reports is_cuda, to test the dispatch without a GPU."""

    @property
    def is_cuda(self):  # noqa: D401
        return True


def test_cuda_tensor_dispatch(monkeypatch):
    from advrec.kernels import pairs, pairs_cuda

    V = torch.ones(3, 2).as_subclass(_FakeCudaTensor)
    monkeypatch.setattr(pairs, "_core", types.SimpleNamespace())  # a core built without CUDA
    with pytest.raises(ValueError, match="CUDA tensors go through the CUDA path"):
        K.gram_extremes(V, 2, 1)
    calls = []
    monkeypatch.setattr(pairs, "_core", types.SimpleNamespace(gram_extremes_cuda=None))
    raw = tuple(np.full(1, float(i)) for i in range(8))
    monkeypatch.setattr(pairs_cuda, "gram_extremes_cuda",
                        lambda *a, **kw: calls.append((a, kw)) or raw)
    got = K.gram_extremes(V, 2, 1, tile_rows=5)
    assert isinstance(got, K.GramExtremes) and got.row_bot_idx is raw[7]  # the twin's arrays, named
    assert calls[0][0][1:] == (2, 1) and calls[0][1] == {"tile_rows": 5}


def test_exported_through_kernels():
    assert "gram_extremes" in K.__all__ and "GramExtremes" in K.__all__

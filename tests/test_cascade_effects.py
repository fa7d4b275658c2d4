"""advrec.training.cascade_effects (issue 6; CAT, Algorithm 1 / eq. 11) against a pure-Python
reference written from the formula with plain loops over Python lists (no numpy arithmetic).

The kernel sums D exactly in int64 and computes every C in double, rounded to float32 once, so
the reference, which does the same double operations in the same order, must match bit for bit.
"""
from __future__ import annotations

import zlib
from typing import List, Optional

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import advrec.training
from advrec import _core
from advrec import kernels as K
from advrec.training import cascade_effects

COMPONENTS = ("sequence", "cross", "both")
NORMALIZATIONS = (None, "minmax", "inverse-mean")


def reference(rows: List[List[int]], b: int, components: str = "both",
              normalize: Optional[str] = None) -> np.ndarray:
    """Algorithm 1, lines 1-13 (D over every user, the user itself included), then the
    normalisation; plain Python floats (doubles), rounded to float32 at the end."""
    m = len(rows)
    T = len(rows[0]) if m else 0
    D = {}
    for t in range(T, 0, -1):          # lines 3-7
        for i in range(m):
            v = rows[i][t - 1]
            if v != -1:
                D[v] = D.get(v, 0) + (1 + T - t)
    C = [[None] * T for _ in range(m)]  # None: padding
    for i in range(m):                 # lines 9-13
        for t in range(T, 0, -1):
            v = rows[i][t - 1]
            if v == -1:
                continue
            own = 1 + T - t
            cross = (b / m) * D[v]
            if components == "sequence":
                C[i][t - 1] = float(own)
            elif components == "cross":
                C[i][t - 1] = cross
            else:
                C[i][t - 1] = own + cross
    values = [c for row in C for c in row if c is not None]
    if normalize == "minmax" and values:
        lo, hi = min(values), max(values)
        for row in C:
            for j in range(T):
                if row[j] is not None:
                    row[j] = (row[j] - lo) / (hi - lo) if hi > lo else 1.0
    elif normalize == "inverse-mean" and values:
        # The kernel's fixed order: each row left to right, then the row sums in row order.
        total = 0.0
        for row in C:
            s = 0.0
            for c in row:
                if c is not None:
                    s += 1.0 / c
            total += s
        mean = total / len(values)
        for row in C:
            for j in range(T):
                if row[j] is not None:
                    row[j] = (1.0 / row[j]) / mean
    out = np.zeros((m, T), np.float32)
    for i in range(m):
        for j in range(T):
            if C[i][j] is not None:
                out[i, j] = np.float32(C[i][j])
    return out


def seeded(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def random_sequences(seed, m: int, T: int, n_items: int = 50, min_len: int = 0,
                     id_offset: int = 0, id_stride: int = 1) -> np.ndarray:
    """Right-aligned rows of random lengths in [min_len, T]; ids id_offset + k * id_stride."""
    rng = seeded(*seed)
    lengths = rng.integers(min_len, T + 1, size=m)
    ids = id_offset + rng.integers(0, n_items, size=(m, T)) * id_stride
    ids[np.arange(T)[None, :] < (T - lengths)[:, None]] = -1
    return ids.astype(np.int64)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype == np.float32 and np.array_equal(
        a.view(np.uint32), b.view(np.uint32))


def check(seq: np.ndarray, b: int, components: str = "both", normalize: Optional[str] = None,
          **kw) -> np.ndarray:
    got = cascade_effects(seq, b, components, normalize, **kw)
    want = reference(seq.tolist(), b, components, normalize)
    assert same_bits(got, want), (components, normalize, np.abs(got - want).max())
    return got


# ----------------------------------------------------------------------------- worked example

def test_hand_computed_example():
    # 2 users x 3 columns, b = 2 so b / m = 1. Column c has 1 + T - t = 3 - c: 3, 2, 1.
    #   user 0: [-, 3, 5]   user 1: [3, 4, 5]
    #   D_3 = 2 (u0, c1) + 3 (u1, c0) = 5;  D_4 = 2;  D_5 = 1 + 1 = 2.
    seq = np.array([[-1, 3, 5], [3, 4, 5]])
    both = [[0, 2 + 5, 1 + 2], [3 + 5, 2 + 2, 1 + 2]]
    assert np.array_equal(cascade_effects(seq, 2), np.array(both, np.float32))
    assert np.array_equal(cascade_effects(seq, 2, "sequence"), [[0, 2, 1], [3, 2, 1]])
    assert np.array_equal(cascade_effects(seq, 2, "cross"), [[0, 5, 2], [5, 2, 2]])
    # b = 1: the cross term halves.
    assert np.array_equal(cascade_effects(seq, 1), [[0, 4.5, 2], [5.5, 3, 2]])
    # min-max over the items (3 .. 8): padding stays 0, the minimum maps to 0 too.
    assert np.array_equal(cascade_effects(seq, 2, normalize="minmax"),
                          np.array([[0, 0.8, 0], [1, 0.2, 0]], np.float32))
    # inverse-mean: sum 1/C = 1/7 + 1/3 + 1/8 + 1/4 + 1/3 = 199/168 over 5 items, so
    # (1/C) / mean = 840 / (199 C).
    want = np.array([[0, 120, 280], [105, 210, 280]], np.float64) / 199
    got = cascade_effects(seq, 2, normalize="inverse-mean")
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)
    assert got[0, 0] == 0.0
    np.testing.assert_allclose(got[got > 0].mean(), 1.0, rtol=1e-6)


def test_reference_agrees_with_the_example():
    seq = [[-1, 3, 5], [3, 4, 5]]
    assert np.array_equal(reference(seq, 2), [[0, 7, 3], [8, 4, 3]])


# ----------------------------------------------------------------------------- random cases

SHAPES = [(1, 1), (1, 7), (7, 1), (5, 3), (40, 12), (200, 30), (3, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("components", COMPONENTS)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_random_sequences_match_the_reference(shape, components, normalize):
    m, T = shape
    for b in (1, 7, 256):
        seq = random_sequences(("rand", shape, b), m, T, n_items=max(2, m * T // 4))
        check(seq, b, components, normalize)


@pytest.mark.parametrize("components", COMPONENTS)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_dense_and_hash_id_maps_agree_with_the_reference(components, normalize):
    seq = random_sequences(("maps",), 60, 15, n_items=30)
    want = reference(seq.tolist(), 16, components, normalize)
    norm = "none" if normalize is None else normalize
    for id_map in ("dense", "hash", "auto"):
        for threads in (1, 2, 3):
            got, used = _core.cascade_effects(seq, 16, components, norm, threads, id_map)
            assert same_bits(got, want), (id_map, threads)
            assert used == ("dense" if id_map == "auto" else id_map)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_large_sparse_ids_use_the_hash_table(normalize):
    big = np.iinfo(np.int64).max
    for offset, stride in ((10**9, 1), (0, 10**9 + 7), (big - 40, 1), (2**62, 2**55)):
        seq = random_sequences(("sparse", offset, stride), 30, 9, n_items=20,
                               id_offset=offset, id_stride=stride)
        got = check(seq, 8, "both", normalize)
        out, used = _core.cascade_effects(seq, 8, "both", normalize or "none", 0, "auto")
        assert used == "hash" and same_bits(out, got)
    # Ids may be large but below the dense limit (entries + 65536): the dense table serves.
    seq = random_sequences(("near",), 10, 5, n_items=3, id_offset=60000)
    assert _core.cascade_effects(seq, 3, "both", "none", 0, "auto")[1] == "dense"
    check(seq, 3)


def test_all_padding_rows_are_zero():
    seq = random_sequences(("pad",), 30, 8, n_items=10)
    seq[[0, 5, 29]] = -1
    for components in COMPONENTS:
        for normalize in NORMALIZATIONS:
            got = check(seq, 4, components, normalize)
            assert not got[[0, 5, 29]].any()
            if normalize != "minmax":  # (min-max maps the minima to 0)
                assert (got[seq >= 0] > 0).all()


@pytest.mark.parametrize("shape", [(1, 1), (4, 6)])
def test_all_padding_matrix(shape):
    seq = np.full(shape, -1)
    for components in COMPONENTS:
        for normalize in NORMALIZATIONS:
            got = cascade_effects(seq, 3, components, normalize)
            assert got.dtype == np.float32 and got.shape == shape and not got.any()


def test_single_repeated_item():
    seq = np.full((6, 5), 42)
    seq[2, :3] = -1
    for components in COMPONENTS:
        for normalize in NORMALIZATIONS:
            check(seq, 3, components, normalize)
    # One user, one item: every component is constant, min-max gives 1.0 at the item.
    one = np.array([[-1, -1, 9]])
    for components in COMPONENTS:
        assert np.array_equal(cascade_effects(one, 1, components, "minmax"), [[0, 0, 1]])
        assert np.array_equal(cascade_effects(one, 1, components, "inverse-mean"), [[0, 0, 1]])
    # The cross term alone is constant along a repeated item, so min-max maps it to 1.0.
    flat = np.full((3, 4), 7)
    assert np.array_equal(cascade_effects(flat, 2, "cross", "minmax"), np.ones((3, 4), np.float32))


def test_duplicates_within_a_row_count_every_occurrence():
    seq = np.array([[5, 5, 5], [-1, -1, 5]])
    # D_5 = 3 + 2 + 1 + 1 = 7; b / m = 1.
    assert np.array_equal(cascade_effects(seq, 2), [[3 + 7, 2 + 7, 1 + 7], [0, 0, 1 + 7]])
    check(seq, 2)


def test_extreme_batch_size_and_long_rows():
    seq = random_sequences(("long",), 2, 3000, n_items=5, min_len=2000)
    for b in (1, 2**40):
        for normalize in NORMALIZATIONS:
            check(seq, b, "both", normalize)


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_small_matrices(data):
    m = data.draw(st.integers(1, 6))
    T = data.draw(st.integers(1, 6))
    ids = st.one_of(st.integers(0, 4), st.integers(0, 2**63 - 1))
    rows = []
    for _ in range(m):
        n = data.draw(st.integers(0, T))
        rows.append([-1] * (T - n) + data.draw(st.lists(ids, min_size=n, max_size=n)))
    b = data.draw(st.integers(1, 1000))
    components = data.draw(st.sampled_from(COMPONENTS))
    normalize = data.draw(st.sampled_from(NORMALIZATIONS))
    check(np.array(rows, np.int64).reshape(m, T), b, components, normalize)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_shapes(shape):
    for normalize in NORMALIZATIONS:
        got = cascade_effects(np.zeros(shape, np.int64), 3, "both", normalize)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == shape
        t = cascade_effects(torch.zeros(shape, dtype=torch.int64), 3, "both", normalize)
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == shape


# ----------------------------------------------------------------------------- dtypes, kinds

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_signed_dtypes_are_converted(dtype):
    seq = random_sequences(("dtype",), 20, 6, n_items=100)
    want = check(seq, 5)
    assert same_bits(cascade_effects(seq.astype(dtype), 5), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_unsigned_dtypes_are_converted(dtype):
    seq = random_sequences(("udtype",), 20, 6, n_items=100, min_len=6)  # no padding
    want = check(seq, 5)
    assert same_bits(cascade_effects(seq.astype(dtype), 5), want)


def test_uint64_above_int64_max_is_rejected():
    seq = np.array([[1, 2**63]], np.uint64)
    with pytest.raises(ValueError, match="sequences holds an id above"):
        cascade_effects(seq, 1)


def test_torch_in_torch_out_numpy_in_numpy_out():
    seq = random_sequences(("torch",), 25, 7, n_items=12)
    want = check(seq, 4, "both", "inverse-mean")
    for dtype in (torch.int64, torch.int32, torch.int16):
        t = torch.from_numpy(seq).to(dtype)
        before = t.clone()
        got = cascade_effects(t, 4, "both", "inverse-mean")
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        assert same_bits(got.numpy(), want)
        assert torch.equal(t, before)
    copy = seq.copy()
    got = cascade_effects(copy, 4, "both", "inverse-mean")
    assert type(got) is np.ndarray and np.array_equal(copy, seq)


def test_non_contiguous_inputs():
    seq = random_sequences(("strided",), 30, 16, n_items=9, min_len=16)
    for view in (seq[:, 8:], seq[::2], np.asfortranarray(seq), torch.from_numpy(seq)[:, 8:]):
        want = reference(np.asarray(view).tolist(), 6)
        got = cascade_effects(view, 6)
        assert same_bits(np.asarray(got), want)


def test_public_entry_points():
    assert "cascade_effects" in advrec.training.__all__
    assert "cascade_effects" in K.__all__
    seq = random_sequences(("entry",), 8, 4)
    assert same_bits(K.cascade_effects(seq, 3, "cross", "minmax"),
                     cascade_effects(seq, 3, "cross", "minmax"))


# ----------------------------------------------------------------------------- determinism

def test_thread_count_does_not_change_the_result():
    # Three ways of summing D in parallel: a small catalogue (per-thread counter arrays); ids
    # spread over [0, entries) (with 4 threads, 4 * 400k ids > 400k entries + 2^20, so atomic
    # adds into one array); sparse ids (per-thread hash tables merged). Each is checked against
    # the reference once and across 1..4 threads (more threads than cores is fine).
    cases = [
        random_sequences(("thr", "small"), 3000, 40, n_items=300),
        random_sequences(("thr", "dense-many"), 4000, 100, n_items=400_000, min_len=100),
        random_sequences(("thr", "sparse"), 3000, 30, n_items=5000, id_stride=10**12),
    ]
    for seq in cases:
        for components in COMPONENTS:
            for normalize in NORMALIZATIONS:
                want = K.cascade_effects(seq, 128, components, normalize, threads=1)
                for threads in (2, 3, 4):
                    got = K.cascade_effects(seq, 128, components, normalize, threads=threads)
                    assert same_bits(got, want), (components, normalize, threads)
        assert same_bits(cascade_effects(seq, 128, "both", "inverse-mean"),
                         reference(seq.tolist(), 128, "both", "inverse-mean"))


def test_repeated_calls_are_identical():
    seq = random_sequences(("again",), 500, 20, n_items=40)
    assert same_bits(cascade_effects(seq, 64, "both", "inverse-mean"),
                     cascade_effects(seq, 64, "both", "inverse-mean"))


# ----------------------------------------------------------------------------- bad input

GOOD = np.array([[-1, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("seq,match", [
    (np.array([1, 2, 3]), r"sequences must be 2-D"),
    (np.zeros((2, 2, 2), np.int64), r"sequences must be 2-D"),
    (np.zeros((2, 3)), r"sequences must hold integer item ids, got dtype float64"),
    (np.zeros((2, 3), bool), r"sequences must hold integer item ids, got dtype bool"),
    (np.array([["a", "b"]]), r"sequences must hold integer item ids"),
    ([[1, 2], [3, 4]], r"sequences must be a numpy array or torch tensor, got list"),
    (None, r"sequences must be a numpy array or torch tensor, got NoneType"),
    (torch.zeros((2, 3)), r"sequences must hold integer item ids, got dtype float32"),
    (torch.zeros((2, 3), dtype=torch.bool), r"sequences must hold integer item ids, got dtype bool"),
    (np.array([[1, -2, 3]]), r"sequences\[0, 1\] = -2: item ids must be >= 0 \(-1 pads\)"),
    (np.array([[1, 2], [-5, -1]]), r"sequences\[1, 0\] = -5"),
    (np.array([[-1, 1, 2], [1, -1, 2]]), r"sequences row 1 has padding \(-1\) at column 1 after an item"),
    (np.array([[1, 2, -1]]), r"sequences row 0 has padding \(-1\) at column 2 after an item"),
    (np.array([[5, -1, -3]]), r"sequences row 0 has padding \(-1\) at column 1"),
])
def test_bad_sequences(seq, match):
    with pytest.raises(ValueError, match=match):
        cascade_effects(seq, 2)


def test_the_first_bad_row_is_reported_for_any_thread_count():
    seq = random_sequences(("bad",), 5000, 10, n_items=30, min_len=10)
    seq[3000, 4] = -1
    seq[4000, 2] = -7
    for threads in (1, 2, 3):
        with pytest.raises(ValueError, match=r"sequences row 3000 has padding \(-1\) at column 4"):
            K.cascade_effects(seq, 2, threads=threads)


@pytest.mark.parametrize("b,match", [
    (0, "batch_size must be a positive int, got 0"),
    (-3, "batch_size must be a positive int, got -3"),
    (True, "batch_size must be a positive int, got bool"),
    (2.0, "batch_size must be a positive int, got float"),
    ("2", "batch_size must be a positive int, got str"),
    (None, "batch_size must be a positive int, got NoneType"),
    (2**64, "batch_size must be at most"),
])
def test_bad_batch_size(b, match):
    with pytest.raises(ValueError, match=match):
        cascade_effects(GOOD, b)


def test_numpy_integer_batch_size_is_accepted():
    assert same_bits(cascade_effects(GOOD, np.int32(2)), cascade_effects(GOOD, 2))


@pytest.mark.parametrize("kw,match", [
    ({"components": "all"}, r"components must be one of \('sequence', 'cross', 'both'\), got 'all'"),
    ({"components": None}, r"components must be one of"),
    ({"normalize": "none"}, r"normalize must be one of \(None, 'minmax', 'inverse-mean'\), got 'none'"),
    ({"normalize": "min-max"}, r"normalize must be one of"),
    ({"normalize": 1}, r"normalize must be one of"),
])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        cascade_effects(GOOD, 2, **kw)


@pytest.mark.parametrize("threads,match", [
    (0, "threads must be a positive int, got 0"),
    (-1, "threads must be a positive int, got -1"),
    (True, "threads must be a positive int, got bool"),
    (1.5, "threads must be a positive int, got float"),
    (257, "threads must be at most 256"),
])
def test_bad_threads(threads, match):
    with pytest.raises(ValueError, match=match):
        K.cascade_effects(GOOD, 2, threads=threads)


def test_core_checks_its_arguments():
    seq = GOOD.astype(np.int64)
    with pytest.raises(ValueError, match="sequences must have dtype int64, got int32"):
        _core.cascade_effects(GOOD.astype(np.int32), 2, "both", "none", 0, "auto")
    with pytest.raises(ValueError, match="sequences must be C-contiguous"):
        _core.cascade_effects(np.asfortranarray(np.ones((3, 2), np.int64)), 2, "both", "none", 0, "auto")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        _core.cascade_effects(seq, 0, "both", "none", 0, "auto")
    for threads in (-1, 257):
        with pytest.raises(ValueError, match=r"threads must be in \[0, 256\]"):
            _core.cascade_effects(seq, 2, "both", "none", threads, "auto")
    with pytest.raises(ValueError, match="components must be one of"):
        _core.cascade_effects(seq, 2, "x", "none", 0, "auto")
    with pytest.raises(ValueError, match="normalize must be one of"):
        _core.cascade_effects(seq, 2, "both", "x", 0, "auto")
    with pytest.raises(ValueError, match="id_map must be one of"):
        _core.cascade_effects(seq, 2, "both", "none", 0, "x")
    with pytest.raises(ValueError, match=r"id_map='dense' needs max id < items \+ 65536"):
        _core.cascade_effects(np.array([[10**9]]), 2, "both", "none", 0, "dense")

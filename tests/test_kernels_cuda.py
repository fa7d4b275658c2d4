"""The CUDA top-k twin against the CPU kernel, on torch.cuda tensors.

GPU tests carry ``@pytest.mark.cuda`` and are skipped unless the core was built with CUDA and a
device is visible. The argument checks of ``advrec.kernels.select_cuda.prepare`` are device-agnostic,
so their parity with the CPU path (same exception type, same message) is tested everywhere.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import pytest
import torch

from advrec.kernels import select_cuda as D
from advrec import kernels as K
from kernel_cases import CSR, make_csr, random_exclusion, random_scores

cuda = pytest.mark.skipif(not K.has_cuda(), reason="needs a CUDA build of advrec and a GPU")


def assert_same_as_cpu(scores: np.ndarray, k: int, exclude: Optional[CSR] = None,
                       rows: Optional[np.ndarray] = None, **to_gpu) -> None:
    """Runs both kernels; indices equal, values bit-for-bit equal (signed zeros included)."""
    want_i, want_v = K.topk_scores(scores, k, exclude, rows)
    s = torch.from_numpy(scores).cuda()
    ex = None
    if exclude is not None:
        ex = tuple(torch.from_numpy(a).cuda() for a in exclude) if to_gpu.get("csr_on_gpu") else exclude
    r = None if rows is None else (torch.from_numpy(rows).cuda() if to_gpu.get("rows_on_gpu") else rows)
    got_i, got_v = K.topk_scores(s, k, ex, r)
    assert got_i.is_cuda and got_v.is_cuda and got_i.device == s.device
    assert got_i.dtype == torch.int64 and got_v.dtype == torch.float32
    assert tuple(got_i.shape) == want_i.shape
    np.testing.assert_array_equal(got_i.cpu().numpy(), want_i)
    np.testing.assert_array_equal(got_v.cpu().numpy().view(np.uint32), want_v.view(np.uint32))


SHAPES = [(0, 7), (3, 0), (1, 1), (5, 31), (9, 257), (64, 1682), (7, 5000)]


# ----------------------------------------------------------------------------- GPU parity

@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 2, 10, 33, 100, 1024])
@pytest.mark.parametrize("kind", ["ties", "normal", "inf", "zeros"])
def test_cuda_topk_matches_cpu(shape, k, kind):
    rng = np.random.default_rng(zlib.crc32(repr((shape, k, kind)).encode()))
    assert_same_as_cpu(random_scores(rng, *shape, kind), k)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 10, 200, 1024])
@pytest.mark.parametrize("csr_on_gpu", [False, True])
def test_cuda_topk_exclusion_matches_cpu(shape, k, csr_on_gpu):
    rng = np.random.default_rng(shape[0] * 31 + shape[1] + k)
    s = random_scores(rng, *shape, "ties")
    ex = random_exclusion(rng, shape[0], shape[1], max_len=shape[1] + 3)
    assert_same_as_cpu(s, k, ex, csr_on_gpu=csr_on_gpu)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("rows_on_gpu", [False, True])
def test_cuda_topk_rows_remap(rows_on_gpu):
    rng = np.random.default_rng(4)
    s = random_scores(rng, 50, 700, "ties")
    ex = random_exclusion(rng, 6, 700, max_len=700)
    rows = rng.integers(0, 6, size=50)
    assert_same_as_cpu(s, 16, ex, rows, rows_on_gpu=rows_on_gpu, csr_on_gpu=rows_on_gpu)


@pytest.mark.cuda
@cuda
def test_cuda_topk_everything_excluded_and_padding():
    s = np.arange(12, dtype=np.float32).reshape(3, 4)
    ex = make_csr([[3, 2, 1, 0, 2], [0], [1, 1]])
    assert_same_as_cpu(s, 6, ex)
    i, v = K.topk_scores(torch.from_numpy(s).cuda(), 6, ex)
    assert i[0].tolist() == [-1] * 6 and bool(torch.all(v[0] == -np.inf))


@pytest.mark.cuda
@cuda
def test_cuda_topk_large_catalogue_global_bitmap():
    # More than 256K items with exclusion: the bitmap lives in global scratch, blocks stride rows.
    rng = np.random.default_rng(9)
    n = 300_000
    s = rng.integers(0, 1000, size=(40, n)).astype(np.float32)
    ex = random_exclusion(rng, 40, n, max_len=20_000)
    assert_same_as_cpu(s, 50, ex)
    assert_same_as_cpu(s[:3], 1024, make_csr([list(range(n - 1, -1, -2))] * 3))


@pytest.mark.cuda
@cuda
def test_cuda_topk_many_rows():
    rng = np.random.default_rng(10)
    s = rng.integers(0, 5, size=(20_000, 40)).astype(np.float32)
    assert_same_as_cpu(s, 5, random_exclusion(rng, 20_000, 40, 10))


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_cuda_topk_casts_other_floats(dtype):
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.integers(-8, 8, size=(6, 90)).astype(np.float32)).to(dtype)
    want = K.topk_scores(x.float().numpy(), 7)
    got = K.topk_scores(x.cuda(), 7)
    np.testing.assert_array_equal(got[0].cpu().numpy(), want[0])
    np.testing.assert_array_equal(got[1].cpu().numpy(), want[1])


@pytest.mark.cuda
@cuda
def test_cuda_topk_non_contiguous_and_side_stream():
    rng = np.random.default_rng(13)
    base = torch.from_numpy(rng.integers(0, 9, size=(40, 60)).astype(np.float32)).cuda()
    view = base.t()[:, ::2]  # non-contiguous
    want = K.topk_scores(view.cpu().numpy(), 9)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = K.topk_scores(view, 9)
    stream.synchronize()
    np.testing.assert_array_equal(got[0].cpu().numpy(), want[0])


@pytest.mark.cuda
@cuda
def test_cuda_topk_nan():
    s = torch.zeros((4, 300), device="cuda")
    s[3, 299] = float("nan")
    with pytest.raises(ValueError, match="scores contains NaN"):
        K.topk_scores(s, 3)
    # A NaN in an excluded item is ignored, as on the CPU.
    i, _ = K.topk_scores(s, 3, make_csr([[], [], [], [299]]))
    assert i.shape == (4, 3)
    # k = 0 checks nothing, as on the CPU.
    assert K.topk_scores(s, 0)[0].shape == (4, 0)


@pytest.mark.cuda
@cuda
def test_cuda_topk_k_limit():
    s = torch.zeros((2, 3000), device="cuda")
    with pytest.raises(ValueError, match=r"k must be in \[0, 1024\] on CUDA, got 1025"):
        K.topk_scores(s, 1025)
    with pytest.raises(ValueError, match=r"k must be >= 0"):
        K.topk_scores(s, -1)


BAD_CUDA = [
    (dict(scores=torch.ones(4)), ValueError, r"scores must be 2-D"),
    (dict(scores=torch.ones((2, 2), dtype=torch.int32)), ValueError, "scores must hold floating-point"),
    (dict(exclude=(np.array([0, 1, 1, 3]),)), ValueError, r"exclude must be a pair"),
    (dict(exclude=(np.array([0, 1, 1, 3]), np.array([0.0, 1, 2]))), ValueError, "exclude indices must hold integers"),
    (dict(exclude=(np.array([1, 1, 1, 3]), np.array([0, 1, 2]))), ValueError, "exclude indptr must start at 0"),
    (dict(exclude=(np.array([0, 2, 1, 3]), np.array([0, 1, 2]))), ValueError, "non-decreasing"),
    (dict(exclude=(np.array([0, 1, 1, 2]), np.array([0, 1, 2]))), ValueError, r"indptr\[-1\] \(2\) must equal"),
    (dict(exclude=(np.array([0, 1, 1, 3]), np.array([0, 4, 2]))), IndexError, r"exclude indices\[1\] = 4"),
    (dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2]))), ValueError, "without rows"),
    (dict(rows=np.array([0, 1, 2])), ValueError, "rows is only meaningful"),
    (dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0, 1])), ValueError,
     "rows must have one entry per score row"),
    (dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0, 1, 2])), IndexError,
     r"rows\[2\] = 2 is outside the exclusion CSR's 2 rows"),
]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("override,err,match", BAD_CUDA)
@pytest.mark.parametrize("csr_on_gpu", [False, True])
def test_cuda_topk_bad_arguments(override, err, match, csr_on_gpu):
    kw = dict(scores=torch.arange(12.0).reshape(3, 4), k=2, exclude=None, rows=None)
    kw.update(override)
    kw["scores"] = kw["scores"].cuda()
    if csr_on_gpu and kw["exclude"] is not None and len(kw["exclude"]) == 2:
        kw["exclude"] = tuple(torch.from_numpy(np.asarray(a)).cuda() for a in kw["exclude"])
    if csr_on_gpu and kw["rows"] is not None:
        kw["rows"] = torch.from_numpy(kw["rows"]).cuda()
    with pytest.raises(err, match=match):
        K.topk_scores(**kw)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("tile_rows", [1, 37, 2048])
def test_cuda_topk_dot_matches_cpu(tile_rows):
    rng = np.random.default_rng(14)
    U = rng.integers(-2, 3, size=(120, 8)).astype(np.float32)  # exact dot products, many ties
    V = rng.integers(-2, 3, size=(333, 8)).astype(np.float32)
    bias = rng.integers(-1, 2, size=333).astype(np.float32)
    ex = random_exclusion(rng, 30, 333, 100)
    rows = rng.integers(0, 30, size=120)
    want = K.topk_dot(U, V, 20, ex, rows, item_bias=bias, tile_rows=tile_rows)
    got = K.topk_dot(torch.from_numpy(U).cuda(), torch.from_numpy(V).cuda(), 20, ex, rows,
                     item_bias=torch.from_numpy(bias).cuda(), tile_rows=tile_rows)
    assert got[0].is_cuda
    np.testing.assert_array_equal(got[0].cpu().numpy(), want[0])
    np.testing.assert_array_equal(got[1].cpu().numpy(), want[1])


@pytest.mark.cuda
@cuda
def test_cuda_topk_dot_zero_users():
    i, v = K.topk_dot(torch.zeros((0, 4), device="cuda"), torch.ones((5, 4), device="cuda"), 3)
    assert i.shape == (0, 3) and i.is_cuda


# ----------------------------------------------------------------------------- checks, any device

PARITY = [
    dict(scores=np.ones(4, np.float32)),
    dict(scores=np.ones((2, 2, 2), np.float32)),
    dict(scores=np.ones((3, 4), np.int64)),
    dict(k=-1),
    dict(k=1.5),
    dict(k=True),
    dict(exclude=(np.array([0, 1, 1, 3]),)),
    dict(exclude=(np.array([[0, 1, 1, 3]]), np.array([0, 1, 2]))),
    dict(exclude=(np.array([0, 1, 1, 3]), np.array([[0, 1, 2]]))),
    dict(exclude=(np.array([0.0, 1, 1, 3]), np.array([0, 1, 2]))),
    dict(exclude=(np.array([0, 1, 1, 3]), np.array([True, False, True]))),
    dict(exclude=(np.zeros(0, np.int64), np.array([0, 1, 2]))),
    dict(exclude=(np.array([2, 1, 1, 3]), np.array([0, 1, 2]))),
    dict(exclude=(np.array([0, 2, 1, 3]), np.array([0, 1, 2]))),
    dict(exclude=(np.array([0, 1, 1, 2]), np.array([0, 1, 2]))),
    dict(exclude=(np.array([0, 1, 1, 3]), np.array([0, 1, 4]))),
    dict(exclude=(np.array([0, 1, 1, 3]), np.array([-5, 1, 4]))),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2]))),
    dict(rows=np.array([0, 1, 2])),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([[0, 1, 1]])),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0.0, 1, 1])),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0, 1])),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0, 2, 1])),
    dict(exclude=(np.array([0, 1, 3]), np.array([0, 1, 2])), rows=np.array([0, 1, -1])),
]


@pytest.mark.parametrize("override", PARITY)
@pytest.mark.parametrize("as_tensors", [False, True])
def test_prepare_raises_like_cpu_path(override, as_tensors):
    """Same exception type and message from the CUDA-side checks as from the CPU kernel."""
    kw = dict(scores=np.arange(12, dtype=np.float32).reshape(3, 4), k=2, exclude=None, rows=None)
    kw.update(override)
    with pytest.raises((ValueError, IndexError)) as cpu:
        K.topk_scores(**kw)
    kw["scores"] = torch.from_numpy(kw["scores"])
    if as_tensors:
        if kw["exclude"] is not None:
            kw["exclude"] = tuple(torch.from_numpy(np.asarray(a)) for a in kw["exclude"])
        if kw["rows"] is not None:
            kw["rows"] = torch.from_numpy(kw["rows"])
    with pytest.raises((ValueError, IndexError)) as dev:
        D.prepare(**kw)
    assert type(dev.value) is type(cpu.value)
    assert str(dev.value) == str(cpu.value)


def test_prepare_k_limit_and_types():
    s = torch.zeros((2, 5))
    with pytest.raises(ValueError, match=r"k must be in \[0, 1024\] on CUDA, got 2000"):
        D.prepare(s, 2000)
    with pytest.raises(ValueError, match="scores must be a torch tensor"):
        D.prepare(np.zeros((2, 5), np.float32), 1)
    with pytest.raises(ValueError, match="scores must hold floating-point scores, got dtype bool"):
        D.prepare(torch.zeros((2, 5), dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        D.topk_scores_cuda(s, 1)


def test_prepare_outputs():
    s = torch.arange(24, dtype=torch.float64).reshape(4, 6).t()  # non-contiguous float64
    ex = (np.array([0, 2, 2]), [3, 1])
    p = D.prepare(s, 3, ex, torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.int32))
    assert p.scores.dtype == torch.float32 and p.scores.is_contiguous()
    assert torch.equal(p.scores, s.float())
    assert p.k == 3
    assert p.indptr.dtype == p.indices.dtype == p.rows.dtype == torch.int64
    assert p.indptr.tolist() == [0, 2, 2] and p.indices.tolist() == [3, 1]
    assert p.rows.tolist() == [1, 0, 0, 1, 1, 0]
    q = D.prepare(s, 0)
    assert q.indptr is None and q.indices is None and q.rows is None
    empty = D.prepare(torch.zeros((0, 3)), 2, (np.array([0]), np.zeros(0)), np.zeros(0, np.int64))
    assert empty.rows.shape == (0,) and empty.indices.shape == (0,)

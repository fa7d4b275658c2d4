"""Serving top-k at the GEMM limit: ``Scorer.recommend`` against the bare GEMM and four peers.

One run each, side by side, same factors (seeded N(0, 1/64), dim 64), k = 10, ~1M random
excluded (user, item) pairs, 2 threads:

- ours: ``Scorer(MF).recommend(k=10, exclude=...)``, i.e. ``kernels.topk_dot_blocked``
  (per worker: 64-user x 4096-item blocks, single-threaded sgemm into a reused buffer, the
  C++ merge on the block while it is in cache);
- bare GEMM: the fastest of (a) torch.mm of 2048-user tiles into one reused buffer (2 BLAS
  threads), (b) numpy.matmul of the same tiles with ``out=`` (numpy's own BLAS) and (c) our block
  schedule with the GEMMs alone (no selection): the floor any exact method pays;
- ``kernels.topk_dot`` (torch GEMM into a fresh 2048-row tile + the masked top-k);
- faiss-cpu ``IndexFlatIP`` exact search of k + (largest exclusion row) per user, then the
  excluded items filtered out (``bench`` extra);
- torch: 2048-user tiles, mm, ``index_put_`` -inf on the excluded pairs, ``torch.topk``;
- implicit 0.7's batched ``recommend`` with ``filter_already_liked_items`` (``bench`` extra).

Every method's lists are checked against ours: same scores (float32 rounding) and the same
items except where two scores tie within rounding. ``recommend(certify=True)`` is timed too
(``certify_over_plain``). The machine this was written on is shared, so each method's process
CPU time (all threads) is recorded beside its wall time.
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from advrec import kernels as K
from advrec.models import MF
from advrec.serving import Scorer

K_TOP, DIM, THREADS, TILE = 10, 64, 2, 2048


CPU = {}  # name -> process CPU seconds of its last timed call (all threads)


def timed(fn, name=None):
    """Wall seconds of one call (and its process CPU seconds into CPU[name]: on a shared machine
    the CPU time says what the method costs when the wall clock includes waiting for a core)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    if name is not None:
        CPU[name] = time.process_time() - c0
    return wall, out


def bare_torch(U, Vt):
    buf = torch.empty(TILE, Vt.shape[1])
    with torch.no_grad():
        for s in range(0, U.shape[0], TILE):
            torch.mm(U[s:s + TILE], Vt, out=buf[:min(TILE, U.shape[0] - s)])


def bare_numpy(U, Vt):
    Un, Vn = U.numpy(), Vt.numpy()
    buf = np.empty((TILE, Vn.shape[1]), np.float32)
    for s in range(0, Un.shape[0], TILE):
        e = min(TILE, Un.shape[0] - s)
        np.matmul(Un[s:s + TILE], Vn, out=buf[:e])


def bare_blocks(U, V, user_block=64, item_block=4096):
    """Our schedule without the selection: the GEMM floor of the blocked path."""
    blocks = [V[c:c + item_block].t().contiguous() for c in range(0, V.shape[0], item_block)]
    starts = list(range(0, U.shape[0], user_block))
    counter = itertools.count()

    def work():
        buf = torch.empty(user_block * item_block)
        while (c := next(counter)) < len(starts):
            Pu = U[starts[c]:starts[c] + user_block]
            for Vt in blocks:
                torch.mm(Pu, Vt, out=buf[:Pu.shape[0] * Vt.shape[1]].view(Pu.shape[0], Vt.shape[1]))

    with torch.no_grad(), K.single_threaded_blas(), ThreadPoolExecutor(THREADS) as pool:
        for f in [pool.submit(work) for _ in range(THREADS)]:
            f.result()


def torch_tiles(U, Vt, indptr, indices, k):
    n = U.shape[0]
    ex_u = np.repeat(np.arange(n), np.diff(indptr))
    out_i, out_v = [], []
    with torch.no_grad():
        for s in range(0, n, TILE):
            e = min(s + TILE, n)
            S = U[s:e] @ Vt
            lo, hi = indptr[s], indptr[e]
            S.index_put_((torch.from_numpy(ex_u[lo:hi] - s), torch.from_numpy(indices[lo:hi])),
                         torch.tensor(float("-inf")))
            v, i = torch.topk(S, k, dim=1)
            out_i.append(i.numpy())
            out_v.append(v.numpy())
    return np.concatenate(out_i), np.concatenate(out_v)


def faiss_filtered(U, V, indptr, indices, k):
    import faiss
    faiss.omp_set_num_threads(THREADS)
    index = faiss.IndexFlatIP(V.shape[1])
    index.add(V.numpy())
    extra = int(np.diff(indptr).max(initial=0))
    D, I = index.search(U.numpy(), k + extra)
    n, m = U.shape[0], V.shape[0]
    keys = np.arange(n, dtype=np.int64)[:, None] * m + I
    ex_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)) * m + indices  # sorted
    pos = np.searchsorted(ex_keys, keys).clip(max=max(len(ex_keys) - 1, 0))
    bad = (ex_keys[pos] == keys) if len(ex_keys) else np.zeros_like(keys, bool)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]  # first k kept, in rank order
    return np.take_along_axis(I, order, 1), np.take_along_axis(D, order, 1)


def implicit_batched(U, V, indptr, indices, k):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    model = AlternatingLeastSquares(factors=DIM, num_threads=THREADS)
    model.user_factors, model.item_factors = U.numpy(), V.numpy()
    n, m = U.shape[0], V.shape[0]
    user_items = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, m))
    with threadpool_limits(THREADS):
        return model.recommend(np.arange(n), user_items, N=k, filter_already_liked_items=True)


def check_same(name, ours_i, ours_v, i, v):
    """Same scores everywhere; same items except where the two lists' scores tie within rounding."""
    v = np.asarray(v, np.float32)
    np.testing.assert_allclose(v, ours_v, rtol=1e-4, atol=1e-5, err_msg=name)
    differ = np.asarray(i) != ours_i
    near_tie = np.abs(np.diff(ours_v, axis=1, append=-np.inf)) < 1e-5
    near_tie |= np.abs(np.diff(ours_v, axis=1, prepend=np.inf)) < 1e-5
    near_tie[:, -1] = True  # the k-th may tie with the (k+1)-th, which we do not see
    assert not (differ & ~near_tie).any(), f"{name}: {int((differ & ~near_tie).sum())} items differ"
    return float(differ.mean())


@pytest.mark.parametrize("n_users", [pytest.param(100_000, marks=pytest.mark.large), 20_000])
def test_recommend_at_the_gemm_limit(benchmark, ratio, interactions, n_users):
    n_items = 20_000
    pairs = 1_000_000 * n_users // 100_000
    g = torch.Generator().manual_seed(0)
    model = MF(n_users, n_items, dim=DIM)
    with torch.no_grad():
        model.user_factors.copy_(torch.randn(n_users, DIM, generator=g) / DIM ** 0.5)
        model.item_factors.copy_(torch.randn(n_items, DIM, generator=g) / DIM ** 0.5)
    U, V = model.user_factors.detach(), model.item_factors.detach()
    Vt = V.t().contiguous()
    indptr, indices = interactions(1, n_users, n_items, pairs)
    torch.set_num_threads(THREADS)
    scorer = Scorer(model, threads=THREADS)
    ex = (indptr, indices)
    scorer.recommend(np.arange(1000), k=K_TOP, exclude=ex)  # warm up the pool and the pages

    c0 = time.process_time()
    ours_i, ours_v = benchmark.pedantic(lambda: scorer.recommend(k=K_TOP, exclude=ex),
                                        rounds=1, iterations=1)
    CPU["ours"] = time.process_time() - c0
    ours_s = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else None
    t_cert, (ci, cv, radius) = timed(lambda: scorer.recommend(k=K_TOP, exclude=ex, certify=True), "certify")
    np.testing.assert_array_equal(ci, ours_i)
    t_bare = {"torch_mm_reused": timed(lambda: bare_torch(U, Vt), "torch_mm_reused")[0],
              "numpy_matmul_reused": timed(lambda: bare_numpy(U, Vt), "numpy_matmul_reused")[0],
              "blocks_gemm_only": timed(lambda: bare_blocks(U, V), "blocks_gemm_only")[0]}
    bare = min(t_bare.values())
    times, differ = {}, {}
    times["topk_dot"], (i, v) = timed(lambda: K.topk_dot(U, V, K_TOP, ex), "topk_dot")
    differ["topk_dot"] = check_same("topk_dot", ours_i, ours_v, i, v)
    times["torch_tiles"], (i, v) = timed(lambda: torch_tiles(U, Vt, indptr, indices, K_TOP), "torch_tiles")
    differ["torch_tiles"] = check_same("torch_tiles", ours_i, ours_v, i, v)
    try:
        times["faiss_flat_ip"], (i, v) = timed(lambda: faiss_filtered(U, V, indptr, indices, K_TOP), "faiss_flat_ip")
        differ["faiss_flat_ip"] = check_same("faiss", ours_i, ours_v, i, v)
    except ImportError:
        pass
    try:
        times["implicit"], (i, v) = timed(lambda: implicit_batched(U, V, indptr, indices, K_TOP), "implicit")
        differ["implicit"] = check_same("implicit", ours_i, ours_v, i, v)
    except ImportError:
        pass
    if ours_s is None:
        return
    print(f"\n[serving {n_users}x{n_items}] ours {ours_s:.3f} s ({n_users / ours_s:,.0f} users/s); "
          f"bare GEMM {bare:.3f} s ({', '.join(f'{k} {v:.3f}' for k, v in t_bare.items())}); "
          + "; ".join(f"{k} {v:.3f} s" for k, v in times.items())
          + f"; ours/bare {ours_s / bare:.3f}; certify {t_cert:.3f} s = {t_cert / ours_s:.2f}x plain; "
          f"radius median {np.median(radius[np.isfinite(radius)]):.4g}; item mismatches (ties) {differ}; "
          f"process CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in CPU.items())
          + f"; CPU ours/bare {CPU['ours'] / min(CPU[k] for k in t_bare):.3f}")
    ratio(benchmark, f"recommend {n_users}x{n_items}", min(times.values()),
          ours_over_bare_gemm=ours_s / bare, bare_gemm_s=bare, **{f"{k}_s": v for k, v in times.items()},
          **{f"bare_{k}_s": v for k, v in t_bare.items()}, certify_over_plain=t_cert / ours_s,
          users_per_s=n_users / ours_s, **{f"cpu_{k}_s": v for k, v in CPU.items()})

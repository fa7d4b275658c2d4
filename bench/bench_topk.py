"""Top-K evaluation speed and memory: advrec.kernels.topk_dot against plain torch.

Reference: ``S = U @ V.T``; excluded (user, item) pairs set to -inf with ``index_put_``;
``torch.topk(S, k)``. It builds the whole score matrix; topk_dot never does (one tile of users at
a time, masking and selection fused in the core). Factors are random (fixed seed), so no dataset
is needed; shapes and the number of excluded pairs mimic ML-100K.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import pytest
import torch

from advrec import kernels as K

K_TOP = 10
DIM = 64


def factors(seed: int, n_users: int, n_items: int) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_users, DIM, generator=g) / DIM ** 0.5,
            torch.randn(n_items, DIM, generator=g) / DIM ** 0.5)


def torch_reference(U: torch.Tensor, V: torch.Tensor, k: int,
                    ex_users: torch.Tensor, ex_items: torch.Tensor):
    with torch.no_grad():
        S = U @ V.T
        S.index_put_((ex_users, ex_items), torch.tensor(float("-inf")))
        return torch.topk(S, k, dim=1)


def run_case(benchmark, ratio, timed_best_of, interactions: Callable, name: str,
             n_users: int, n_items: int, n_pairs: int, rounds: int) -> None:
    U, V = factors(0, n_users, n_items)
    indptr, indices = interactions(1, n_users, n_items, n_pairs)
    ex_users = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(indptr)))
    ex_items = torch.from_numpy(indices)

    ours = benchmark.pedantic(K.topk_dot, args=(U, V, K_TOP, (indptr, indices)),
                              rounds=rounds, iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: torch_reference(U, V, K_TOP, ex_users, ex_items), rounds)

    # Same answer (values; the reference's tie order is unspecified).
    ref = torch_reference(U, V, K_TOP, ex_users, ex_items)
    np.testing.assert_allclose(ours[1], ref.values.numpy(), rtol=1e-5, atol=1e-6)
    ratio(benchmark, name, ref_s, users=n_users, items=n_items, excluded=int(indices.size),
          threads=torch.get_num_threads())


def test_topk_dot_ml100k(benchmark, ratio, timed_best_of, interactions):
    """All 943 ML-100K users x 1682 items, ~100k excluded training pairs, k = 10."""
    run_case(benchmark, ratio, timed_best_of, interactions, "topk_dot ML-100K 943x1682",
             943, 1682, 100_000, rounds=30)


def test_topk_dot_20k(benchmark, ratio, timed_best_of, interactions):
    """20k users x 20k items, ~1M excluded pairs, k = 10 (the reference holds 1.6 GB of scores)."""
    run_case(benchmark, ratio, timed_best_of, interactions, "topk_dot 20k x 20k",
             20_000, 20_000, 1_000_000, rounds=3)


def test_masked_selection_20k(benchmark, ratio, timed_best_of, interactions):
    """The fused part alone on a precomputed 20k x 20k score matrix: mask + top-10.

    Ours: ``kernels.topk_scores`` (exclusion CSR, selection in the core). Reference:
    ``index_put_`` -inf on the excluded pairs of a copy, then ``torch.topk``. No GEMM on either side.
    """
    n_users = n_items = 20_000
    U, V = factors(0, n_users, n_items)
    with torch.no_grad():
        S = U @ V.T
    indptr, indices = interactions(1, n_users, n_items, 1_000_000)
    ex_users = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(indptr)))
    ex_items = torch.from_numpy(indices)
    scratch = S.clone()

    def reference():
        scratch.copy_(S)
        scratch.index_put_((ex_users, ex_items), torch.tensor(float("-inf")))
        return torch.topk(scratch, K_TOP, dim=1)

    copy_s = timed_best_of(lambda: scratch.copy_(S), 3)
    ours = benchmark.pedantic(K.topk_scores, args=(S, K_TOP, (indptr, indices)), rounds=3,
                              iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(reference, 3) - copy_s  # the copy only keeps S intact between rounds
    np.testing.assert_allclose(ours[1], reference().values.numpy(), rtol=1e-6)
    ratio(benchmark, "masked top-10 selection 20k x 20k", ref_s, users=n_users, items=n_items,
          excluded=int(indices.size), threads=torch.get_num_threads())


PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    from advrec import kernels as K

    n_users, n_items, dim, per_user = (int(a) for a in sys.argv[1:5])
    g = torch.Generator().manual_seed(0)
    U = torch.randn(n_users, dim, generator=g)
    V = torch.randn(n_items, dim, generator=g)
    rng = np.random.default_rng(1)
    indptr = np.arange(0, (n_users + 1) * per_user, per_user, dtype=np.int64)
    indices = rng.integers(0, n_items, size=n_users * per_user, dtype=np.int64)
    K.topk_dot(U[:64], V[:1000], 10)  # load BLAS / OpenMP pools outside the measurement

    def rss_kb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    before = rss_kb()
    t0 = time.perf_counter()
    idx, val = K.topk_dot(U, V, 10, (indptr, indices))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps(dict(rss_before_kb=before, maxrss_kb=peak, seconds=seconds,
                          out_shape=list(idx.shape))))
""")


@pytest.mark.large
def test_topk_dot_peak_memory(benchmark):
    """Peak RSS growth of topk_dot at 100K users x 50K items (dim 64), in a fresh process.

    The full float32 score matrix would need 100K * 50K * 4 B = 20 GB; topk_dot should need one
    2048 x 50K tile (~0.4 GB) plus the outputs.
    """
    n_users, n_items = 100_000, 50_000

    def run() -> dict:
        # Import the same advrec this process benches (installed or in-place build).
        env = dict(os.environ, PYTHONPATH=str(Path(K.__file__).resolve().parents[1]))
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n_users), str(n_items),
                              str(DIM), "20"], capture_output=True, text=True, check=True,
                             cwd=tempfile.gettempdir(), env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    r = benchmark.pedantic(run, rounds=1, iterations=1)
    peak_bytes = (r["maxrss_kb"] - r["rss_before_kb"]) * 1024
    full_bytes = n_users * n_items * 4
    assert r["out_shape"] == [n_users, 10]
    benchmark.extra_info.update(peak_increase_bytes=peak_bytes, full_matrix_bytes=full_bytes,
                                ratio_full_over_peak=full_bytes / peak_bytes,
                                topk_dot_seconds=r["seconds"])
    print(f"\n[topk_dot peak memory 100K x 50K] peak RSS increase {peak_bytes / 2**20:.0f} MiB "
          f"vs {full_bytes / 1e9:.0f} GB for the full score matrix "
          f"(ratio {full_bytes / peak_bytes:.0f}x), topk_dot took {r['seconds']:.1f} s")
    assert peak_bytes < full_bytes / 10

"""BPR-MF loss gradient w.r.t. the embedding perturbations (issue 4): the compiled kernel
(``advrec.kernels.mf_bpr_gradient``, reached through ``Attack.gradient``'s hook
``MF.delta_gradient``) against the torch autograd path (``Attack.autograd_gradient``: gathers of
the three ``[N, dim]`` row blocks, the BPR loss, backward through ``index``).

- ML-100K: every training interaction of the time-ordered leave-one-out split with one sampled
  negative (``BPRSampler(...).epoch()``, seed 0), as MSAP attacks "the whole training set";
  MF tables drawn N(0, 0.5) (trained-looking magnitudes), dim 64, a non-zero perturbation of
  both tables, the gradient w.r.t. both.
- 1M random triples on 10K x 64 user and item tables.

Both sides give the same gradients (checked to float32 precision before timing).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch

from advrec import kernels as K
from advrec.attacks import FGSM
from advrec.models import MF

DIM = 64


def _mf(n_users: int, n_items: int, seed: int) -> MF:
    m = MF(n_users, n_items, dim=DIM, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.user_factors.copy_(torch.randn(n_users, DIM, generator=g) * 0.5)
        m.item_factors.copy_(torch.randn(n_items, DIM, generator=g) * 0.5)
    return m


def _delta(m: MF, seed: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randn(m.n_users, DIM, generator=g) * 0.05,
            "item": torch.randn(m.n_items, DIM, generator=g) * 0.05}


def _run(benchmark, ratio, timed_best_of, name: str, m: MF, batch, rounds: int) -> None:
    atk = FGSM(m, 0.5)
    delta = _delta(m, 1)
    fast = atk.gradient(batch, delta)
    ref = atk.autograd_gradient(batch, delta)
    for n in ("user", "item"):  # same gradients, to float32 precision
        torch.testing.assert_close(fast[n], ref[n], rtol=1e-4, atol=1e-8)
    benchmark.pedantic(atk.gradient, args=(batch, delta), rounds=rounds, iterations=1,
                       warmup_rounds=1)
    ref_s = timed_best_of(lambda: atk.autograd_gradient(batch, delta), rounds)
    # The bare kernel on ready tables, for the record (the hook adds P + dP, Q + dQ).
    P = (m.user_factors.detach() + delta["user"]).contiguous()
    Q = (m.item_factors.detach() + delta["item"]).contiguous()
    u, i, j = batch["user"], batch["pos"], batch["neg"]
    kernel_s = timed_best_of(lambda: K.mf_bpr_gradient(P, Q, u, i, j), rounds)
    ratio(benchmark, name, ref_s, triples=int(u.shape[0]), users=m.n_users, items=m.n_items,
          dim=DIM, kernel_only_ms=kernel_s * 1e3, ratio_vs_kernel_only=ref_s / kernel_s,
          simd=K._core.mf_bpr_gradient_simd(), omp_threads=K.info()["openmp_threads"],
          torch_threads=torch.get_num_threads())


@pytest.fixture(scope="module")
def ml100k_triples():
    from advrec import data as D
    from advrec.data.sampling import BPRSampler

    try:
        ds = D.load("ml-100k")
    except Exception as err:  # no cached copy and no network
        pytest.skip(f"ML-100K unavailable: {err}")
    inter = D.implicit(ds.interactions, _quiet=True)
    split = D.leave_one_out(inter, order="time", validation=True)
    indptr, indices = split.train.to_csr()
    u, i, j = BPRSampler(indptr, indices, split.train.n_items, seed=0).epoch()
    batch = {"user": torch.from_numpy(u), "pos": torch.from_numpy(i), "neg": torch.from_numpy(j)}
    return inter.n_users, inter.n_items, batch


def test_bpr_gradient_ml100k(benchmark, ratio, timed_best_of, ml100k_triples):
    n_users, n_items, batch = ml100k_triples
    _run(benchmark, ratio, timed_best_of, "bpr gradient ML-100K train triples",
         _mf(n_users, n_items, 0), batch, rounds=30)


def test_bpr_gradient_1m_triples(benchmark, ratio, timed_best_of):
    n_users = n_items = 10_000
    n = 1_000_000
    rng = np.random.default_rng(0)
    batch = {"user": torch.from_numpy(rng.integers(0, n_users, n)),
             "pos": torch.from_numpy(rng.integers(0, n_items, n)),
             "neg": torch.from_numpy(rng.integers(0, n_items, n))}
    _run(benchmark, ratio, timed_best_of, "bpr gradient 1M triples 10K x 10K",
         _mf(n_users, n_items, 1), batch, rounds=5)

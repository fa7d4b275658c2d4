"""Fused attack step (issue 4): advrec.kernels.perturb_step against the unfused torch ops.

Reference: what an attack loop writes in torch, in place on float32 tensors: the row norms of
the gradient, the normalised step added to delta, then the row norms of delta and a rescale
(``l2``) or a clamp (``linf``, ``l2-step-linf-clip``); each op is a full pass over the table.
The fused kernel reads grad and delta once and writes delta once (plus the finite-grad check,
one more read of grad). A random 1M x 64 table (fixed seed), all rows updated; repeated steps
saturate delta on the budget's boundary, which costs both sides the same work.
"""
from __future__ import annotations

import pytest
import torch

from advrec import kernels as K

N_ROWS, DIM = 1_000_000, 64
ALPHA, EPS = 0.05, 0.5


def torch_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float,
               norm: str) -> torch.Tensor:
    with torch.no_grad():
        if norm == "linf":
            delta.add_(torch.sign(grad), alpha=alpha).clamp_(-eps, eps)
            return delta
        gn = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
        delta.addcdiv_(grad, gn.clamp_min(torch.finfo(torch.float32).tiny), value=alpha)
        if norm == "l2":
            dn = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
            delta.mul_((eps / dn.clamp_min(torch.finfo(torch.float32).tiny)).clamp_max(1.0))
        else:
            delta.clamp_(-eps, eps)
        return delta


@pytest.mark.parametrize("norm", ["l2", "linf", "l2-step-linf-clip"])
def test_perturb_step_1m_x_64(benchmark, ratio, timed_best_of, norm):
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(N_ROWS, DIM, generator=g)
    delta = torch.randn(N_ROWS, DIM, generator=g) * 0.01
    ref_delta = delta.clone()
    rounds = 5
    benchmark.pedantic(K.perturb_step, args=(delta, grad, ALPHA, EPS, norm), rounds=rounds,
                       iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: torch_step(ref_delta, grad, ALPHA, EPS, norm), rounds)
    torch.testing.assert_close(delta, ref_delta, rtol=1e-4, atol=1e-5)  # same steps, same result
    ratio(benchmark, f"perturb_step {norm} {N_ROWS}x{DIM}", ref_s, rows=N_ROWS, dim=DIM,
          torch_threads=torch.get_num_threads())

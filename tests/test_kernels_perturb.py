"""advrec.kernels.perturb_step (the fused attack step of issue 4) against the unfused torch ops.

The reference is written out below with plain torch ops in float64 (normalise, scale, add,
project / clip), applied to the selected rows only. GPU tests carry ``@pytest.mark.cuda`` and are
skipped unless the core was built with CUDA and a device is visible.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import pytest
import torch

from advrec import kernels as K

NORMS = ("l2", "linf", "l2-step-linf-clip")
cuda = pytest.mark.skipif(not K.has_cuda(), reason="needs a CUDA build of advrec and a GPU")


def seeded(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def reference(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float, norm: str,
              rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The unfused step: separate torch ops over the whole (selected) table, in float64."""
    out = delta.clone()
    idx = torch.arange(delta.shape[0]) if rows is None else rows
    d, g = delta[idx].double(), grad[idx].double()
    if norm == "linf":
        d = d + alpha * torch.sign(g)
        d = torch.clamp(d, -eps, eps)
    else:
        gn = torch.linalg.vector_norm(g, dim=1, keepdim=True)
        step = torch.where(gn > 0, g / torch.where(gn > 0, gn, torch.ones_like(gn)),
                           torch.zeros_like(g))
        d = d + alpha * step
        if norm == "l2":
            dn = torch.linalg.vector_norm(d, dim=1, keepdim=True)
            d = torch.where(dn > eps, d * (eps / torch.where(dn > 0, dn, torch.ones_like(dn))), d)
        else:
            d = torch.clamp(d, -eps, eps)
    out[idx] = d.float()
    return out


def random_case(seed, n_rows: int, dim: int, zero_rows: int = 0):
    rng = seeded(*seed)
    delta = (rng.standard_normal((n_rows, dim)) * 0.3).astype(np.float32)
    grad = rng.standard_normal((n_rows, dim)).astype(np.float32)
    if zero_rows:
        grad[rng.choice(n_rows, size=min(zero_rows, n_rows), replace=False)] = 0.0
    return delta, grad


def check(delta: np.ndarray, grad: np.ndarray, alpha: float, eps: float, norm: str,
          rows: Optional[np.ndarray] = None) -> None:
    want = reference(torch.from_numpy(delta.copy()), torch.from_numpy(grad), alpha, eps, norm,
                     None if rows is None else torch.from_numpy(rows))
    got = delta.copy()
    out = K.perturb_step(got, grad, alpha, eps, norm, rows=rows)
    assert out is got
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=1e-7)
    if rows is not None:  # untouched rows are bitwise unchanged
        keep = np.setdiff1d(np.arange(delta.shape[0]), rows)
        assert np.array_equal(got[keep], delta[keep])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n_rows,dim", [(50, 64), (7, 1), (33, 17), (0, 8), (5, 0)])
@pytest.mark.parametrize("alpha,eps", [(0.1, 0.5), (0.3, 0.0), (1e6, 1.0), (3e38, 0.7), (0.0, 0.2), (0.05, 1e30)])
def test_matches_unfused_reference(norm, n_rows, dim, alpha, eps):
    delta, grad = random_case((norm, n_rows, dim, alpha, eps), n_rows, dim, zero_rows=3)
    check(delta, grad, alpha, eps, norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("m", [0, 1, 13, 40])
def test_rows_subset(norm, m):
    delta, grad = random_case((norm, m, "rows"), 40, 24, zero_rows=4)
    rows = seeded(norm, m).permutation(40)[:m].astype(np.int64)
    check(delta, grad, 0.2, 0.4, norm, rows)


@pytest.mark.parametrize("norm", NORMS)
def test_zero_gradient_rows(norm):
    delta = np.array([[3.0, 4.0], [0.1, -0.2]], np.float32)
    grad = np.zeros_like(delta)
    K.perturb_step(delta, grad, 1.0, 1.0, norm)
    if norm == "linf":  # sign(0) = 0: no step, only the clip
        want = [[1.0, 1.0], [0.1, -0.2]]
    elif norm == "l2":  # no step, but the row outside the ball is projected
        want = [[0.6, 0.8], [0.1, -0.2]]
    else:
        want = [[1.0, 1.0], [0.1, -0.2]]
    np.testing.assert_allclose(delta, want, rtol=1e-6)


def test_hand_computed_l2_step():
    delta = np.zeros((1, 2), np.float32)
    K.perturb_step(delta, np.array([[3.0, 4.0]], np.float32), 0.5, 10.0, "l2")
    np.testing.assert_allclose(delta, [[0.3, 0.4]], rtol=1e-6)
    K.perturb_step(delta, np.array([[0.0, 2.0]], np.float32), 1.0, 1.0, "l2")  # [0.3, 1.4] -> ball
    np.testing.assert_allclose(delta, np.array([[0.3, 1.4]]) / np.hypot(0.3, 1.4), rtol=1e-6)


def test_torch_cpu_tensors_updated_in_place():
    delta, grad = random_case(("torch",), 20, 8)
    d = torch.from_numpy(delta.copy()).requires_grad_(True)
    want = reference(d.detach().clone(), torch.from_numpy(grad), 0.1, 0.3, "l2")
    out = K.perturb_step(d, torch.from_numpy(grad), 0.1, 0.3, "l2",
                         rows=torch.arange(20))
    assert out is d
    torch.testing.assert_close(d.detach(), want, rtol=2e-6, atol=1e-7)


def test_deterministic():
    delta, grad = random_case(("det",), 300, 33)
    a, b = delta.copy(), delta.copy()
    K.perturb_step(a, grad, 0.2, 0.5, "l2")
    K.perturb_step(b, grad, 0.2, 0.5, "l2")
    assert np.array_equal(a, b)


def bad_inputs():
    d = np.zeros((4, 3), np.float32)
    g = np.ones((4, 3), np.float32)
    nan = g.copy()
    nan[2, 1] = np.nan
    inf = g.copy()
    inf[0, 0] = np.inf
    big = np.zeros((4, 6), np.float32)
    return [
        (dict(delta=d.astype(np.float64)), ValueError, "delta"),
        (dict(grad=g.astype(np.float64)), ValueError, "grad"),
        (dict(grad=np.ones((4, 2), np.float32)), ValueError, "grad"),
        (dict(grad=np.ones((5, 3), np.float32)), ValueError, "grad"),
        (dict(delta=np.zeros(12, np.float32), grad=np.ones(12, np.float32)), ValueError, "delta"),
        (dict(delta=big[:, ::2]), ValueError, "delta"),
        (dict(grad=np.ones((4, 6), np.float32)[:, ::2]), ValueError, "grad"),
        (dict(grad=nan), ValueError, "grad"),
        (dict(grad=inf), ValueError, "grad"),
        (dict(alpha=-0.1), ValueError, "alpha"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(alpha=float("inf")), ValueError, "alpha"),
        (dict(alpha=1e39), ValueError, "alpha"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"),
        (dict(alpha="1"), ValueError, "alpha"),
        (dict(norm="l1"), ValueError, "norm"),
        (dict(norm=None), ValueError, "norm"),
        (dict(rows=np.array([0, 4])), IndexError, "rows"),
        (dict(rows=np.array([-1])), IndexError, "rows"),
        (dict(rows=np.array([1, 2, 1])), ValueError, "rows"),
        (dict(rows=np.array([0.0, 1.0])), ValueError, "rows"),
        (dict(rows=np.array([[0, 1]])), ValueError, "rows"),
        (dict(delta=[[0.0, 0.0, 0.0]] * 4), ValueError, "delta"),
        (dict(delta=torch.zeros((4, 3), dtype=torch.bfloat16)), ValueError, "delta"),
        (dict(grad=torch.ones((4, 3), dtype=torch.float64)), ValueError, "grad"),
        (dict(grad=torch.ones((3, 4)).t()), ValueError, "grad"),
    ]


@pytest.mark.parametrize("kwargs,exc,name", bad_inputs())
def test_bad_input_raises_and_changes_nothing(kwargs, exc, name):
    args = dict(delta=np.full((4, 3), 0.25, np.float32), grad=np.ones((4, 3), np.float32),
                alpha=0.1, eps=1.0, norm="l2", rows=None)
    args.update(kwargs)
    delta = args.pop("delta")
    before = torch.as_tensor(delta).double().numpy().copy()
    with pytest.raises(exc, match=name):
        K.perturb_step(delta, args.pop("grad"), args["alpha"], args["eps"], args["norm"],
                       rows=args["rows"])
    assert np.array_equal(torch.as_tensor(delta).double().numpy(), before)


def test_nan_in_grad_leaves_delta_unchanged():
    delta, grad = random_case(("nan",), 10, 4)
    grad[7, 3] = np.nan
    got = delta.copy()
    with pytest.raises(ValueError, match="grad"):
        K.perturb_step(got, grad, 0.1, 0.5, "linf")
    assert np.array_equal(got, delta)
    K.perturb_step(got, grad, 0.1, 0.5, "linf", rows=np.array([0, 1]))  # row 7 not read
    check(delta, np.nan_to_num(grad), 0.1, 0.5, "linf", np.array([0, 1]))


def test_read_only_delta_rejected():
    d = np.zeros((2, 2), np.float32)
    d.setflags(write=False)
    with pytest.raises(ValueError, match="delta"):
        K.perturb_step(d, np.ones((2, 2), np.float32), 0.1, 1.0)


def test_cuda_tensor_without_cuda_build_is_a_clear_error(monkeypatch):
    from advrec.kernels import perturb_cuda

    class FakeCore:
        pass

    monkeypatch.setattr(perturb_cuda, "_core", FakeCore())
    fake = torch.zeros((2, 2))
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    with pytest.raises(ValueError, match="without CUDA"):
        K.perturb_step(fake, torch.ones((2, 2)), 0.1, 1.0)


# ---------------------------------------------------------------------------- CUDA twin


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n_rows,dim,m", [(1000, 64, None), (37, 1, None), (200, 100, 50),
                                          (0, 8, None), (20, 8, 0)])
def test_cuda_matches_cpu(norm, n_rows, dim, m):
    delta, grad = random_case(("cuda", norm, n_rows, dim), n_rows, dim, zero_rows=3)
    rows = None if m is None else seeded(n_rows, m).permutation(n_rows)[:m].astype(np.int64)
    want = delta.copy()
    K.perturb_step(want, grad, 0.2, 0.5, norm, rows=rows)
    d = torch.from_numpy(delta).cuda()
    out = K.perturb_step(d, torch.from_numpy(grad).cuda(), 0.2, 0.5, norm,
                         rows=None if rows is None else torch.from_numpy(rows).cuda())
    assert out is d
    np.testing.assert_allclose(d.cpu().numpy(), want, rtol=2e-6, atol=1e-7)


@pytest.mark.cuda
@cuda
def test_cuda_bad_inputs():
    d = torch.zeros((4, 3), device="cuda")
    g = torch.ones((4, 3), device="cuda")
    with pytest.raises(ValueError, match="grad"):
        K.perturb_step(d, g.double(), 0.1, 1.0)
    with pytest.raises(ValueError, match="grad"):
        K.perturb_step(d, g.cpu(), 0.1, 1.0)
    with pytest.raises(ValueError, match="delta"):
        K.perturb_step(torch.zeros((3, 4), device="cuda").t(), g, 0.1, 1.0)
    with pytest.raises(ValueError, match="grad"):
        K.perturb_step(d, torch.full((4, 3), float("nan"), device="cuda"), 0.1, 1.0)
    with pytest.raises(IndexError, match="rows"):
        K.perturb_step(d, g, 0.1, 1.0, rows=torch.tensor([4], device="cuda"))
    with pytest.raises(ValueError, match="rows"):
        K.perturb_step(d, g, 0.1, 1.0, rows=torch.tensor([1, 1], device="cuda"))
    assert bool((d == 0).all())

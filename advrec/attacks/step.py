"""One projected perturbation step: normalise the gradient rows, scale, add, project.

Kept as one small pure-torch function because it is the contract a fused kernel
(``advrec.kernels.perturb_step``) reproduces; this path is the reference both are tested against.

Norms (per row, a row being ``tensor[r]`` flattened):

- ``"l2"``: step ``alpha * g_r / ||g_r||_2`` (APR/MSAP's row normalisation), then projection of
  each row onto the L2 ball of radius ``eps``. This is the constraint the papers write down.
- ``"linf"``: step ``alpha * sign(g)``, then element-wise clipping to ``[-eps, eps]``.
- ``"l2-step-linf-clip"``: the L2-normalised row step of ``"l2"``, but element-wise clipping as
  in ``"linf"``. This is what the published MSAP code does; its feasible set is the box, which
  holds rows of L2 norm up to ``eps * sqrt(dim)``, so multi-step attacks under it are stronger
  than under ``"l2"`` with the same ``eps``. Offered so the paper's numbers can be reproduced.

Rows whose gradient is all zero take no step under any norm.
"""
from __future__ import annotations

from typing import Optional

import torch

NORMS = ("l2", "linf", "l2-step-linf-clip")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _rows(t: torch.Tensor) -> torch.Tensor:
    """View as [rows, features]: the first axis indexes rows (users, items, ...)."""
    return t.reshape(t.shape[0], -1) if t.dim() >= 1 else t.reshape(1, 1)


def normalized_step(grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    """``alpha`` times the gradient's rows at unit L2 norm (or its sign for ``"linf"``)."""
    check_norm(norm)
    if norm == "linf":
        return alpha * torch.sign(grad)
    g = _rows(grad)
    n = torch.linalg.vector_norm(g, dim=1, keepdim=True)
    # zero rows divide by 1 instead of 0, so they stay exactly zero
    scale = torch.where(n > 0, alpha / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(n))
    return (g * scale).reshape(grad.shape)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Nearest point of the feasible set: per-row L2 ball (``"l2"``) or the ``[-eps, eps]`` box."""
    check_norm(norm)
    if norm != "l2":
        return delta.clamp(-eps, eps)
    d = _rows(delta)
    n = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    scale = torch.where(n > eps, eps / torch.where(n > 0, n, torch.ones_like(n)), torch.ones_like(n))
    return (d * scale).reshape(delta.shape)


def perturb_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float,
                 norm: str = "l2", *, fused: Optional[bool] = None) -> torch.Tensor:
    """``project(delta + normalized_step(grad, alpha, norm), eps, norm)``, as a new tensor.

    ``delta`` and ``grad`` share a shape (typically float32 ``[rows, dim]``). The input ``delta``
    is not modified, so a caller may keep the tensors of earlier steps (iteration curves).
    ``fused``: run the compiled one-pass kernel (``advrec.kernels.perturb_step``, norms in
    double) instead of the torch ops (``torch_step``, the reference); ``None`` picks it for 2-D
    float32 CPU tensors. Both paths refuse a NaN/inf ``delta`` or ``grad``, naming it.
    """
    if tuple(delta.shape) != tuple(grad.shape):
        raise ValueError(f"delta and grad must have the same shape, got {tuple(delta.shape)} "
                         f"and {tuple(grad.shape)}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if fused is None:
        fused = (delta.dim() == 2 and delta.dtype == grad.dtype == torch.float32
                 and delta.device.type == grad.device.type == "cpu")
    if fused:
        from .. import kernels  # compiled core; imported here so the torch path needs none

        out = delta.detach().clone(memory_format=torch.contiguous_format)  # earlier steps stay intact
        return kernels.perturb_step(out, grad.detach().contiguous(), float(alpha), float(eps), check_norm(norm))
    for name, t in (("delta", delta), ("grad", grad)):  # the kernel refuses these too; torch would return NaN
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf; an attack step needs finite values")
    return torch_step(delta, grad, alpha, eps, norm)


def torch_step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float,
               norm: str = "l2") -> torch.Tensor:
    """The unfused torch reference of ``perturb_step`` (any shape, dtype and device)."""
    return project(delta + normalized_step(grad, alpha, norm), eps, norm)


def random_in_ball(shape, eps: float, norm: str, generator: torch.Generator,
                   dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> torch.Tensor:
    """A point uniform in the feasible set of ``norm`` (per row), drawn on the CPU from ``generator``
    so the numbers do not depend on the device.

    ``"l2"``: a uniform direction (normalised Gaussian) times ``eps * U**(1/dim)``, which makes the
    point uniform in the ball rather than crowded at its centre. ``"linf"`` and
    ``"l2-step-linf-clip"`` (whose feasible set is the box): uniform in ``[-eps, eps]``.
    """
    check_norm(norm)
    shape = tuple(shape)
    if norm == "l2":
        rows = shape[0] if len(shape) else 1
        dim = max(1, int(torch.Size(shape).numel() // max(rows, 1))) if rows else 1
        g = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
        n = torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        r = eps * torch.rand(rows, 1, generator=generator, dtype=torch.float64) ** (1.0 / dim)
        out = (g / n * r).reshape(shape)
    else:
        out = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * eps
    return out.to(dtype=dtype, device=device)


def random_on_sphere(shape, eps: float, norm: str, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> torch.Tensor:
    """Random noise of the norm an FGSM step has: rows of L2 norm exactly ``eps`` (``"l2"``,
    ``"l2-step-linf-clip"``) or random signs times ``eps`` (``"linf"``)."""
    check_norm(norm)
    shape = tuple(shape)
    if norm == "linf":
        s = torch.randint(0, 2, shape, generator=generator, dtype=torch.int64) * 2 - 1
        return (s.to(torch.float64) * eps).to(dtype=dtype, device=device)
    rows = shape[0] if len(shape) else 1
    dim = max(1, int(torch.Size(shape).numel() // max(rows, 1))) if rows else 1
    g = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    n = torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return (g / n * eps).reshape(shape).to(dtype=dtype, device=device)

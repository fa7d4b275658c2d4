"""Fused step of an iterative embedding attack (issue 4; MSAP, docs/papers): normalise the
gradient rows, scale, add to the perturbation and project it back into the budget in one pass
over memory, instead of the four or five full-table passes of the unfused torch ops.

``perturb_step`` works in place on numpy arrays and CPU torch tensors (through the tensor's
memory) and, in CUDA builds, on CUDA tensors. Nothing is cast or copied: the update must land in
the caller's buffer, so a wrong dtype or layout is an error.
"""
from __future__ import annotations

import math
from typing import Any, Optional, TypeVar

import numpy as np

from . import _core

try:
    import torch
except ImportError:  # pragma: no cover - torch is a dependency, but the kernels do not need it
    torch = None  # type: ignore[assignment]

__all__ = ["perturb_step", "PERTURB_NORMS"]

PERTURB_NORMS = ("l2", "linf", "l2-step-linf-clip")

T = TypeVar("T")


MAX_ALPHA = float(np.finfo(np.float32).max)  # keeps ‖delta + step‖² finite in double


def _scalar(x: Any, name: str, hi: float = math.inf) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v) or v < 0 or v > hi:
        raise ValueError(f"{name} must be finite, >= 0 and <= {hi}, got {v}")
    return v


def _norm(norm: Any) -> str:
    if not isinstance(norm, str) or norm not in PERTURB_NORMS:
        raise ValueError(f"norm must be one of {PERTURB_NORMS}, got {norm!r}")
    return norm


def _host_view(x: Any, name: str) -> Any:
    """numpy arrays pass through; a CPU tensor becomes a numpy view of its memory."""
    if torch is not None and isinstance(x, torch.Tensor):
        if x.is_cuda:
            raise ValueError(f"{name} is on {x.device} but the other argument is on the CPU")
        if x.dtype != torch.float32:  # bfloat16 has no numpy view: name it here
            raise ValueError(f"{name} must have dtype float32, got {str(x.dtype)[6:]}")
        return x.detach().numpy()
    return x


def _rows_host(rows: Any) -> Optional[np.ndarray]:
    if rows is None:
        return None
    if torch is not None and isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    a = np.asarray(rows)
    if a.ndim != 1:
        raise ValueError(f"rows must be 1-D, got shape {a.shape}")
    if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"rows must hold integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def perturb_step(delta: T, grad: Any, alpha: float, eps: float, norm: str = "l2", *,
                 rows: Any = None) -> T:
    """One attack step in place on ``delta`` [n_rows, dim] float32 (also returned).

    ``"l2"``: each row with a non-zero gradient moves by ``alpha * g / ‖g‖₂``; every updated row
    is then scaled back onto the L2 ball of radius ``eps`` if outside it (rows with a zero
    gradient are projected too: a no-op for rows already inside). ``"linf"``: ``alpha *
    sign(g)`` (sign(0) = 0), then an element-wise clip to ``[-eps, eps]``.
    ``"l2-step-linf-clip"``: the L2 step, then the element-wise clip (the published MSAP code).
    ``rows`` (int64, no duplicates): update only these rows, e.g. those a batch touched.
    Each new row is computed in double (its norms too) and rounded to float32 once, after the
    projection or clip; ``alpha`` is at most float32's max, so nothing overflows on the way.
    A non-finite ``grad`` (in the rows read) raises before anything is written.
    """
    alpha_f, eps_f = _scalar(alpha, "alpha", MAX_ALPHA), _scalar(eps, "eps")
    norm_s = _norm(norm)
    if torch is not None and isinstance(delta, torch.Tensor) and delta.is_cuda:
        _perturb_cuda(delta, grad, alpha_f, eps_f, norm_s, rows)
        return delta
    _core.perturb_step(_host_view(delta, "delta"), _host_view(grad, "grad"), alpha_f, eps_f,
                       norm_s, _rows_host(rows))
    return delta


def _perturb_cuda(delta: "torch.Tensor", grad: Any, alpha: float, eps: float, norm: str,
                  rows: Any) -> None:
    """Checks everything with torch ops on the device, then hands pointers to the core."""
    if not hasattr(_core, "perturb_step_cuda"):
        raise ValueError("delta is a CUDA tensor but advrec was built without CUDA; "
                         "rebuild with -DADVREC_CUDA=ON or pass CPU tensors")
    if not isinstance(grad, torch.Tensor) or grad.device != delta.device:
        where = grad.device if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"grad must be a tensor on {delta.device} like delta, got {where}")
    for t, name in ((delta, "delta"), (grad, "grad")):
        if t.dtype != torch.float32:
            raise ValueError(f"{name} must have dtype float32, got {str(t.dtype)[6:]}")
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {t.ndim}-D")
        if not t.is_contiguous():
            raise ValueError(f"{name} must be C-contiguous")
    n_rows, dim = delta.shape
    if tuple(grad.shape) != (n_rows, dim):
        raise ValueError(f"grad must have the shape of delta ({n_rows}, {dim}), "
                         f"got {tuple(grad.shape)}")
    r = None
    if rows is not None:
        r = rows.detach() if isinstance(rows, torch.Tensor) else torch.from_numpy(_rows_host(rows))
        if r.ndim != 1:
            raise ValueError(f"rows must be 1-D, got shape {tuple(r.shape)}")
        if r.numel() and (r.is_floating_point() or r.is_complex() or r.dtype == torch.bool):
            raise ValueError(f"rows must hold integers, got dtype {str(r.dtype)[6:]}")
        r = r.to(device=delta.device, dtype=torch.int64).contiguous()
    if r is not None and r.numel() == 0:
        return  # no rows to update (a null rows pointer would mean "all rows")
    if r is not None:
        lo, hi = int(r.min()), int(r.max())
        if lo < 0 or hi >= n_rows:
            raise IndexError(f"rows contains {lo if lo < 0 else hi}, outside [0, {n_rows})")
        if torch.unique(r).numel() != r.numel():
            raise ValueError("rows must not repeat a row")
    with torch.no_grad():
        if not bool(torch.isfinite(grad if r is None else grad[r]).all()):
            raise ValueError("grad contains NaN or inf")
    m = 0 if r is None else r.numel()
    _core.perturb_step_cuda(delta.data_ptr(), grad.data_ptr(), n_rows, dim,
                            0 if r is None else r.data_ptr(), m, alpha, eps, norm,
                            torch.cuda.current_stream(delta.device).cuda_stream)

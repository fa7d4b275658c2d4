"""CUDA twin of ``perturb.perturb_step`` (``csrc/cuda/perturb.cu``): the fused attack step in place
on a CUDA tensor. Everything is checked with torch ops on the device before the core sees a
pointer; ``perturb.perturb_step`` calls it for CUDA tensors."""
from __future__ import annotations

from typing import Any

import torch

from ._args import dtype_name, int_array, stream_of
from ._native import _core

__all__ = ["perturb_step_cuda"]


def perturb_step_cuda(delta: torch.Tensor, grad: Any, alpha: float, eps: float, norm: str,
                      rows: Any) -> None:
    """One step in place on the CUDA tensor ``delta`` (arguments as ``perturb.perturb_step``,
    ``alpha``/``eps``/``norm`` already checked there)."""
    if not hasattr(_core, "perturb_step_cuda"):
        raise ValueError("delta is a CUDA tensor but advrec was built without CUDA; "
                         "rebuild with -DADVREC_CUDA=ON or pass CPU tensors")
    if not isinstance(grad, torch.Tensor) or grad.device != delta.device:
        where = grad.device if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"grad must be a tensor on {delta.device} like delta, got {where}")
    for t, name in ((delta, "delta"), (grad, "grad")):
        if t.dtype != torch.float32:
            raise ValueError(f"{name} must have dtype float32, got {dtype_name(t.dtype)}")
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
        r = rows.detach() if isinstance(rows, torch.Tensor) else torch.from_numpy(int_array(rows, "rows"))
        if r.ndim != 1:
            raise ValueError(f"rows must be 1-D, got shape {tuple(r.shape)}")
        if r.numel() and (r.is_floating_point() or r.is_complex() or r.dtype == torch.bool):
            raise ValueError(f"rows must hold integers, got dtype {dtype_name(r.dtype)}")
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
        # One host round trip for both checks; delta as on the CPU: no projection of inf.
        g_ok, d_ok = torch.stack([torch.isfinite(t if r is None else t[r]).all()
                                  for t in (grad, delta)]).tolist()
        if not g_ok:
            raise ValueError("grad contains NaN or inf")
        if not d_ok:
            raise ValueError("delta contains NaN or inf: a perturbation must be finite to be "
                             "stepped and projected")
    m = 0 if r is None else r.numel()
    _core.perturb_step_cuda(delta.data_ptr(), grad.data_ptr(), n_rows, dim,
                            0 if r is None else r.data_ptr(), m, alpha, eps, norm,
                            stream_of(delta.device))

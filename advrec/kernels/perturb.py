"""Fused step of an iterative embedding attack (``csrc/perturb/perturb.{h,cpp}``; CUDA twin
``csrc/cuda/perturb.cu`` through ``perturb_cuda.py``; MSAP, docs/papers): normalise the
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
import torch

from . import perturb_cuda
from ._args import int_array
from ._native import _core

__all__ = ["perturb_step", "PERTURB_NORMS"]

PERTURB_NORMS = ("l2", "linf", "l2-step-linf-clip")

T = TypeVar("T")


MAX_ALPHA = float(np.finfo(np.float32).max)  # keeps ‖delta + step‖² finite in double


def _scalar(x: Any, name: str, hi: float = math.inf) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
    try:
        v = float(x)
    except OverflowError:  # an int beyond float64's range
        raise ValueError(f"{name} must be finite, >= 0 and <= {hi}, got {x}") from None
    if not math.isfinite(v) or v < 0 or v > hi:
        raise ValueError(f"{name} must be finite, >= 0 and <= {hi}, got {v}")
    return v


def _norm(norm: Any) -> str:
    if not isinstance(norm, str) or norm not in PERTURB_NORMS:
        raise ValueError(f"norm must be one of {PERTURB_NORMS}, got {norm!r}")
    return norm


def _host_view(x: Any, name: str) -> Any:
    """numpy arrays pass through; a CPU tensor becomes a numpy view of its memory."""
    if isinstance(x, torch.Tensor):
        if x.is_cuda:
            raise ValueError(f"{name} is on {x.device} but the other argument is on the CPU")
        if x.dtype != torch.float32:  # bfloat16 has no numpy view: name it here
            raise ValueError(f"{name} must have dtype float32, got {str(x.dtype)[6:]}")
        return x.detach().numpy()
    return x


def _rows_host(rows: Any) -> Optional[np.ndarray]:
    return None if rows is None else int_array(rows, "rows")


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
    A non-finite ``grad`` or ``delta`` (in the rows read) raises a ValueError naming it before
    anything is written: an infinite perturbation has no projection onto the L2 ball (inf * 0
    is NaN), and a NaN one no meaning.
    """
    alpha_f, eps_f = _scalar(alpha, "alpha", MAX_ALPHA), _scalar(eps, "eps")
    norm_s = _norm(norm)
    if isinstance(delta, torch.Tensor) and delta.is_cuda:
        perturb_cuda.perturb_step_cuda(delta, grad, alpha_f, eps_f, norm_s, rows)
        return delta
    _core.perturb_step(_host_view(delta, "delta"), _host_view(grad, "grad"), alpha_f, eps_f,
                       norm_s, _rows_host(rows))
    return delta

"""The BPR-MF loss and its gradient w.r.t. the embedding tables in one compiled call
(``csrc/perturb/bpr_grad.{h,cpp}``; CPU only, issue 4).

The embedding attacks (MSAP's FGSM/BIM/PGD) need ``d loss / d delta`` over every training
triple on every step; autograd materialises three gathered ``[N, dim]`` matrices and runs a slow
index backward, while the tables themselves fit in cache. The kernel works in double and is
deterministic: the same bits for any number of OpenMP threads (see ``mf_bpr_gradient``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from ._args import dtype_name, int_array, is_tensor
from ._native import _core

__all__ = ["mf_bpr_gradient"]

_CPU_ONLY = ("mf_bpr_gradient runs on the CPU only"
             " (no CUDA kernel): take the gradient with torch autograd there")


def _table(x: Any, name: str) -> np.ndarray:
    """A float32 [rows, dim] table as a C-contiguous numpy array (a view where possible)."""
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}, but {_CPU_ONLY}")
        if x.dtype != torch.float32:
            raise ValueError(f"{name} must have dtype float32, got {dtype_name(x.dtype)}")
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or a CPU torch tensor, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"{name} must have dtype float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, dim], got shape {x.shape}")
    return np.ascontiguousarray(x)


def _ids(x: Any, name: str) -> np.ndarray:
    """Integer ids as a C-contiguous int64 vector; floats and bools are refused, not truncated."""
    return int_array(x, name, cpu_only=_CPU_ONLY)


def mf_bpr_gradient(P: Any, Q: Any, users: Any, pos: Any, neg: Any, *, user_grad: bool = True,
                    item_grad: bool = True) -> Tuple[float, Optional[Any], Optional[Any]]:
    """BPR loss ``mean_k softplus(-<P[u_k], Q[i_k] - Q[j_k]>)`` and its gradients ``(loss, gP, gQ)``.

    ``P`` [n_users, dim] and ``Q`` [n_items, dim] are float32 numpy arrays or CPU tensors: the
    effective (perturbed) tables, so ``gP``/``gQ`` are also the gradients w.r.t. additive
    perturbations of them. ``users``, ``pos``, ``neg``: integer ids, one triple per position.
    The gradients come back as the tables came in (torch tensors if ``P`` or ``Q`` is one, else
    numpy), float32 of the tables' shapes; rows no triple touches are zero. ``user_grad`` /
    ``item_grad`` False skip a gradient (``None`` in its place).

    Everything is computed in double and each gradient entry is rounded to float32 once; the
    result is bit-identical for any number of OpenMP threads. NaN/inf in the tables propagate
    (a triple with ``pos == neg`` adds nothing to gQ: its terms cancel exactly). Raises
    ValueError for a wrong dtype, shape or device (CUDA tensors: no GPU kernel, use autograd) or
    an empty batch, IndexError for an id out of range, naming the argument.
    """
    for flag, name in ((user_grad, "user_grad"), (item_grad, "item_grad")):
        if not isinstance(flag, (bool, np.bool_)):  # "no" would silently mean yes
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    as_torch = is_tensor(P) or is_tensor(Q)
    Pa, Qa = _table(P, "P"), _table(Q, "Q")
    loss, gP, gQ = _core.mf_bpr_gradient(Pa, Qa, _ids(users, "users"), _ids(pos, "pos"),
                                         _ids(neg, "neg"), bool(user_grad), bool(item_grad))
    if as_torch:
        gP = None if gP is None else torch.from_numpy(gP)
        gQ = None if gQ is None else torch.from_numpy(gQ)
    return float(loss), gP, gQ

"""Masked top-k selection over score tiles, target ranking, and top-k of a factor product
(``csrc/select/topk.{h,cpp}``; CUDA twin ``csrc/cuda/topk.cu`` through ``select_cuda.py``).

Scores come in as numpy arrays or torch tensors; a CUDA tensor stays on its device and goes to
the CUDA twin, anything else to the CPU kernel.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import select_cuda
from ._args import INT64_MAX, csr_pair, dtype_name, int_arg, int_array, is_tensor
from ._native import _core

ArrayLike = Union[np.ndarray, torch.Tensor]
CSR = Tuple[np.ndarray, np.ndarray]

__all__ = ["topk_scores", "rank_targets", "topk_dot"]


def _score_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """A 2-D C-contiguous score array the core selects in without rounding: float64 stays
    float64 (two scores that differ below float32 precision must not tie), float16, bfloat16
    and float32 become float32 (exactly)."""
    if is_tensor(x):
        if not x.is_floating_point():
            raise ValueError(f"{name} must hold floating-point scores, got dtype {dtype_name(x.dtype)}")
        x = x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32).numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, n_items], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point scores, got dtype {x.dtype}")
    if x.dtype.itemsize > 8:  # long double: float64 would round it
        raise TypeError(f"{name} has dtype {x.dtype}, which the kernels cannot select in without "
                        "rounding; pass float64 or float32")
    return np.ascontiguousarray(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)


def _float_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """A floating tensor: float64 stays float64 (Python floats are float64 too), the narrower
    floats become float32 (exactly)."""
    if is_tensor(x):
        t = x.detach()
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numpy array or torch tensor of floats: {err}") from None
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name} must hold floating-point values, got dtype {a.dtype}")
        if a.dtype.itemsize > 8:  # long double: float64 would round it
            raise TypeError(f"{name} has dtype {a.dtype}; pass float64 or float32")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if not t.is_floating_point():
        raise ValueError(f"{name} must hold floating-point values, got dtype {dtype_name(t.dtype)}")
    return t if t.dtype == torch.float64 else t.float()


def _float_matrix(x: ArrayLike, name: str) -> torch.Tensor:
    t = _float_tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t


def topk_scores(
    scores: ArrayLike,
    k: int,
    exclude: Optional[Sequence[ArrayLike]] = None,
    rows: Optional[ArrayLike] = None,
):
    """Best ``k`` non-excluded items per row of a score tile, best first.

    Ties go to the lower item index (the order of a stable argsort of ``-scores``). Rows with
    fewer than ``k`` candidates are padded with index -1 and value -inf. ``exclude`` is a CSR
    ``(indptr, indices)`` over users; ``rows[r]`` names the CSR row of score row ``r`` (default:
    row ``r``). A CUDA tensor stays on its device and returns tensors; anything else returns
    numpy ``(indices int64 [b, k], values [b, k])``. Values are float64 for float64 scores,
    which are compared in double (never rounded to float32, so no tie is invented), and float32
    otherwise. The CUDA kernel selects in float32, so CUDA float64 scores are selected on the
    host and the results moved back to their device.
    """
    k = int_arg(k, "k", maximum=INT64_MAX)
    if is_tensor(scores) and scores.is_cuda:
        if scores.dtype != torch.float64:
            return select_cuda.topk_scores_cuda(scores, k, exclude, rows)
        idx, val = topk_scores(scores.detach().cpu().numpy(), k, exclude, rows)
        return torch.from_numpy(idx).to(scores.device), torch.from_numpy(val).to(scores.device)
    s = _score_matrix(scores, "scores")
    indptr, indices = csr_pair(exclude, "exclude")
    r = None if rows is None else int_array(rows, "rows")
    return _core.topk_masked(s, k, indptr, indices, r)


def rank_targets(
    scores: ArrayLike,
    targets: Sequence[ArrayLike],
    exclude: Optional[Sequence[ArrayLike]] = None,
    rows: Optional[ArrayLike] = None,
):
    """For each target item of each row: candidate negatives scoring higher, and tied.

    ``targets`` is a CSR aligned with the score rows (``len(indptr) == rows + 1``). Candidate
    negatives are the items neither excluded nor targets of that row. Returns numpy
    ``(greater int64 [nnz], equal int64 [nnz], n_neg int64 [rows])``: the rank of a target among
    the negatives is ``greater`` (+ ties), its AUC is ``(n_neg - greater - equal / 2) / n_neg``.
    float64 scores are compared in double (ties are exact), other floats in float32.
    """
    s = _score_matrix(scores, "scores")
    t_indptr, t_indices = csr_pair(targets, "targets")
    if t_indptr is None:
        raise ValueError("targets must be a pair (indptr, indices)")
    indptr, indices = csr_pair(exclude, "exclude")
    r = None if rows is None else int_array(rows, "rows")
    return _core.rank_targets(s, t_indptr, t_indices, indptr, indices, r)


def topk_dot(
    user_factors: ArrayLike,
    item_factors: ArrayLike,
    k: int,
    exclude: Optional[Sequence[ArrayLike]] = None,
    rows: Optional[ArrayLike] = None,
    item_bias: Optional[ArrayLike] = None,
    tile_rows: int = 2048,
):
    """Top-k of ``user_factors @ item_factors.T (+ item_bias)`` without the full score matrix.

    BLAS (torch) computes one tile of ``tile_rows`` users at a time; masking and selection are
    fused in the core, so peak memory is one ``tile_rows x n_items`` tile, not users x items.
    ``rows`` maps each user row to its row of the ``exclude`` CSR (default: the same index).
    The product and the selection are in float64 when any of the factors (or ``item_bias``) is
    float64 (values float64), else in float32.
    """
    k = int_arg(k, "k", maximum=INT64_MAX)
    if isinstance(tile_rows, bool) or not isinstance(tile_rows, (int, np.integer)) or tile_rows < 1:
        raise ValueError(f"tile_rows must be a positive int, got {tile_rows!r}")
    U = _float_matrix(user_factors, "user_factors")
    V = _float_matrix(item_factors, "item_factors")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"user_factors has {U.shape[1]} columns but item_factors has {V.shape[1]}")
    if U.device != V.device:
        raise ValueError("user_factors and item_factors must be on the same device")
    b = None
    if item_bias is not None:
        b = _float_tensor(item_bias, "item_bias").to(V.device)
        if b.shape != (V.shape[0],):
            raise ValueError(f"item_bias must have shape ({V.shape[0]},), got {tuple(b.shape)}")
    dtype = torch.promote_types(U.dtype, V.dtype if b is None else torch.promote_types(V.dtype, b.dtype))
    U, V = U.to(dtype), V.to(dtype)
    b = None if b is None else b.to(dtype)
    m = U.shape[0]
    if exclude is None and rows is not None:
        raise ValueError("rows is only meaningful with an exclusion CSR")
    r_all = np.arange(m, dtype=np.int64) if rows is None else int_array(rows, "rows")
    if r_all.shape[0] != m:
        raise ValueError(f"rows must have one entry per user row ({m}), got {r_all.shape[0]}")
    on_gpu = U.is_cuda
    if exclude is not None:
        indptr, indices = csr_pair(exclude, "exclude")
        if rows is None and indptr.shape[0] - 1 != m:
            raise ValueError(f"without rows, the exclusion CSR must have one row per user row ({m}), "
                             f"got {indptr.shape[0] - 1}")
        if on_gpu:  # upload once, not once per tile
            indptr, indices = (torch.as_tensor(a, device=U.device) for a in (indptr, indices))
        exclude = (indptr, indices)
    idx_parts, val_parts = [], []
    with torch.no_grad():
        Vt = V.t().contiguous()
        for start in range(0, m, tile_rows):
            tile = U[start:start + tile_rows] @ Vt
            if b is not None:
                tile += b
            r = r_all[start:start + tile_rows]
            if on_gpu and exclude is not None:
                r = torch.as_tensor(r, device=tile.device)
            try:
                i, v = topk_scores(tile, k, exclude, None if exclude is None else r)
            except ValueError as err:
                if "NaN" in str(err):
                    plus = "" if b is None else " + item_bias"
                    raise ValueError(f"user_factors @ item_factors.T{plus} has NaN scores in users "
                                     f"{start}..{start + tile.shape[0] - 1}") from None
                raise
            del tile  # free before the next product allocates: peak is one tile, not two
            idx_parts.append(i)
            val_parts.append(v)
    if not idx_parts:  # no users: the empty result of an empty tile (k is checked there too)
        return topk_scores(torch.empty((0, V.shape[0]), dtype=dtype, device=U.device), k)
    if on_gpu:
        return torch.cat(idx_parts), torch.cat(val_parts)
    return np.concatenate(idx_parts), np.concatenate(val_parts)


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
from ._args import csr_pair, int_arg, int_array, is_tensor
from ._native import _core

ArrayLike = Union[np.ndarray, torch.Tensor]
CSR = Tuple[np.ndarray, np.ndarray]

__all__ = ["topk_scores", "rank_targets", "topk_dot"]


def _to_f32_matrix(x: ArrayLike, name: str) -> np.ndarray:
    if is_tensor(x):
        if not x.is_floating_point():
            raise ValueError(f"{name} must hold floating-point scores, got dtype {x.dtype}")
        x = x.detach().to("cpu", torch.float32).numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, n_items], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point scores, got dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _float_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{name} must be a numpy array or torch tensor of floats: {err}") from None
    if not t.is_floating_point():
        raise ValueError(f"{name} must hold floating-point values, got dtype {t.dtype}")
    return t.float()


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
    numpy ``(indices int64 [b, k], values float32 [b, k])``.
    """
    k = int_arg(k, "k")
    if is_tensor(scores) and scores.is_cuda:
        return select_cuda.topk_scores_cuda(scores, k, exclude, rows)
    s = _to_f32_matrix(scores, "scores")
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
    """
    s = _to_f32_matrix(scores, "scores")
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
    """
    k = int_arg(k, "k")
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
                    raise ValueError(f"user_factors @ item_factors.T has NaN scores in users "
                                     f"{start}..{start + tile.shape[0] - 1}") from None
                raise
            del tile  # free before the next product allocates: peak is one tile, not two
            idx_parts.append(i)
            val_parts.append(v)
    if on_gpu:
        if not idx_parts:
            return (torch.empty((0, k), dtype=torch.int64, device=U.device),
                    torch.empty((0, k), dtype=torch.float32, device=U.device))
        return torch.cat(idx_parts), torch.cat(val_parts)
    if not idx_parts:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.concatenate(idx_parts), np.concatenate(val_parts)


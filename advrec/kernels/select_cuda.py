"""CUDA twin of ``select.topk_scores`` (``csrc/cuda/topk.cu``): scores stay on their GPU and the
results come back there.

``select.topk_scores`` calls it for CUDA tensors. Arguments are checked here, before any device
pointer reaches the core, with the same exception types and messages as the CPU path (the
core's ``check_csr``/``check_exclusion``), so callers see one behaviour on both devices. The
small exclusion CSR is checked with torch ops where it lives (one sync when on the GPU).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple

import torch

from ._args import dtype_name, first_true, index_tensor, int_arg, require_cuda, stream_of
from ._native import _core

__all__ = ["topk_scores_cuda", "prepare", "Prepared", "MAX_K"]

MAX_K = 1024  # advrec::cuda::kMaxTopK: the per-row selection buffer lives in shared memory


class Prepared(NamedTuple):
    """Checked arguments: float32 contiguous scores and int64 CSR/rows tensors (or None)."""

    scores: torch.Tensor
    k: int
    indptr: Optional[torch.Tensor]
    indices: Optional[torch.Tensor]
    rows: Optional[torch.Tensor]


def _check_csr(indptr: torch.Tensor, indices: torch.Tensor, n_items: int) -> int:
    """The core's check_csr for the exclusion CSR; returns its number of rows."""
    if indptr.shape[0] < 1:
        raise ValueError("exclude indptr must not be empty")
    indices = indices.to(indptr.device)
    ix_bad = (indices < 0) | (indices >= n_items)
    decreasing = indptr[1:] < indptr[:-1]
    # One host round trip for all the scalars the checks need.
    first, last, any_decreasing, any_bad = torch.stack(
        [indptr[0], indptr[-1], decreasing.any().long(), ix_bad.any().long()]
    ).tolist()
    if first != 0:
        raise ValueError("exclude indptr must start at 0")
    if any_decreasing:
        raise ValueError("exclude indptr must be non-decreasing")
    if last != indices.shape[0]:
        raise ValueError(f"exclude indptr[-1] ({last}) must equal len(indices) ({indices.shape[0]})")
    if any_bad:
        i = first_true(ix_bad)
        raise IndexError(
            f"exclude indices[{i}] = {int(indices[i].item())} is outside [0, {n_items})"
        )
    return int(indptr.shape[0]) - 1


def _check_rows(rows: torch.Tensor, n_tile_rows: int, n_excl_rows: int) -> None:
    if rows.shape[0] != n_tile_rows:
        raise ValueError(
            f"rows must have one entry per score row ({n_tile_rows}), got {rows.shape[0]}"
        )
    bad = (rows < 0) | (rows >= n_excl_rows)
    if n_tile_rows and bool(bad.any().item()):
        i = first_true(bad)
        raise IndexError(
            f"rows[{i}] = {int(rows[i].item())} is outside the exclusion CSR's {n_excl_rows} rows"
        )


def prepare(
    scores: torch.Tensor,
    k: Any,
    exclude: Optional[Sequence[Any]] = None,
    rows: Optional[Any] = None,
) -> Prepared:
    """Checks every argument like the CPU path and moves the CSR and rows to the scores' device.

    Device-agnostic (it also runs on CPU tensors), so the checks are testable without a GPU.
    """
    k = int_arg(k, "k", maximum=MAX_K, where=" on CUDA")
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch tensor, got {type(scores).__name__}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [rows, n_items], got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(
            f"scores must hold floating-point scores, got dtype {dtype_name(scores.dtype)}"
        )
    s = scores.detach().to(torch.float32).contiguous()
    n_rows, n_items = int(s.shape[0]), int(s.shape[1])

    indptr = indices = r = None
    if exclude is not None:
        if len(exclude) != 2:
            raise ValueError("exclude must be a pair (indptr, indices)")
        indptr = index_tensor(exclude[0], "exclude indptr")
        indices = index_tensor(exclude[1], "exclude indices")
    if rows is not None:
        r = index_tensor(rows, "rows")
    if indptr is None:
        if r is not None:
            raise ValueError("rows is only meaningful with an exclusion CSR")
        return Prepared(s, k, None, None, None)

    n_excl_rows = _check_csr(indptr, indices, n_items)
    if r is None:
        if n_excl_rows != n_rows:
            raise ValueError(
                "without rows, the exclusion CSR must have one row per score row "
                f"({n_rows}), got {n_excl_rows}"
            )
    else:
        _check_rows(r, n_rows, n_excl_rows)
        r = r.to(s.device)
    return Prepared(s, k, indptr.to(s.device), indices.to(s.device), r)


def _ptr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else int(t.data_ptr())


def topk_scores_cuda(
    scores: torch.Tensor,
    k: int,
    exclude: Optional[Sequence[Any]] = None,
    rows: Optional[Any] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked top-k of a CUDA score tile: ``(idx int64 [b, k], val float32 [b, k])`` on its device.

    Same semantics and tie rule as the CPU kernel. Runs on the current stream; the only sync is
    reading back the NaN flag (and, for a CSR already on the GPU, its validation).
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_cuda:
        raise ValueError("scores must be a CUDA tensor for the CUDA top-k")
    require_cuda(scores, "scores", "topk_masked_cuda")
    with torch.cuda.device(scores.device):
        p = prepare(scores, k, exclude, rows)
        b, n_items = p.scores.shape
        dev = p.scores.device
        out_idx = torch.empty((b, p.k), dtype=torch.int64, device=dev)
        out_val = torch.empty((b, p.k), dtype=torch.float32, device=dev)
        if b == 0 or p.k == 0:
            return out_idx, out_val
        nan_flag = torch.zeros(1, dtype=torch.int32, device=dev)
        _core.topk_masked_cuda(
            _ptr(p.scores), b, n_items, p.k, _ptr(p.indptr), _ptr(p.indices), _ptr(p.rows),
            _ptr(out_idx), _ptr(out_val), _ptr(nan_flag),
            stream_of(dev),
        )
        if int(nan_flag.item()):
            raise ValueError("scores contains NaN")
        return out_idx, out_val

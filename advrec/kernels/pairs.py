"""The Gram extreme-entry selection kernel (``csrc/select/pairs.{h,cpp}``; CUDA twin
``csrc/cuda/gram_pairs.cu`` through ``pairs_cuda.py``).

``gram_extremes`` selects, from ``G = V Vᵀ``, the per-model tables of docs/certify.md ("Per-model
tables") without ever holding ``G``: torch computes row blocks ``V[a:b] @ V[a:]ᵀ`` (each
unordered pair ``i <= j`` once) and the core folds each block into the running selection.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np
import torch

from . import pairs_cuda
from ._args import int_arg
from ._native import _core

__all__ = ["GramExtremes", "gram_extremes"]

ArrayLike = Union[np.ndarray, torch.Tensor]

_F32_MAX = float(np.finfo(np.float32).max)

_TILE_BYTES = 32 << 20  # default tile budget: one float32 tile of at most ~32 MB
_MIN_TILE_ROWS = 256  # below this, a product per block costs more in calls than it saves


class GramExtremes(NamedTuple):
    """Extreme entries of ``G = V Vᵀ``, best first, ties to the lower index.

    Pair lists cover the upper triangle with its diagonal (``i <= j``); row lists cover the
    off-diagonal partners ``l != j`` of each row. Missing entries are padded with value ``-inf``
    (top lists) / ``+inf`` (bottom lists) and index -1.
    """

    pair_top_val: np.ndarray  # float64 [M], descending
    pair_top_idx: np.ndarray  # int64 [M, 2], (i, j) with i <= j
    pair_bot_val: np.ndarray  # float64 [M], ascending
    pair_bot_idx: np.ndarray  # int64 [M, 2]
    row_top_val: np.ndarray  # float64 [n, t], descending per row
    row_top_idx: np.ndarray  # int64 [n, t], partner l
    row_bot_val: np.ndarray  # float64 [n, t], ascending per row
    row_bot_idx: np.ndarray  # int64 [n, t]


def _as_cpu_matrix(V: ArrayLike) -> torch.Tensor:
    """float32, contiguous, 2-D CPU tensor (sharing memory with V where it already is one)."""
    if isinstance(V, torch.Tensor):
        t = V.detach()
        if t.device.type != "cpu":
            raise ValueError(f"V must be a CPU or CUDA tensor, got one on {t.device}")
        if not t.is_floating_point():
            raise ValueError(f"V must hold floating-point values, got dtype {t.dtype}")
    elif isinstance(V, np.ndarray):
        if not np.issubdtype(V.dtype, np.floating):
            raise ValueError(f"V must hold floating-point values, got dtype {V.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(V, dtype=np.float64 if V.dtype.itemsize > 4 else np.float32))
    else:
        raise ValueError(f"V must be a numpy array or torch tensor, got {type(V).__name__}")
    if t.ndim != 2:
        raise ValueError(f"V must be 2-D [n, k], got shape {tuple(t.shape)}")
    if t.dtype == torch.float64:  # the products are taken in float32: no silent overflow to inf
        beyond = torch.isfinite(t) & (t.abs() > _F32_MAX)
        if bool(beyond.any()):
            i, j = (int(x) for x in torch.nonzero(beyond)[0])
            raise ValueError(f"V[{i}, {j}] = {float(t[i, j])} is beyond float32's range; the Gram "
                             "products are taken in float32")
    return t.to(torch.float32).contiguous()


_PAD_LIMIT = 1 << 30  # bytes of padding-only output refused rather than allocated


def _check_padding(n: int, n_pairs: int, n_row: int) -> None:
    """Entries past the ``n(n+1)/2`` pairs or ``n - 1`` partners can only hold padding: refuse a
    count whose padding alone would take over 1 GiB instead of trying to allocate it."""
    extra_pairs = n_pairs - n * (n + 1) // 2
    if extra_pairs > 0 and extra_pairs * 48 > _PAD_LIMIT:  # top and bottom: float64 + 2 int64
        raise ValueError(f"n_pairs ({n_pairs}) exceeds the {n * (n + 1) // 2} pairs of V's {n} rows so far "
                         f"that its padding alone would take over 1 GiB; pass n_pairs <= {n * (n + 1) // 2}")
    extra_row = n_row - max(n - 1, 0)
    # Zero rows count as one: numpy cannot even describe an empty [0, 2^62] array.
    if extra_row > 0 and max(n, 1) * extra_row * 32 > _PAD_LIMIT:  # top and bottom: float64 + int64
        raise ValueError(f"n_row ({n_row}) exceeds the {max(n - 1, 0)} partners of each of V's {n} rows so "
                         f"far that its padding alone would take over 1 GiB; pass n_row <= {max(n - 1, 0)}")


def gram_extremes(V: ArrayLike, n_pairs: int, n_row: int, *,
                  tile_rows: Optional[int] = None) -> GramExtremes:
    """The ``n_pairs`` largest/smallest entries of ``G = V Vᵀ`` over ``i <= j`` and the ``n_row``
    largest/smallest off-diagonal entries of each row (docs/certify.md, "Per-model tables").

    ``V`` is ``[n, k]`` floating (numpy or a CPU torch tensor; used in float32, gradients are not
    tracked). ``G`` is computed in row blocks ``V[a:a+tile_rows] @ V[a:]ᵀ`` (default: a quarter
    of ``n``, at least 256 rows, and at most ~32 MB per block), so memory stays at one block
    whatever ``n``. The result does not depend on ``tile_rows`` or the thread count. A CUDA
    tensor goes to the CUDA twin (``pairs_cuda.gram_extremes_cuda``) when this build has it.
    """
    n_pairs = int_arg(n_pairs, "n_pairs")
    n_row = int_arg(n_row, "n_row")
    if tile_rows is not None and (isinstance(tile_rows, bool)
                                  or not isinstance(tile_rows, (int, np.integer)) or tile_rows < 1):
        raise ValueError(f"tile_rows must be a positive int or None, got {tile_rows!r}")
    if isinstance(V, torch.Tensor) and V.is_cuda:
        if not hasattr(_core, "gram_extremes_cuda"):
            raise ValueError("V is a CUDA tensor: CUDA tensors go through the CUDA path "
                             "(advrec.kernels.pairs_cuda), which this installation was built "
                             "without; pass V.cpu()")
        return GramExtremes(*pairs_cuda.gram_extremes_cuda(V, n_pairs, n_row, tile_rows=tile_rows))

    Vt = _as_cpu_matrix(V)
    n = int(Vt.shape[0])
    _check_padding(n, n_pairs, n_row)
    if tile_rows is None:
        # Row blocks of a quarter of n compute 5/8 of the full product (a single block computes
        # all of it and ignores the lower half), capped by the memory budget.
        tile_rows = min(max(_MIN_TILE_ROWS, -(-n // 4)), max(1, _TILE_BYTES // (4 * max(n, 1))))
    tile_rows = int(tile_rows)
    out = GramExtremes(
        pair_top_val=np.full(n_pairs, -np.inf),
        pair_top_idx=np.full((n_pairs, 2), -1, np.int64),
        pair_bot_val=np.full(n_pairs, np.inf),
        pair_bot_idx=np.full((n_pairs, 2), -1, np.int64),
        row_top_val=np.full((n, n_row), -np.inf),
        row_top_idx=np.full((n, n_row), -1, np.int64),
        row_bot_val=np.full((n, n_row), np.inf),
        row_bot_idx=np.full((n, n_row), -1, np.int64),
    )
    if n_pairs == 0 and n_row == 0:  # nothing to select: skip the products, still reject NaN
        if bool(torch.isnan(Vt).any()):
            raise ValueError("V contains NaN")
        return out
    with torch.no_grad():
        for a in range(0, n, tile_rows):
            b = min(a + tile_rows, n)
            tile = torch.mm(Vt[a:b], Vt[a:].t()).numpy()  # G[a:b, a:], upper part used
            try:
                _core.gram_extremes_update(tile, a, a, *out)
            except ValueError as err:
                if "NaN" in str(err):
                    raise ValueError(f"V @ V.T has NaN entries in rows {a}..{b - 1} "
                                     "(V contains NaN or overflowing values)") from None
                raise
            del tile  # free before the next product: peak is one tile
    return out

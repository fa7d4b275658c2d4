"""CUDA twin of ``pairs.gram_extremes`` (``csrc/cuda/gram_pairs.cu``): the per-model Gram tables of
FM certification computed from device tiles.

``pairs.gram_extremes`` calls it for CUDA tensors and names the result. Every argument is checked
here, before a device pointer reaches the core; ``check_gram_args`` is device-agnostic, so it is
testable without a GPU, and reads the few scalars it needs from the device in one round trip.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import numpy as np
import torch

from ._args import exact_tensor, int_arg, require_cuda, stream_of
from ._native import _core

__all__ = ["gram_extremes_cuda", "check_gram_args", "GramArgs", "MAX_ROW", "MAX_PAIRS"]

MAX_ROW = 4096  # advrec::cuda::kMaxGramRow: a row table is sorted in shared memory
MAX_PAIRS = 1 << 20  # advrec::cuda::kMaxGramPairs: the pair tables are sorted by one block


class GramArgs(NamedTuple):
    V: torch.Tensor  # float32 [n, k], contiguous
    n_pairs: int
    n_row: int
    tile_rows: int  # 0: automatic


def check_gram_args(V: Any, n_pairs: Any, n_row: Any, tile_rows: Any = None) -> GramArgs:
    """Checks the arguments of ``gram_extremes_cuda`` on any device (one host sync)."""
    n_pairs = int_arg(n_pairs, "n_pairs", maximum=MAX_PAIRS, where=" on CUDA")
    n_row = int_arg(n_row, "n_row", maximum=MAX_ROW, where=" on CUDA")
    tile_rows = 0 if tile_rows is None else int_arg(tile_rows, "tile_rows")
    V = exact_tensor(V, "V", torch.float32, 2)
    if V.shape[0] > np.iinfo(np.int32).max:
        raise ValueError(f"V must have < 2^31 rows on CUDA, got {V.shape[0]}")
    if V.numel() and not bool(torch.isfinite(V).all().item()):
        raise ValueError("V must be finite (no NaN or inf)")
    return GramArgs(V, n_pairs, n_row, tile_rows)


def gram_extremes_cuda(V: torch.Tensor, n_pairs: int, n_row: int, *,
                       tile_rows: Optional[int] = None) -> Tuple[np.ndarray, ...]:
    """Gram tables of ``V`` (CUDA float32 [n, k]) as 8 CPU numpy arrays in the field order of
    ``pairs.GramExtremes`` (which names them).

    The ``n_pairs`` largest / smallest entries of G = V Vᵀ with i <= j, and per row the
    ``n_row`` largest / smallest off-diagonal entries; ties to the lower (i, j) / partner;
    padding -inf / +inf and -1. G is computed in float32 tiles of ``tile_rows`` rows (None:
    sized to a 256 MiB scratch) and never held whole. Syncs the stream (results come back).
    """
    require_cuda(V, "V", "gram_extremes_cuda")
    with torch.cuda.device(V.device):
        a = check_gram_args(V, n_pairs, n_row, tile_rows)
        n, k = int(a.V.shape[0]), int(a.V.shape[1])
        M, t = a.n_pairs, a.n_row
        dev = a.V.device
        f64 = dict(dtype=torch.float64, device=dev)
        i64 = dict(dtype=torch.int64, device=dev)
        out = [torch.empty(M, **f64), torch.empty((M, 2), **i64),
               torch.empty(M, **f64), torch.empty((M, 2), **i64),
               torch.empty((n, t), **f64), torch.empty((n, t), **i64),
               torch.empty((n, t), **f64), torch.empty((n, t), **i64)]
        if M or (n and t):
            nan_flag = torch.zeros(1, dtype=torch.int32, device=dev)
            _core.gram_extremes_cuda(
                a.V.data_ptr(), n, k, M, t, a.tile_rows, *(x.data_ptr() for x in out),
                nan_flag.data_ptr(), stream_of(dev))
            if int(nan_flag.item()):
                raise ValueError("V @ V.T has NaN entries (float32 overflow); rescale V")
        return tuple(x.cpu().numpy() for x in out)

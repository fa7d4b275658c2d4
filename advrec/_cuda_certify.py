"""CUDA twins of two FM certification kernels (docs/certify.md): the per-model Gram tables and the
greedy flip search. Internal; the certification wrappers call these for CUDA tensors.

Every argument is checked here, before a device pointer reaches the core. The checks
(``check_gram_args``, ``check_greedy_args``) are device-agnostic, so they are testable without a
GPU; they read the few scalars they need from the device in one round trip.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import numpy as np
import torch

from . import _core

__all__ = [
    "gram_extremes_cuda",
    "fm_greedy_cuda",
    "check_gram_args",
    "check_greedy_args",
    "GramArgs",
    "GreedyArgs",
    "MAX_ROW",
    "MAX_PAIRS",
]

MAX_ROW = 4096  # advrec::cuda::kMaxGramRow: a row table is sorted in shared memory
MAX_PAIRS = 1 << 20  # advrec::cuda::kMaxGramPairs: the pair tables are sorted by one block


class _GramExtremes(NamedTuple):
    """Same fields as ``advrec._kernels_pairs.GramExtremes`` (used when that one is missing)."""

    pair_top_val: np.ndarray  # float64 [M], descending
    pair_top_idx: np.ndarray  # int64 [M, 2], (i, j) with i <= j
    pair_bot_val: np.ndarray  # float64 [M], ascending
    pair_bot_idx: np.ndarray
    row_top_val: np.ndarray  # float64 [n, t], descending, off-diagonal
    row_top_idx: np.ndarray  # int64 [n, t], partner positions
    row_bot_val: np.ndarray  # float64 [n, t], ascending
    row_bot_idx: np.ndarray


def _gram_extremes_type() -> type:
    # Looked up per call, so that the two modules may import each other in any order.
    try:
        from ._kernels_pairs import GramExtremes  # type: ignore[attr-defined]
    except ImportError:
        return _GramExtremes
    return GramExtremes


class GramArgs(NamedTuple):
    V: torch.Tensor  # float32 [n, k], contiguous
    n_pairs: int
    n_row: int
    tile_rows: int  # 0: automatic


class GreedyArgs(NamedTuple):
    p: torch.Tensor
    hist_indptr: torch.Tensor
    hist_indices: torch.Tensor
    diag: torch.Tensor
    V_P: torch.Tensor
    sigma: torch.Tensor
    threshold: torch.Tensor
    q: int


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _int(x: Any, name: str, hi: Optional[int] = None) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(x).__name__}")
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    if hi is not None and x > hi:
        raise ValueError(f"{name} must be in [0, {hi}] on CUDA, got {x}")
    return int(x)


def _tensor(x: Any, name: str, dtype: torch.dtype, ndim: int,
            device: Optional[torch.device] = None) -> torch.Tensor:
    """A tensor of exactly this dtype and rank (on `device` when given), made contiguous."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {_dtype_name(dtype)}, got {_dtype_name(x.dtype)}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {x.ndim}-D")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device} (the device of p), got {x.device}")
    return x.detach().contiguous()


def _first_true(mask: torch.Tensor) -> int:
    return int(torch.nonzero(mask)[0, 0].item())


def check_gram_args(V: Any, n_pairs: Any, n_row: Any, tile_rows: Any = None) -> GramArgs:
    """Checks the arguments of ``gram_extremes_cuda`` on any device (one host sync)."""
    n_pairs = _int(n_pairs, "n_pairs", MAX_PAIRS)
    n_row = _int(n_row, "n_row", MAX_ROW)
    tile_rows = 0 if tile_rows is None else _int(tile_rows, "tile_rows")
    V = _tensor(V, "V", torch.float32, 2)
    if V.shape[0] > np.iinfo(np.int32).max:
        raise ValueError(f"V must have < 2^31 rows on CUDA, got {V.shape[0]}")
    if V.numel() and not bool(torch.isfinite(V).all().item()):
        raise ValueError("V must be finite (no NaN or inf)")
    return GramArgs(V, n_pairs, n_row, tile_rows)


def check_greedy_args(p: Any, hist_indptr: Any, hist_indices: Any, diag: Any, V_P: Any,
                      sigma: Any, threshold: Any, q: Any) -> GreedyArgs:
    """Checks the arguments of ``fm_greedy_cuda`` on any device: dtypes, shapes, one device,
    the history CSR (messages as the core's ``check_csr`` with name "hist"), sigma = ±1,
    finite inputs. All value checks share one host round trip."""
    q = _int(q, "q")
    p = _tensor(p, "p", torch.float32, 2)
    dev = p.device
    hist_indptr = _tensor(hist_indptr, "hist_indptr", torch.int64, 1, dev)
    hist_indices = _tensor(hist_indices, "hist_indices", torch.int64, 1, dev)
    diag = _tensor(diag, "diag", torch.float32, 1, dev)
    V_P = _tensor(V_P, "V_P", torch.float32, 2, dev)
    sigma = _tensor(sigma, "sigma", torch.int8, 1, dev)
    threshold = _tensor(threshold, "threshold", torch.float64, 1, dev)
    m, n = int(p.shape[0]), int(p.shape[1])
    if n > np.iinfo(np.int32).max or V_P.shape[1] > np.iinfo(np.int32).max:
        raise ValueError("p and V_P must have < 2^31 columns on CUDA")
    if hist_indptr.shape[0] != m + 1:
        raise ValueError(
            f"hist indptr must have length {m + 1}, got {hist_indptr.shape[0]}")
    if diag.shape[0] != n:
        raise ValueError(f"diag must have length n = {n} (columns of p), got {diag.shape[0]}")
    if V_P.shape[0] != n:
        raise ValueError(f"V_P must have n = {n} rows (columns of p), got {V_P.shape[0]}")
    if sigma.shape[0] != m:
        raise ValueError(f"sigma must have length m = {m} (rows of p), got {sigma.shape[0]}")
    if threshold.shape[0] != m:
        raise ValueError(
            f"threshold must have length m = {m} (rows of p), got {threshold.shape[0]}")

    ix_bad = (hist_indices < 0) | (hist_indices >= n)
    sigma_bad = (sigma != 1) & (sigma != -1)
    flags = torch.stack([
        hist_indptr[0],
        hist_indptr[-1],
        (hist_indptr[1:] < hist_indptr[:-1]).any().long(),
        ix_bad.any().long(),
        sigma_bad.any().long(),
        (~torch.isfinite(p)).any().long(),
        (~torch.isfinite(diag)).any().long(),
        (~torch.isfinite(V_P)).any().long(),
        torch.isnan(threshold).any().long(),
    ]).tolist()
    first, last, decreasing, any_ix_bad, any_sigma_bad, p_bad, diag_bad, v_bad, thr_nan = flags
    if first != 0:
        raise ValueError("hist indptr must start at 0")
    if decreasing:
        raise ValueError("hist indptr must be non-decreasing")
    if last != hist_indices.shape[0]:
        raise ValueError(
            f"hist indptr[-1] ({last}) must equal len(indices) ({hist_indices.shape[0]})")
    if any_ix_bad:
        i = _first_true(ix_bad)
        raise IndexError(
            f"hist indices[{i}] = {int(hist_indices[i].item())} is outside [0, {n})")
    if any_sigma_bad:
        i = _first_true(sigma_bad)
        raise ValueError(f"sigma must be +1 or -1, got sigma[{i}] = {int(sigma[i].item())}")
    if p_bad:
        raise ValueError("p must be finite (no NaN or inf)")
    if diag_bad:
        raise ValueError("diag must be finite (no NaN or inf)")
    if v_bad:
        raise ValueError("V_P must be finite (no NaN or inf)")
    if thr_nan:
        raise ValueError("threshold must not be NaN")
    return GreedyArgs(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q)


def _require_cuda(x: Any, name: str, core_fn: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor for the CUDA kernel")
    if not hasattr(_core, core_fn):
        raise RuntimeError("advrec was built without CUDA support (advrec.kernels.info())")


def _stream(dev: torch.device) -> int:
    return int(torch.cuda.current_stream(dev).cuda_stream)


def gram_extremes_cuda(V: torch.Tensor, n_pairs: int, n_row: int, *,
                       tile_rows: Optional[int] = None) -> Any:
    """Gram tables of ``V`` (CUDA float32 [n, k]) as ``GramExtremes`` of CPU numpy arrays.

    The ``n_pairs`` largest / smallest entries of G = V Vᵀ with i <= j, and per row the
    ``n_row`` largest / smallest off-diagonal entries; ties to the lower (i, j) / partner;
    padding -inf / +inf and -1. G is computed in float32 tiles of ``tile_rows`` rows (None:
    sized to a 256 MiB scratch) and never held whole. Syncs the stream (results come back).
    """
    _require_cuda(V, "V", "gram_extremes_cuda")
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
                nan_flag.data_ptr(), _stream(dev))
            if int(nan_flag.item()):
                raise ValueError("V @ V.T has NaN entries (float32 overflow); rescale V")
        return _gram_extremes_type()(*(x.cpu().numpy() for x in out))


def fm_greedy_cuda(p: torch.Tensor, hist_indptr: torch.Tensor, hist_indices: torch.Tensor,
                   diag: torch.Tensor, V_P: torch.Tensor, sigma: torch.Tensor,
                   threshold: torch.Tensor, q: int) -> Tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """Greedy flip search (Alg. 1) per row of ``p``, on its GPU.

    Per row: gains g_j = p_j + diag_j over the positions not in the row's history; up to ``q``
    times take the candidate with the largest sigma * g_j (ties: lowest position), add g_j to
    delta (double), stop when the label flips (delta > threshold for sigma = +1, delta <=
    threshold for sigma = -1), then g_j += <V_P[j], V_P[j*]>. Returns ``(selected int64 [m, q]
    positions in selection order padded with -1, delta float64 [m], flipped bool [m])`` on the
    device of ``p``. A claimed flip must be re-scored exactly by the caller.
    """
    _require_cuda(p, "p", "fm_greedy_cuda")
    with torch.cuda.device(p.device):
        a = check_greedy_args(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q)
        m, n = int(a.p.shape[0]), int(a.p.shape[1])
        k = int(a.V_P.shape[1])
        dev = a.p.device
        selected = torch.full((m, a.q), -1, dtype=torch.int64, device=dev)
        delta = torch.zeros(m, dtype=torch.float64, device=dev)
        flipped = torch.zeros(m, dtype=torch.bool, device=dev)
        if m == 0:
            return selected, delta, flipped
        _core.fm_greedy_cuda(
            a.p.data_ptr(), m, n, a.hist_indptr.data_ptr(), a.hist_indices.data_ptr(),
            a.diag.data_ptr(), a.V_P.data_ptr(), k, a.sigma.data_ptr(), a.threshold.data_ptr(),
            a.q, selected.data_ptr(), delta.data_ptr(), flipped.data_ptr(), _stream(dev))
        return selected, delta, flipped

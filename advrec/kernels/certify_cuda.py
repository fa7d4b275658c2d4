"""CUDA twin of the greedy flip search (Alg. 1; ``csrc/cuda/fm_greedy.cu``).

``certify.fm_greedy`` calls it for CUDA tensors and re-scores every claimed flip exactly. Every
argument is checked here, before a device pointer reaches the core; ``check_greedy_args`` is
device-agnostic, so it is testable without a GPU, and reads the scalars it needs from the device
in one round trip.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Tuple

import numpy as np
import torch

from ._args import exact_tensor, first_true, int_arg, require_cuda, stream_of
from ._native import _core

__all__ = ["fm_greedy_cuda", "check_greedy_args", "GreedyArgs"]


class GreedyArgs(NamedTuple):
    p: torch.Tensor
    hist_indptr: torch.Tensor
    hist_indices: torch.Tensor
    diag: torch.Tensor
    V_P: torch.Tensor
    sigma: torch.Tensor
    threshold: torch.Tensor
    q: int


def check_greedy_args(p: Any, hist_indptr: Any, hist_indices: Any, diag: Any, V_P: Any,
                      sigma: Any, threshold: Any, q: Any) -> GreedyArgs:
    """Checks the arguments of ``fm_greedy_cuda`` on any device: dtypes, shapes, one device,
    the history CSR (messages as the core's ``check_csr`` with name "hist"), sigma = ±1,
    finite inputs. All value checks share one host round trip."""
    q = int_arg(q, "q")
    p = exact_tensor(p, "p", torch.float32, 2)
    dev = p.device
    hist_indptr = exact_tensor(hist_indptr, "hist_indptr", torch.int64, 1, dev)
    hist_indices = exact_tensor(hist_indices, "hist_indices", torch.int64, 1, dev)
    diag = exact_tensor(diag, "diag", torch.float32, 1, dev)
    V_P = exact_tensor(V_P, "V_P", torch.float32, 2, dev)
    sigma = exact_tensor(sigma, "sigma", torch.int8, 1, dev)
    threshold = exact_tensor(threshold, "threshold", torch.float64, 1, dev)
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
        i = first_true(ix_bad)
        raise IndexError(
            f"hist indices[{i}] = {int(hist_indices[i].item())} is outside [0, {n})")
    if any_sigma_bad:
        i = first_true(sigma_bad)
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
    require_cuda(p, "p", "fm_greedy_cuda")
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
            a.q, selected.data_ptr(), delta.data_ptr(), flipped.data_ptr(), stream_of(dev))
        return selected, delta, flipped

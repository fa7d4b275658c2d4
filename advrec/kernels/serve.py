"""Serving top-k: exact top-k of ``U @ V.T (+ b)`` at the GEMM's speed (``csrc/serve/serve_topk``).

``topk_dot_blocked`` is ``select.topk_dot``'s serving twin. Each worker thread owns one small
score buffer (a block of ``user_block`` users x ``item_block`` items, about 1 MiB: it stays in the
core's L2 cache), fills it with one single-threaded BLAS GEMM (``torch.addmm(out=...)``) and
hands it at once to the C++ merge, which folds it into each user's running top-k with the
exclusion list checked only for the few items that reach the running threshold. The users x
items matrix never exists, no score tile is allocated per call, and BLAS threads never compete
with the selection's (the workers are the only threads).
"""
from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import torch

from ._args import INT64_MAX, int_arg, int_array, is_tensor, positive_int
from ._native import _core

__all__ = ["exclusion_csr", "serve_topk_merge", "topk_dot_blocked", "single_threaded_blas"]

CSR = Tuple[np.ndarray, np.ndarray]


def exclusion_csr(exclude: Any, n_users: int, n_items: int, name: str = "exclude") -> CSR:
    """An exclusion set per user as the CSR the serving kernel reads: int64 ``(indptr, indices)``
    with ``n_users`` rows, each row's items sorted ascending and unique.

    Takes a pair ``(indptr, indices)`` (rows in any order, duplicates allowed: they collapse)
    or a scipy.sparse matrix of shape ``[n_users, n_items]`` (its nonzero pattern; explicit
    zeros count as excluded too). Items outside ``[0, n_items)`` are an IndexError.
    """
    n_users = int_arg(n_users, "n_users", minimum=0)
    n_items = int_arg(n_items, "n_items", minimum=0)
    if hasattr(exclude, "tocsr") and hasattr(exclude, "shape"):
        if tuple(exclude.shape) != (n_users, n_items):
            raise ValueError(f"{name} has shape {tuple(exclude.shape)}, expected "
                             f"(n_users, n_items) = ({n_users}, {n_items})")
        m = exclude.tocsr()
        indptr, indices = np.asarray(m.indptr, dtype=np.int64), np.asarray(m.indices, dtype=np.int64)
    elif isinstance(exclude, (tuple, list)) and len(exclude) == 2:
        indptr = int_array(exclude[0], f"{name} indptr")
        indices = int_array(exclude[1], f"{name} indices")
    else:
        raise TypeError(f"{name} must be a pair (indptr, indices) or a scipy.sparse matrix, "
                        f"got {type(exclude).__name__}")
    if indptr.shape[0] != n_users + 1:
        raise ValueError(f"{name} must have one row per user: indptr of length {n_users + 1}, "
                         f"got {indptr.shape[0]}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
        raise ValueError(f"{name} indptr must start at 0, be non-decreasing and end at "
                         f"len(indices) ({indices.shape[0]})")
    if indices.size:
        bad = np.flatnonzero((indices < 0) | (indices >= n_items))
        if bad.size:
            raise IndexError(f"{name} indices[{bad[0]}] = {indices[bad[0]]} is outside "
                             f"[0, n_items = {n_items})")
    # Already sorted and unique within each row (what Interactions.to_csr gives): used as is.
    step_up = np.ones(indices.shape[0], dtype=bool)
    if indices.shape[0] > 1:
        step_up[1:] = indices[1:] > indices[:-1]
    step_up[indptr[:-1][np.diff(indptr) > 0]] = True  # a row's first entry needs no predecessor
    if step_up.all():
        return indptr, indices
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    width = max(n_items, 1)
    key = np.unique(rows * width + indices)  # sorts by (row, item) and drops duplicates
    rows, items = np.divmod(key, width)
    out_ptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=out_ptr[1:])
    return out_ptr, np.ascontiguousarray(items, dtype=np.int64)


def serve_topk_merge(scores: np.ndarray, col0: int, n_items: int, k: int, best_idx: np.ndarray,
                     best_val: np.ndarray, users: Optional[np.ndarray] = None,
                     exclude: Optional[CSR] = None, threads: int = 1) -> None:
    """Merge a float32 score block (items ``col0 ..``) into running top-k lists in place.

    ``best_idx`` int64 / ``best_val`` float32 ``[rows, k]`` start as -1 / -inf and end, once every
    block of the rows has been merged, as the stable top-k (best first, ties to the lower item).
    ``exclude`` is a CSR from ``exclusion_csr``, read at row ``users[r]`` for score row ``r``.
    """
    if exclude is None:
        return _core.serve_topk_merge(scores, col0, n_items, k, None, None, None, best_idx,
                                      best_val, threads)
    return _core.serve_topk_merge(scores, col0, n_items, k, users, exclude[0], exclude[1],
                                  best_idx, best_val, threads)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """torch's intra-op pool at one thread for the block (restored after): each serving worker
    runs its own single-threaded GEMM, so BLAS threads never oversubscribe the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def topk_dot_blocked(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    k: int,
    users: Optional[np.ndarray] = None,
    exclude: Optional[CSR] = None,
    item_bias: Optional[torch.Tensor] = None,
    threads: int = 1,
    user_block: int = 64,
    item_block: int = 4096,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k of ``user_factors[users] @ item_factors.T (+ item_bias)`` per user, excluded items
    skipped: ``(items int64 [n, k], scores float32 [n, k])``, best first, ties to the lower item,
    padded with -1 / -inf where a user has fewer than k candidates.

    float32 CPU tables only (``select.topk_dot`` handles float64 and CUDA). ``exclude`` comes from
    ``exclusion_csr`` (one row per user of the tables). ``threads`` workers each own one
    ``user_block x item_block`` buffer; torch runs single-threaded meanwhile (process-wide: do
    not run other torch work concurrently). ``progress(done_users, total)`` is called after each
    user block, from the worker threads.
    """
    k = int_arg(k, "k", minimum=1, maximum=INT64_MAX)
    threads = positive_int(threads, "threads")
    user_block = positive_int(user_block, "user_block")
    item_block = positive_int(item_block, "item_block")
    for t, nm in ((user_factors, "user_factors"), (item_factors, "item_factors")):
        if not is_tensor(t) or t.dtype != torch.float32 or t.ndim != 2 or t.device.type != "cpu":
            raise ValueError(f"{nm} must be a 2-D float32 CPU tensor")
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(f"user_factors has {user_factors.shape[1]} columns but item_factors has "
                         f"{item_factors.shape[1]}")
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    u = np.arange(n_users, dtype=np.int64) if users is None else int_array(users, "users")
    if u.size and (u.min() < 0 or u.max() >= n_users):
        bad = int(np.flatnonzero((u < 0) | (u >= n_users))[0])
        raise IndexError(f"users[{bad}] = {u[bad]} is outside [0, n_users = {n_users})")
    if exclude is not None and exclude[0].shape[0] != n_users + 1:
        raise ValueError(f"exclude must have one row per user ({n_users}), got {exclude[0].shape[0] - 1}")
    b = None
    if item_bias is not None:
        if not is_tensor(item_bias) or item_bias.dtype != torch.float32 or item_bias.shape != (n_items,):
            raise ValueError(f"item_bias must be a float32 tensor of shape ({n_items},)")
        b = item_bias.detach()
    n = u.shape[0]
    # as the selection binding does: refuse a k whose padding alone would take over 1 GiB
    if k > n_items and max(n, 1) * (k - n_items) * 12 > 1 << 30:
        raise ValueError(f"k ({k}) exceeds the {n_items} items so far that its padding alone would "
                         f"take over 1 GiB for {max(n, 1)} rows; pass k <= {n_items}")
    # a block never needs to be larger than the data (an absurd one would size the buffers)
    user_block, item_block = min(user_block, max(n, 1)), min(item_block, max(n_items, 1))
    best_idx = np.full((n, k), -1, dtype=np.int64)
    best_val = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or n_items == 0:
        return best_idx, best_val
    P = user_factors.detach()
    V = item_factors.detach()
    # Item blocks as contiguous [dim, width] panels, made once.
    blocks = [(c0, V[c0:c0 + item_block].t().contiguous(),
               None if b is None else b[c0:c0 + item_block].contiguous())
              for c0 in range(0, n_items, item_block)]
    starts = list(range(0, n, user_block))
    counter = itertools.count()
    lock = threading.Lock()
    done = [0]

    ex_ptr, ex_idx = (None, None) if exclude is None else exclude

    def work() -> None:
        buf = torch.empty(user_block * min(item_block, n_items), dtype=torch.float32)
        full = {}  # views of the buffer for a full user block, made once per block width
        for _, Vt, _ in blocks:
            w = Vt.shape[1]
            t = buf[:user_block * w].view(user_block, w)
            full[w] = (t, t.numpy())
        while True:
            c = next(counter)
            if c >= len(starts):
                return
            s = starts[c]
            e = min(s + user_block, n)
            uu = u[s:e]
            Pu = P[torch.from_numpy(uu)]
            bi, bv = best_idx[s:e], best_val[s:e]
            for c0, Vt, bb in blocks:
                w = Vt.shape[1]
                if e - s == user_block:
                    tile, arr = full[w]
                else:
                    tile = buf[:(e - s) * w].view(e - s, w)
                    arr = tile.numpy()
                if bb is None:
                    torch.mm(Pu, Vt, out=tile)
                else:
                    torch.addmm(bb, Pu, Vt, out=tile)
                try:
                    _core.serve_topk_merge(arr, c0, n_items, k, uu, ex_ptr, ex_idx, bi, bv, 1)
                except ValueError as err:
                    if "NaN" in str(err):
                        raise ValueError(f"the scores of users {uu.min()}..{uu.max()} hold NaN") from None
                    raise
            if progress is not None:
                with lock:
                    done[0] += e - s
                    progress(done[0], n)

    with torch.no_grad(), single_threaded_blas():
        if threads == 1:
            work()
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for f in [pool.submit(work) for _ in range(threads)]:
                    f.result()
    return best_idx, best_val

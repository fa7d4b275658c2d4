"""The FM certification kernels (``csrc/certify/fm_certify.{h,cpp}``; the CUDA greedy twin
``csrc/cuda/fm_greedy.cu`` through ``certify_cuda.py``).

The mathematics is in ``docs/certify.md``. These wrappers turn numpy arrays and torch tensors
into the strict dtypes the core takes (int64 CSR and feature ids, float32 model and BLAS
inputs, float64 tables) and check the scalar arguments; the core checks shapes, CSR structure,
index ranges and finiteness, and raises ``ValueError``/``IndexError`` naming the argument.
"""
from __future__ import annotations

from typing import Dict, Iterable, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from . import certify_cuda
from ._args import INT64_MAX, int_arg, int_array
from ._native import _core

__all__ = ["METHODS", "FMCertBatch", "fm_scores", "fm_scores_sums", "fm_certify_batch",
           "fm_certify_budgets_batch", "fm_max_q_batch", "fm_greedy_batch"]

METHODS = ("greedy", "paper", "joint", "best", "exact")

ArrayLike = Union[np.ndarray, torch.Tensor]


class FMCertBatch(NamedTuple):
    """Per-instance certificates of one ``fm_certify_batch`` call.

    ``status``: 1 robust, -1 non-robust (a verified flip set), 0 unknown. ``bound``: the sound
    bound on the worst-case score change toward the other label (upper bound on max δ for
    label -1, lower bound on min δ for label +1; NaN for ``greedy``). The flip set of row ``r``
    is ``flips_indices[flips_indptr[r]:flips_indptr[r + 1]]`` (feature ids, ascending; empty
    unless ``status[r] == -1``). ``nodes``: branch-and-bound nodes expanded (``exact`` only).
    """

    status: np.ndarray
    score: np.ndarray
    bound: np.ndarray
    flips_indptr: np.ndarray
    flips_indices: np.ndarray
    nodes: np.ndarray


def _ints(x: object, name: str) -> np.ndarray:
    return int_array(x, name, ndim=None)


def _floats(x: object, name: str, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # no numpy twin; float32 holds it exactly
            x = x.float()
        x = x.numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be array-like: {err}") from None
    if a.size and (a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                               or np.issubdtype(a.dtype, np.integer))):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    out = np.asarray(a, dtype=dtype, order="C")  # (ascontiguousarray would make 0-D 1-D)
    if a.size and out.dtype.itemsize < a.dtype.itemsize and np.issubdtype(a.dtype, np.floating):
        beyond = np.isinf(out) & np.isfinite(a)  # finite values the cast made infinite
        if beyond.any():
            i = int(np.flatnonzero(beyond.ravel())[0])
            raise ValueError(f"{name} holds {a.ravel()[i]} (flat index {i}), beyond {np.dtype(dtype).name}'s range")
    return out


def _check_perturbable(P: np.ndarray, d: int) -> None:
    """Sorted unique feature ids in [0, d) (the core's check, for the CUDA path)."""
    if P.ndim != 1:
        raise ValueError(f"perturbable must be 1-D, got shape {P.shape}")
    out = (P < 0) | (P >= d)
    if out.any():
        bad = int(np.flatnonzero(out)[0])
        raise IndexError(f"perturbable[{bad}] = {int(P[bad])} is outside [0, {d}) (d = len(w))")
    if np.any(np.diff(P) <= 0):
        i = int(np.flatnonzero(np.diff(P) <= 0)[0]) + 1
        raise ValueError(f"perturbable must be sorted and unique ({int(P[i - 1])} then {int(P[i])})")


def _w0(x: object) -> float:
    if isinstance(x, bool):
        raise ValueError("w0 must be a real number, got bool")
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"w0 must be a real number, got {type(x).__name__}") from None
    except OverflowError:
        raise ValueError("w0 must be finite, got an int beyond float64's range") from None
    if not np.isfinite(v):
        raise ValueError(f"w0 must be finite, got {v}")
    return v


def _method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return str(method)


def _common(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top, row_bot, p, gram):
    return (
        _ints(indptr, "indptr"), _ints(indices, "indices"), _w0(w0),
        _floats(w, "w", np.float32), _floats(V, "V", np.float32), _ints(perturbable, "perturbable"),
        _floats(pair_top, "pair_top", np.float64), _floats(pair_bot, "pair_bot", np.float64),
        _floats(row_top, "row_top", np.float64), _floats(row_bot, "row_bot", np.float64),
        None if p is None else _floats(p, "p", np.float32),
        None if gram is None else _floats(gram, "gram", np.float32),
    )


def _sums(s: Optional[ArrayLike]) -> Optional[np.ndarray]:
    """``s`` as given by ``fm_scores_sums(..., double_sums=True)``: float64 only, since a float32
    ``s`` widened here would not be the double sums (the core checks shape and finiteness)."""
    if s is None:
        return None
    dtype = s.dtype if isinstance(s, (np.ndarray, torch.Tensor)) else None
    if dtype not in (np.float64, torch.float64):
        raise TypeError("s must be a float64 array (fm_scores_sums(..., double_sums=True)[1]), "
                        f"got {'dtype ' + str(dtype) if dtype is not None else type(s).__name__}")
    return _floats(s, "s", np.float64)


def fm_scores(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike,
              V: ArrayLike) -> np.ndarray:
    """Exact FM scores f(x) (paper eq. 2, self-interactions included) of CSR rows, float64 [m].

    ``indptr``/``indices``: int64 CSR over ``d = len(w)`` features, each row strictly
    increasing; ``w`` float32 [d]; ``V`` float32 [d, k]. Accumulated in double.
    """
    return _core.fm_scores(_ints(indptr, "indptr"), _ints(indices, "indices"), _w0(w0),
                           _floats(w, "w", np.float32), _floats(V, "V", np.float32))


def fm_scores_sums(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike,
                   V: ArrayLike, *, double_sums: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """``fm_scores`` plus each row's ``s = Σ_{i∈x} v_i`` (summed in double, returned float32
    ``[m, k]``), in one pass: the certifier's BLAS product ``p = w_P + s V_Pᵀ`` starts from it.

    With ``double_sums`` ``s`` comes back as summed (float64): pass it as ``s=`` to
    :func:`fm_certify_budgets_batch` / :func:`fm_max_q_batch`, which then skip summing it again
    (its float32 rounding is the float32 ``s`` above, bit for bit)."""
    if not isinstance(double_sums, (bool, np.bool_)):
        raise TypeError(f"double_sums must be a bool, got {type(double_sums).__name__}")
    return _core.fm_scores_sums(_ints(indptr, "indptr"), _ints(indices, "indices"), _w0(w0),
                                _floats(w, "w", np.float32), _floats(V, "V", np.float32),
                                bool(double_sums))


def fm_certify_batch(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike,
                     V: ArrayLike, perturbable: ArrayLike, pair_top: ArrayLike,
                     pair_bot: ArrayLike, row_top: ArrayLike, row_bot: ArrayLike, q: int,
                     method: str = "best", *, p: Optional[ArrayLike] = None,
                     gram: Optional[ArrayLike] = None,
                     node_budget: int = 100_000) -> FMCertBatch:
    """Certify each CSR row against flipping at most ``q`` perturbable features 0 -> 1.

    ``perturbable``: sorted unique feature ids (the history field, n of them). ``pair_top`` /
    ``pair_bot`` [M >= q(q+1)/2] and ``row_top`` / ``row_bot`` [n, t >= q-1]: the value arrays
    of the per-model tables of ``G = V_P V_Pᵀ`` (docs/certify.md). ``p`` [m, n] float32: the
    caller's BLAS ``w_P + s V_Pᵀ`` (None: computed here in double, exact but slower). ``gram``
    [n, n] float32: ``V_P V_Pᵀ`` for the greedy and branch-and-bound updates (None: each needed
    entry in double). ``method``: ``greedy`` (non-robust certificates only), ``paper``,
    ``joint``, ``best`` (bound, then greedy) or ``exact`` (best, then branch and bound with
    ``node_budget`` nodes per instance). At ``q = 0`` every row is robust with bound 0. For
    ``exact`` the reported bound is the ``best`` one; the search may certify rows it does not
    clear. Robust claims need the bound to clear a float32 tolerance (docs/certify.md); flip
    sets are re-scored in double before they are returned.
    """
    q = int_arg(q, "q", maximum=INT64_MAX)
    method = _method(method)
    node_budget = int_arg(node_budget, "node_budget", 1, INT64_MAX)
    args = _common(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top, row_bot,
                   p, gram)
    out = _core.fm_certify_batch(*args[:10], q, method, args[10], args[11], node_budget)
    return FMCertBatch(*out)


def _budgets(qs: Iterable[int], name: str = "qs") -> Tuple[int, ...]:
    """Budgets as sorted distinct ints (duplicates and order do not matter; each an int >= 0)."""
    if isinstance(qs, (str, bytes)) or not isinstance(qs, Iterable):
        raise TypeError(f"{name} must be an iterable of ints, got {type(qs).__name__}")
    return tuple(sorted({int_arg(q, f"{name} entry", maximum=INT64_MAX) for q in qs}))


def fm_certify_budgets_batch(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike,
                             V: ArrayLike, perturbable: ArrayLike, pair_top: ArrayLike,
                             pair_bot: ArrayLike, row_top: ArrayLike, row_bot: ArrayLike,
                             qs: Iterable[int], method: str = "best", *,
                             p: Optional[ArrayLike] = None, gram: Optional[ArrayLike] = None,
                             node_budget: int = 100_000,
                             s: Optional[ArrayLike] = None) -> Dict[int, FMCertBatch]:
    """:func:`fm_certify_batch` at every budget in ``qs``, in one pass over the instances.

    Per instance the work that does not depend on ``q`` is done once: the score, ``p``'s row,
    the paper bound's selection, the square bound's selections and one greedy search whose
    stopping test is replayed per budget. ``{q: FMCertBatch}`` for the distinct ``qs`` (any
    order), each equal field for field to ``fm_certify_batch`` at that ``q``. The tables must
    be sized for ``max(qs)``. ``s`` [m, k] float64: the rows' sums from
    ``fm_scores_sums(..., double_sums=True)`` (the ones ``p`` was built from), so that they are
    not summed twice; other values give other (unsound) results. None: summed here.
    """
    budgets = _budgets(qs)
    method = _method(method)
    node_budget = int_arg(node_budget, "node_budget", 1, INT64_MAX)
    args = _common(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top, row_bot,
                   p, gram)
    out = _core.fm_certify_budgets_batch(*args[:10], np.asarray(budgets, np.int64), method,
                                         args[10], args[11], node_budget, _sums(s))
    return {q: FMCertBatch(*o) for q, o in zip(budgets, out)}


def fm_max_q_batch(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike,
                   V: ArrayLike, perturbable: ArrayLike, pair_top: ArrayLike,
                   pair_bot: ArrayLike, row_top: ArrayLike, row_bot: ArrayLike, q_max: int,
                   method: str = "best", *, p: Optional[ArrayLike] = None,
                   gram: Optional[ArrayLike] = None, node_budget: int = 100_000,
                   s: Optional[ArrayLike] = None) -> np.ndarray:
    """Per row, the largest ``q <= q_max`` certified robust at every budget 1..q (int32 [m]).

    Same arguments as :func:`fm_certify_batch` with tables sized for ``q_max``; ``method``
    ``greedy`` is refused (it never certifies robustness). Its mean is the paper's avg-max q.
    ``s``: as for :func:`fm_certify_budgets_batch`.
    """
    q_max = int_arg(q_max, "q_max", maximum=INT64_MAX)
    method = _method(method)
    if method == "greedy":
        raise ValueError("method 'greedy' never certifies robustness, so it has no max_q; "
                         "use 'paper', 'joint', 'best' or 'exact'")
    node_budget = int_arg(node_budget, "node_budget", 1, INT64_MAX)
    args = _common(indptr, indices, w0, w, V, perturbable, pair_top, pair_bot, row_top, row_bot,
                   p, gram)
    return _core.fm_max_q_batch(*args[:10], q_max, method, args[10], args[11], node_budget,
                                _sums(s))


def fm_greedy_batch(indptr: ArrayLike, indices: ArrayLike, w0: float, w: ArrayLike, V: ArrayLike,
                    perturbable: ArrayLike, q: int, *, p: torch.Tensor,
                    V_P: torch.Tensor) -> FMCertBatch:
    """Greedy flip search (Alg. 1) of CSR rows on the GPU, every claimed flip re-scored exactly.

    The CUDA twin of ``fm_certify_batch(..., method="greedy")``: ``p`` is the CUDA tensor
    ``w_P + s V_Pᵀ`` [m, n] and ``V_P`` the perturbable rows of ``V`` on the same device
    (float32 [n, k]); the CSR, ``w0``, ``w``, ``V`` and ``perturbable`` are as for
    ``fm_certify_batch``. The search runs in float32 on the device; a row is reported
    non-robust (status -1) only when the exact double-precision score of the history plus its
    flip set has the other label, else unknown (0). ``bound`` is NaN, ``nodes`` 0.
    """
    # The host arguments first (as fm_certify_batch checks them), then the device ones.
    q = int_arg(q, "q", maximum=INT64_MAX)
    indptr, indices = _ints(indptr, "indptr"), _ints(indices, "indices")
    P = _ints(perturbable, "perturbable")
    score = fm_scores(indptr, indices, w0, w, V)  # checks the CSR and the model
    _check_perturbable(P, len(_floats(w, "w", np.float32)))
    if not isinstance(p, torch.Tensor) or not p.is_cuda:
        raise ValueError("p must be a CUDA tensor for fm_greedy_batch "
                         "(on the CPU, use fm_certify_batch(..., method='greedy'))")
    m, n = len(score), len(P)
    q = min(q, n)  # at most n flips exist: a larger q only pads the selection
    # History positions: where each instance's features sit among the perturbable ids.
    at = np.minimum(np.searchsorted(P, indices), max(n - 1, 0))
    keep = (P[at] == indices) if n else np.zeros(len(indices), bool)
    row_of = np.repeat(np.arange(m), np.diff(indptr))
    hist_ptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=m))]).astype(np.int64)
    dev = p.device
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
    selected, _, flipped = certify_cuda.fm_greedy_cuda(
        p, t(hist_ptr), t(at[keep]), (V_P.double() ** 2).sum(1).float(), V_P,
        t(np.where(score > 0, -1, 1).astype(np.int8)), t(-score), q)
    selected, flipped = selected.cpu().numpy(), flipped.cpu().numpy()
    status = np.zeros(m, np.int8)
    flip_sets = [np.zeros(0, np.int64)] * m
    rows = np.flatnonzero(flipped)
    if len(rows):
        sets = [np.sort(P[selected[r][selected[r] >= 0]]) for r in rows]
        new_rows = [np.union1d(indices[indptr[r]:indptr[r + 1]], S) for r, S in zip(rows, sets)]
        new_ptr = np.concatenate([[0], np.cumsum([len(x) for x in new_rows])]).astype(np.int64)
        after = fm_scores(new_ptr, np.concatenate(new_rows).astype(np.int64), w0, w, V)
        for r, S, f_new in zip(rows, sets, after):
            if (f_new > 0) != (score[r] > 0):  # the exact re-score confirms the flip
                status[r] = -1
                flip_sets[r] = S
    lengths = np.array([len(S) for S in flip_sets], np.int64)
    return FMCertBatch(
        status=status, score=score, bound=np.full(m, np.nan),
        flips_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        flips_indices=np.concatenate(flip_sets).astype(np.int64) if m else np.zeros(0, np.int64),
        nodes=np.zeros(m, np.int64))

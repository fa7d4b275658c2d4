"""Certified robustness of factorization machines to injected interactions (Liu et al., SIGIR 2020).

``FMCertifier`` holds one model's parameters and its per-model tables (the extreme entries of
``V_P V_Pᵀ``, selected once in tiles and reused for every instance). ``certify`` answers, per
instance, whether some set of at most ``q`` flips of zero perturbable features can change the
predicted label; the mathematics is in ``docs/certify.md``. The work per instance (bounds, greedy
search, branch and bound) runs in the compiled core; the one matrix product ``p = w_P + s V_Pᵀ``
is done by BLAS (torch) tile by tile, as DESIGN.md prescribes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import kernels

if TYPE_CHECKING:  # the certifier reads parameters only; it needs no model code at run time
    from ..models.fm import FM

METHODS = kernels.METHODS
STATUS_NAMES = {1: "robust", -1: "non-robust", 0: "unknown"}


@dataclass
class CertResult:
    """Per-instance certificates for one budget ``q`` and one method.

    ``status`` int8: 1 certifiably robust, -1 certifiably non-robust, 0 unknown. ``score`` is
    f(x); ``bound`` the sound bound on the worst-case change of the score toward the other label
    (NaN for ``greedy``, which never certifies robustness); ``flips`` a CSR (indptr, indices) of
    the feature ids whose injection flips the label, for the non-robust rows.
    """

    status: np.ndarray
    score: np.ndarray
    bound: np.ndarray
    flips_indptr: np.ndarray
    flips_indices: np.ndarray
    nodes: np.ndarray
    q: int
    method: str

    def __len__(self) -> int:
        return len(self.status)

    @property
    def flips(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.flips_indptr, self.flips_indices

    def flip_set(self, i: int) -> np.ndarray:
        """Feature ids whose injection flips instance ``i`` (empty unless it is non-robust)."""
        return self.flips_indices[self.flips_indptr[i]:self.flips_indptr[i + 1]]

    @property
    def label(self) -> np.ndarray:
        """Predicted labels, +1 where f(x) > 0 else -1."""
        return np.where(self.score > 0, 1, -1).astype(np.int8)

    def fractions(self) -> Dict[str, float]:
        """Shares of robust, non-robust and unknown instances."""
        m = max(len(self.status), 1)
        return {name: float(np.sum(self.status == code)) / m for code, name in STATUS_NAMES.items()}

    def summary(self) -> Dict[str, object]:
        return {"q": self.q, "method": self.method, "n": len(self.status), **self.fractions(),
                "nodes": int(self.nodes.sum())}


def _as_csr(indptr, indices) -> Tuple[np.ndarray, np.ndarray]:
    return kernels.as_csr(indptr, indices)


def _check_q(q, name: str = "q") -> int:
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 0:
        raise ValueError(f"{name} must be an int >= 0, got {q!r}")
    if q > 1 << 30:  # the kernels' limit, checked before the tables are sized for it
        raise ValueError(f"{name} is too large: {q} (at most 2^30)")
    return int(q)


#: BLAS multiplies a product of 1 or 2 rows by another kernel (gemv) than a larger one, with other
#: float32 rounding (measured: MKL, k = 16 and 64), so an instance's p, and in a borderline case
#: its certificate, would depend on where its tile ends; shorter tiles are padded with zero rows
_MIN_GEMM_ROWS = 8

class FMCertifier:
    """Certifier of one FM's predictions against injecting up to ``q`` perturbable features.

    ``w0`` float, ``w`` float32 ``[d]``, ``V`` float32 ``[d, k]``, ``perturbable`` the feature ids
    (e.g. the history field) that may be flipped 0 -> 1. ``tile_rows`` instances are scored per
    BLAS product; ``gram_max_bytes`` caps the optional cached ``V_P V_Pᵀ`` that speeds the greedy
    and branch-and-bound updates (none is kept when it would be larger). With ``device="cuda"``
    the per-tile product and the per-model tables run on the GPU, and ``method="greedy"`` runs
    the CUDA greedy twin (``kernels.fm_greedy_batch``), whose flips are re-scored in double
    before they are claimed.
    The bounds and the branch and bound run on the CPU either way.
    """

    def __init__(self, w0: float, w, V, perturbable, *, tile_rows: int = 2048,
                 gram_max_bytes: int = 64 << 20, device: str = "cpu"):
        w = _float_array(w, "w", 1)
        V = _float_array(V, "V", 2)
        if V.shape[0] != w.shape[0]:
            raise ValueError(f"w has {w.shape[0]} features but V has {V.shape[0]} rows")
        if isinstance(w0, torch.Tensor):
            w0 = float(w0.detach().cpu())
        if not np.isfinite(w0):
            raise ValueError(f"w0 must be finite, got {w0}")
        P = perturbable.detach().cpu().numpy() if isinstance(perturbable, torch.Tensor) else np.asarray(perturbable)
        if P.ndim != 1 or (P.size and not np.issubdtype(P.dtype, np.integer)):
            raise ValueError("perturbable must be a 1-D array of feature ids (integers)")
        P = np.ascontiguousarray(P, dtype=np.int64)
        if P.size and (P.min() < 0 or P.max() >= w.shape[0]):
            raise IndexError(f"perturbable ids must be in [0, {w.shape[0]}), got range [{P.min()}, {P.max()}]")
        if np.any(np.diff(P) <= 0):
            raise ValueError("perturbable must be sorted and without duplicates")
        if isinstance(tile_rows, bool) or not isinstance(tile_rows, int) or tile_rows < 1:
            raise ValueError(f"tile_rows must be a positive int, got {tile_rows!r}")
        if str(device).split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not kernels.has_cuda():
            raise ValueError("device='cuda' needs the CUDA build of advrec and a visible GPU "
                             "(advrec.kernels.info() says what was built)")
        self.w0, self.w, self.V, self.perturbable = float(w0), w, V, P
        self.tile_rows = tile_rows
        self._VP = torch.from_numpy(np.ascontiguousarray(V[P])).to(self.device)
        self._wP = torch.from_numpy(np.ascontiguousarray(w[P])).to(self.device)
        # s is summed in double by the core on the CPU; on a GPU by embedding_bag over this copy.
        self._V64 = torch.from_numpy(V.astype(np.float64)).to(self.device) if self.device.type == "cuda" else None
        n = len(P)
        self._gram = None
        if 0 < n and n * n * 4 <= gram_max_bytes:
            self._gram = np.ascontiguousarray((self._VP @ self._VP.T).cpu().numpy())
        self._tables: Optional[kernels.GramExtremes] = None
        self._tables_q = -1

    @classmethod
    def from_model(cls, model: "FM", perturbable: Any, **kwargs: Any) -> "FMCertifier":
        """Certifier of a trained ``advrec.models.FM`` (parameters are copied, not tracked)."""
        w0, w, V = model.parameters_numpy()
        return cls(w0, w, V, perturbable, **kwargs)

    @property
    def n_features(self) -> int:
        return int(self.w.shape[0])

    @property
    def n_perturbable(self) -> int:
        return int(len(self.perturbable))

    def tables(self, q: int) -> "kernels.GramExtremes":
        """Per-model tables good for budgets up to ``q`` (selected once, grown on demand)."""
        q = max(_check_q(q), 1)
        if q > self._tables_q:
            q_alloc = max(q, 4)
            self._tables = kernels.gram_extremes(self._VP, q_alloc * (q_alloc + 1) // 2, q_alloc - 1)
            self._tables_q = q_alloc
        return self._tables

    def scores(self, indptr, indices) -> np.ndarray:
        """f(x) of each instance, in double precision."""
        indptr, indices = _as_csr(indptr, indices)
        return kernels.fm_scores(indptr, indices, self.w0, self.w, self.V)

    def _p_tile(self, indptr: np.ndarray, indices: np.ndarray, on_device: bool = False):
        """p = w_P + s V_Pᵀ for a tile of instances: s summed in double, the product by BLAS.

        A numpy array, or with ``on_device`` a tensor left on the certifier's device."""
        return self._p_s_tile(indptr, indices, on_device)[0]

    def _p_s_tile(self, indptr: np.ndarray, indices: np.ndarray, on_device: bool = False):
        """``(p, s)``: ``_p_tile``'s p and, on the CPU, the double sums s it was built from
        (float64 [m, k], for the kernels' ``s=`` so that they do not sum them again); s is None
        on a GPU certifier or for an empty tile."""
        m = len(indptr) - 1
        if m == 0 or self.n_perturbable == 0:
            return np.zeros((m, self.n_perturbable), np.float32), None
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_features):
            bad = int(np.flatnonzero((indices < 0) | (indices >= self.n_features))[0])
            raise IndexError(f"indices[{bad}] = {indices[bad]} is outside [0, {self.n_features})")
        s64 = None
        if self.device.type == "cpu":  # s summed in double by the core, one pass
            s64 = kernels.fm_scores_sums(indptr, indices, self.w0, self.w, self.V, double_sums=True)[1]
            s = torch.from_numpy(s64).to(torch.float32)  # round to nearest: the core's float32 s
        else:
            s = torch.nn.functional.embedding_bag(
                torch.from_numpy(indices).to(self.device), self._V64,
                torch.from_numpy(indptr[:-1]).to(self.device), mode="sum").to(torch.float32)
        if m < _MIN_GEMM_ROWS:  # same rounding as in any larger tile (see _MIN_GEMM_ROWS)
            s = torch.cat([s, s.new_zeros(_MIN_GEMM_ROWS - m, s.shape[1])])
        p = torch.addmm(self._wP, s, self._VP.T)[:m]
        if on_device:
            return p, s64
        return np.ascontiguousarray(p.cpu().numpy()), s64

    def _tiles(self, indptr: np.ndarray, progress: Optional[bool], desc: str):
        m = len(indptr) - 1
        starts = range(0, m, self.tile_rows)
        if progress is None:
            progress = sys.stderr.isatty() and m > 4 * self.tile_rows
        return tqdm(starts, desc=desc, unit="tile", disable=not progress, leave=False)

    def certify(self, indptr, indices, q: int, method: str = "best", *, node_budget: int = 100_000,
                progress: Optional[bool] = None) -> CertResult:
        """Certificates for budget ``q`` (every set of at most ``q`` flips) by ``method``.

        Methods: ``"greedy"`` (Alg. 1, non-robust certificates only), ``"paper"`` (§3.2 bound),
        ``"joint"`` (per-item bound), ``"best"`` (the tightest of paper, joint and, for label +1,
        the square bound), ``"exact"`` (best, then branch and bound with ``node_budget`` nodes
        per instance). The bounds are defined in docs/certify.md. Every bound method also runs
        greedy on the instances its bound does not certify, as the paper does.
        """
        return self.certify_budgets(indptr, indices, [q], method, node_budget=node_budget,
                                    progress=progress)[_check_q(q)]

    def certify_budgets(self, indptr, indices, qs: Sequence[int], method: str = "best", *,
                        node_budget: int = 100_000, progress: Optional[bool] = None) -> Dict[int, CertResult]:
        """``certify`` at several budgets (the curves of the paper's Figures 4-6) in one pass:
        per tile one BLAS product, and per instance the work that does not depend on ``q``
        (score, the paper bound's selection, the square bound's selections, one greedy search)
        done once for every budget (``kernels.fm_certify_budgets_batch``); each budget's result
        equals ``certify`` at that budget. Returns ``{q: CertResult}``."""
        method = _check_method(method)
        qs = sorted({_check_q(q) for q in qs})
        indptr, indices = _as_csr(indptr, indices)
        tables = self.tables(max(qs, default=1))
        # The CUDA greedy twin runs per budget; everything else in one fused pass on the CPU.
        cuda_greedy = method == "greedy" and self.device.type == "cuda"
        parts: Dict[int, list] = {q: [] for q in qs}
        for lo in self._tiles(indptr, progress, f"certify q={','.join(map(str, qs))} {method}"):
            hi = min(lo + self.tile_rows, len(indptr) - 1)
            ip, ix = _slice_csr(indptr, indices, lo, hi)
            fused = [q for q in qs if not (cuda_greedy and q > 0)]
            if fused:
                p, s = self._p_s_tile(ip, ix)
                by_q = kernels.fm_certify_budgets_batch(
                    ip, ix, self.w0, self.w, self.V, self.perturbable, tables.pair_top_val,
                    tables.pair_bot_val, tables.row_top_val, tables.row_bot_val, fused, method,
                    p=p, gram=self._gram, node_budget=node_budget, s=s)
            else:
                by_q = {}
            for q in qs:
                parts[q].append(by_q[q] if q in by_q else kernels.fm_greedy_batch(
                    ip, ix, self.w0, self.w, self.V, self.perturbable, q,
                    p=self._p_tile(ip, ix, on_device=True), V_P=self._VP))
        return {q: _concat(parts[q], q, method) for q in qs}

    def max_q(self, indptr, indices, q_max: int, method: str = "best", *, node_budget: int = 100_000,
              progress: Optional[bool] = None) -> np.ndarray:
        """Per instance the largest q <= q_max certified robust at every budget 1..q.

        Its mean is the paper's avg-max q. ``greedy`` is refused: it never certifies robustness.
        """
        method = _check_method(method)
        q_max = _check_q(q_max, "q_max")
        if method == "greedy":
            raise ValueError("max_q needs a method that certifies robustness; 'greedy' only finds flips")
        indptr, indices = _as_csr(indptr, indices)
        m = len(indptr) - 1
        if q_max == 0:
            return np.zeros(m, np.int32)
        tables = self.tables(q_max)
        out = []
        for lo in self._tiles(indptr, progress, f"max_q<={q_max} {method}"):
            hi = min(lo + self.tile_rows, m)
            ip, ix = _slice_csr(indptr, indices, lo, hi)
            p, s = self._p_s_tile(ip, ix)
            out.append(kernels.fm_max_q_batch(
                ip, ix, self.w0, self.w, self.V, self.perturbable, tables.pair_top_val,
                tables.pair_bot_val, tables.row_top_val, tables.row_bot_val, q_max, method,
                p=p, gram=self._gram, node_budget=node_budget, s=s))
        return np.concatenate(out) if out else np.zeros(0, np.int32)

    def random_injection(self, indptr, indices, q: int, *, seed: int = 0) -> np.ndarray:
        """Whether injecting ``q`` random candidate features flips each label (paper Fig. 2 baseline).

        Candidates are the perturbable features not already in the instance; fewer than ``q``
        candidates inject them all. Same seed, same injections.
        """
        q = _check_q(q)
        indptr, indices = _as_csr(indptr, indices)
        rng = np.random.default_rng(seed)
        m = len(indptr) - 1
        n = self.n_perturbable
        new_rows = []
        for i in range(m):
            row = indices[indptr[i]:indptr[i + 1]]
            taken = np.isin(self.perturbable, row, assume_unique=True)
            cand = self.perturbable[~taken]
            pick = cand[rng.permutation(len(cand))[:q]] if n else cand
            new_rows.append(np.union1d(row, pick))
        new_ptr = np.concatenate([[0], np.cumsum([len(r) for r in new_rows])]).astype(np.int64)
        new_idx = np.concatenate(new_rows).astype(np.int64) if new_rows else np.zeros(0, np.int64)
        before = self.scores(indptr, indices) > 0
        after = self.scores(new_ptr, new_idx) > 0
        return before != after


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _float_array(x, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _slice_csr(indptr: np.ndarray, indices: np.ndarray, lo: int, hi: int):
    ip = indptr[lo:hi + 1] - indptr[lo]
    return np.ascontiguousarray(ip), indices[indptr[lo]:indptr[hi]]


def _concat(parts: Sequence, q: int, method: str) -> CertResult:
    if not parts:
        z = np.zeros(0)
        return CertResult(z.astype(np.int8), z, z, np.zeros(1, np.int64), z.astype(np.int64),
                          z.astype(np.int64), q, method)
    offsets = np.cumsum([0] + [p.flips_indptr[-1] for p in parts[:-1]])
    indptr = np.concatenate([parts[0].flips_indptr[:1]] +
                            [p.flips_indptr[1:] + off for p, off in zip(parts, offsets)])
    return CertResult(
        status=np.concatenate([p.status for p in parts]),
        score=np.concatenate([p.score for p in parts]),
        bound=np.concatenate([p.bound for p in parts]),
        flips_indptr=indptr.astype(np.int64),
        flips_indices=np.concatenate([p.flips_indices for p in parts]).astype(np.int64),
        nodes=np.concatenate([p.nodes for p in parts]), q=q, method=method)

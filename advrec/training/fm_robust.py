"""FM-RT: certified robust training of factorization machines (Liu et al., SIGIR 2020, eq. 13).

The loss is ``log(1 + exp(-y (f(x) + b(x))))`` with ``b`` the paper's sound bound (§3.2) on how
far injecting at most ``q`` perturbable features can move the score toward flipping the *true*
label ``y``. The compiled kernels only *select* which terms enter the bound (the ``q`` extreme
first-order terms per instance, the ``q(q+1)/2`` extreme entries of ``V_P V_Pᵀ`` per model);
torch recomputes the selected terms from the parameters, so the gradient flows through ``b``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .. import kernels


class FMRobustLoss:
    """``loss_fn(model, batch)`` for ``ClassifierTrainer``: FM-RT with budget ``q``.

    ``perturbable`` are the feature ids an adversary may inject (the history field). Train the
    plain FM to convergence first, then continue with this loss, as the paper does.
    """

    def __init__(self, perturbable, q: int):
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
            raise ValueError(f"q must be an int >= 1, got {q!r}")
        P = np.asarray(perturbable.cpu() if isinstance(perturbable, torch.Tensor) else perturbable)
        if P.ndim != 1 or P.size == 0 or not np.issubdtype(P.dtype, np.integer):
            raise ValueError("perturbable must be a non-empty 1-D array of feature ids")
        if np.any(np.diff(P) <= 0):
            raise ValueError("perturbable must be sorted and without duplicates")
        self.q = int(q)
        self.n_pairs = self.q * (self.q + 1) // 2
        self.perturbable = torch.from_numpy(P.astype(np.int64))
        self._position = None  # feature id -> position in P (or -1), built for the model's d

    def _positions(self, n_features: int) -> torch.Tensor:
        if self._position is None or len(self._position) != n_features:
            if int(self.perturbable.max()) >= n_features:
                raise IndexError(f"perturbable ids must be < n_features ({n_features})")
            pos = torch.full((n_features,), -1, dtype=torch.int64)
            pos[self.perturbable] = torch.arange(len(self.perturbable))
            self._position = pos
        return self._position

    def bound(self, model, indptr: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor,
              s: torch.Tensor) -> torch.Tensor:
        """b(x) toward flipping ``labels`` (differentiable); ``s`` = the instances' sum of v_i."""
        P = self.perturbable
        VP, wP = model.V[P], model.w[P]
        y = labels.to(s.dtype)
        p = torch.addmm(wP, s, VP.T)                      # [b, n] first-order terms p_j
        z = -y[:, None] * p                               # larger z = closer to flipping y
        # The instance's own perturbable features cannot be injected again.
        pos = self._positions(model.w.shape[0])[indices]
        keep = pos >= 0
        counts = torch.zeros(len(indptr) - 1, dtype=torch.int64)
        rows = torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr[1:] - indptr[:-1])
        counts.index_add_(0, rows[keep], torch.ones_like(rows[keep]))
        excl_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        idx, _ = kernels.topk_scores(z.detach(), self.q, exclude=(excl_ptr, pos[keep]))
        idx = torch.from_numpy(idx)
        chosen = z.gather(1, idx.clamp(min=0)) * (idx >= 0)
        b1 = -y * F.relu(chosen).sum(1)
        # Pair terms: the extreme upper-triangle entries of V_P V_Pᵀ, the same for every instance.
        t = kernels.gram_extremes(VP.detach(), self.n_pairs, 0)
        b2_up = _pair_sum(VP, t.pair_top_idx, +1.0)       # toward +, used when y = -1
        b2_down = _pair_sum(VP, t.pair_bot_idx, -1.0)     # toward -, used when y = +1
        b2 = torch.where(y > 0, b2_down, b2_up)
        return b1 + b2

    def __call__(self, model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        indptr, indices, labels = batch["indptr"], batch["indices"], batch["labels"]
        s = model.instance_sums(indptr, indices)
        f = model(indptr, indices)
        b = self.bound(model, indptr, indices, labels, s)
        y = labels.to(f.dtype)
        return F.softplus(-y * (f + b)).mean()


def _pair_sum(VP: torch.Tensor, pairs: np.ndarray, sign: float) -> torch.Tensor:
    """sign * Σ pos⁺(sign * <v_i, v_j>) over the selected pairs (padding -1 skipped)."""
    pairs = torch.from_numpy(np.asarray(pairs))
    pairs = pairs[pairs[:, 0] >= 0]
    if len(pairs) == 0:
        return VP.sum() * 0.0
    g = (VP[pairs[:, 0]] * VP[pairs[:, 1]]).sum(1)
    return sign * F.relu(sign * g).sum()

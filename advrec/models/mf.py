"""BPR matrix factorisation (Rendle et al. 2009): score(u, i) = <p_u, q_i>."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Delta, Recommender, check_users


class MF(Recommender):
    """BPR-MF with user factors P and item factors Q, both perturbable ("user", "item")."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.1, seed: int = 0):
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        self.n_users, self.n_items, self.dim, self.init_std, self.seed = n_users, n_items, dim, init_std, seed
        g = torch.Generator().manual_seed(seed)
        self.user_factors = nn.Parameter(torch.randn(n_users, dim, generator=g) * init_std)
        self.item_factors = nn.Parameter(torch.randn(n_items, dim, generator=g) * init_std)

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim,
                "init_std": self.init_std, "seed": self.seed}

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"user": self.user_factors, "item": self.item_factors}

    def _factors(self, delta: Delta):
        d = self.check_delta(delta)
        P, Q = self.user_factors, self.item_factors
        if "user" in d:
            P = P + d["user"]
        if "item" in d:
            Q = Q + d["item"]
        return P, Q

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        P, Q = self._factors(delta)
        pu = P[users]
        qi = Q[items]
        if qi.dim() == pu.dim() + 1:  # items [b, m]
            return torch.einsum("bd,bmd->bm", pu, qi)
        return (pu * qi).sum(-1)

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        P, Q = self._factors(delta)
        return P[users] @ Q.t()

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """BPR loss: mean of -log sigma(s(u, i) - s(u, j))."""
        return self.regularized_loss(batch, 0.0, delta)

    def l2_penalty(self, batch: Batch) -> torch.Tensor:
        u, i, j = batch["user"], batch["pos"], batch["neg"]
        return (self.user_factors[u].pow(2).sum() + self.item_factors[i].pow(2).sum()
                + self.item_factors[j].pow(2).sum()) / u.shape[0]

    def regularized_loss(self, batch: Batch, l2: float, delta: Delta = None) -> torch.Tensor:
        """BPR loss plus ``l2 * l2_penalty``, gathering p_u, q_i, q_j once for both terms (the
        penalty is on the unperturbed parameters, as in ``l2_penalty``)."""
        users = check_users(batch["user"], self.n_users)
        pos = check_users(batch["pos"], self.n_items, "pos")
        neg = check_users(batch["neg"], self.n_items, "neg")
        d = self.check_delta(delta)
        pu, qi, qj = self.user_factors[users], self.item_factors[pos], self.item_factors[neg]
        loss_pu, loss_qi, loss_qj = pu, qi, qj
        if "user" in d:
            loss_pu = pu + d["user"][users]
        if "item" in d:
            loss_qi, loss_qj = qi + d["item"][pos], qj + d["item"][neg]
        loss = F.softplus(-(loss_pu * (loss_qi - loss_qj)).sum(-1)).mean()
        if l2 > 0:
            loss = loss + l2 * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / users.shape[0]
        return loss

"""BPR matrix factorisation (Rendle et al. 2009): score(u, i) = <p_u, q_i>."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Delta, Recommender, check_users


class MF(Recommender):
    """BPR-MF with user factors P and item factors Q, both perturbable ("user", "item").

    An attack of budget ``eps`` bounds every row of every table it targets: ``p_u`` and ``q_i``
    each move by at most ``eps`` (L2), so with both tables attacked the pair ``(p_u, q_i)``
    moves by up to ``sqrt(2) * eps`` (``docs/models.md``, "Perturbations")."""

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

    def bpr_tables(self) -> Optional[Tuple[nn.Parameter, nn.Parameter]]:
        """``(user_factors, item_factors)`` for ``Trainer``'s compiled engine (the ``BPRTables``
        capability), or ``None`` for a subclass that redefines how scores, the loss, the penalty
        or the perturbations are computed, or that adds trainable parameters: those train on the
        torch path."""
        cls = type(self)
        if any(getattr(cls, name) is not getattr(MF, name)
               for name in ("score", "loss", "regularized_loss", "l2_penalty", "_factors", "perturbable")):
            return None
        trainable = [p for p in self.parameters() if p.requires_grad]
        if len(trainable) != 2 or trainable[0] is not self.user_factors or trainable[1] is not self.item_factors:
            return None
        return self.user_factors, self.item_factors

    def delta_gradient(self, batch: Batch, delta: Delta,
                       targets: Sequence[str]) -> Optional[Dict[str, torch.Tensor]]:
        """``d loss(batch, delta) / d delta[t]`` for each ``t`` in ``targets`` ("user", "item"),
        by the compiled kernel (``advrec.kernels.mf_bpr_gradient``, double precision), or
        ``None`` where it does not apply and the caller takes autograd: tables or perturbations
        not float32 on the CPU, a perturbation that requires grad (its caller may want a
        graph), an empty batch, or a subclass that redefines the loss. A table absent from
        ``delta`` is unperturbed; its gradient is still that of the loss (the perturbation's
        gradient is the table's). The result holds plain tensors, detached from any graph.
        """
        if type(self).loss is not MF.loss or type(self).regularized_loss is not MF.regularized_loss:
            return None
        d = self.check_delta(delta)
        targets = tuple(targets)
        unknown = [t for t in targets if t not in ("user", "item")]
        if unknown:
            raise ValueError(f"targets {unknown} are not perturbable in MF; its perturbable tensors "
                             "are ['item', 'user']")
        tensors = [self.user_factors, self.item_factors, *d.values()]
        if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
            return None
        if any(t.requires_grad for t in d.values()):
            return None
        users, pos, neg = (torch.as_tensor(batch[k]) for k in ("user", "pos", "neg"))
        if users.numel() == 0 or not users.dim() == pos.dim() == neg.dim() == 1:
            return None  # autograd's answer is kept for an empty batch (zeros, NaN loss) or N-D ids
        if not users.shape == pos.shape == neg.shape:
            raise ValueError(f"batch 'user', 'pos' and 'neg' must have the same length, got "
                             f"{users.numel()}, {pos.numel()} and {neg.numel()}")
        from .. import kernels  # the compiled core loads only when the kernel path is taken

        want_user, want_item = "user" in targets, "item" in targets
        n = users.numel()
        with torch.no_grad():
            # Whole tables unless they have 16x more rows than the batch has triples (measured
            # crossover on 2 cores; both ways give the same bits, see _compact_delta_gradient).
            if self.n_users + self.n_items <= 16 * n:
                P, Q = self.user_factors.detach(), self.item_factors.detach()
                if "user" in d:
                    P = P + d["user"]
                if "item" in d:
                    Q = Q + d["item"]
                _, gP, gQ = kernels.mf_bpr_gradient(P, Q, users, pos, neg, user_grad=want_user,
                                                    item_grad=want_item)
            else:
                gP, gQ = self._compact_delta_gradient(users, pos, neg, d, want_user, want_item)
        return {t: (gP if t == "user" else gQ) for t in targets}

    def _compact_delta_gradient(self, users, pos, neg, d, want_user: bool, want_item: bool):
        """A small batch on large tables: the kernel on the rows the batch touches (renumbered in
        sorted order), scattered into zero tables; whole-table sums and the kernel's per-row
        scratch would cost more than the batch (on 30K x 30K tables, 1000 triples: 3.3 ms here
        against 16 ms). Each row sums the same terms in the same order: the same bits."""
        users = check_users(users, self.n_users)
        pos = check_users(pos, self.n_items, "pos")
        neg = check_users(neg, self.n_items, "neg")
        from .. import kernels

        n = users.numel()
        ru, cu = torch.unique(users, return_inverse=True)
        ri, cij = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        P, Q = self.user_factors.detach()[ru], self.item_factors.detach()[ri]
        if "user" in d:
            P = P + d["user"][ru]
        if "item" in d:
            Q = Q + d["item"][ri]
        _, gPc, gQc = kernels.mf_bpr_gradient(P, Q, cu, cij[:n], cij[n:], user_grad=want_user,
                                              item_grad=want_item)
        gP = gQ = None
        if want_user:
            gP = torch.zeros(self.n_users, self.dim).index_copy_(0, ru, gPc)
        if want_item:
            gQ = torch.zeros(self.n_items, self.dim).index_copy_(0, ri, gQc)
        return gP, gQ

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

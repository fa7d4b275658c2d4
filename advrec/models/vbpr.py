"""Visually-aware BPR (He & McAuley 2016) as AMR uses it (Tang et al., TKDE 2020), and DUIF.

Scores, with item content features c_i (any float matrix [n_items, D], e.g. CNN image features or
text embeddings) projected by a learned E:

* ``variant="simplified"`` (AMR's eq. 4, the default): ``p_u . (q_i + E c_i)``;
* ``variant="full"`` (VBPR's eq. 2): ``p_u . q_i + h_u . (E c_i)``, a second user vector h_u
  for the content part, plus, with ``biases=True``, an item bias and a content bias ``beta . c_i``;
* ``DUIF`` (Geng et al. 2015): ``p_u . (E c_i)``, the item embedding is the projected content only.

The features are a buffer, not a parameter, and the model's one perturbable tensor
(``"feature"``): AMR's adversary perturbs c_i. Like the original code, features are divided by
their global maximum absolute value (``scale_features=True``). Cold items (``mark_cold``: items
with no training interaction) have their ID embedding and bias read as zero, so they are scored
through the content path only, as AMR does for its cold-start test items.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Delta, Recommender, check_users

if TYPE_CHECKING:
    from ..data.interactions import Interactions

VARIANTS = ("simplified", "full", "content")


def _gather(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` through ``index_select`` (several times faster than advanced indexing on CPU)."""
    return table.index_select(0, ids.reshape(-1)).reshape(*ids.shape, *table.shape[1:])


def _feature_matrix(features: Any, n_items: int, scale: bool) -> torch.Tensor:
    c = features.detach().cpu() if isinstance(features, torch.Tensor) else torch.from_numpy(np.array(features))
    if c.dim() != 2 or c.shape[0] != n_items:
        raise ValueError(f"features must be a 2-D matrix [n_items={n_items}, D], got shape {tuple(c.shape)}")
    if c.shape[1] < 1:
        raise ValueError("features must have at least one column")
    if not torch.is_floating_point(c):
        raise ValueError(f"features must be floating point, got {c.dtype}")
    c = c.to(torch.float32)
    if not torch.isfinite(c).all():
        raise ValueError("features has NaN or infinite entries")
    top = float(c.abs().max()) if c.numel() else 0.0
    return c / top if scale and top > 0 else c.clone()


class VBPR(Recommender):
    """VBPR / AMR's simplified VBPR over ``features`` [n_items, D]; see the module docstring."""

    def __init__(self, n_users: int, n_items: int, features: Any, dim: int = 64, variant: str = "simplified",
                 biases: bool = False, init_std: float = 0.01, seed: int = 0, scale_features: bool = True):
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if biases and variant != "full":
            raise ValueError("biases belong to the full VBPR (variant='full'), as in eq. 2 of VBPR")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.variant, self.biases, self.init_std, self.seed = variant, bool(biases), float(init_std), seed
        self.scale_features = bool(scale_features)
        self.register_buffer("features", _feature_matrix(features, n_items, self.scale_features))
        self.register_buffer("cold", torch.zeros(n_items, dtype=torch.bool))
        g = torch.Generator().manual_seed(seed)
        d_in = self.features.shape[1]
        self.user_factors = nn.Parameter(torch.randn(n_users, dim, generator=g) * init_std)
        self.projection = nn.Parameter(torch.randn(d_in, dim, generator=g) * init_std)
        if variant != "content":
            self.item_factors = nn.Parameter(torch.randn(n_items, dim, generator=g) * init_std)
        if variant == "full":
            self.user_visual = nn.Parameter(torch.randn(n_users, dim, generator=g) * init_std)
        if self.biases:
            self.item_bias = nn.Parameter(torch.zeros(n_items))
            self.visual_bias = nn.Parameter(torch.zeros(d_in))

    def config(self) -> dict:
        """The constructor's arguments except the feature matrix, which the state dict carries
        (already scaled), plus its width ``n_features`` for ``from_config``."""
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim, "variant": self.variant,
                "biases": self.biases, "init_std": self.init_std, "seed": self.seed,
                "scale_features": self.scale_features, "n_features": int(self.features.shape[1])}

    @classmethod
    def from_config(cls, config: dict) -> "VBPR":
        """An instance shaped as ``config`` describes, with zero features, for a checkpoint's
        ``load_state_dict`` to fill (features, cold mask and parameters)."""
        config = dict(config)
        n_features = config.pop("n_features", None)
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"config needs n_features, a positive int, got {n_features!r}")
        return cls(features=np.zeros((config["n_items"], n_features), np.float32), **config)

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"feature": self.features}

    def mark_cold(self, train: "Interactions") -> int:
        """Treat the items without any interaction in ``train`` as cold (content path only);
        returns how many there are."""
        if train.n_items != self.n_items:
            raise ValueError(f"train has {train.n_items} items, the model {self.n_items}")
        seen = torch.zeros(self.n_items, dtype=torch.bool)
        seen[torch.as_tensor(np.asarray(train.item), dtype=torch.int64)] = True
        self.cold.copy_(~seen)
        return int(self.cold.sum())

    # -- scoring -------------------------------------------------------------------------------
    def _features(self, items: Optional[torch.Tensor], delta: Dict[str, torch.Tensor]) -> torch.Tensor:
        """c_i + delta_i for ``items`` (all items when None)."""
        if items is None:
            return self.features + delta["feature"] if "feature" in delta else self.features
        c = _gather(self.features, items)
        return c + _gather(delta["feature"], items) if "feature" in delta else c

    def _per_item(self, items: Optional[torch.Tensor], delta: Dict[str, torch.Tensor],
                  weight: torch.Tensor) -> torch.Tensor:
        """(c_i + delta_i) @ weight for ``items``. When ``items`` holds at least as many ids as
        there are items (the sampled protocol ranks 1000 per user), every item is projected once
        and the rows are gathered, instead of gathering and projecting repeated D-wide rows."""
        if items is None or items.numel() >= self.n_items:
            table = self._features(None, delta) @ weight
            return table if items is None else _gather(table, items)
        return self._features(items, delta) @ weight

    def _item_terms(self, items: Optional[torch.Tensor], delta: Dict[str, torch.Tensor]):
        """(ID embedding with cold rows zeroed, content embedding, item bias + content bias or None)."""
        content = self._per_item(items, delta, self.projection)
        warm = ~(self.cold if items is None else self.cold[items])
        q = None
        if self.variant != "content":
            q = (self.item_factors if items is None else _gather(self.item_factors, items)) * warm.unsqueeze(-1)
        bias = None
        if self.biases:
            item_bias = self.item_bias if items is None else self.item_bias[items]
            bias = item_bias * warm + self._per_item(items, delta, self.visual_bias)
        return q, content, bias

    def _combine(self, pu: torch.Tensor, hu: Optional[torch.Tensor], q, content, bias, dot) -> torch.Tensor:
        if self.variant == "simplified":
            out = dot(pu, q + content)
        elif self.variant == "content":
            out = dot(pu, content)
        else:
            out = dot(pu, q) + dot(hu, content)
        return out + bias if bias is not None else out

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        d = self.check_delta(delta)
        q, content, bias = self._item_terms(items, d)
        pu = self.user_factors[users]
        hu = self.user_visual[users] if self.variant == "full" else None
        if items.dim() == users.dim() + 1:  # items [b, m]
            pu = pu.unsqueeze(-2)
            hu = hu.unsqueeze(-2) if hu is not None else None
        return self._combine(pu, hu, q, content, bias, lambda a, b: (a * b).sum(-1))

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        d = self.check_delta(delta)
        q, content, bias = self._item_terms(None, d)
        pu = self.user_factors[users]
        hu = self.user_visual[users] if self.variant == "full" else None
        return self._combine(pu, hu, q, content, bias, lambda a, b: a @ b.t())

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """BPR loss: mean of -log sigma(s(u, i) - s(u, j))."""
        pos = self.score(batch["user"], batch["pos"], delta)
        neg = self.score(batch["user"], batch["neg"], delta)
        return F.softplus(-(pos - neg)).mean()

    # -- analytic feature gradient and the fast AMR loss ----------------------------------------
    def _own_bpr(self) -> bool:
        """True when the BPR loss is VBPR's own, so the closed forms below are its gradient."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(VBPR, name)
                   for name in ("loss", "score", "_features", "_per_item", "_item_terms", "_combine"))

    def _triples(self, batch: Batch) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Validated (user, pos, neg) id vectors, or None for N-D ids (no closed form here)."""
        users, pos, neg = (torch.as_tensor(batch[k]) for k in ("user", "pos", "neg"))
        if not users.dim() == pos.dim() == neg.dim() == 1:
            return None
        if not users.shape == pos.shape == neg.shape:
            raise ValueError(f"batch 'user', 'pos' and 'neg' must have the same length, got "
                             f"{users.numel()}, {pos.numel()} and {neg.numel()}")
        return (check_users(users, self.n_users, "user"), check_users(pos, self.n_items, "pos"),
                check_users(neg, self.n_items, "neg"))

    def _batch_items(self, batch: Batch, delta: Dict[str, torch.Tensor]):
        """(users, the batch's unique item ids, positives' then negatives' positions among them,
        those items' features plus ``delta``), or None for N-D ids (no closed form here)."""
        triples = self._triples(batch)
        if triples is None:
            return None
        users, pos, neg = triples
        rows, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        c = self.features.index_select(0, rows)
        if "feature" in delta:
            c = c + delta["feature"].index_select(0, rows)
        return users, rows, inv, c

    @staticmethod
    def _pair_diff(t: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """``t[pos] - t[neg]`` per triple for a per-row table ``t`` (``inv``: positives' then
        negatives' positions in the rows); ``index_select`` gathers several times faster than
        advanced indexing on CPU."""
        g = t.index_select(0, inv)
        n = inv.shape[0] // 2
        return g[:n] - g[n:]

    def _pair_margin(self, users: torch.Tensor, rows: torch.Tensor, inv: torch.Tensor,
                     c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``s(u, i) - s(u, j)`` per triple from the batch's unique item ``rows`` (``c`` their
        possibly perturbed features, ``inv`` the positives' then the negatives' positions in
        ``rows``), and the user vector that multiplies the content embedding (p_u, or h_u for
        the full VBPR): each item's projection is computed once however often the batch
        draws it."""
        e = c @ self.projection
        pu = self.user_factors.index_select(0, users)
        if self.variant == "content":
            return (pu * self._pair_diff(e, inv)).sum(-1), pu
        warm = (~self.cold.index_select(0, rows)).to(e.dtype)
        q = self.item_factors.index_select(0, rows) * warm.unsqueeze(-1)
        if self.variant == "simplified":
            return (pu * self._pair_diff(q + e, inv)).sum(-1), pu
        hu = self.user_visual.index_select(0, users)
        margin = (pu * self._pair_diff(q, inv)).sum(-1) + (hu * self._pair_diff(e, inv)).sum(-1)
        if self.biases:
            b = self.item_bias.index_select(0, rows) * warm + c @ self.visual_bias
            margin = margin + self._pair_diff(b, inv)
        return margin, hu

    def _row_coefficients(self, n_rows: int, inv: torch.Tensor, coef: torch.Tensor,
                          v: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Per unique item row, given each triple's ``coef = d loss / d margin``: ``A = sum_t +-coef_t
        v_t`` (``[rows, dim]``) and, with biases, ``a = sum_t +-coef_t``; the feature gradient
        of the row is ``A E^T (+ a beta)``, so all of it lives in the ``dim``-wide space."""
        signed = torch.cat([coef, -coef])
        A = torch.zeros(n_rows, v.shape[1], dtype=v.dtype, device=v.device)
        A.index_add_(0, inv, signed.unsqueeze(-1) * torch.cat([v, v]))
        a = None
        if self.biases:
            a = torch.zeros(n_rows, dtype=v.dtype, device=v.device).index_add_(0, inv, signed)
        return A, a

    def _feature_grad_rows(self, n_rows: int, inv: torch.Tensor, coef: torch.Tensor,
                           v: torch.Tensor) -> torch.Tensor:
        """Gradient w.r.t. the features of the batch's unique item rows: ``A E^T (+ a beta)``,
        one matmul with the projection after summing in the ``dim``-wide space."""
        A, a = self._row_coefficients(n_rows, inv, coef, v)
        grad = A @ self.projection.t()
        if a is not None:
            grad = grad + a.unsqueeze(-1) * self.visual_bias.unsqueeze(0)
        return grad

    def delta_gradient(self, batch: Batch, delta: Delta,
                       targets: Sequence[str]) -> Optional[Dict[str, torch.Tensor]]:
        """``d loss(batch, delta) / d delta["feature"]`` in closed form (``Attack.gradient``'s
        hook; autograd over a dense delta is the reference), or ``None`` where it does not
        apply and the caller takes autograd: a subclass that redefines the scoring or the loss,
        a perturbation that requires grad (its caller may want a graph), or N-D ids. Only the
        batch's unique item rows are computed, then scattered into a zero table; cold items'
        ID terms are zero, their content path carries the gradient as for any item. Plain
        tensors, detached from any graph."""
        if not self._own_bpr():
            return None
        d = self.check_delta(delta)
        targets = tuple(targets)
        unknown = [t for t in targets if t != "feature"]
        if unknown:
            raise ValueError(f"targets {unknown} are not perturbable in {type(self).__name__}; its "
                             "perturbable tensors are ['feature']")
        if any(t.requires_grad for t in d.values()):
            return None
        items = self._batch_items(batch, d)
        if items is None:
            return None
        users, rows, inv, c = items
        n = users.numel()
        out = torch.zeros_like(self.features)
        if n and "feature" in targets:
            with torch.no_grad():
                margin, v = self._pair_margin(users, rows, inv, c)
                coef = -torch.sigmoid(-margin) / n  # d mean softplus(-m) / d m
                out.index_copy_(0, rows, self._feature_grad_rows(rows.numel(), inv, coef, v))
        return {t: out for t in targets}

    def amr_loss(self, batch: Batch, eps: float, lam: float) -> Optional[torch.Tensor]:
        """AMR's mini-batch loss (eq. 10 without the L2 term) in one forward:
        ``loss(batch) + lam * loss(batch, Delta)``, ``Delta_i = eps * Gamma_i / ||Gamma_i||`` for
        every item row of the batch (``Gamma = d loss / d features``, held constant), zero
        elsewhere; the value and parameter gradients of ``AdversarialRegularizer(FGSM(self, eps,
        targets="feature", norm="l2"), lam)``. ``Gamma`` comes in closed form from the clean
        forward's margins, summed per item row in the ``dim``-wide space (``Gamma_r = A_r E^T``),
        and the perturbed margins are the clean ones plus ``Delta``'s contribution, ``Delta E =
        diag(eps / ||Gamma||) A (E^T E)``: no second clean forward, no autograd for ``Gamma``,
        neither ``Gamma`` nor ``Delta`` materialised (the ``D``-wide work is the clean forward's
        one matmul on the batch's unique items and its backward). ``None`` where the
        closed form does not apply (see ``delta_gradient``), for the caller's reference path."""
        for name, value in (("eps", eps), ("lam", lam)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self._own_bpr():
            return None
        items = self._batch_items(batch, {})
        if items is None:
            return None
        users, rows, inv, c = items
        n = users.numel()
        margin, v = self._pair_margin(users, rows, inv, c)
        clean = F.softplus(-margin).mean()
        if lam == 0:
            return clean
        # Delta_r = s_r (A_r E^T + a_r beta), s_r = eps / ||Gamma_r||, is a constant. Products with
        # a detached left factor give (constant Delta) @ E and @ beta, values and gradients:
        # Delta E = s A (E^T E) + s a (beta^T E), Delta beta = s A (E^T beta) + s a (beta^T beta).
        # The same dim x dim Gram matrix gives ||Gamma_r||^2, so Gamma and Delta stay unformed.
        E = self.projection
        Ed = E.detach()
        gram = Ed.t() @ E
        beta = self.visual_bias if self.biases else None
        if beta is not None:
            bd = beta.detach()
            gram_b, beta_e, beta_b = Ed.t() @ beta, bd @ E, bd @ beta
        with torch.no_grad():
            coef = -torch.sigmoid(-margin) / n
            A, a = self._row_coefficients(rows.numel(), inv, coef, v)
            sq = ((A @ gram.detach()) * A).sum(-1)
            if a is not None:
                sq = sq + 2 * a * (A @ gram_b.detach()) + a * a * beta_b.detach()
            norm = sq.clamp_min(0).sqrt()
            # rows with a zero gradient take no step, as in advrec.attacks.step
            scale = torch.where(norm > 0, eps / torch.where(norm > 0, norm, torch.ones_like(norm)),
                                torch.zeros_like(norm))
            As = A * scale.unsqueeze(-1)
            a_s = a * scale if a is not None else None
        de = As @ gram
        db = None
        if beta is not None:
            de = de + a_s.unsqueeze(-1) * beta_e.unsqueeze(0)
            db = As @ gram_b + a_s * beta_b
        adv_margin = margin + (v * self._pair_diff(de, inv)).sum(-1)
        if db is not None:
            adv_margin = adv_margin + self._pair_diff(db, inv)
        return clean + lam * F.softplus(-adv_margin).mean()

    def l2_penalty(self, batch: Batch) -> torch.Tensor:
        """AMR's eq. 10 per triple: ||p_u||^2 + ||q_i||^2 + ||q_j||^2 (+ ||h_u||^2) + ||E||^2,
        averaged over the batch (E is shared, so it counts once)."""
        u, i, j = (check_users(batch[k], n, k) for k, n in
                   (("user", self.n_users), ("pos", self.n_items), ("neg", self.n_items)))
        rows = self.user_factors[u].pow(2).sum()
        if self.variant != "content":
            rows = rows + self.item_factors[i].pow(2).sum() + self.item_factors[j].pow(2).sum()
        if self.variant == "full":
            rows = rows + self.user_visual[u].pow(2).sum()
        return rows / u.shape[0] + self.projection.pow(2).sum()


class DUIF(VBPR):
    """DUIF (Geng et al. 2015) with the BPR loss, as in AMR's Table 2: ``p_u . (E c_i)``."""

    def __init__(self, n_users: int, n_items: int, features: Any, dim: int = 64, init_std: float = 0.01,
                 seed: int = 0, scale_features: bool = True):
        super().__init__(n_users, n_items, features, dim=dim, variant="content", init_std=init_std, seed=seed,
                         scale_features=scale_features)

    def config(self) -> dict:
        cfg = super().config()
        for key in ("variant", "biases"):
            cfg.pop(key)
        return cfg

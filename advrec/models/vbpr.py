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

from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Delta, Recommender, check_users

VARIANTS = ("simplified", "full", "content")


def _feature_matrix(features: Any, n_items: int, scale: bool) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features.detach().cpu())
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
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim, "variant": self.variant,
                "biases": self.biases, "init_std": self.init_std, "seed": self.seed,
                "scale_features": self.scale_features}

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"feature": self.features}

    def mark_cold(self, train: Any) -> int:
        """Treat the items without any interaction in ``train`` as cold (content path only);
        returns how many there are."""
        if train.n_items != self.n_items:
            raise ValueError(f"train has {train.n_items} items, the model {self.n_items}")
        seen = torch.zeros(self.n_items, dtype=torch.bool)
        seen[torch.as_tensor(np.asarray(train.item), dtype=torch.int64)] = True
        self.cold.copy_(~seen)
        return int(self.cold.sum())

    # -- scoring -------------------------------------------------------------------------------
    def _content(self, items: Optional[torch.Tensor], delta: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(c_i + delta_i) E for ``items`` (all items when None), [.., dim]."""
        c = self.features if items is None else self.features[items]
        if "feature" in delta:
            c = c + (delta["feature"] if items is None else delta["feature"][items])
        return c @ self.projection

    def _item_terms(self, items: Optional[torch.Tensor], delta: Dict[str, torch.Tensor]):
        """(ID embedding with cold rows zeroed, content embedding, item bias + content bias or None)."""
        content = self._content(items, delta)
        warm = ~(self.cold if items is None else self.cold[items])
        q = None
        if self.variant != "content":
            q = (self.item_factors if items is None else self.item_factors[items]) * warm.unsqueeze(-1)
        bias = None
        if self.biases:
            c = self.features if items is None else self.features[items]
            if "feature" in delta:
                c = c + (delta["feature"] if items is None else delta["feature"][items])
            bias = (self.item_bias if items is None else self.item_bias[items]) * warm + c @ self.visual_bias
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

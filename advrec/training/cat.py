"""Cascade-guided adversarial training (CAT, Tan et al.) and its baselines, as a loss function.

L = L_B + λ1·L_adv1 + λ2·L_adv2 (eq. 10), over every non-padding position of the SASRec regime:

- L_adv1 (eq. 6-7), the first level: the sequence embeddings S_i are perturbed by (1/C_i) ⊙ A_i,
  A_i = ε·g/‖g‖₂ with g the gradient of ‖f(S_i + ·) − w_i‖ with respect to S_i (one norm per
  sequence, over all its positions and dimensions), and the loss is the mean over positions of
  ‖ŵ − w‖₂. As in virtual adversarial training the clean states w are the target (held constant),
  and the gradient is taken at a tiny random start (the norm is not differentiable at zero). The
  clean and perturbed passes share their dropout masks, so ŵ − w measures the perturbation only.
- L_adv2 (eq. 8-9), the second level: the user state w, the target e_j and the negative e_n are
  each moved by ε along their own normalised BCE gradient (closed form at the clean point:
  ∂ℓ/∂w = −(1−σ(r_j))e_j + σ(r_n)e_n, ∂ℓ/∂e_j = −(1−σ(r_j))w, ∂ℓ/∂e_n = σ(r_n)w), and the BCE of
  the perturbed scores is the loss.

``scale`` holds the per-position factor 1/C: for CAT, ``cascade_effects(..., normalize=
"inverse-mean")`` of the training inputs (mean 1 over items, so every method spends the same
total perturbation, as the paper does for a fair comparison); ``None`` means 1 at every item.

Methods: ``adv_linear`` (APR on w and the target/negative embeddings: L_adv2 only), ``adv_seq``
(L_adv1 without cascade re-scaling), ``adv_global`` (both levels, no re-scaling), ``adv_cas``
(both levels, re-scaled by the cascade effects).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..data.sequences import PAD
from ..models.base import Batch
from ..models.capabilities import SequenceEncoder
from ..models.sequential import bce_pairs

METHODS = ("adv_linear", "adv_seq", "adv_global", "adv_cas")
_LEVELS = {"adv_linear": (False, True), "adv_seq": (True, False), "adv_global": (True, True),
           "adv_cas": (True, True)}


def _unit_rows(x: torch.Tensor, eps: float) -> torch.Tensor:
    """ε·x/‖x‖ over the last dimension; zero rows stay zero."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return eps * x / torch.where(norm > 0, norm, torch.ones_like(norm))


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ over the last dimension with a finite gradient at zero."""
    return torch.sqrt((x * x).sum(-1) + 1e-12)


class CascadeAdversarialLoss:
    """``loss_fn(model, batch)`` for ``SequenceTrainer``: see the module docstring.

    The model needs the ``SequenceEncoder`` capability (``advrec.models.capabilities``:
    ``item_table``, ``sequence_embeddings``, ``encode`` with ``embeddings``, ``position_loss``),
    which every ``SequentialRecommender`` (SASRec, GRU4Rec) has.

    ``scale``: ``[n_users, T]`` factors 1/C indexed by ``batch["user"]`` (required for
    ``adv_cas``, ignored by the others). ``xi``: norm of the random start of L_adv1's gradient.
    """

    def __init__(self, method: str = "adv_cas", eps: float = 10.0, lam1: float = 1.0, lam2: float = 1.0,
                 scale: Optional[torch.Tensor] = None, xi: float = 1e-3, seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        for name, v in (("eps", eps), ("lam1", lam1), ("lam2", lam2), ("xi", xi)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if method == "adv_cas":
            if scale is None:
                raise ValueError("adv_cas needs scale: the 1/C factors of cascade_effects(..., "
                                 "normalize='inverse-mean') of the training inputs")
            scale = torch.as_tensor(scale, dtype=torch.float32)
            if scale.dim() != 2 or not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
                raise ValueError("scale must be a finite non-negative [n_users, T] matrix")
        self.method, self.eps, self.lam1, self.lam2, self.xi = method, float(eps), float(lam1), float(lam2), float(xi)
        self.scale = scale if method == "adv_cas" else None
        self.first, self.second = _LEVELS[method]
        self.gen = torch.Generator().manual_seed(int(seed))

    def __call__(self, model: SequenceEncoder, batch: Batch) -> torch.Tensor:
        if not isinstance(model, SequenceEncoder):
            raise TypeError(f"CAT needs a sequential model with the SequenceEncoder capability (item_table, "
                            f"sequence_embeddings, encode, position_loss; advrec.models.capabilities), e.g. an "
                            f"advrec.models.SequentialRecommender; {type(model).__name__} lacks it")
        seq, pos, neg = batch["seq"], batch["pos"], batch["neg"]
        mask = seq != PAD
        valid = pos != PAD
        table = model.item_table()
        S = model.sequence_embeddings(seq)
        rng = torch.get_rng_state()
        states = model.encode(seq, embeddings=S)
        loss = model.position_loss(states, pos, neg, table)
        if self.first and self.lam1 > 0:
            loss = loss + self.lam1 * self._first_level(model, seq, mask, valid, S, states, rng, batch)
        if self.second and self.lam2 > 0:
            loss = loss + self.lam2 * self._second_level(states, table, pos, neg, valid)
        return loss

    def _position_scale(self, batch: Batch, mask: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return mask.to(torch.float32).unsqueeze(-1)
        s = self.scale[batch["user"]]
        if s.shape != mask.shape:
            raise ValueError(f"scale rows have {s.shape[1]} columns, the sequences {mask.shape[1]}")
        return (s * mask).unsqueeze(-1)

    def sequence_perturbation(self, model: SequenceEncoder, batch: Batch, S: torch.Tensor,
                              states: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
        """(1/C) ⊙ A for the batch (eq. 7): A = ε·g/‖g‖ per sequence, zero at padding.

        ``rng`` is the CPU generator state the clean pass ``states = encode(seq, embeddings=S)``
        started from, so this pass draws the same dropout masks.
        """
        seq, valid = batch["seq"], batch["pos"] != PAD
        mask = seq != PAD
        scale = self._position_scale(batch, mask)
        r = torch.randn(S.shape, generator=self.gen).to(S) * mask.unsqueeze(-1)
        r = self.xi * r / torch.linalg.vector_norm(r, dim=(1, 2), keepdim=True).clamp(min=1e-12)
        x = (S.detach() + r * scale).requires_grad_(True)
        torch.set_rng_state(rng)
        probe = model.encode(seq, embeddings=x)
        dist = (_safe_norm(probe - states.detach()) * valid).sum()
        (g,) = torch.autograd.grad(dist, x)
        norm = torch.linalg.vector_norm(g, dim=(1, 2), keepdim=True)
        A = self.eps * g / torch.where(norm > 0, norm, torch.ones_like(norm))
        return A * scale

    def _first_level(self, model, seq, mask, valid, S, states, rng, batch) -> torch.Tensor:
        delta = self.sequence_perturbation(model, batch, S, states, rng)
        torch.set_rng_state(rng)
        perturbed = model.encode(seq, embeddings=S + delta)
        return (_safe_norm(perturbed - states.detach()) * valid).sum() / valid.sum().clamp(min=1)

    def embedding_perturbations(self, w: torch.Tensor, e_j: torch.Tensor,
                                e_n: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(δ_w, δ_j, δ_n) of eq. 9: ε times each one's normalised BCE gradient, in closed form."""
        with torch.no_grad():
            a = 1.0 - torch.sigmoid((w * e_j).sum(-1, keepdim=True))   # -(∂ℓ/∂r_j)
            c = torch.sigmoid((w * e_n).sum(-1, keepdim=True))         # ∂ℓ/∂r_n
            return (_unit_rows(-a * e_j + c * e_n, self.eps), _unit_rows(-a * w, self.eps),
                    _unit_rows(c * w, self.eps))

    def _second_level(self, w, table, pos, neg, valid) -> torch.Tensor:
        e_j, e_n = table[pos.clamp(min=0)], table[neg.clamp(min=0)]
        d_w, d_j, d_n = self.embedding_perturbations(w, e_j, e_n)
        w_hat = w + d_w
        return bce_pairs((w_hat * (e_j + d_j)).sum(-1), (w_hat * (e_n + d_n)).sum(-1), valid)

"""SASRec (Kang & McAuley 2018): causal self-attention over the item sequence.

As the original: item embeddings scaled by sqrt(dim) plus learned absolute positions, dropout,
then blocks of [pre-LayerNorm single-head causal self-attention (queries normalised, keys and
values not), residual; LayerNorm, two-layer ReLU feed-forward, residual], a final LayerNorm.
Padding keys are masked (the original lets zeroed padding vectors take attention mass); a
padding query attends to itself only, and its output is zeroed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import seeded
from .sequential import SequentialRecommender


class _Block(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_ff = nn.LayerNorm(dim, eps=1e-8), nn.LayerNorm(dim, eps=1e-8)
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        att = nn.functional.scaled_dot_product_attention(
            self.q(q).unsqueeze(1), self.k(x).unsqueeze(1), self.v(x).unsqueeze(1),
            attn_mask=attn_mask, dropout_p=self.p if self.training else 0.0).squeeze(1)
        x = (q + self.drop(self.out(att))) * keep
        h = self.norm_ff(x)
        return (h + self.drop(self.ff2(self.drop(torch.relu(self.ff1(h)))))) * keep


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation; the paper's defaults: 2 blocks, dim 100."""

    def __init__(self, n_users: int, n_items: int, dim: int = 100, max_len: int = 200,
                 n_blocks: int = 2, dropout: float = 0.2, loss: str = "bce", seed: int = 0) -> None:
        super().__init__(n_users, n_items, dim, max_len, dropout, loss, seed)
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
            raise ValueError(f"n_blocks must be a positive int, got {n_blocks!r}")
        self.n_blocks = n_blocks
        self.position = nn.Parameter(torch.randn(self.max_len, self.dim, generator=self._gen) * self.dim ** -0.5)
        with seeded(self.seed):  # nn.Linear draws from the global generator: seed it, the caller's left as it was
            self.blocks = nn.ModuleList(_Block(self.dim, self.dropout_rate) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(self.dim, eps=1e-8)
        self.drop = nn.Dropout(self.dropout_rate)
        self.register_buffer("causal", torch.ones(self.max_len, self.max_len, dtype=torch.bool).tril())

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        h = self.drop(x * math.sqrt(self.dim) + self.position) * keep
        eye = torch.eye(self.max_len, dtype=torch.bool, device=x.device)
        # query t may see key s <= t that is an item; a padding query sees itself (no NaN rows)
        attn_mask = (self.causal & mask.unsqueeze(1)) | eye
        attn_mask = attn_mask.unsqueeze(1)
        for block in self.blocks:
            h = block(h, attn_mask, keep)
        return self.norm(h)

    def config(self) -> dict:
        return {**super().config(), "n_blocks": self.n_blocks}

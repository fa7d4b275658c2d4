"""GRU4Rec (Hidasi et al. 2015) in the SASRec training regime: one GRU layer over the sequence.

The state after each item is that position's user embedding; it scores items against the same
item table it reads, so the hidden size equals the embedding size. Sequences are right-aligned,
so the GRU is run on each row's items only (packed), starting from a zero state: padding never
moves the state, and a sequence means the same thing whatever its padding.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .base import seeded
from .sequential import SequentialRecommender


class GRU4Rec(SequentialRecommender):
    """One GRU layer, hidden size = ``dim`` (the paper's 100)."""

    def __init__(self, n_users: int, n_items: int, dim: int = 100, max_len: int = 200,
                 dropout: float = 0.2, loss: str = "bce", seed: int = 0) -> None:
        super().__init__(n_users, n_items, dim, max_len, dropout, loss, seed)
        with seeded(self.seed):  # the GRU's weights from the seed, the caller's generator left as it was
            self.gru = nn.GRU(self.dim, self.dim, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(self.dropout_rate)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, T, d = x.shape
        lengths = mask.sum(1)
        out = x.new_zeros(b, T, d)
        live = lengths > 0
        if not bool(live.any()):
            return out
        # left-align each row's items, run the packed GRU, put the states back right-aligned
        shift = (T - lengths).unsqueeze(1)
        cols = torch.arange(T, device=x.device).unsqueeze(0)
        src = (cols + shift).clamp(max=T - 1)
        left = torch.gather(self.drop(x), 1, src.unsqueeze(-1).expand(b, T, d))
        packed = pack_padded_sequence(left[live], lengths[live].cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=T)
        dst = (cols - shift[live]).clamp(min=0)  # right-aligned column c reads left-aligned c - shift
        back = torch.gather(states, 1, dst.unsqueeze(-1).expand(-1, T, d))
        out[live] = back
        return self.drop(out)

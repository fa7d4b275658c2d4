"""The shared half of sequential recommenders: item table, histories, scoring and the loss.

A sequential model is the paper's two-level hierarchy (Tan et al., eq. 3-4): a network f turns
the embeddings of a user's history S_i into a user embedding w_i = f(S_i), and an item scores
r_ij = w_iᵀ e_j with the same item table E. Subclasses implement only ``_encode`` (f at every
position). The item table is the perturbable ``"item"`` tensor; ``seq_delta`` perturbs the
sequence embeddings S_i position by position (cascade-guided adversarial training's first level).

For the Recommender protocol a user id stands for that user's history: ``histories`` (set with
``set_histories`` or temporarily with ``using_histories``) holds one right-aligned sequence per
user, and ``score`` / ``full_scores`` encode it. Training never reads ``histories``.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import positive_int
from ..data.sequences import PAD, check_sequences
from .base import NEG_KEY, POS_KEY, SEQ_KEY, Batch, Delta, Recommender, check_users

LOSSES = ("bce", "ce")


class SequentialRecommender(Recommender):
    """Base of SASRec and GRU4Rec: see the module docstring."""

    def __init__(self, n_users: int, n_items: int, dim: int, max_len: int, dropout: float,
                 loss: str, seed: int) -> None:
        super().__init__()
        self.n_users = positive_int(n_users, "n_users")
        self.n_items = positive_int(n_items, "n_items")
        self.dim = positive_int(dim, "dim")
        self.max_len = positive_int(max_len, "max_len")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.dropout_rate, self.loss_name, self.seed = float(dropout), loss, int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.item = nn.Parameter(torch.randn(self.n_items, self.dim, generator=gen) * self.dim ** -0.5)
        self.register_buffer("histories", torch.full((self.n_users, self.max_len), PAD, dtype=torch.long))
        self._gen = gen  # subclasses draw their own initial weights from it

    # --- histories -------------------------------------------------------------------------
    def set_histories(self, sequences: np.ndarray) -> None:
        """The sequence each user id stands for when scoring, ``[n_users, T' <= max_len]``."""
        seqs = check_sequences(sequences, "sequences", self.n_items)
        if seqs.shape[0] != self.n_users or seqs.shape[1] > self.max_len:
            raise ValueError(f"sequences must have shape [{self.n_users}, <= {self.max_len}], got {seqs.shape}")
        full = np.full((self.n_users, self.max_len), PAD, dtype=np.int64)
        if seqs.shape[1]:
            full[:, self.max_len - seqs.shape[1]:] = seqs
        self.histories.copy_(torch.from_numpy(full))

    @contextlib.contextmanager
    def using_histories(self, sequences: np.ndarray) -> Iterator["SequentialRecommender"]:
        """Score with other histories (e.g. attacked ones) inside the block, then restore."""
        saved = self.histories.clone()
        self.set_histories(sequences)
        try:
            yield self
        finally:
            self.histories.copy_(saved)

    # --- the two levels --------------------------------------------------------------------
    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {"item": self.item}

    def item_table(self, delta: Delta = None) -> torch.Tensor:
        d = self.check_delta(delta)
        return self.item + d["item"] if "item" in d else self.item

    def sequence_embeddings(self, seq: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        """S_i: the (perturbed) item embeddings of ``seq`` ``[b, T, dim]``, zero at padding."""
        seq = self._check_seq(seq)
        mask = (seq != PAD).unsqueeze(-1)
        return self.item_table(delta)[seq.clamp(min=0)] * mask

    def encode(self, seq: torch.Tensor, delta: Delta = None, seq_delta: Optional[torch.Tensor] = None,
               embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        """f at every position: ``[b, T, dim]`` user states, zero at padding.

        ``seq_delta`` ``[b, T, dim]`` is added to the sequence embeddings (ignored at padding);
        ``embeddings`` replaces S_i outright (callers that differentiate with respect to it).
        """
        seq = self._check_seq(seq)
        mask = seq != PAD
        x = self.sequence_embeddings(seq, delta) if embeddings is None else embeddings
        if seq_delta is not None:
            if tuple(seq_delta.shape) != tuple(x.shape):
                raise ValueError(f"seq_delta must have shape {tuple(x.shape)}, got {tuple(seq_delta.shape)}")
            x = x + seq_delta * mask.unsqueeze(-1)
        return self._encode(x, mask) * mask.unsqueeze(-1)

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def user_embedding(self, seq: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        """w_i: the state at the last column (the most recent item), ``[b, dim]``."""
        return self.encode(seq, delta)[:, -1]

    # --- Recommender protocol --------------------------------------------------------------
    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        w = self.user_embedding(self.histories[users], delta)
        table = self.item_table(delta)
        if items.dim() == 1:
            return (w * table[items]).sum(-1)
        return torch.einsum("bd,bmd->bm", w, table[items])

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        users = check_users(users, self.n_users)
        return self.user_embedding(self.histories[users], delta) @ self.item_table(delta).t()

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """Mean loss over the batch's non-padding positions (``seq``, ``pos``, ``neg`` [b, T]).

        "bce" (the paper's eq. 5): one sampled negative per position. "ce": softmax over all
        items at every position (``neg`` unused).
        """
        states = self.encode(batch[SEQ_KEY], delta)
        return self.position_loss(states, batch[POS_KEY], batch.get(NEG_KEY), self.item_table(delta))

    def position_loss(self, states: torch.Tensor, pos: torch.Tensor, neg: Optional[torch.Tensor],
                      table: torch.Tensor) -> torch.Tensor:
        """The training loss from given states (adversarial training reuses it on perturbed ones)."""
        valid = pos != PAD
        n = valid.sum().clamp(min=1)
        if self.loss_name == "ce":
            logits = states[valid] @ table.t()
            return F.cross_entropy(logits, pos[valid], reduction="sum") / n
        if neg is None:
            raise ValueError("the bce loss needs batch['neg'] (one sampled negative per position)")
        r_pos = (states * table[pos.clamp(min=0)]).sum(-1)
        r_neg = (states * table[neg.clamp(min=0)]).sum(-1)
        return bce_pairs(r_pos, r_neg, valid)

    def score_batch(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """Scores of every position's next item, ``[b, T]`` (0 at padding), ``[b, T, 2]`` with the
        sampled negatives' in column 1 when the batch has ``neg`` (keys ``seq``, ``pos``, ``neg``)."""
        states = self.encode(batch[SEQ_KEY], delta)
        table = self.item_table(delta)
        pos = (states * table[batch[POS_KEY].clamp(min=0)]).sum(-1)
        if NEG_KEY in batch:
            return torch.stack([pos, (states * table[batch[NEG_KEY].clamp(min=0)]).sum(-1)], dim=-1)
        return pos

    def forward(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """The states of ``encode(batch["seq"], delta)``, as before ``score_batch`` existed (kept
        for backward compatibility; library code calls ``score_batch`` or ``encode``)."""
        return self.encode(batch[SEQ_KEY], delta)

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim,
                "max_len": self.max_len, "dropout": self.dropout_rate, "loss": self.loss_name,
                "seed": self.seed}

    def _check_seq(self, seq: torch.Tensor) -> torch.Tensor:
        seq = torch.as_tensor(seq)
        if seq.dim() != 2 or seq.shape[1] != self.max_len:
            raise ValueError(f"seq must have shape [batch, max_len={self.max_len}], got {tuple(seq.shape)}")
        if seq.dtype != torch.long:
            raise ValueError(f"seq must be int64, got {seq.dtype}")
        return seq


def bce_pairs(r_pos: torch.Tensor, r_neg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """-(log σ(r_pos) + log(1 - σ(r_neg))), averaged over ``valid`` positions (eq. 5 / eq. 8)."""
    per = F.softplus(-r_pos) + F.softplus(r_neg)
    return (per * valid).sum() / valid.sum().clamp(min=1)

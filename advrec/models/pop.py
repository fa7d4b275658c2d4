"""Most-popular baseline: every user gets the items with the most training interactions."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import Batch, Delta, Recommender, check_users

if TYPE_CHECKING:
    from ..data.interactions import Interactions


class Pop(Recommender):
    """Scores are training popularity counts; nothing to train, nothing to perturb."""

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError(f"n_users and n_items must be >= 1, got {n_users}, {n_items}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.register_buffer("popularity", torch.zeros(self.n_items))

    @classmethod
    def fit(cls, train: "Interactions") -> "Pop":
        """Count interactions per item in ``train`` (an ``advrec.data.Interactions``)."""
        model = cls(train.n_users, train.n_items)
        counts = np.bincount(np.asarray(train.item), minlength=train.n_items)
        model.popularity.copy_(torch.as_tensor(counts, dtype=torch.float32))
        return model

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items}

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        self.check_delta(delta)
        check_users(users, self.n_users)
        return self.popularity[check_users(items, self.n_items, "items")]

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        self.check_delta(delta)
        users = check_users(users, self.n_users)
        return self.popularity.expand(users.shape[0], self.n_items)

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        raise TypeError("Pop is fitted by counting (Pop.fit(train)), not by gradient steps")

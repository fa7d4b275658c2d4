"""The random recommender: the floor MSAP's Figure 1 compares attacked models with."""
from __future__ import annotations

import torch

from .base import Batch, Delta, Recommender, check_users



def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 bit patterns (multiplications wrap modulo 2**64)."""
    x = x + 0x1E3779B97F4A7C15  # the golden-ratio increment, written as a positive int64
    x = (x ^ _shr(x, 30)) * -0x40A7B892E31B1A47  # 0xBF58476D1CE4E5B9 as int64
    x = (x ^ _shr(x, 27)) * -0x6B2FB644ECCEEE15  # 0x94D049BB133111EB as int64
    return x ^ _shr(x, 31)


class Random(Recommender):
    """Scores are a fixed hash of (seed, user, item) in [0, 1): each user gets a uniformly random
    ranking, the same whichever users are scored together or in which order (no generator state),
    so evaluation tiles do not change the result. Nothing to train, nothing to perturb."""

    def __init__(self, n_users: int, n_items: int, seed: int = 0):
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.n_users, self.n_items, self.seed = n_users, n_items, seed

    def config(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "seed": self.seed}

    def _hash_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        key = _mix(_mix(users + (self.seed << 32)) ^ items)
        return _shr(key, 40).to(torch.float32) / float(1 << 24)  # top 24 bits: exact in float32

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        self.check_delta(delta)
        users = check_users(users, self.n_users)
        items = check_users(items, self.n_items, "items")
        if items.dim() == users.dim() + 1:
            users = users.unsqueeze(-1).expand_as(items)
        return self._hash_scores(users, items)

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        self.check_delta(delta)
        users = check_users(users, self.n_users)
        items = torch.arange(self.n_items, dtype=torch.int64)
        return self._hash_scores(users[:, None], items[None, :])

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        raise TypeError("Random has nothing to learn")

"""The Recommender protocol: the one seam between models, attacks, defenses and evaluation.

A model names the tensors an adversary may perturb (``perturbable()``) and accepts additive
perturbations of them through ``delta`` without touching its parameters, so clean and
perturbed runs never leak into each other.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import nn

Batch = Mapping[str, torch.Tensor]
Delta = Optional[Mapping[str, torch.Tensor]]


class Recommender(nn.Module):
    """Base class of every model; subclasses implement the four methods below.

    - ``perturbable()``: ``{name: tensor}`` an adversary may perturb (e.g. ``{"user": P, "item": Q}``).
    - ``score(users, items, delta)``: scores of ``items`` ``[b, m]`` (or ``[b]``) for ``users`` ``[b]``.
    - ``full_scores(users, delta)``: scores of every item, ``[len(users), n_items]``.
    - ``loss(batch, delta)``: the training loss of a batch (a dict of LongTensors).
    A ``delta`` maps a perturbable name to a tensor of that tensor's full shape.
    """

    n_users: int
    n_items: int

    def perturbable(self) -> Dict[str, torch.Tensor]:
        return {}

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """Scores of the batch's (user, pos) pairs; (user, neg) too when the batch has ``neg``."""
        pos = self.score(batch["user"], batch["pos"], delta)
        if "neg" in batch:
            return torch.stack([pos, self.score(batch["user"], batch["neg"], delta)], dim=-1)
        return pos

    def l2_penalty(self, batch: Batch) -> torch.Tensor:
        """Squared norm of the parameters a batch touches (classic per-batch BPR regularisation)."""
        raise NotImplementedError(f"{type(self).__name__} defines no per-batch L2 penalty; "
                                  "use the optimizer's weight_decay instead")

    def regularized_loss(self, batch: Batch, l2: float, delta: Delta = None) -> torch.Tensor:
        """``loss + l2 * l2_penalty``; models override it to share the rows both terms gather."""
        loss = self.loss(batch, delta)
        return loss + l2 * self.l2_penalty(batch) if l2 > 0 else loss

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the model from a JSON checkpoint."""
        raise NotImplementedError

    def check_delta(self, delta: Delta) -> Dict[str, torch.Tensor]:
        """Validate ``delta`` against ``perturbable()``: known names, matching shapes."""
        if delta is None:
            return {}
        targets = self.perturbable()
        out = {}
        for name, d in delta.items():
            if name not in targets:
                raise ValueError(f"delta names {name!r}, but this model's perturbable tensors are {sorted(targets)}")
            if tuple(d.shape) != tuple(targets[name].shape):
                raise ValueError(f"delta[{name!r}] has shape {tuple(d.shape)}, expected {tuple(targets[name].shape)}")
            out[name] = d
        return out


def check_users(users: torch.Tensor, n_users: int, name: str = "users") -> torch.Tensor:
    """Index tensors from users are checked, so a bad id is an IndexError, not a silent wrap."""
    users = torch.as_tensor(users)
    if users.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"{name} must be an integer tensor, got {users.dtype}")
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_users):
        raise IndexError(f"{name} must lie in [0, {n_users}), got range [{int(users.min())}, {int(users.max())}]")
    return users.long()

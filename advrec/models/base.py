"""The Recommender protocol: the one seam between models, attacks, defenses and evaluation.

A model names the tensors an adversary may perturb (``perturbable()``) and accepts additive
perturbations of them through ``delta`` without touching its parameters, so clean and
perturbed runs never leak into each other. ``docs/models.md`` is the complete contract, with a
worked example of wrapping your own model.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
from torch import nn

from .batch import BATCH_KEYS, NEG_KEY, POS_KEY, SEQ_KEY, USER_KEY, Batch, Delta
from .capabilities import require_l2_penalty

__all__ = ["Recommender", "check_users", "seeded", "Batch", "Delta", "BATCH_KEYS", "USER_KEY", "POS_KEY",
           "NEG_KEY", "SEQ_KEY"]


class Recommender(nn.Module):
    """Base class of every model. ``docs/models.md`` is the full contract.

    Required (the base raises ``NotImplementedError``):

    - ``score(users, items, delta=None)``: scores of ``items`` ``[b]`` (or ``[b, m]``) for
      ``users`` ``[b]``, shape of ``items``.
    - ``full_scores(users, delta=None)``: scores of every item, ``[len(users), n_items]``.
    - ``loss(batch, delta=None)``: the scalar training loss of a batch (see ``BATCH_KEYS``).
    - ``config()``: the constructor's keyword arguments as a JSON-serialisable dict (checkpoints).
    - attributes ``n_users`` and ``n_items``.

    Defaulted (override when it pays):

    - ``perturbable()``: ``{name: tensor}`` an adversary may perturb; ``{}`` (nothing to attack).
    - ``score_batch(batch, delta=None)``: the protocol's batch-scoring entry point, scores of
      the batch's (user, pos) pairs, ``[b, 2]`` with (user, neg) when the batch has ``neg``.
    - ``forward(batch, delta=None)``: an alias of ``score_batch`` kept for the built-in models;
      library code never calls it, and a ``forward`` of your own (e.g. ``forward(users,
      items)`` of the network you wrap) takes precedence whatever the order of the bases.
    - ``regularized_loss(batch, l2, delta=None)``: ``loss + l2 * l2_penalty(batch)``.
    - ``check_delta(delta)``: validates names and shapes; call it in ``score``/``loss``.

    Optional capabilities (``advrec.models.capabilities``: ``L2Penalty``, ``DeltaGradient``,
    ``ClosedFormAMR``, ``SequenceEncoder``, ``FromConfig``) are methods the library uses when
    present, tested with ``isinstance``.
    """

    n_users: int
    n_items: int

    def __init_subclass__(cls, **kwargs) -> None:
        """A ``forward`` of the user's own network wins over the alias below, whichever base
        comes first (``class Adapter(Recommender, MyNet)`` keeps ``MyNet.forward``)."""
        super().__init_subclass__(**kwargs)
        if cls.forward is not Recommender.forward:
            return
        for klass in cls.__mro__:
            if klass is not nn.Module and "forward" in vars(klass) and not issubclass(klass, Recommender):
                cls.forward = vars(klass)["forward"]
                return

    def perturbable(self) -> Dict[str, torch.Tensor]:
        """``{name: tensor}`` an adversary may perturb (defaulted: nothing)."""
        return {}

    def score(self, users: torch.Tensor, items: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define score(users, items, delta=None): "
                                  "the scores of items [b] or [b, m] for users [b] (see docs/models.md)")

    def full_scores(self, users: torch.Tensor, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define full_scores(users, delta=None): "
                                  "the scores of every item, [len(users), n_items] (see docs/models.md)")

    def loss(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch, delta=None): the scalar "
                                  "training loss of a batch with keys 'user', 'pos', 'neg' (see docs/models.md)")

    def score_batch(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """Scores of the batch's (user, pos) pairs ``[b]``; ``[b, 2]`` with the (user, neg)
        pairs' in column 1 when the batch has ``neg``. The protocol's batch entry point (library
        code calls this, never ``model(batch)``)."""
        pos = self.score(batch[USER_KEY], batch[POS_KEY], delta)
        if NEG_KEY in batch:
            return torch.stack([pos, self.score(batch[USER_KEY], batch[NEG_KEY], delta)], dim=-1)
        return pos

    def forward(self, batch: Batch, delta: Delta = None) -> torch.Tensor:
        """``score_batch(batch, delta)``: kept so ``model(batch)`` works on built-in models."""
        return self.score_batch(batch, delta)

    def regularized_loss(self, batch: Batch, l2: float, delta: Delta = None) -> torch.Tensor:
        """``loss + l2 * l2_penalty(batch)`` (``Trainer``'s default objective); models override it
        to share the rows both terms gather. With ``l2 > 0`` the model needs ``l2_penalty``
        (the ``L2Penalty`` capability)."""
        loss = self.loss(batch, delta)
        if l2 > 0:
            return loss + l2 * require_l2_penalty(self, f"regularized_loss(batch, l2={l2})").l2_penalty(batch)
        return loss

    def config(self) -> dict:
        """The constructor's keyword arguments, enough to rebuild the model from a JSON checkpoint."""
        raise NotImplementedError(
            f"{type(self).__name__} must define config(): return the keyword arguments of its constructor "
            f"as a JSON-serialisable dict (e.g. {{'n_users': ..., 'n_items': ..., 'dim': ..., 'seed': ...}}), "
            f"so that save_checkpoint can store it and load_checkpoint can rebuild the model as "
            f"{type(self).__name__}(**config) before loading its weights (see docs/models.md)")

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
    """``users`` as an int64 tensor after checking it is integer and in ``[0, n_users)``, so a
    bad id is an ``IndexError`` naming ``name``, not a silent wrap (use it for item ids too)."""
    users = torch.as_tensor(users)
    if users.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"{name} must be an integer tensor, got {users.dtype}")
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_users):
        raise IndexError(f"{name} must lie in [0, {n_users}), got range [{int(users.min())}, {int(users.max())}]")
    return users.long()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator inside the block and restore the caller's after it.

    ``torch.nn`` layers draw their initial weights from the global generator, so a model that
    builds them in its constructor must seed them itself, or two runs with one seed differ
    (``Trainer(seed=...)`` seeds the training, not the construction that came before it)::

        with seeded(seed):
            super().__init__(n_users, n_items, dim)   # every nn.Linear / nn.Embedding in here

    Build on the CPU and move the model after (the CUDA generators are not forked here).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

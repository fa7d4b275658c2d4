"""Training sequential recommenders in the SASRec regime: every position of a user's sequence
predicts the next item, with one sampled negative per position (Tan et al., eq. 5).

One epoch is one pass over the users (shuffled, ``batch_size`` sequences per step). Negatives
are drawn uniformly from the items outside the user's training set (numba rejection sampling,
as for BPR), so the same seed gives the same negatives. Early stopping and "keep the best
validation epoch" work as in ``Trainer``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import seed_arg
from ..data.interactions import Interactions
from ..data.sampling import draw_negatives
from ..data.sequences import PAD, TrainingSequences, training_sequences
from ..models.base import Batch
from ..models.sequential import SequentialRecommender
from .trainer import BestEpoch, History, close_epoch, restore_best

SeqLossFn = Callable[[SequentialRecommender, Batch], torch.Tensor]
Validator = Callable[[SequentialRecommender], float]


def _positive(value, name: str, kind=int):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")
    return kind(value)


class SequenceTrainer:
    """Adam on a sequential model's loss (or ``loss_fn(model, batch)``), weight decay ``l2``.

    ``batch`` holds ``user`` [b], ``seq``, ``pos``, ``neg`` [b, T] (padding -1 in all three).
    ``eval_every`` epochs the ``validator`` (model -> metric, higher is better) runs; training
    stops after ``patience`` epochs without improvement and the best weights are restored.
    ``threads`` sets torch's intra-op threads for the fit (restored after); ``None`` (default)
    picks one: same seed, same weights, and on a machine other jobs share, two threads made
    SASRec/GRU4Rec epochs 10-70x slower (1.4x faster on an idle one; pass ``threads=2`` there).
    """

    def __init__(self, epochs: int = 200, batch_size: int = 128, lr: float = 1e-3, l2: float = 1e-5,
                 patience: Optional[int] = None, eval_every: int = 5, seed: int = 0,
                 loss_fn: Optional[SeqLossFn] = None, progress: Optional[bool] = None,
                 threads: Optional[int] = None, desc: Optional[str] = None) -> None:
        self.epochs = _positive(epochs, "epochs")
        self.batch_size = _positive(batch_size, "batch_size")
        self.lr = _positive(lr, "lr", float)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(f"l2 must be a non-negative float, got {l2!r}")
        self.l2 = float(l2)
        self.patience = None if patience is None else _positive(patience, "patience")
        self.eval_every = _positive(eval_every, "eval_every")
        self.seed, self.loss_fn, self.progress, self.desc = seed_arg(seed), loss_fn, progress, desc
        self.threads = None if threads is None else _positive(threads, "threads")

    def fit(self, model: SequentialRecommender, train: Interactions,
            validator: Optional[Validator] = None) -> History:
        """Train ``model`` in place on ``train``'s time-ordered sequences (last ``model.max_len``)."""
        if not isinstance(model, SequentialRecommender):
            raise ValueError(f"model must be a SequentialRecommender, got {type(model).__name__}")
        if (train.n_users, train.n_items) != (model.n_users, model.n_items):
            raise ValueError(f"train has {train.n_users} users x {train.n_items} items but the model "
                             f"was built for {model.n_users} x {model.n_items}")
        seqs = training_sequences(train, model.max_len)
        if seqs.n_positions == 0:
            raise ValueError("train has no user with two or more interactions: nothing to predict")
        previous = torch.get_num_threads()
        torch.set_num_threads(1 if self.threads is None else self.threads)
        try:
            return self._fit(model, train, seqs, validator)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, model, train: Interactions, seqs: TrainingSequences, validator) -> History:
        indptr, indices = train.to_csr()
        users_all = np.flatnonzero((seqs.targets != PAD).any(axis=1))
        full = users_all[np.diff(indptr)[users_all] >= train.n_items]
        if full.size:  # rejection sampling of their negatives would never end
            raise ValueError(f"{full.size} user(s) interacted with every item (e.g. user {full[0]}): "
                             "no negative item exists for them")
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.l2)
        history, keeper = History(), BestEpoch(self.patience)
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = tqdm(range(self.epochs), desc=self.desc or f"train {type(model).__name__}",
                   disable=not show, leave=False)
        inputs, targets = torch.from_numpy(seqs.inputs), torch.from_numpy(seqs.targets)
        for epoch in bar:
            start = time.perf_counter()
            model.train()
            order = rng.permutation(users_all)
            neg_all = self._negatives(order, seqs.targets, indptr, indices, train.n_items, rng)
            total = 0.0
            for s in range(0, len(order), self.batch_size):
                u = torch.from_numpy(order[s:s + self.batch_size])
                batch = {"user": u, "seq": inputs[u], "pos": targets[u],
                         "neg": neg_all[s:s + self.batch_size]}
                loss = model.loss(batch) if self.loss_fn is None else self.loss_fn(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(u)
            if close_epoch(model, history, keeper, total / len(order), epoch, validator, self.eval_every, start, bar,
                           last=epoch == self.epochs - 1):
                break
        bar.close()
        return restore_best(model, history, keeper.state)

    @staticmethod
    def _negatives(users: np.ndarray, targets: np.ndarray, indptr, indices, n_items: int,
                   rng: np.random.Generator) -> torch.Tensor:
        """One negative per position, outside the user's training items; -1 at padding."""
        T = targets.shape[1]
        flat_users = np.repeat(users, T).astype(np.int64)
        neg = draw_negatives(flat_users, indptr, indices, n_items, int(rng.integers(2 ** 31)))
        neg = neg.reshape(len(users), T)
        neg[targets[users] == PAD] = PAD
        return torch.from_numpy(neg)

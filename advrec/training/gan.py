"""The minimax game of GAN-based recommenders (the tutorial's GAN-RF algorithm).

    pre-train G and D
    while not stopped:
        d-steps: combine real items with generated ones, update D
        g-steps: generate items (or vectors) for the users, update G
        validate; keep the best weights (early stopping)

``GANTrainer`` owns the loop, the two optimisers, the seed, early stopping and the progress
bar; the model owns one epoch of each player (the ``GANPlayers`` capability: ``IRGAN`` and
``CFGAN`` in ``advrec.models.gan``), so a new GAN recommender only says what its players do.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Protocol, Tuple, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import int_arg, positive_int, seed_arg
from .trainer import BestEpoch, EpochLog, restore_best, validate

Validator = Callable[[torch.nn.Module], float]


@runtime_checkable
class GANPlayers(Protocol):
    """What ``GANTrainer`` needs of a model: its two players' parameters, a setup on the training
    data, a per-outer-epoch hook (CFGAN draws its ZR/PM samples there), and one epoch of each
    player given its optimiser (returning the epoch's mean loss)."""

    def gan_parameters(self) -> Tuple[List[torch.nn.Parameter], List[torch.nn.Parameter]]: ...

    def gan_setup(self, train: Any) -> None: ...

    def gan_begin_epoch(self, generator: torch.Generator) -> None: ...

    def discriminator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                            generator: torch.Generator) -> float: ...

    def generator_epoch(self, optimizer: torch.optim.Optimizer, batch_size: int,
                        generator: torch.Generator) -> float: ...


@dataclass
class GANHistory(EpochLog):
    """Per outer epoch: the generator's and the discriminator's mean losses (``loss`` is the
    generator's), the validation metric, the seconds; the best epoch kept."""

    loss: List[float] = field(default_factory=list)
    d_loss: List[float] = field(default_factory=list)
    metric: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    stopped_early: bool = False
    pretrain_d_loss: List[float] = field(default_factory=list)


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class GANTrainer:
    """Trains a ``GANPlayers`` model by the minimax game.

    Each outer epoch runs ``d_steps`` discriminator epochs then ``g_steps`` generator epochs
    (Adam, ``d_lr`` / ``g_lr``, mini-batches of ``d_batch`` / ``g_batch``: pairs for IRGAN's
    discriminator, users for its generator, purchase vectors for CFGAN), then validates every
    ``eval_every`` outer epochs; ``patience`` validations-worth of epochs without improvement
    stop it and the best weights are restored. ``pretrain_d_epochs``: discriminator epochs before
    the game (``discriminator_pretrain_epoch``: IRGAN's positives against uniform items); the
    generator is pre-trained by the caller (IRGAN's on its BPR loss with ``Trainer``).
    ``threads``: torch's intra-op threads during the fit (1 by default: these models are small,
    and one thread gives the same bits every run).
    Same ``seed``, same numbers.
    """

    def __init__(self, epochs: int = 100, d_steps: int = 1, g_steps: int = 1, d_lr: float = 1e-3,
                 g_lr: float = 1e-3, d_batch: int = 256, g_batch: int = 64, patience: Optional[int] = 10,
                 eval_every: int = 1, seed: int = 0, progress: Optional[bool] = None, threads: Optional[int] = 1,
                 pretrain_d_epochs: int = 0):
        for name, v in (("epochs", epochs), ("d_steps", d_steps), ("g_steps", g_steps), ("d_batch", d_batch),
                        ("g_batch", g_batch), ("eval_every", eval_every)):
            positive_int(v, name)
        for name, v in (("d_lr", d_lr), ("g_lr", g_lr)):
            _positive_number(v, name)
        if patience is not None:
            positive_int(patience, "patience")
        if threads is not None:
            positive_int(threads, "threads")
        self.pretrain_d_epochs = int_arg(pretrain_d_epochs, "pretrain_d_epochs")
        self.epochs, self.d_steps, self.g_steps = epochs, d_steps, g_steps
        self.d_lr, self.g_lr, self.d_batch, self.g_batch = float(d_lr), float(g_lr), d_batch, g_batch
        self.patience, self.eval_every, self.seed = patience, eval_every, seed_arg(seed)
        self.progress, self.threads = progress, threads

    def fit(self, model: torch.nn.Module, train: Any, validator: Optional[Validator] = None) -> GANHistory:
        """Play the game on ``train`` (Interactions); returns the per-epoch history."""
        if not isinstance(model, GANPlayers):
            raise ValueError(f"model must implement the GANPlayers capability (gan_parameters, gan_setup, "
                             f"gan_begin_epoch, discriminator_epoch, generator_epoch), got {type(model).__name__}")
        if train.n_users != model.n_users or train.n_items != model.n_items:
            raise ValueError(f"train has {train.n_users} users x {train.n_items} items, the model "
                             f"{model.n_users} x {model.n_items}")
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads or previous)
        try:
            return self._fit(model, train, validator)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, model: Any, train: Any, validator: Optional[Validator]) -> GANHistory:
        gen = torch.Generator().manual_seed(self.seed)
        model.gan_setup(train)
        g_params, d_params = model.gan_parameters()
        g_opt = torch.optim.Adam(g_params, lr=self.g_lr)
        d_opt = torch.optim.Adam(d_params, lr=self.d_lr)
        history, keeper = GANHistory(), BestEpoch(self.patience)
        if self.pretrain_d_epochs:
            if not hasattr(model, "discriminator_pretrain_epoch"):
                raise ValueError(f"pretrain_d_epochs > 0 needs {type(model).__name__}.discriminator_pretrain_epoch")
            pre_opt = torch.optim.Adam(d_params, lr=self.d_lr)
            for _ in range(self.pretrain_d_epochs):
                history.pretrain_d_loss.append(model.discriminator_pretrain_epoch(pre_opt, self.d_batch, gen))
        show = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        bar = tqdm(range(self.epochs), desc=f"GAN {type(model).__name__}", disable=not show, leave=False)
        for epoch in bar:
            started = time.perf_counter()
            model.train()
            model.gan_begin_epoch(gen)
            d_loss = float(np.mean([model.discriminator_epoch(d_opt, self.d_batch, gen) for _ in range(self.d_steps)]))
            g_loss = float(np.mean([model.generator_epoch(g_opt, self.g_batch, gen) for _ in range(self.g_steps)]))
            if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                raise FloatingPointError(f"GAN losses became d={d_loss}, g={g_loss} at epoch {epoch}; lower the lrs")
            history.loss.append(g_loss)
            history.d_loss.append(d_loss)
            metric = float("nan")
            if validator is not None and ((epoch + 1) % self.eval_every == 0 or epoch == self.epochs - 1):
                metric = validate(model, validator)
                if keeper.offer(model, metric, history.best_metric, self.eval_every):
                    history.best_metric, history.best_epoch = metric, epoch
            history.metric.append(metric)
            history.seconds.append(time.perf_counter() - started)
            bar.set_postfix(g=f"{g_loss:.4f}", d=f"{d_loss:.4f}", val=f"{metric:.4f}")
            if keeper.exhausted:
                history.stopped_early = True
                break
        bar.close()
        restore_best(model, history, keeper.state)
        return history


__all__ = ["GANTrainer", "GANHistory", "GANPlayers"]

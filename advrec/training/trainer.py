"""Gradient training of Recommenders on BPR triples, with early stopping on a validation metric."""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import seed_arg
from ..data.sampling import BPRSampler
from ..models.base import NEG_KEY, POS_KEY, USER_KEY, Batch, Recommender
from ..models.capabilities import require_l2_penalty
from .bpr_engine import ENGINES, CompiledBPR, Plan, auto_threads, plan

if TYPE_CHECKING:
    from ..data.interactions import Interactions

LossFn = Callable[[Recommender, Batch], torch.Tensor]
Validator = Callable[[Recommender], float]

OPTIMIZERS = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


class EpochLog:
    """What every per-epoch fit record derives from its ``loss`` and ``seconds`` lists."""

    loss: List[float]
    seconds: List[float]

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @property
    def train_seconds(self) -> float:
        return float(sum(self.seconds))


class BestEpoch:
    """Early stopping's bookkeeping, shared by the trainers: the best validation epoch's weights
    and the epochs trained since it."""

    def __init__(self, patience: Optional[int]) -> None:
        self.patience = patience
        self.state: Optional[Dict[str, torch.Tensor]] = None
        self.since = 0

    def offer(self, model: torch.nn.Module, metric: float, best: float, epochs: int) -> bool:
        """Keep the weights if ``metric`` beats ``best`` (or nothing is kept yet); ``epochs``: how
        many epochs this validation covers. True when it was kept."""
        if self.state is None or metric > best:
            self.state, self.since = copy.deepcopy(model.state_dict()), 0
            return True
        self.since += epochs
        return False

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.state is not None and self.since >= self.patience


def validate(model: torch.nn.Module, validator: Callable[[torch.nn.Module], float]) -> float:
    """The validator's number for the model in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return float(validator(model))


def close_epoch(model: torch.nn.Module, history: "History", keeper: BestEpoch, loss: float, epoch: int,
                validator: Optional[Callable[[torch.nn.Module], float]], eval_every: int, started: float,
                bar: Any, last: bool = False) -> bool:
    """Record one epoch of a ranking trainer (loss, validation every ``eval_every`` epochs and
    after the ``last`` one, so a budget that is not a multiple of ``eval_every`` still ends
    validated, the best weights kept, seconds since ``started``); True when patience has run out."""
    history.loss.append(loss)
    if not np.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss} at epoch {epoch}; lower lr")
    metric = float("nan")
    if validator is not None and ((epoch + 1) % eval_every == 0 or last):
        metric = validate(model, validator)
        if keeper.offer(model, metric, history.best_metric, (epoch + 1) % eval_every or eval_every):
            history.best_metric, history.best_epoch = metric, epoch
    history.metric.append(metric)
    history.seconds.append(time.perf_counter() - started)
    bar.set_postfix(loss=f"{loss:.4f}", val=f"{metric:.4f}")
    history.stopped_early = keeper.exhausted
    return history.stopped_early


def restore_best(model: torch.nn.Module, history: "EpochLog",
                 best_state: Optional[Dict[str, torch.Tensor]]) -> "EpochLog":
    """End of an early-stopped fit: load the best weights (or, with no validation, call the last
    epoch the best) and leave the model in eval mode; returns ``history``."""
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        history.best_epoch = history.epochs - 1
    model.eval()
    return history


@dataclass
class History(EpochLog):
    """Per-epoch record of a fit: loss, validation metric, seconds; and the best epoch kept."""

    loss: List[float] = field(default_factory=list)
    metric: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("nan")
    stopped_early: bool = False
    engine: str = "torch"  # which engine ran the fit: "compiled" or "torch"


def _check_negative_items(items) -> np.ndarray:
    """Shape, dtype and sign checked here; the upper bound (n_items) is checked at fit."""
    arr = np.asarray(items)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"negative_items must be a non-empty 1-D array of item ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"negative_items must be an integer array of item ids, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"negative_items must be >= 0, got {arr.min()}")
    return np.unique(arr.astype(np.int64))


class Trainer:
    """Trains a model on BPR triples drawn from the training interactions.

    The loss is ``model.regularized_loss(batch, l2)`` by default; ``loss_fn(model, batch)`` is
    the hook for defenses (e.g. an adversarial regulariser adds ``lambda * model.loss(batch,
    delta*)``), to which ``l2 * model.l2_penalty(batch)`` is added; ``validator(model) -> float`` (higher is better)
    drives early stopping: training stops after ``patience`` epochs without improvement and the
    best weights are restored. Same ``seed``, same numbers.

    What the model needs: ``loss(batch)`` (batches hold ``"user"``, ``"pos"``, ``"neg"``: one
    BPR triple per training interaction, see ``advrec.models.BATCH_KEYS``), ``n_users`` and
    ``n_items``; with ``l2 > 0`` also ``l2_penalty(batch)`` (the ``L2Penalty`` capability),
    unless it overrides ``regularized_loss`` and no ``loss_fn`` is given. A model without it
    trains with ``l2=0`` (and ``weight_decay`` if it wants regularisation).

    ``engine``: ``"auto"`` (default) trains on the compiled engine (``advrec.training.bpr_engine``:
    sampling stays the sampler's, every mini-batch's loss, gradient and optimiser step run in the
    core, deterministic for any thread count) when it applies: a model with the ``BPRTables``
    capability (``MF``) on the CPU, with the plain loss or ``AdversarialRegularizer`` with
    ``FGSM`` (AMF); otherwise the torch path. ``"compiled"`` requires the engine (ValueError
    saying why not), ``"torch"`` forces the reference path. ``History.engine`` says which ran.

    ``negative_items``: optional 1-D integer array of the item ids negatives may be drawn from
    (the sampler's ``candidates``; duplicates are ignored). AMR's cold-start protocol needs it:
    cold test items must not be negatives either, or training learns that they exist
    (``advrec.data.cold_item_split(...).warm_items``). ``None``: every item, as before.
    """

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 1e-3,
        epochs: int = 100,
        batch_size: int = 2048,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        patience: Optional[int] = 10,
        eval_every: int = 1,
        seed: int = 0,
        device: str = "cpu",
        progress: Optional[bool] = None,
        loss_fn: Optional[LossFn] = None,
        threads: Optional[int] = None,
        negative_items: Optional[np.ndarray] = None,
        engine: str = "auto",
    ):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if patience is not None and (not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        for name, v in (("lr", lr), ("l2", l2), ("weight_decay", weight_decay)):
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        if negative_items is not None:
            negative_items = _check_negative_items(negative_items)
        if not isinstance(engine, str) or engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.optimizer_name = optimizer.lower()
        self.lr, self.epochs, self.batch_size = float(lr), epochs, batch_size
        self.l2, self.weight_decay = float(l2), float(weight_decay)
        self.patience, self.eval_every, self.seed = patience, eval_every, seed_arg(seed)
        self.device = torch.device(device)
        self.progress = progress
        self.loss_fn = loss_fn
        self.threads = threads
        self.negative_items: Optional[np.ndarray] = negative_items

    def fit(self, model: Recommender, train: "Interactions", validator: Optional[Validator] = None) -> History:
        """Train ``model`` in place on ``train`` (an ``advrec.data.Interactions``).

        ``threads`` sets the compiled engine's threads and torch's intra-op thread count for the
        fit (torch's is restored after). ``None`` (default) picks by measurement: the torch path
        one thread (bit-reproducible: at 2 threads torch's CPU kernels gave different weights
        from run to run, and small embedding models, dominated by per-op overhead, were as fast
        or faster on one); the compiled engine one thread for tables under
        ``bpr_engine.TWO_THREADS_FROM`` entries, two above (same bits at any count).
        """
        model.to(self.device)  # before planning: the engine trains the tables where they will live
        compiled = self._compiled_engine(model)
        threads = self.threads
        if threads is None:
            threads = 1 if compiled is None else auto_threads(int(compiled.P.shape[0] + compiled.Q.shape[0]),
                                                              int(compiled.P.shape[1]))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return self._fit(model, train, validator, compiled, threads)
        finally:
            torch.set_num_threads(previous_threads)

    def _compiled_engine(self, model: Recommender) -> Optional[Plan]:
        """The compiled engine's plan for ``model``, or None for the torch path."""
        if self.engine == "torch":
            return None
        found = plan(model, self.loss_fn, self.device)
        if isinstance(found, Plan):
            return found
        if self.engine == "compiled":
            raise ValueError(f"engine='compiled' cannot train this model: {found}; use engine='auto' "
                             "or 'torch' for the torch path")
        return None

    def _fit(self, model: Recommender, train: "Interactions", validator: Optional[Validator],
             compiled: Optional[Plan], threads: int) -> History:
        if train.n_users != model.n_users or train.n_items != model.n_items:
            raise ValueError(f"train has {train.n_users} users x {train.n_items} items but the model "
                             f"was built for {model.n_users} x {model.n_items}")
        own_regularized = getattr(type(model), "regularized_loss", Recommender.regularized_loss) \
            is not Recommender.regularized_loss
        if self.l2 > 0 and (self.loss_fn is not None or not own_regularized):
            require_l2_penalty(model, f"Trainer(l2={self.l2})")
        if len(train) == 0:
            raise ValueError("train has no interactions")
        if self.negative_items is not None and self.negative_items.max() >= train.n_items:
            raise ValueError(f"negative_items must lie in [0, n_items={train.n_items}) of train, "
                             f"got max {self.negative_items.max()}")
        indptr, indices = train.to_csr()
        try:
            sampler = BPRSampler(indptr, indices, train.n_items, seed=self.seed,
                                 candidates=self.negative_items)
        except ValueError as e:
            if "candidates" not in str(e):
                raise
            raise ValueError(f"negative_items (the sampler's candidates): {e}") from None
        torch.manual_seed(self.seed)
        model.to(self.device)
        history, keeper = History(), BestEpoch(self.patience)
        runner: Optional[CompiledBPR] = None
        if compiled is not None:
            runner = CompiledBPR(compiled, self.optimizer_name, self.lr, self.weight_decay, self.l2,
                                 self.batch_size, threads)
            history.engine = "compiled"
        else:
            opt = OPTIMIZERS[self.optimizer_name](model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = tqdm(range(self.epochs), desc=f"train {type(model).__name__}", disable=not show, leave=False)
        for epoch in bar:
            start = time.perf_counter()
            model.train()
            if runner is not None:
                if close_epoch(model, history, keeper, runner.epoch(*sampler.epoch()), epoch, validator,
                               self.eval_every, start, bar, last=epoch == self.epochs - 1):
                    break
                continue
            users, pos, neg = (torch.from_numpy(a).to(self.device) for a in sampler.epoch())
            total, n = 0.0, users.shape[0]
            for s in range(0, n, self.batch_size):
                batch = {USER_KEY: users[s:s + self.batch_size], POS_KEY: pos[s:s + self.batch_size],
                         NEG_KEY: neg[s:s + self.batch_size]}
                if self.loss_fn is None:
                    loss = model.regularized_loss(batch, self.l2)
                else:
                    loss = self.loss_fn(model, batch)
                    if self.l2 > 0:
                        loss = loss + self.l2 * model.l2_penalty(batch)  # checked before the first epoch
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * batch["user"].shape[0]
            if close_epoch(model, history, keeper, total / n, epoch, validator, self.eval_every, start, bar,
                           last=epoch == self.epochs - 1):
                break
        bar.close()
        return restore_best(model, history, keeper.state)

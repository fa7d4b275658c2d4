"""Training binary classifiers over CSR instances (the FM of Liu et al., SIGIR 2020, §3.3, §4.1.4).

Adam on shuffled mini-batches of an `InstanceMatrix`, early stopping on validation accuracy, best
weights restored. The loss is ``model.loss(batch)`` (logistic, eq. 12) unless a ``loss_fn`` is
given: robust training (RFM-1's worst-case loss, FM-RT's eq. 13) plugs in there. A batch is a
dict of torch tensors ``indptr``, ``indices``, ``labels`` (float ±1) and ``rows`` (the instances'
row numbers in the training matrix, for looking up per-instance precomputed values).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._checks import seed_arg
from ..data.fields import InstanceMatrix
from .trainer import BestEpoch, EpochLog, restore_best

__all__ = ["ClassifierTrainer", "ClassifierHistory", "accuracy", "predict", "evaluate",
           "ClassifierLossFn"]

Batch = Dict[str, torch.Tensor]
ClassifierLossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass
class ClassifierHistory(EpochLog):
    """Per-epoch training loss (incl. any l2 term), validation accuracy and log-loss, seconds;
    the epoch whose weights were kept."""

    loss: List[float] = field(default_factory=list)
    valid_accuracy: List[float] = field(default_factory=list)
    valid_logloss: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    best_epoch: int = -1
    best_accuracy: float = float("nan")
    stopped_early: bool = False


def _check_data(name: str, data: InstanceMatrix, model: nn.Module) -> None:
    if not isinstance(data, InstanceMatrix):
        raise ValueError(f"{name} must be an advrec.data.InstanceMatrix, got {type(data).__name__}")
    n = getattr(model, "n_features", None)
    if n is not None and data.n_features != n:
        raise ValueError(f"{name} has {data.n_features} features but the model was built for {n}")


def _row_slices(data: InstanceMatrix, batch_size: int):
    """Consecutive row blocks as (indptr, indices) tensors, without copying the rows."""
    for a in range(0, len(data), batch_size):
        b = min(a + batch_size, len(data))
        lo, hi = data.indptr[a], data.indptr[b]
        yield (a, b, torch.from_numpy(data.indptr[a:b + 1] - lo),
               torch.from_numpy(data.indices[lo:hi]))


def predict(model: nn.Module, data: InstanceMatrix, batch_size: int = 16384) -> np.ndarray:
    """Scores f(x) of every instance, float32 [m]; the predicted label is +1 where f(x) > 0."""
    _check_data("data", data, model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    out = np.empty(len(data), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for a, b, ptr, ind in _row_slices(data, batch_size):
                out[a:b] = model(ptr, ind).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def evaluate(model: nn.Module, data: InstanceMatrix, batch_size: int = 16384) -> dict:
    """{"accuracy", "logloss"} of the model on data (f(x) = 0 counts as label -1)."""
    scores = predict(model, data, batch_size)
    y = data.labels.astype(np.float32)
    if len(y) == 0:
        return {"accuracy": float("nan"), "logloss": float("nan")}
    acc = float(np.mean(np.where(scores > 0, 1, -1) == data.labels))
    logloss = float(F.softplus(torch.from_numpy(-y * scores)).double().mean())
    return {"accuracy": acc, "logloss": logloss}


def accuracy(model: nn.Module, data: InstanceMatrix, batch_size: int = 16384) -> float:
    """Share of instances whose predicted label (+1 iff f(x) > 0) equals the true one."""
    return evaluate(model, data, batch_size)["accuracy"]


class ClassifierTrainer:
    """Adam on shuffled mini-batches, early stopping on validation accuracy (paper §4.1.4).

    ``l2`` adds ``l2 * (‖w_A‖² + ‖V_A‖²)`` for A the distinct features active in the batch (the
    model's ``l2_penalty``); ``weight_decay`` is Adam's, on every parameter. Training stops after
    ``patience`` epochs without a better validation accuracy (None: never) and keeps the best
    epoch's weights. ``threads`` sets torch's intra-op threads for the fit (restored after);
    ``None`` (default) picks one: same seed, same numbers.
    """

    def __init__(self, lr: float = 1e-3, epochs: int = 100, batch_size: int = 2048,
                 l2: float = 0.0, weight_decay: float = 0.0, patience: Optional[int] = 5,
                 seed: int = 0, progress: Optional[bool] = None, threads: Optional[int] = None):
        for name, v in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                     or patience < 1):
            raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        for name, v in (("lr", lr), ("l2", l2), ("weight_decay", weight_decay)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and np.isfinite(v)
                                           and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        seed = seed_arg(seed)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.lr, self.epochs, self.batch_size = float(lr), epochs, batch_size
        self.l2, self.weight_decay = float(l2), float(weight_decay)
        self.patience, self.seed, self.progress, self.threads = patience, seed, progress, threads

    def fit(self, model: nn.Module, train: InstanceMatrix, valid: Optional[InstanceMatrix] = None,
            loss_fn: Optional[ClassifierLossFn] = None) -> ClassifierHistory:
        """Train ``model`` in place; returns the per-epoch history (best weights restored)."""
        _check_data("train", train, model)
        if valid is not None:
            _check_data("valid", valid, model)
        if len(train) == 0:
            raise ValueError("train has no instances")
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable(model, batch) -> Tensor, got {loss_fn!r}")
        previous = torch.get_num_threads()
        torch.set_num_threads(1 if self.threads is None else self.threads)
        try:
            return self._fit(model, train, valid, loss_fn)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, model: nn.Module, train: InstanceMatrix, valid: Optional[InstanceMatrix],
             loss_fn: Optional[ClassifierLossFn]) -> ClassifierHistory:
        torch.manual_seed(self.seed)  # for any randomness inside loss_fn
        gen = torch.Generator().manual_seed(self.seed)
        indptr = torch.from_numpy(train.indptr)
        indices = torch.from_numpy(train.indices)
        labels = torch.from_numpy(train.labels.astype(np.float32))
        lengths = indptr[1:] - indptr[:-1]
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        history, keeper = ClassifierHistory(), BestEpoch(self.patience)
        m = len(train)
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = tqdm(range(self.epochs), desc=f"train {type(model).__name__}", disable=not show,
                   leave=False)
        for epoch in bar:
            start = time.perf_counter()
            model.train()
            perm = torch.randperm(m, generator=gen)
            total = 0.0
            for s in range(0, m, self.batch_size):
                rows = perm[s:s + self.batch_size]
                batch = _gather(indptr, indices, lengths, labels, rows)
                loss = model.loss(batch) if loss_fn is None else loss_fn(model, batch)
                if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                    raise ValueError("loss_fn must return a scalar tensor")
                if self.l2 > 0:
                    loss = loss + self.l2 * model.l2_penalty(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * rows.numel()
            history.loss.append(total / m)
            if not np.isfinite(history.loss[-1]):
                raise FloatingPointError(f"training loss became {history.loss[-1]} at epoch "
                                         f"{epoch}; lower lr")
            acc = logloss = float("nan")
            if valid is not None and len(valid):
                ev = evaluate(model, valid)
                acc, logloss = ev["accuracy"], ev["logloss"]
                if keeper.offer(model, acc, history.best_accuracy, 1):
                    history.best_accuracy, history.best_epoch = acc, epoch
            history.valid_accuracy.append(acc)
            history.valid_logloss.append(logloss)
            history.seconds.append(time.perf_counter() - start)
            bar.set_postfix(loss=f"{history.loss[-1]:.4f}", acc=f"{acc:.4f}")
            if keeper.exhausted:
                history.stopped_early = True
                break
        bar.close()
        return restore_best(model, history, keeper.state)


def _gather(indptr: torch.Tensor, indices: torch.Tensor, lengths: torch.Tensor,
            labels: torch.Tensor, rows: torch.Tensor) -> Batch:
    """The CSR batch of ``rows`` (vectorised row gather)."""
    ln = lengths[rows]
    ptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
    torch.cumsum(ln, 0, out=ptr[1:])
    pos = torch.repeat_interleave(indptr[rows] - ptr[:-1], ln) + torch.arange(int(ptr[-1]))
    return {"indptr": ptr, "indices": indices[pos], "labels": labels[rows], "rows": rows}

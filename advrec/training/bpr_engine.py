"""The compiled engine of ``Trainer`` for BPR-MF and AMF (issue 18): whole epochs in the core.

The torch path spends a BPR-MF epoch on per-step dispatch and unfused passes over the tables
(about 100 ms on ML-100K where implicit takes 10-17); ``advrec.kernels.mf_bpr_train_epoch`` runs
the same mini-batches (the sampler's triples, in the sampler's order) with the same loss and
torch's optimiser rules in one call per epoch. ``Trainer(engine="auto")`` takes it whenever
``plan`` finds it applies; otherwise, and with ``engine="torch"``, the torch path runs and stays
the reference the engine is tested against.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np
import torch

from ..models.capabilities import BPRTables

ENGINES = ("auto", "compiled", "torch")

# Tables (user + item rows x dim) from which threads=None gives the compiled engine two threads
# (bench/README.md, "BPR-MF training against implicit and Cornac": one thread is faster below, on
# an idle 2-core machine).
TWO_THREADS_FROM = 2_000_000


@runtime_checkable
class CompiledAdversary(Protocol):
    """A ``loss_fn`` the compiled engine can run itself: ``compiled_adversary(model)`` returns
    ``{"user": bool, "item": bool, "norm": str, "eps": float, "lam": float}`` (APR's FGSM term on
    ``model``'s tables) or ``None`` where it cannot (another attack, another model). Built-in:
    ``AdversarialRegularizer`` with an ``FGSM`` attack."""

    def compiled_adversary(self, model: Any) -> Optional[dict]: ...


@dataclass(frozen=True)
class Plan:
    """What the compiled engine trains: the two tables, and APR's adversary (or None)."""

    P: torch.Tensor
    Q: torch.Tensor
    adversary: Optional[dict]


def plan(model: Any, loss_fn: Any, device: torch.device) -> Union[Plan, str]:
    """A ``Plan`` when the compiled engine can train ``model`` with ``loss_fn``; otherwise the
    reason it cannot (``Trainer(engine="compiled")`` raises it)."""
    if device.type != "cpu":
        return f"the compiled engine runs on the CPU, the Trainer's device is {device}"
    if not isinstance(model, BPRTables):
        return (f"{type(model).__name__} has no bpr_tables() (the BPRTables capability, "
                "advrec.models.capabilities)")
    tables = model.bpr_tables()
    if tables is None:
        return f"{type(model).__name__}.bpr_tables() returned None (not plain BPR-MF over two tables)"
    P, Q = tables
    for name, t in (("user", P), ("item", Q)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous() or t.dim() != 2:
            return (f"the {name} table must be a contiguous 2-D float32 CPU tensor, got "
                    f"{str(t.dtype)[6:]} on {t.device}")
    adversary = None
    if loss_fn is not None:
        if not isinstance(loss_fn, CompiledAdversary):
            return f"loss_fn {type(loss_fn).__name__} is not one the engine computes (APR with FGSM)"
        adversary = loss_fn.compiled_adversary(model)
        if adversary is None:
            return f"{loss_fn!r} is not one the engine computes (APR with an FGSM attack on this model)"
    return Plan(P, Q, adversary)


def auto_threads(n_rows: int, dim: int) -> int:
    """Threads for ``threads=None``: one below ``TWO_THREADS_FROM`` table entries, else two
    (where the machine has them); the result is the same bits either way."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if n_rows * dim >= TWO_THREADS_FROM and cores >= 2 else 1


class CompiledBPR:
    """Optimiser state and hyper-parameters of one fit on the compiled engine; ``epoch`` trains
    the plan's tables in place (the model's own parameters: validation reads them, no copies)."""

    def __init__(self, plan: Plan, optimizer: str, lr: float, weight_decay: float, l2: float,
                 batch_size: int, threads: int):
        from .. import kernels  # the core loads only when the engine is taken

        self._kernel = kernels.mf_bpr_train_epoch
        self.plan, self.optimizer = plan, optimizer
        self.lr, self.weight_decay, self.l2, self.batch_size = lr, weight_decay, l2, batch_size
        self.threads = threads
        P, Q = plan.P.detach(), plan.Q.detach()
        shapes = {"adam": (P, P, Q, Q), "adagrad": (P, Q), "sgd": ()}[optimizer]
        self.state = [np.zeros(tuple(t.shape), dtype=np.float32) for t in shapes]
        self.step = 0

    def epoch(self, users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
        """One epoch over the triples in order; returns its loss (as the torch path records it)."""
        with torch.no_grad():
            loss, self.step = self._kernel(
                self.plan.P.detach(), self.plan.Q.detach(), users, pos, neg,
                batch_size=self.batch_size, l2=self.l2, optimizer=self.optimizer, lr=self.lr,
                weight_decay=self.weight_decay, state=self.state, step=self.step,
                adversary=self.plan.adversary, threads=self.threads)
        return loss

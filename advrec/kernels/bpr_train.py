"""One BPR-MF training epoch in the compiled core (``csrc/train/bpr_train.{h,cpp}``; CPU only,
issue 18).

The torch path spends a BPR-MF epoch on per-step dispatch, unfused gathers and an optimiser that
walks every parameter in several passes; the arithmetic is a tenth of a GFLOP. The kernel fuses,
per mini-batch, the loss gradient, the per-batch L2 term, optionally APR's adversarial term
(AMF), and the optimiser step, with torch's update rules, and is deterministic for any number of
threads. ``advrec.training.Trainer`` takes it by default for models with the ``BPRTables``
capability; the torch path stays the reference it is tested against.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._args import is_tensor, positive_int
from ._native import _core
from .bpr import _ids, _table

__all__ = ["mf_bpr_train_epoch", "ADV_NORMS", "TRAIN_OPTIMIZERS"]

TRAIN_OPTIMIZERS = ("adam", "adagrad", "sgd")
ADV_NORMS = ("l2", "linf", "l2-step-linf-clip")
MAX_THREADS = 256


def _writable(x: Any, name: str) -> np.ndarray:
    """A float32 C-contiguous array sharing memory with ``x`` (updated in place): never a copy."""
    if is_tensor(x) and x.device.type != "cpu":
        raise ValueError(f"{name} is on {x.device}; the compiled BPR epoch runs on the CPU only")
    contiguous = x.is_contiguous() if is_tensor(x) else getattr(getattr(x, "flags", None), "c_contiguous", True)
    if not contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    return _table(x, name)  # dtype and shape checked; a view of contiguous input


def mf_bpr_train_epoch(P: Any, Q: Any, users: Any, pos: Any, neg: Any, *, batch_size: int,
                       l2: float = 0.0, optimizer: str = "adam", lr: float = 1e-3,
                       weight_decay: float = 0.0, betas: Tuple[float, float] = (0.9, 0.999),
                       eps: Optional[float] = None, lr_decay: float = 0.0,
                       state: Sequence[Any] = (), step: int = 0,
                       adversary: Optional[dict] = None, threads: int = 1) -> Tuple[float, int]:
    """Train ``P`` [n_users, dim] and ``Q`` [n_items, dim] in place over one epoch of triples.

    The triples ``(users, pos, neg)`` are taken in order, in mini-batches of ``batch_size``; each
    batch minimises ``mean softplus(-<p_u, q_i - q_j>) + l2 * sum(|p_u|² + |q_i|² + |q_j|²) / B``
    (``MF.regularized_loss``), plus ``lam * loss(P + dP, Q + dQ)`` with ``adversary={"user":
    bool, "item": bool, "norm": "l2"|"linf"|"l2-step-linf-clip", "eps": float, "lam": float}``
    (APR/AMF: ``d`` the FGSM step of the clean loss on every row the batch touches, held
    constant), and takes one ``optimizer`` step (torch's Adam, Adagrad or SGD rules, dense:
    every row, every batch). ``state``: the optimiser's float32 arrays, updated in place (Adam:
    ``[m_P, v_P, m_Q, v_Q]``; Adagrad: ``[sum_P, sum_Q]``; SGD: none); ``step``: optimiser steps
    taken so far. ``eps``: torch's default per optimiser (Adam 1e-8, Adagrad 1e-10) when None.

    Returns ``(loss, step)``: the epoch's loss (``sum_b loss_b * B_b / n``, as the torch path
    records it) and the new step count. Bit-identical for any ``threads``. Raises ValueError for
    a wrong dtype, shape, layout, device or hyper-parameter, IndexError for an id out of range.
    """
    if not isinstance(optimizer, str) or optimizer not in TRAIN_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {TRAIN_OPTIMIZERS}, got {optimizer!r}")
    nt = positive_int(threads, "threads")
    if nt > MAX_THREADS:
        raise ValueError(f"threads must be at most {MAX_THREADS}, got {nt}")
    b = positive_int(batch_size, "batch_size")
    if eps is None:
        eps = 1e-10 if optimizer == "adagrad" else 1e-8
    adv = dict(adversary or {})
    unknown = set(adv) - {"user", "item", "norm", "eps", "lam"}
    if unknown:
        raise ValueError(f"adversary has unknown keys {sorted(unknown)}; "
                         "expected user, item, norm, eps, lam")
    norm = adv.get("norm", "l2")
    if norm not in ADV_NORMS:
        raise ValueError(f"adversary['norm'] must be one of {ADV_NORMS}, got {norm!r}")
    Pa, Qa = _writable(P, "P"), _writable(Q, "Q")
    states = [_writable(s, f"state[{k}]") for k, s in enumerate(state)]
    loss, new_step = _core.mf_bpr_train_epoch(
        Pa, Qa, _ids(users, "users"), _ids(pos, "pos"), _ids(neg, "neg"), b, float(l2), optimizer,
        float(lr), float(weight_decay), float(betas[0]), float(betas[1]), float(eps),
        float(lr_decay), states, int(step), bool(adv.get("user", False)),
        bool(adv.get("item", False)), norm, float(adv.get("eps", 0.0)), float(adv.get("lam", 1.0)),
        nt, False)
    return float(loss), int(new_step)

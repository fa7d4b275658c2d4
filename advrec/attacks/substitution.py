"""Item-substitution attacks on sequential recommenders (Tan et al., section 5.6).

The perturbation is a real item replacing a real item, not noise on an embedding, so a model
cannot defend by inflating embedding norms. For each attacked row the adversary takes one
gradient step on the embeddings of the items to replace, raising the BCE loss of the row's
target item, then snaps each stepped embedding back to an item: the one closest to it (cosine)
among the ``pool_size`` items most similar to the original. Restricting the choice to that pool
keeps the change "small", a plausible misclick rather than a different history.

Evaluation is the caller's: the attacked sequences replace the histories the model scores::

    from advrec.attacks import substitute_items, target_items
    from advrec.data.sequences import user_sequences
    from advrec.evaluation import evaluate

    seqs = user_sequences(split.train, model.max_len, split.valid)  # what a test prediction sees
    sub = substitute_items(model, seqs, target_items(split.test), where="last", pool_size=20)
    with model.using_histories(seqs):
        clean = evaluate(model, split.test, exclude=(split.train, split.valid))
    with model.using_histories(sub.sequences):
        attacked = evaluate(model, split.test, exclude=(split.train, split.valid))
    drop = 1 - attacked.summary()["nDCG@10"] / clean.summary()["nDCG@10"]  # likewise "HR@10"
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import positive_int
from ..data.interactions import Interactions
from ..data.sequences import PAD, check_sequences
from ..kernels import topk_dot
from ..models.sequential import SequentialRecommender

POSITIONS = ("first", "middle", "last")
Where = Union[str, int]

__all__ = ["POSITIONS", "Substitution", "substitution_columns", "substitute_items", "item_pools",
           "target_items"]

_CHOICE_ELEMENTS = 1 << 22  # floats per chunk of gathered pool embeddings (16 MiB in float32)


@dataclass(frozen=True, eq=False)
class Substitution:
    """The outcome of ``substitute_items``.

    ``original[j]`` and ``substitute[j]`` belong to the j-th True entry of ``replaced`` in
    row-major order (``np.nonzero(replaced)``).
    """

    sequences: np.ndarray
    replaced: np.ndarray
    original: np.ndarray
    substitute: np.ndarray

    @property
    def n_replaced(self) -> int:
        return int(self.original.shape[0])


def _check_where(where: Where, T: int) -> Where:
    if isinstance(where, str):
        if where not in POSITIONS:
            raise ValueError(f"where must be one of {POSITIONS} or an int K in 1..{T}, got {where!r}")
        return where
    if isinstance(where, (bool, np.bool_)) or not isinstance(where, (int, np.integer)) or not 1 <= where <= T:
        raise ValueError(f"where must be one of {POSITIONS} or an int K in 1..{T} (the last K items), "
                         f"got {where!r}")
    return int(where)


def _columns(seqs: np.ndarray, where: Where) -> np.ndarray:
    m, T = seqs.shape
    lengths = (seqs != PAD).sum(axis=1)
    cols = np.arange(T)[None, :]
    start = (T - lengths)[:, None]  # column of each row's first item
    if where == "first":
        pick = cols == start
    elif where == "middle":
        pick = cols == start + (lengths[:, None] - 1) // 2
    elif where == "last":
        pick = np.broadcast_to(cols == T - 1, (m, T))
    else:
        pick = cols >= T - np.minimum(where, lengths)[:, None]
    return pick & (lengths[:, None] > 0)


def substitution_columns(sequences: np.ndarray, where: Where) -> np.ndarray:
    """Which positions of right-aligned ``sequences`` [m, T] an attack at ``where`` replaces.

    ``"first"``: each row's oldest item. ``"middle"``: the item at index ``(len - 1) // 2`` of
    the row's ``len`` items (oldest = index 0), i.e. the lower middle when ``len`` is even, so
    a row of 1 item has first = middle = last. ``"last"``: column ``T - 1`` (the most recent
    item). An int ``K`` in ``1..T``: the last ``K`` items, all of them when the row is shorter.
    Padding is never selected; all-padding rows select nothing. Returns bool [m, T].
    """
    seqs = check_sequences(sequences, "sequences")
    return _columns(seqs, _check_where(where, seqs.shape[1]))


def _check_targets(targets, m: int, n_items: int) -> np.ndarray:
    arr = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
    if arr.shape != (m,):
        raise ValueError(f"targets must have shape ({m},) (one per sequence), got {arr.shape}")
    if m and arr.dtype.kind not in "iu":
        raise ValueError(f"targets must hold integer item ids (-1: row not attacked), got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if m and (arr.min() < -1 or arr.max() >= n_items):
        bad = int(arr.min()) if arr.min() < -1 else int(arr.max())
        raise IndexError(f"targets holds {bad}, outside [0, n_items={n_items}) (or -1: row not attacked)")
    return arr


def item_pools(model: SequentialRecommender, items: np.ndarray, pool_size: int) -> np.ndarray:
    """The ``pool_size`` items most cosine-similar to each of ``items``, itself excluded.

    int64 [len(items), pool_size], most similar first, ties to the lower item id (the top-K
    kernel's rule); the similarity is between rows of the model's item table.
    """
    if not isinstance(model, SequentialRecommender):
        raise ValueError(f"model must be a SequentialRecommender, got {type(model).__name__}")
    items = np.asarray(items)
    if items.ndim != 1 or (items.size and items.dtype.kind not in "iu"):
        raise ValueError(f"items must be a 1-D array of item ids, got shape {items.shape} dtype {items.dtype}")
    items = items.astype(np.int64)
    if items.size and (items.min() < 0 or items.max() >= model.n_items):
        raise IndexError(f"items must lie in [0, n_items={model.n_items}), got range "
                         f"[{items.min()}, {items.max()}]")
    pool_size = positive_int(pool_size, "pool_size")
    if pool_size >= model.n_items:
        raise ValueError(f"pool_size must be < n_items={model.n_items} (the original is never in its pool), "
                         f"got {pool_size}")
    return _pools(model, items, pool_size)


def _pools(model: SequentialRecommender, items: np.ndarray, k: int) -> np.ndarray:
    with torch.no_grad():
        unit = F.normalize(model.item.detach().float(), dim=1)
        query = unit[torch.as_tensor(items, device=unit.device)]
    self_csr = (np.arange(len(items) + 1, dtype=np.int64), items)  # row r excludes items[r] itself
    idx, _ = topk_dot(query, unit, k, exclude=self_csr)
    return np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)


def _choose(stepped: torch.Tensor, cand: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Per row: the candidate (``cand`` >= 0) whose unit embedding is closest to ``stepped``.

    Ties go to the lower item id. Rows without a candidate get -1.
    """
    n, P = cand.shape
    out = torch.empty(n, dtype=torch.long, device=cand.device)
    target = F.normalize(stepped, dim=1)
    chunk = max(1, _CHOICE_ELEMENTS // max(1, P * unit.shape[1]))
    big = torch.iinfo(torch.long).max
    for s in range(0, n, chunk):
        c = cand[s:s + chunk]
        cos = torch.einsum("nd,npd->np", target[s:s + chunk], unit[c.clamp(min=0)])
        cos = cos.masked_fill(c < 0, -math.inf)
        best = cos.max(dim=1, keepdim=True).values
        tied = (cos == best) & (c >= 0)
        pick = torch.where(tied, c, torch.full_like(c, big)).min(dim=1).values
        out[s:s + chunk] = torch.where(pick == big, torch.full_like(pick, -1), pick)
    return out


def substitute_items(model: SequentialRecommender, sequences: np.ndarray, targets: np.ndarray,
                     where: Where = "last", pool_size: int = 20, step: float = 1.0,
                     batch_size: int = 1024) -> Substitution:
    """Replace the items at ``where`` of every attacked row with adversarially chosen real items.

    ``sequences`` [m, model.max_len]: right-aligned histories (padding -1). ``targets`` int64
    [m]: the item each row's prediction is attacked on (its test item); -1 leaves the row alone.
    ``where``: see ``substitution_columns``.

    Per row, the attacker's loss is ``-log sigma(w . e_target)``, ``w`` the user embedding (the
    last column's state, model in eval mode). ``g``, its gradient with respect to the sequence
    embedding at a replaced position, steps that embedding: ``e' = e + step * g / ||g||``
    (``e' = e`` where ``g = 0``); all positions of a row are stepped from the same clean
    forward pass. The substitute is the item of the original's pool closest to ``e'`` by cosine
    (ties to the lower item id). The pool is the ``pool_size`` items most cosine-similar to the
    original (itself excluded, ties to the lower id) with the row's target removed: when the
    target is among them, the next most similar item takes its place, so the model is never
    handed its answer. A position whose pool is empty (only when ``n_items`` is 2 and the
    other item is the target) is left unreplaced. ``step = 0`` picks the first pool member.

    Deterministic: same inputs, same outputs. The model is returned to its train/eval mode
    and its parameters get no gradient.
    """
    if not isinstance(model, SequentialRecommender):
        raise ValueError(f"model must be a SequentialRecommender, got {type(model).__name__}")
    seqs = check_sequences(sequences, "sequences", model.n_items)
    if seqs.shape[1] != model.max_len:
        raise ValueError(f"sequences must have shape [m, max_len={model.max_len}], got {seqs.shape}")
    m, T = seqs.shape
    tgt = _check_targets(targets, m, model.n_items)
    where = _check_where(where, T)
    pool_size = positive_int(pool_size, "pool_size")
    if pool_size >= model.n_items:
        raise ValueError(f"pool_size must be < n_items={model.n_items} (the original is never in its pool), "
                         f"got {pool_size}")
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.integer, np.floating)) \
            or not math.isfinite(step) or step < 0:
        raise ValueError(f"step must be a finite number >= 0, got {step!r}")
    step = float(step)
    batch_size = positive_int(batch_size, "batch_size")

    mask = _columns(seqs, where) & (tgt >= 0)[:, None]
    rows_at, cols_at = np.nonzero(mask)  # row-major
    original = seqs[rows_at, cols_at]
    substitute = np.full(original.shape, PAD, dtype=np.int64)
    if original.size:
        # one pool per distinct original, one spare member in case the row's target is in it
        distinct, inverse = np.unique(original, return_inverse=True)
        spare = min(pool_size + 1, model.n_items - 1)
        pools = _pools(model, distinct, spare)
        device = model.item.device
        was_training = model.training
        model.eval()
        try:
            unit = F.normalize(model.item.detach().float(), dim=1)
            pools_t = torch.as_tensor(pools, device=device)
            attacked = np.flatnonzero(mask.any(axis=1))
            offsets = np.searchsorted(rows_at, attacked)  # first position of each attacked row
            for s in range(0, len(attacked), batch_size):
                rows = attacked[s:s + batch_size]
                lo = offsets[s]
                hi = offsets[s + len(rows)] if s + len(rows) < len(attacked) else len(rows_at)
                local = np.searchsorted(rows, rows_at[lo:hi])  # batch row of each position
                grads, emb = _position_gradients(model, seqs[rows], tgt[rows], local, cols_at[lo:hi])
                norm = grads.norm(dim=1, keepdim=True)
                direction = torch.where(norm > 0, grads / norm.clamp(min=torch.finfo(grads.dtype).tiny),
                                        torch.zeros_like(grads))
                stepped = emb + step * direction
                cand = pools_t[torch.as_tensor(inverse[lo:hi], device=device)]
                row_target = torch.as_tensor(tgt[rows][local], device=device)
                cand = _drop_target(cand, row_target, pool_size)
                substitute[lo:hi] = _choose(stepped.float(), cand, unit).cpu().numpy()
        finally:
            model.train(was_training)
    done = substitute >= 0
    replaced = np.zeros_like(mask)
    replaced[rows_at[done], cols_at[done]] = True
    out = seqs.copy()
    out[rows_at[done], cols_at[done]] = substitute[done]
    return Substitution(out, replaced, original[done].copy(), substitute[done].copy())


def _drop_target(cand: torch.Tensor, target: torch.Tensor, pool_size: int) -> torch.Tensor:
    """Remove each row's target from its candidates and keep the first ``pool_size`` left."""
    keep = cand != target.unsqueeze(1)
    # stable compaction: kept candidates first, in their similarity order
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    packed = torch.gather(cand.masked_fill(~keep, -1), 1, order)
    return packed[:, :pool_size]


def _position_gradients(model: SequentialRecommender, seqs: np.ndarray, targets: np.ndarray,
                        rows: np.ndarray, cols: np.ndarray):
    """Gradient of each row's BCE on its target w.r.t. the sequence embeddings at (rows, cols).

    Returns (gradients, clean embeddings) at those positions, [n, dim] each.
    """
    device = model.item.device
    seq = torch.as_tensor(seqs, device=device)
    tgt = torch.as_tensor(targets, device=device)
    with torch.enable_grad():
        S = model.sequence_embeddings(seq).detach().requires_grad_(True)
        w = model.encode(seq, embeddings=S)[:, -1]
        score = (w * model.item[tgt]).sum(-1)
        loss = F.softplus(-score).sum()  # -log sigma(score); a sum keeps rows independent
        (g,) = torch.autograd.grad(loss, S)
    r = torch.as_tensor(rows, device=device)
    c = torch.as_tensor(cols, device=device)
    return g[r, c], S.detach()[r, c]


def target_items(test: Interactions) -> np.ndarray:
    """Each user's test item as ``substitute_items``' ``targets`` (-1 for users without one).

    A user with several test items has no single target: ValueError (attack per item instead).
    """
    if not isinstance(test, Interactions):
        raise ValueError(f"test must be Interactions, got {type(test).__name__}")
    counts = np.bincount(test.user, minlength=test.n_users)
    if counts.size and counts.max() > 1:
        user = int(np.argmax(counts > 1))
        raise ValueError(f"test gives user {user} {int(counts[user])} items; targets need at most one per user")
    out = np.full(test.n_users, PAD, dtype=np.int64)
    out[test.user] = test.item
    return out


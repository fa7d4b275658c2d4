"""Time-ordered item sequences for sequential recommenders (SASRec, GRU4Rec).

Every matrix here is right-aligned: a user's most recent item sits in the last column and
earlier columns are padded with ``PAD`` (-1), the layout the cascade-effect kernel and the
models expect. Order within a user is by timestamp, rows with equal timestamps keeping their
input order, the same rule as ``leave_one_out(order="time")``, so a sequence built from the
train part of that split followed by its valid and test items is the user's full history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .interactions import Interactions

PAD = -1


def _check_max_len(max_len: int) -> int:
    if isinstance(max_len, (bool, np.bool_)) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    return int(max_len)


def _time_order(inter: Interactions) -> np.ndarray:
    rows = np.arange(len(inter))
    keys = [rows] if inter.timestamp is None else [rows, inter.timestamp]
    return np.lexsort(keys + [inter.user])


def user_sequences(inter: Interactions, max_len: int, extra: Optional[Interactions] = None) -> np.ndarray:
    """``[n_users, max_len]`` int64: each user's last ``max_len`` items, oldest first, right-aligned.

    ``extra`` (e.g. the valid part of a split) is appended after ``inter``'s items, one user's
    rows in their own time order, so ``user_sequences(train, T, valid)`` is the history a test
    prediction sees. Interactions without timestamps keep their input order.
    """
    max_len = _check_max_len(max_len)
    parts = [inter] if extra is None else [inter, extra]
    for p in parts[1:]:
        if (p.n_users, p.n_items) != (inter.n_users, inter.n_items):
            raise ValueError(f"extra has {p.n_users} users x {p.n_items} items, inter "
                             f"{inter.n_users} x {inter.n_items}")
    users = np.concatenate([p.user[_time_order(p)] for p in parts])
    items = np.concatenate([p.item[_time_order(p)] for p in parts])
    order = np.argsort(users, kind="stable")  # parts stay in order within a user
    users, items = users[order], items[order]
    out = np.full((inter.n_users, max_len), PAD, dtype=np.int64)
    if len(users) == 0:
        return out
    counts = np.bincount(users, minlength=inter.n_users)
    ends = np.cumsum(counts)
    from_end = ends[users] - np.arange(len(users))  # 1 for a user's last row
    keep = from_end <= max_len
    out[users[keep], max_len - from_end[keep]] = items[keep]
    return out


@dataclass(frozen=True, eq=False)
class TrainingSequences:
    """The every-position training regime (SASRec): ``inputs[u, c]`` predicts ``targets[u, c]``.

    ``inputs`` is the user's train sequence without its last item, ``targets`` the same shifted
    by one, both right-aligned to ``max_len``; padding is ``PAD`` in both.
    """

    inputs: np.ndarray
    targets: np.ndarray

    @property
    def n_positions(self) -> int:
        return int((self.targets != PAD).sum())


def training_sequences(train: Interactions, max_len: int) -> TrainingSequences:
    """Inputs and next-item targets of every user's train sequence (last ``max_len`` steps)."""
    full = user_sequences(train, _check_max_len(max_len) + 1)
    inputs, targets = full[:, :-1].copy(), full[:, 1:].copy()
    targets[inputs == PAD] = PAD  # a user's first item has no predecessor: it is no target
    return TrainingSequences(inputs, targets)


def check_sequences(sequences: np.ndarray, name: str = "sequences", n_items: Optional[int] = None
                    ) -> np.ndarray:
    """A right-aligned padded int64 matrix, validated: padding only before the first item."""
    arr = np.asarray(sequences)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [users, T] matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer item ids, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        if arr.min() < PAD:
            raise ValueError(f"{name} holds {int(arr.min())}; item ids are >= 0 and padding is {PAD}")
        if n_items is not None and arr.max() >= n_items:
            raise IndexError(f"{name} holds item {int(arr.max())}, outside [0, n_items={n_items})")
        pad = arr == PAD
        if (pad[:, 1:] & ~pad[:, :-1]).any():
            row = int(np.flatnonzero((pad[:, 1:] & ~pad[:, :-1]).any(axis=1))[0])
            raise ValueError(f"{name} must be right-aligned (padding {PAD} only before the first item); "
                             f"row {row} has padding after an item")
    return arr

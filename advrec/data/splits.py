"""Train/validation/test splits. All parts keep the input's id space, and together they hold
every input row exactly once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from advrec._logging import report

from .interactions import Interactions

Order = Literal["time", "random"]


@dataclass(frozen=True, eq=False)
class Split:
    """train / valid (None when not asked for) / test, in one shared id space."""

    train: Interactions
    valid: Interactions | None
    test: Interactions

    def __repr__(self) -> str:
        v = "None" if self.valid is None else str(len(self.valid))
        return f"Split(train={len(self.train)}, valid={v}, test={len(self.test)})"


def _sorted_rows(inter: Interactions, order: str, grouped: bool, seed: int, fn: str
                 ) -> np.ndarray:
    """Row indices ordered by (user if grouped, then time or a seeded shuffle, then row)."""
    if order not in ("time", "random"):
        raise ValueError(f"{fn}: order must be 'time' or 'random', got {order!r}")
    rows = np.arange(len(inter))
    if order == "time":
        if inter.timestamp is None:
            raise ValueError(f"{fn}: order='time' needs timestamps, and inter has none; "
                             f"use order='random'")
        keys = [rows, inter.timestamp]
    else:
        keys = [np.random.default_rng(seed).permutation(len(inter))]
    if grouped:
        keys.append(inter.user)
    return np.lexsort(keys)


def _groups(user_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted row: its position within its user's run, and the run's length."""
    n = len(user_sorted)
    starts = np.flatnonzero(np.r_[True, user_sorted[1:] != user_sorted[:-1]]) if n else \
        np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.r_[starts, n])
    run = np.repeat(np.arange(len(starts)), lengths)
    return np.arange(n) - starts[run], lengths[run]


def _make(inter: Interactions, part: np.ndarray, perm: np.ndarray, with_valid: bool) -> Split:
    take = lambda k: inter.subset(np.sort(perm[part == k]))  # noqa: E731 (input order kept)
    return Split(take(0), take(1) if with_valid else None, take(2))


def leave_one_out(inter: Interactions, order: Order = "time", validation: bool = True,
                  seed: int = 0) -> Split:
    """Per user: last interaction -> test, second last -> valid (if validation), rest -> train.

    order="time": "last" is by timestamp; rows with equal timestamps keep their input order,
    so among tied rows the one appearing last in the input counts as latest (a stable sort).
    order="random": a shuffle from np.random.default_rng(seed) decides instead.
    Users with fewer than 3 rows (2 without validation) keep all their rows in train; their
    number is reported.
    """
    if not isinstance(validation, (bool, np.bool_)):
        raise ValueError(f"leave_one_out: validation must be True or False, got {validation!r}")
    perm = _sorted_rows(inter, order, True, seed, "leave_one_out")
    pos, length = _groups(inter.user[perm])
    need = 3 if validation else 2
    from_end = length - pos  # 1 for a user's last row
    part = np.zeros(len(perm), dtype=np.int8)
    ok = length >= need
    part[ok & (from_end == 1)] = 2
    if validation:
        part[ok & (from_end == 2)] = 1
    short = int(((pos == 0) & ~ok).sum())
    if short:
        report(f"leave_one_out: {short} users have fewer than {need} interactions; all their "
               f"rows stay in train (no {'valid/' if validation else ''}test row for them)")
    return _make(inter, part, perm, validation)


def ratio_split(inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                order: Order = "time", by: Literal["user", "global"] = "user",
                seed: int = 0) -> Split:
    """Split by ratios (train, valid, test) or (train, test), per user or over the whole log.

    Rows are ordered by time (ties: input order) or by a seeded shuffle; the earliest go to
    train. Per group of n rows (a user's rows, or all rows for by="global"), test gets
    round(ratio_test * n) rows and valid round(ratio_valid * n) (halves round up), train the
    rest, so users with few rows may get no valid/test row (reported).
    """
    r = _check_ratios(ratios)
    if by not in ("user", "global"):
        raise ValueError(f"ratio_split: by must be 'user' or 'global', got {by!r}")
    perm = _sorted_rows(inter, order, by == "user", seed, "ratio_split")
    if by == "user":
        pos, length = _groups(inter.user[perm])
    else:
        pos, length = np.arange(len(perm)), np.full(len(perm), len(perm))
    with_valid = len(r) == 3
    n_test = np.minimum(np.floor(r[-1] * length + 0.5).astype(np.int64), length)
    n_valid = np.minimum(np.floor(r[1] * length + 0.5).astype(np.int64), length - n_test) \
        if with_valid else np.zeros_like(length)
    from_end = length - pos
    part = np.zeros(len(perm), dtype=np.int8)
    part[from_end <= n_test + n_valid] = 1
    part[from_end <= n_test] = 2
    if by == "user":
        no_test = int(((pos == 0) & (n_test == 0)).sum())
        if no_test:
            report(f"ratio_split: {no_test} users have too few rows for a test row at ratio "
                   f"{r[-1]}; their rows stay in train{'/valid' if with_valid else ''}")
    return _make(inter, part, perm, with_valid)


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    try:
        r = tuple(float(x) for x in ratios)
    except (TypeError, ValueError):
        raise ValueError(f"ratio_split: ratios must be 2 or 3 numbers, got {ratios!r}") from None
    if len(r) not in (2, 3) or not all(0 < x < 1 for x in r) or abs(sum(r) - 1) > 1e-6:
        raise ValueError(f"ratio_split: ratios must be 2 or 3 numbers in (0, 1) summing to 1 "
                         f"(train, [valid,] test), got {ratios!r}")
    return r

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
    part, perm = _leave_one_out_parts(inter, order, validation, seed, "leave_one_out")
    return _make(inter, part, perm, validation)


def _leave_one_out_parts(inter: Interactions, order: str, validation: bool, seed: int, fn: str
                         ) -> tuple[np.ndarray, np.ndarray]:
    """leave_one_out's (part per sorted row: 0 train, 1 valid, 2 test; the sort order)."""
    if not isinstance(validation, (bool, np.bool_)):
        raise ValueError(f"{fn}: validation must be True or False, got {validation!r}")
    perm = _sorted_rows(inter, order, True, seed, fn)
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
        report(f"{fn}: {short} users have fewer than {need} interactions; all their "
               f"rows stay in train (no {'valid/' if validation else ''}test row for them)")
    return part, perm


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


@dataclass(frozen=True, eq=False)
class ColdSplit(Split):
    """A `Split` whose cold items appear in test only, plus the rows removed to make them cold.

    ``dropped``: the train/valid rows of cold items (every input row is in exactly one of train,
    valid, test, dropped). ``cold_items``: sorted item ids that appear in test and in neither
    train nor valid. ``cold_users``: sorted ids of the users whose test item is cold (one test
    row per user), e.g. ``test.subset(np.isin(test.user, cold_users))`` is the cold test part.
    """

    dropped: Interactions
    cold_items: np.ndarray
    cold_users: np.ndarray

    @property
    def warm_items(self) -> np.ndarray:
        """Sorted item ids that are not cold: the negatives AMR's protocol allows
        (``Trainer(negative_items=split.warm_items)``)."""
        return np.setdiff1d(np.arange(self.test.n_items, dtype=np.int64), self.cold_items)

    def __repr__(self) -> str:
        v = "None" if self.valid is None else str(len(self.valid))
        return (f"ColdSplit(train={len(self.train)}, valid={v}, test={len(self.test)}, "
                f"dropped={len(self.dropped)}, cold_items={len(self.cold_items)}, "
                f"cold_users={len(self.cold_users)})")


def cold_item_split(inter: Interactions, share: float = 0.2, seed: int = 0,
                    validation: bool = True) -> ColdSplit:
    """Random leave-one-out in which a ``share`` of the test cases have cold (unseen) items.

    AMR's protocol (Tang et al. 2020, 4.1.2): cold-start test items take no part in training,
    not even as negatives. The split is ``leave_one_out(inter, order="random", seed=seed,
    validation=validation)``; then ``ceil(share * n_test)`` test cases (users) are drawn at
    random (the product rounded to 9 decimals first, so 0.7 * 10 draws 7) and their test items
    become cold: every train/valid row of a cold item moves to ``dropped``. Users whose test item
    is cold because another user's was drawn, or because it has no train/valid row anyway,
    count as cold too, so the cold share of test cases is at least ``share``. ``share=0`` gives
    exactly leave_one_out's rows (``cold_items`` then holds the naturally cold test items).

    Consequences, reported: a user whose validation item is cold loses the validation row (it is
    in ``dropped``; validation covers the other users); a user all of whose training items are
    cold keeps the test (and valid) row, with no training interaction left, as the protocol
    evaluates every user: drop them from test yourself if your model cannot score them.
    """
    if not isinstance(inter, Interactions):
        raise ValueError(f"cold_item_split: inter must be an Interactions, got {type(inter).__name__}")
    if isinstance(share, (bool, np.bool_)) or not isinstance(share, (int, float, np.integer, np.floating)) \
            or not 0 <= share <= 1:
        raise ValueError(f"cold_item_split: share must be a number in [0, 1], got {share!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"cold_item_split: seed must be an int >= 0, got {seed!r}")
    part, perm = _leave_one_out_parts(inter, "random", validation, int(seed), "cold_item_split")
    label = np.empty(len(inter), dtype=np.int8)  # per input row: 0 train, 1 valid, 2 test, 3 dropped
    label[perm] = part
    test_rows = np.flatnonzero(label == 2)
    test_rows = test_rows[np.argsort(inter.user[test_rows], kind="stable")]  # one per user
    n_test = len(test_rows)
    n_draw = int(np.ceil(round(float(share) * n_test, 9)))
    # a stream of its own: default_rng(seed) already shuffled the rows for leave_one_out
    drawn = np.random.default_rng([int(seed), 1]).choice(n_test, size=n_draw, replace=False)
    test_items = inter.item[test_rows]
    seen = np.bincount(inter.item[label < 2], minlength=inter.n_items) > 0
    natural = np.unique(test_items[~seen[test_items]])
    cold_items = np.union1d(test_items[drawn], natural).astype(np.int64)
    is_cold = np.zeros(inter.n_items, dtype=bool)
    is_cold[cold_items] = True
    had_train = np.bincount(inter.user[label == 0], minlength=inter.n_users) > 0
    had_train[np.setdiff1d(np.arange(inter.n_users), inter.user[test_rows])] = False  # test users only
    drop = (label < 2) & is_cold[inter.item]
    n_drop_train, n_drop_valid = int((drop & (label == 0)).sum()), int((drop & (label == 1)).sum())
    lost_valid = np.unique(inter.user[drop & (label == 1)])
    label[drop] = 3
    cold_users = np.sort(inter.user[test_rows][is_cold[test_items]]).astype(np.int64)
    report(f"cold_item_split: {n_draw} of {n_test} test cases drawn cold (share {share}); "
           f"{len(cold_items)} cold items ({len(natural)} with no train/valid row anyway), "
           f"{len(cold_users)} cold test cases; removed {n_drop_train} train and {n_drop_valid} "
           f"valid rows of cold items (ColdSplit.dropped)")
    if len(lost_valid):
        report(f"cold_item_split: {len(lost_valid)} users lost their validation row (its item is "
               f"cold); they have no validation row")
    no_train = had_train & (np.bincount(inter.user[label == 0], minlength=inter.n_users) == 0)
    if no_train.any():
        report(f"cold_item_split: {int(no_train.sum())} users have no training interaction left "
               f"(all their training items are cold); they stay in test/valid")
    take = lambda k: inter.subset(np.flatnonzero(label == k))  # noqa: E731 (input order kept)
    for arr in (cold_items, cold_users):
        arr.setflags(write=False)
    return ColdSplit(take(0), take(1) if validation else None, take(2), take(3), cold_items,
                     cold_users)

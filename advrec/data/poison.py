"""Poisoned logs: fake users appended after the real ones, marked by their raw ids.

A poisoned log is the real log unchanged, row for row, followed by the fake users' rows. Fake
users take the indices after the real ones, and their raw ids say they are fake, so a detector or
a report can tell them apart after the fact without a side table:

- integer raw ids (ML-100K's): fake users are ``-1, -2, ...`` (real ids must be non-negative);
- string raw ids: fake users are ``"fake:0", "fake:1", ...``.

The real ids' dtype kind never changes, so code that reads raw ids keeps working.
"""
from __future__ import annotations

import numpy as np

from .interactions import Interactions

__all__ = ["FAKE_PREFIX", "fake_users", "fake_user_ids", "inject"]

#: the prefix of a fake user's raw id when raw ids are strings
FAKE_PREFIX = "fake:"


def fake_users(inter: Interactions) -> np.ndarray:
    """Boolean mask over user indices: True for users whose raw id marks them as fake."""
    ids = inter.user_ids
    if ids.dtype.kind == "i":
        return ids < 0
    if ids.dtype.kind == "U":
        return np.char.startswith(ids, FAKE_PREFIX)
    if ids.dtype.kind == "O":
        return np.char.startswith(ids.astype(str), FAKE_PREFIX)
    return np.zeros(len(ids), dtype=bool)


def fake_user_ids(train: Interactions, n: int) -> np.ndarray:
    """Raw ids for ``n`` new fake users of ``train``, numbered after the fakes it already has."""
    ids = train.user_ids
    first = int(fake_users(train).sum())
    k = np.arange(first, first + n)
    if ids.dtype.kind == "i":
        return (-(k + 1)).astype(ids.dtype)
    if ids.dtype.kind in "UO":
        out = np.char.add(FAKE_PREFIX, k.astype(str))
        return out.astype(object) if ids.dtype.kind == "O" else out
    raise ValueError(f"train.user_ids: fake users need signed-integer or string raw ids, got dtype "
                     f"{ids.dtype} (cast the raw ids first)")


def inject(train: Interactions, fake: Interactions) -> Interactions:
    """The poisoned log: ``train``'s rows unchanged and in order, then ``fake``'s rows.

    ``fake`` is what a shilling attack returns: a log over ``train``'s users plus the new fake
    ones (``n_users = train.n_users + n_fake``, the first raw ids ``train``'s), whose rows all
    belong to the fake users and which has ratings and timestamps exactly when ``train`` does.
    Anything else is refused, naming ``fake``: nothing a real user gave is dropped or changed.
    """
    n_real = train.n_users
    if fake.n_items != train.n_items or not np.array_equal(fake.item_ids, train.item_ids):
        raise ValueError(f"fake: its item catalogue ({fake.n_items} items) is not train's "
                         f"({train.n_items} items, same raw ids in the same order)")
    if fake.n_users < n_real or not np.array_equal(fake.user_ids[:n_real], train.user_ids):
        raise ValueError(f"fake: its first {n_real} users must be train's (same raw ids, same "
                         f"order); build it from train, e.g. with an advrec.attacks shilling attack")
    if len(fake) and fake.user.min() < n_real:
        raise ValueError(f"fake: {int((fake.user < n_real).sum())} rows belong to real users "
                         f"(indices < {n_real}); fake users' indices must follow the real ones")
    if not fake_users(fake)[n_real:].all():
        raise ValueError("fake.user_ids: the new users' raw ids must mark them as fake "
                         f"(negative ints or '{FAKE_PREFIX}k' strings, see fake_user_ids)")
    if len(np.unique(fake.user_ids)) != fake.n_users:
        raise ValueError("fake.user_ids: the new users' raw ids repeat an existing id")
    if (fake.rating is None) != (train.rating is None):
        have = "has" if train.rating is not None else "has no"
        raise ValueError(f"fake: train {have} ratings, so fake must match (explicit vs implicit)")
    if (fake.timestamp is None) != (train.timestamp is None):
        have = "has" if train.timestamp is not None else "has no"
        raise ValueError(f"fake: train {have} timestamps, so fake must match")
    join = lambda a, b: None if a is None else np.concatenate([a, b])  # noqa: E731
    return Interactions(np.concatenate([train.user, fake.user]),
                        np.concatenate([train.item, fake.item]),
                        join(train.rating, fake.rating), join(train.timestamp, fake.timestamp),
                        fake.n_users, train.n_items,
                        np.concatenate([train.user_ids, fake.user_ids[n_real:]]), train.item_ids)

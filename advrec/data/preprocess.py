"""Filters that turn a raw log into a training log; each reports what it removed."""
from __future__ import annotations

from typing import Literal

import numpy as np

from advrec._logging import report

from .interactions import Interactions


def binarize(inter: Interactions, threshold: float) -> Interactions:
    """Keep rows rated >= threshold as positives (rating set to 1); same id space.

    Users or items left with no rows stay in the id space; `remap` drops them.
    """
    if inter.rating is None:
        raise ValueError("binarize: inter has no rating column")
    keep = inter.rating >= threshold
    report(f"binarize(threshold={threshold}): removed {int((~keep).sum())} of {len(inter)} rows "
           f"(rating < {threshold}); the kept rows get rating 1")
    return implicit(inter.subset(keep), _quiet=True)


def implicit(inter: Interactions, _quiet: bool = False) -> Interactions:
    """All rows kept, every rating set to 1 (treat each interaction as a positive)."""
    out = Interactions(inter.user, inter.item, np.ones(len(inter), dtype=np.float32),
                       inter.timestamp, inter.n_users, inter.n_items, inter.user_ids,
                       inter.item_ids)
    if not _quiet and inter.rating is not None:
        report(f"implicit: set the ratings of all {len(inter)} rows to 1")
    return out


def k_core(inter: Interactions, user_k: int, item_k: int, remap_ids: bool = True) -> Interactions:
    """Repeatedly drop users with < user_k rows and items with < item_k rows until none remain.

    Rows are counted with duplicates (run `deduplicate` first to count distinct items).
    remap_ids=True (default) then `remap`s to contiguous ids, keeping the raw ids.
    """
    for name, k in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k_core: {name} must be a non-negative int, got {k!r}")
    keep = np.ones(len(inter), dtype=bool)
    rounds = 0
    while True:
        u_cnt = np.bincount(inter.user[keep], minlength=inter.n_users)
        i_cnt = np.bincount(inter.item[keep], minlength=inter.n_items)
        drop = keep & ((u_cnt[inter.user] < user_k) | (i_cnt[inter.item] < item_k))
        if not drop.any():
            break
        keep &= ~drop
        rounds += 1
    before_u = int((inter.user_counts() > 0).sum())
    before_i = int((inter.item_counts() > 0).sum())
    out = inter.subset(keep)
    after_u = int((out.user_counts() > 0).sum())
    after_i = int((out.item_counts() > 0).sum())
    report(f"k_core(user_k={user_k}, item_k={item_k}): removed {len(inter) - len(out)} of "
           f"{len(inter)} rows, {before_u - after_u} of {before_u} users, "
           f"{before_i - after_i} of {before_i} items (in {rounds} passes)")
    return remap(out) if remap_ids else out


def remap(inter: Interactions) -> Interactions:
    """Drop users/items with no rows from the id space; indices stay in raw-id order."""
    u_used = np.flatnonzero(inter.user_counts() > 0)
    i_used = np.flatnonzero(inter.item_counts() > 0)
    if len(u_used) == inter.n_users and len(i_used) == inter.n_items:
        return inter
    report(f"remap: dropped {inter.n_users - len(u_used)} users and "
           f"{inter.n_items - len(i_used)} items with no rows from the id space")
    u_new = np.full(inter.n_users, -1, dtype=np.int64)
    u_new[u_used] = np.arange(len(u_used))
    i_new = np.full(inter.n_items, -1, dtype=np.int64)
    i_new[i_used] = np.arange(len(i_used))
    return Interactions(u_new[inter.user], i_new[inter.item], inter.rating, inter.timestamp,
                        len(u_used), len(i_used), inter.user_ids[u_used],
                        inter.item_ids[i_used])


def deduplicate(inter: Interactions, keep: Literal["first", "last"] = "last") -> Interactions:
    """One row per (user, item): the latest (keep="last") or earliest, by timestamp when there
    is one (ties by row order), else by row order. Kept rows stay in their original order."""
    if keep not in ("first", "last"):
        raise ValueError(f"deduplicate: keep must be 'first' or 'last', got {keep!r}")
    rows = np.arange(len(inter))
    keys = (rows, inter.item, inter.user) if inter.timestamp is None else \
        (rows, inter.timestamp, inter.item, inter.user)
    order = np.lexsort(keys)  # by user, item, (time,) row
    u, i = inter.user[order], inter.item[order]
    if keep == "last":
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
        chosen = order[last]
    else:
        first = np.ones(len(order), dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
        chosen = order[first]
    chosen = np.sort(chosen)
    report(f"deduplicate(keep={keep!r}): removed {len(inter) - len(chosen)} of {len(inter)} rows "
           f"repeating a (user, item) pair")
    return inter.subset(chosen)

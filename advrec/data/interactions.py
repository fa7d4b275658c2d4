"""Containers for user-item interaction logs and the datasets that carry them.

`Interactions` is the one currency of the data layer: every reader returns it, every filter and
split takes and returns it, and models index it with contiguous integer ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np

IndexLike = Union[np.ndarray, Sequence[int], Sequence[bool], slice]


def _as_int64(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"Interactions.{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"Interactions.{name}: expected an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False, repr=False)
class Interactions:
    """A log of (user, item[, rating][, timestamp]) rows over contiguous integer ids.

    ``user_ids[u]`` / ``item_ids[i]`` keep the raw id behind each index so results can be
    reported in the dataset's own terms. Integer arrays are converted to int64 and ratings to
    float32 on construction; anything else inconsistent raises ValueError naming the field.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        user = _as_int64("user", self.user)
        item = _as_int64("item", self.item)
        n = len(user)
        if len(item) != n:
            raise ValueError(f"Interactions.item: length {len(item)} != length of user ({n})")
        for name in ("n_users", "n_items"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"Interactions.{name}: expected a non-negative int, got {v!r}")
            set_(name, int(v))
        for name, arr, bound in (("user", user, self.n_users), ("item", item, self.n_items)):
            if n and (arr.min() < 0 or arr.max() >= bound):
                raise ValueError(
                    f"Interactions.{name}: indices must lie in [0, n_{name}s={bound}), "
                    f"got range [{arr.min()}, {arr.max()}]")
        set_("user", user)
        set_("item", item)
        if self.rating is not None:
            rating = np.asarray(self.rating)
            if rating.shape != (n,) or rating.dtype.kind not in "iuf":
                raise ValueError(f"Interactions.rating: expected a numeric array of shape ({n},), "
                                 f"got shape {rating.shape} dtype {rating.dtype}")
            rating = rating.astype(np.float32, copy=False)
            if not np.all(np.isfinite(rating)):
                raise ValueError("Interactions.rating: contains NaN or infinite values")
            set_("rating", rating)
        if self.timestamp is not None:
            ts = np.asarray(self.timestamp)
            if ts.shape != (n,):
                raise ValueError(f"Interactions.timestamp: expected shape ({n},), got {ts.shape}")
            set_("timestamp", _as_int64("timestamp", ts))
        for name, bound in (("user_ids", self.n_users), ("item_ids", self.n_items)):
            ids = np.asarray(getattr(self, name))
            if ids.shape != (bound,):
                raise ValueError(f"Interactions.{name}: expected length {bound} "
                                 f"(n_{name[:-4]}s), got shape {ids.shape}")
            set_(name, ids)

    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        return (f"Interactions(n={len(self)}, n_users={self.n_users}, n_items={self.n_items}, "
                f"rating={'yes' if self.rating is not None else 'no'}, "
                f"timestamp={'yes' if self.timestamp is not None else 'no'})")

    @staticmethod
    def from_raw(users: Any, items: Any, ratings: Any = None,
                 timestamps: Any = None) -> "Interactions":
        """Build from raw ids of any sortable type; index k is the k-th smallest raw id."""
        users, items = np.asarray(users), np.asarray(items)
        n = len(users)
        for name, arr in (("users", users), ("items", items), ("ratings", ratings),
                          ("timestamps", timestamps)):
            if arr is not None and (np.ndim(arr) != 1 or len(arr) != n):
                raise ValueError(f"Interactions.from_raw: {name} must be 1-D with length {n} "
                                 f"(as users), got shape {np.shape(arr)}")
        user_ids, user = np.unique(users, return_inverse=True)
        item_ids, item = np.unique(items, return_inverse=True)
        return Interactions(user=user.reshape(-1), item=item.reshape(-1),
                            rating=None if ratings is None else np.asarray(ratings),
                            timestamp=None if timestamps is None else np.asarray(timestamps),
                            n_users=len(user_ids), n_items=len(item_ids),
                            user_ids=user_ids, item_ids=item_ids)

    def subset(self, mask_or_index: IndexLike) -> "Interactions":
        """Rows selected by a boolean mask or integer index, in the same id space."""
        sel = mask_or_index
        if not isinstance(sel, slice):
            sel = np.asarray(sel)
            if sel.dtype == bool:
                if sel.shape != (len(self),):
                    raise ValueError(f"subset: boolean mask has shape {sel.shape}, "
                                     f"expected ({len(self)},)")
            elif sel.size == 0:
                sel = sel.astype(np.int64)
            elif sel.dtype.kind not in "iu" or sel.ndim != 1:
                raise ValueError(f"subset: expected a boolean mask or 1-D integer index, "
                                 f"got dtype {sel.dtype} shape {sel.shape}")
        pick = lambda a: None if a is None else a[sel]  # noqa: E731
        return Interactions(self.user[sel], self.item[sel], pick(self.rating),
                            pick(self.timestamp), self.n_users, self.n_items,
                            self.user_ids, self.item_ids)

    def to_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-user item lists (indptr, indices): sorted, duplicates removed."""
        return _csr(self.user, self.item, self.n_users, self.n_items)

    def item_counts(self) -> np.ndarray:
        """Rows per item (popularity), duplicates counted; int64 [n_items]."""
        return np.bincount(self.item, minlength=self.n_items).astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """Rows per user, duplicates counted; int64 [n_users]."""
        return np.bincount(self.user, minlength=self.n_users).astype(np.int64)


def _csr(user: np.ndarray, item: np.ndarray, n_users: int, n_items: int
         ) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((item, user))
    u, i = user[order], item[order]
    keep = np.ones(len(u), dtype=bool)
    keep[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    u, i = u[keep], i[keep]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
    return indptr, i.astype(np.int64, copy=False)


def exclusion_csr(*parts: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """One CSR of everything a user has seen across parts (e.g. train+valid), to mask at ranking.

    All parts must share one id space (same n_users, n_items and raw ids), as the parts of a
    `Split` do.
    """
    if not parts:
        raise ValueError("exclusion_csr: give at least one Interactions")
    first = parts[0]
    for k, p in enumerate(parts[1:], start=1):
        if (p.n_users, p.n_items) != (first.n_users, first.n_items) or not (
                _same_ids(p.user_ids, first.user_ids) and _same_ids(p.item_ids, first.item_ids)):
            raise ValueError(f"exclusion_csr: part {k} is in a different id space "
                             f"({p.n_users}x{p.n_items}) than part 0 "
                             f"({first.n_users}x{first.n_items})")
    user = np.concatenate([p.user for p in parts])
    item = np.concatenate([p.item for p in parts])
    return _csr(user, item, first.n_users, first.n_items)


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.all(a == b)))


@dataclass
class Dataset:
    """Interactions plus side features, indexed by the interactions' user/item indices."""

    name: str
    interactions: Interactions
    user_features: dict[str, np.ndarray] = field(default_factory=dict)
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""   # where this copy was read from (may be a local cache path)
    origin: str = ""   # where the data came from originally (a URL or package), portable across machines

    def portable_source(self) -> str:
        """The portable name of the data: where it came from, never a local cache path."""
        return self.origin or self.source

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {self.interactions!r}, "
                f"user_features={sorted(self.user_features)}, "
                f"item_features={sorted(self.item_features)}, source={self.source!r})")

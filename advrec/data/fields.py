"""Binary field encodings for factorization machines (Liu et al., SIGIR 2020, §2.1 and §4.1).

An FM instance is a binary vector ``x ∈ {0,1}^d`` made of *fields*: contiguous ranges of feature
ids, one-hot (a user id, a gender: exactly one active feature) or multi-hot (genres, the user's
history: any number). Instances are stored as CSR rows of strictly increasing feature ids
(`InstanceMatrix`), the layout the FM model, the trainer and the certification kernels share.

- `FieldEncoder` turns per-instance categorical values into that CSR.
- `ml100k_fm` builds the ML-100K classification task (rating >= 4 vs < 4) with a perturbable
  history field; `libfm_fm` reads libFM files (Frappe) and can add the same history field.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field as dc_field
from typing import Any, Hashable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from advrec._logging import report

from ._parse import FormatError
from .interactions import Dataset
from .movielens import ML100K_GENRES
from .readers import read_libfm

__all__ = ["Field", "InstanceMatrix", "Ragged", "FieldEncoder", "FMData", "ml100k_fm",
           "libfm_fm", "AGE_GROUPS", "age_group"]


# ----------------------------------------------------------------------------- containers

@dataclass(frozen=True)
class Field:
    """Feature ids ``offset .. offset + size - 1`` of one field."""

    name: str
    offset: int
    size: int
    multi_hot: bool

    @property
    def stop(self) -> int:
        return self.offset + self.size

    def ids(self) -> np.ndarray:
        """The field's feature ids, int64, ascending."""
        return np.arange(self.offset, self.stop, dtype=np.int64)


@dataclass(eq=False)
class InstanceMatrix:
    """Binary instances as CSR rows of strictly increasing feature ids, with ±1 labels.

    ``fields`` name disjoint feature ranges (they need not cover every feature: a libFM file
    without a field map has none). ``users``/``items`` optionally give each instance's user and
    item index (ML-100K) for grouping results. ``perturbable`` holds the sorted feature ids an
    adversary may flip 0 -> 1 (the history field), the certifier's ``perturbable`` argument.
    Arrays are checked and converted on construction (int64 indptr/indices, int8 labels).
    """

    indptr: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    fields: list[Field]
    n_features: int
    users: np.ndarray | None = None
    items: np.ndarray | None = None
    perturbable: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_features, bool) or not isinstance(self.n_features, (int, np.integer)) \
                or self.n_features < 0:
            raise ValueError(f"n_features must be an int >= 0, got {self.n_features!r}")
        self.n_features = int(self.n_features)
        self.indptr, self.indices = check_csr(self.indptr, self.indices, self.n_features)
        m = len(self.indptr) - 1
        self.labels = check_labels(self.labels, m)
        for name in ("users", "items"):
            v = getattr(self, name)
            if v is not None:
                v = _int_array(name, v)
                if v.shape != (m,):
                    raise ValueError(f"{name} must have one entry per instance ({m}), got shape "
                                     f"{v.shape}")
                setattr(self, name, v)
        self.fields = list(self.fields)
        _check_fields(self.fields, self.n_features)
        if self.perturbable is not None:
            p = _int_array("perturbable", self.perturbable)
            if p.ndim != 1 or (len(p) > 1 and np.any(np.diff(p) <= 0)):
                raise ValueError("perturbable must be a 1-D array of strictly increasing feature "
                                 "ids")
            if len(p) and (p[0] < 0 or p[-1] >= self.n_features):
                raise IndexError(f"perturbable ids must lie in [0, {self.n_features}), got range "
                                 f"[{p[0]}, {p[-1]}]")
            self.perturbable = p

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __repr__(self) -> str:
        return (f"InstanceMatrix(n={len(self)}, n_features={self.n_features}, nnz="
                f"{len(self.indices)}, fields={[f.name for f in self.fields]}, positive="
                f"{self.positive_rate:.4f})")

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def positive_rate(self) -> float:
        """Share of +1 labels (NaN when empty)."""
        return float(np.mean(self.labels == 1)) if len(self) else float("nan")

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r}; fields: {[f.name for f in self.fields]}")

    def feature_ids(self, name: str) -> np.ndarray:
        """Feature ids of field ``name`` (int64, ascending); for "history", the perturbable set."""
        return self.field(name).ids()

    def row(self, i: int) -> np.ndarray:
        """Feature ids of instance ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} instances")
        i %= max(len(self), 1)
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def subset(self, rows: Any) -> "InstanceMatrix":
        """The instances ``rows`` (int indices, in the order given, or a boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise ValueError(f"rows mask must have shape ({len(self)},), got {rows.shape}")
            rows = np.flatnonzero(rows)
        elif rows.size == 0:
            rows = np.zeros(0, dtype=np.int64)
        elif not np.issubdtype(rows.dtype, np.integer) or rows.ndim != 1:
            raise ValueError(f"rows must be a 1-D int array or a boolean mask, got "
                             f"{rows.dtype} with shape {rows.shape}")
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"rows must lie in [0, {len(self)}), got range "
                             f"[{rows.min()}, {rows.max()}]")
        rows = rows.astype(np.int64) % max(len(self), 1)
        indptr, indices = gather_rows(self.indptr, self.indices, rows)
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return InstanceMatrix(indptr, indices, self.labels[rows], list(self.fields),
                              self.n_features, pick(self.users), pick(self.items),
                              self.perturbable)


class Ragged(NamedTuple):
    """A multi-hot column in CSR form: instance r holds ``values[indptr[r]:indptr[r + 1]]``.

    The fast way to hand `FieldEncoder.encode` millions of values (a list of lists works too).
    """

    indptr: np.ndarray
    values: np.ndarray


@dataclass(eq=False)
class FMData:
    """train / valid / test instances in one feature space (valid, test None when absent)."""

    train: InstanceMatrix
    valid: InstanceMatrix | None
    test: InstanceMatrix | None
    name: str = ""
    notes: list[str] = dc_field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.train.n_features

    @property
    def fields(self) -> list[Field]:
        return self.train.fields

    @property
    def perturbable(self) -> np.ndarray | None:
        return self.train.perturbable

    def parts(self) -> dict[str, InstanceMatrix]:
        return {k: v for k, v in (("train", self.train), ("valid", self.valid),
                                  ("test", self.test)) if v is not None}

    def describe(self) -> str:
        """A few lines: sizes, positive rates, fields and their feature ranges."""
        lines = [f"{self.name or 'FM data'}: {self.n_features} features"]
        for k, part in self.parts().items():
            avg = part.nnz / len(part) if len(part) else 0.0
            lines.append(f"  {k:5s} {len(part):8d} instances, {part.positive_rate:.2%} positive, "
                         f"{avg:.1f} active features per instance")
        for f in self.fields:
            kind = "multi-hot" if f.multi_hot else "one-hot"
            lines.append(f"  field {f.name:10s} ids [{f.offset}, {f.stop}) {f.size:6d} {kind}")
        if self.perturbable is not None:
            lines.append(f"  perturbable: {len(self.perturbable)} feature ids")
        lines.extend(f"  {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.parts().items())
        return f"FMData({self.name!r}, {sizes}, n_features={self.n_features})"


# ----------------------------------------------------------------------------- checks

def _int_array(name: str, a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def check_csr(indptr: Any, indices: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 copies of a CSR pair after checking shape, monotone indptr, ids in range and
    strictly increasing ids within each row (binary instances have no repeated feature)."""
    indptr = _int_array("indptr", indptr)
    indices = _int_array("indices", indices)
    if indptr.ndim != 1 or len(indptr) < 1:
        raise ValueError(f"indptr must be 1-D with at least one entry, got shape {indptr.shape}")
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
    if indptr[0] != 0 or indptr[-1] != len(indices):
        raise ValueError(f"indptr must start at 0 and end at len(indices)={len(indices)}, got "
                         f"{indptr[0]} .. {indptr[-1]}")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must be non-decreasing")
    if len(indices):
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_features:
            raise IndexError(f"indices must lie in [0, {n_features}), got range [{lo}, {hi}]")
        step = np.diff(indices)
        starts = np.zeros(len(indices), dtype=bool)
        starts[indptr[:-1][indptr[:-1] < len(indices)]] = True
        bad = (step <= 0) & ~starts[1:]
        if bad.any():
            k = int(np.argmax(bad)) + 1
            row = int(np.searchsorted(indptr, k, side="right")) - 1
            raise ValueError(f"indices of row {row} must be strictly increasing (sorted, no "
                             f"repeated feature), got {indices[indptr[row]:indptr[row + 1]][:12]}")
    return indptr, indices


def check_labels(labels: Any, m: int, name: str = "labels") -> np.ndarray:
    """int8 ±1 labels of length m."""
    y = np.asarray(labels)
    if y.shape != (m,):
        raise ValueError(f"{name} must have shape ({m},), got {y.shape}")
    if y.size and not np.all((y == 1) | (y == -1)):
        bad = np.unique(y[(y != 1) & (y != -1)])[:5]
        raise ValueError(f"{name} must be +1 or -1, got {bad.tolist()}")
    return y.astype(np.int8)


def _check_fields(fields: Sequence[Field], n_features: int) -> None:
    seen = set()
    for f in fields:
        if not isinstance(f, Field):
            raise ValueError(f"fields must be Field objects, got {type(f).__name__}")
        if f.name in seen:
            raise ValueError(f"field name {f.name!r} appears twice")
        seen.add(f.name)
        if f.offset < 0 or f.size < 0 or f.stop > n_features:
            raise ValueError(f"field {f.name!r} [{f.offset}, {f.stop}) lies outside "
                             f"[0, {n_features})")
    spans = sorted((f.offset, f.stop, f.name) for f in fields if f.size)
    for (_, stop, a), (start, _, b) in zip(spans, spans[1:]):
        if start < stop:
            raise ValueError(f"fields {a!r} and {b!r} overlap")


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the given rows, in that order (vectorised: no Python loop over rows)."""
    lengths = indptr[rows + 1] - indptr[rows]
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    pos = np.repeat(indptr[rows] - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])
    return out_ptr, indices[pos]


# ----------------------------------------------------------------------------- encoder

class FieldEncoder:
    """Lays fields out one after the other and encodes categorical values into CSR rows.

        enc = FieldEncoder()
        enc.add("gender", ["F", "M"])                           # ids 0, 1
        enc.add("genres", ["Action", "Drama"], multi_hot=True)  # ids 2, 3
        X = enc.encode({"gender": ["M", "F"], "genres": [["Drama"], []]}, labels=[1, -1])
        # rows: [1, 3] and [0]

    A feature's id is its field's offset plus the value's position in the vocabulary given to
    `add`. One-hot columns hold exactly one known value per instance; multi-hot columns any
    number (a list of iterables, or `Ragged`). Unknown values raise ValueError naming the field;
    a value repeated within one instance's multi-hot field is merged and reported.
    """

    def __init__(self) -> None:
        self.fields: list[Field] = []
        self._vocab: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # sorted values, positions
        self._identity: set[str] = set()

    @property
    def n_features(self) -> int:
        return self.fields[-1].stop if self.fields else 0

    def add(self, name: str, values: Iterable[Hashable], multi_hot: bool = False) -> Field:
        """Append a field whose features are ``values`` (unique), in that order."""
        if name in self._vocab:
            raise ValueError(f"field {name!r} already added")
        vals = np.asarray(list(values))
        if vals.ndim != 1:
            raise ValueError(f"field {name!r}: values must be a flat sequence of scalars")
        order = np.argsort(vals, kind="stable")
        svals = vals[order]
        if len(svals) > 1 and np.any(svals[1:] == svals[:-1]):
            dup = svals[1:][svals[1:] == svals[:-1]][0]
            raise ValueError(f"field {name!r}: value {dup!r} appears twice in its vocabulary")
        f = Field(name, self.n_features, len(vals), bool(multi_hot))
        self.fields.append(f)
        self._vocab[name] = (svals, order.astype(np.int64))
        if np.issubdtype(vals.dtype, np.integer) and np.array_equal(vals, np.arange(len(vals))):
            self._identity.add(name)  # values 0..n-1 in order: a value is its own position
        return f

    def codes(self, name: str, values: Any) -> np.ndarray:
        """Feature ids of ``values`` (an array of this field's values)."""
        svals, pos = self._vocab[name]
        values = np.asarray(values)
        if values.size == 0:
            return np.zeros(values.shape, dtype=np.int64)
        if len(svals) == 0:
            raise ValueError(f"field {name!r} has an empty vocabulary but got values")
        if name in self._identity and np.issubdtype(values.dtype, np.integer):
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= len(svals):
                bad = lo if lo < 0 else hi
                raise ValueError(f"field {name!r}: unknown value(s) [{bad}]; known values are "
                                 f"0 .. {len(svals) - 1}")
            return self._field(name).offset + values.astype(np.int64)
        try:
            at = np.searchsorted(svals, values)
        except TypeError:
            raise ValueError(f"field {name!r}: values of type {values.dtype} cannot be compared "
                             f"with the vocabulary ({svals.dtype})") from None
        at = np.minimum(at, len(svals) - 1)
        known = svals[at] == values
        if not np.all(known):
            bad = np.unique(values[~known])[:5].tolist()
            raise ValueError(f"field {name!r}: unknown value(s) {bad}; known values are "
                             f"{svals[:8].tolist()}{' ...' if len(svals) > 8 else ''}")
        return self._field(name).offset + pos[at]

    def _field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r}; fields: {[f.name for f in self.fields]}")

    def encode(self, columns: Mapping[str, Any], labels: Any, *, users: Any = None,
               items: Any = None, perturbable: str | Sequence[int] | None = None
               ) -> InstanceMatrix:
        """CSR instances from one column per field (every field, no others).

        perturbable: a field name (its ids) or explicit feature ids; None for none.
        """
        missing = [f.name for f in self.fields if f.name not in columns]
        extra = [k for k in columns if k not in self._vocab]
        if missing or extra:
            raise ValueError(f"encode needs one column per field; missing {missing}, "
                             f"unknown {extra}")
        m = len(np.asarray(labels))
        parts = []  # per field: CSR with strictly increasing ids per row
        for f in self.fields:
            col = columns[f.name]
            if f.multi_hot:
                indptr, values = _ragged(f.name, col, m)
                indptr, ids, merged = _sort_rows(indptr, self.codes(f.name, values), f.stop)
                if merged:
                    report(f"FieldEncoder: field {f.name!r}: {merged} repeated value(s) within "
                           f"an instance were merged (a binary feature is either on or off)")
            else:
                indptr = np.arange(m + 1, dtype=np.int64)
                ids = self.codes(f.name, _one_hot_column(f.name, col, m))
            parts.append((indptr, ids))
        # Fields occupy increasing id ranges, so each row is its fields' runs laid end to end:
        # scatter every run to its place instead of sorting all entries.
        indptr = np.zeros(m + 1, dtype=np.int64)
        for p, _ in parts:
            indptr[1:] += np.diff(p)
        np.cumsum(indptr, out=indptr)
        indices = np.empty(indptr[-1], dtype=np.int64)
        base = indptr[:-1].copy()
        for p, ids in parts:
            counts = np.diff(p)
            indices[np.repeat(base - p[:-1], counts) + np.arange(len(ids))] = ids
            base += counts
        if isinstance(perturbable, str):
            perturbable = self._field(perturbable).ids()
        return InstanceMatrix(indptr, indices, labels, list(self.fields), self.n_features,
                              users, items, perturbable)


def _sort_rows(indptr: np.ndarray, ids: np.ndarray, width: int
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """Sort ids within each row and merge repeats; (indptr, ids, number merged).

    Rows that are already strictly increasing (the common case) cost one pass, no sort.
    """
    if len(ids) < 2:
        return indptr, ids, 0
    starts = np.zeros(len(ids), dtype=bool)
    starts[indptr[:-1][indptr[:-1] < len(ids)]] = True
    if np.all((np.diff(ids) > 0) | starts[1:]):
        return indptr, ids, 0
    m = len(indptr) - 1
    key = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr)) * width + ids
    key.sort()
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    key = key[keep]
    out = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // width, minlength=m), out=out[1:])
    return out, key % width, int(len(ids) - len(key))


def _one_hot_column(name: str, col: Any, m: int) -> np.ndarray:
    if isinstance(col, Ragged):
        raise ValueError(f"field {name!r} is one-hot: give one value per instance, not Ragged")
    try:
        values = np.asarray(col)
    except ValueError:
        values = None
    if values is None or values.ndim != 1 or values.dtype == object:
        raise ValueError(f"one-hot field {name!r} needs exactly one scalar value per instance")
    if len(values) != m:
        raise ValueError(f"field {name!r} has {len(values)} values for {m} instances")
    return values


def _ragged(name: str, col: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(col, Ragged):
        indptr = _int_array(f"{name}.indptr", col.indptr)
        values = np.asarray(col.values)
        if indptr.shape != (m + 1,) or indptr[0] != 0 or indptr[-1] != len(values) \
                or np.any(np.diff(indptr) < 0):
            raise ValueError(f"Ragged column {name!r}: indptr must be non-decreasing, shape "
                             f"({m + 1},), from 0 to len(values)={len(values)}")
        return indptr, values
    col = list(col)
    if len(col) != m:
        raise ValueError(f"field {name!r} has {len(col)} entries for {m} instances")
    lengths = np.zeros(m, dtype=np.int64)
    flat: list = []
    for r, vals in enumerate(col):
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
            raise ValueError(f"multi-hot field {name!r}: instance {r} must hold an iterable of "
                             f"values, got {vals!r}")
        vals = list(vals)
        lengths[r] = len(vals)
        flat.extend(vals)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return indptr, np.asarray(flat)


# ----------------------------------------------------------------------------- history

def history_column(users: np.ndarray, items: np.ndarray, hist_users: np.ndarray,
                   hist_items: np.ndarray, n_users: int) -> Ragged:
    """Per instance (u, i): the sorted distinct items of ``hist_users == u``, without i.

    hist_users/hist_items are the (user, item) pairs the history is built from (the training
    split); the instance's own item is dropped so the label's item never leaks into its input.
    """
    width = int(max(hist_items.max(initial=-1), items.max(initial=-1), 0)) + 1
    pairs = np.unique(hist_users.astype(np.int64) * width + hist_items)
    pu, pi = pairs // width, pairs % width
    ptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pu, minlength=n_users), out=ptr[1:])
    lengths = ptr[users + 1] - ptr[users]
    out_ptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    flat = pi[np.repeat(ptr[users] - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])]
    keep = flat != np.repeat(items, lengths)
    row = np.repeat(np.arange(len(users)), lengths)
    ptr2 = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=len(users)), out=ptr2[1:])
    return Ragged(ptr2, flat[keep])


def _split_rows(m: int, split: Sequence[float], seed: int, fn: str) -> list[np.ndarray]:
    """A seeded random partition of range(m) into len(split) parts, each sorted."""
    fr = np.asarray(split, dtype=float)
    if fr.shape != (3,) or np.any(~np.isfinite(fr)) or np.any(fr < 0) or fr[0] <= 0 \
            or abs(fr.sum() - 1) > 1e-9:
        raise ValueError(f"{fn}: split must be three fractions (train, valid, test) >= 0 with "
                         f"train > 0, summing to 1, got {tuple(split)}")
    perm = np.random.default_rng(seed).permutation(m)
    n_train = int(round(fr[0] * m))
    n_valid = int(round(fr[1] * m))
    n_valid = min(n_valid, m - n_train)
    cuts = [0, n_train, n_train + n_valid, m]
    return [np.sort(perm[a:b]) for a, b in zip(cuts, cuts[1:])]


# ----------------------------------------------------------------------------- ML-100K

# Age buckets of the ML-1M README (ML-100K gives raw ages; we bucket them the ML-1M way).
AGE_GROUPS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])


def age_group(age: Any) -> np.ndarray:
    """ML-1M age group names for integer ages (ValueError for negative, i.e. missing, ages)."""
    age = np.asarray(age)
    if age.size and age.min() < 0:
        raise ValueError(f"age must be >= 0 (negative marks a missing age), got {age.min()}")
    return np.asarray(AGE_GROUPS)[np.searchsorted(_AGE_EDGES, age, side="right")]


def ml100k_fm(dataset: Dataset | None = None, *, seed: int = 0,
              split: Sequence[float] = (0.8, 0.1, 0.1)) -> FMData:
    """ML-100K as binary classification for an FM, with a perturbable history field.

    One instance per rating; fields in this order: ``user`` (943, one-hot), ``item`` (1682),
    ``genres`` (19, multi-hot, the u.item flags), ``age`` (7 ML-1M buckets), ``gender`` (2),
    ``occupation`` (21) and ``history`` (1682, multi-hot): the items the user rated in the
    *training* split, without the instance's own item. History is the field the certifier
    perturbs (``data.perturbable``); it uses training ratings only, so valid/test labels never
    reach any input. 4,356 features in all.

    Label: +1 if rating >= 4 else -1, the usual explicit-to-binary threshold ("liked" = 4 or 5
    stars); 55.4% of ML-100K ratings are positive, so the classes are nearly balanced and
    accuracy is meaningful. Ratings are split at random 80/10/10 with ``seed`` (the paper's
    protocol, §4.1.2); each part keeps the ratings' file order. Same seed, same arrays.
    """
    if dataset is None:
        from .datasets import load
        dataset = load("ml-100k")
    inter = dataset.interactions
    if inter.rating is None:
        raise ValueError("ml100k_fm: the dataset has no ratings to derive labels from")
    uf, itf = dataset.user_features, dataset.item_features
    for kind, feats, keys in (("user", uf, ("age", "gender", "occupation")),
                              ("item", itf, ("genres",))):
        absent = [k for k in keys if k not in feats]
        if absent:
            raise ValueError(f"ml100k_fm: the dataset lacks {kind} features {absent}")
    for key in ("gender", "occupation"):
        if np.any(uf[key] == ""):
            raise ValueError(f"ml100k_fm: some users have no {key} (placeholder ''); the "
                             f"encoding needs every user's features")
    m = len(inter)
    parts = _split_rows(m, split, seed, "ml100k_fm")
    users, items = inter.user.astype(np.int64), inter.item.astype(np.int64)
    labels = np.where(inter.rating >= 4, 1, -1).astype(np.int8)

    enc = FieldEncoder()
    enc.add("user", range(inter.n_users))
    enc.add("item", range(inter.n_items))
    enc.add("genres", ML100K_GENRES, multi_hot=True)
    enc.add("age", AGE_GROUPS)
    enc.add("gender", sorted(set(uf["gender"].tolist())))
    enc.add("occupation", sorted(set(uf["occupation"].tolist())))
    enc.add("history", range(inter.n_items), multi_hot=True)

    item_genres = itf["genres"]
    g_len = np.array([len(g) for g in item_genres], dtype=np.int64)
    g_flat = np.array([g for gs in item_genres for g in gs], dtype=object)
    g_ptr = np.zeros(inter.n_items + 1, dtype=np.int64)
    np.cumsum(g_len, out=g_ptr[1:])
    genres = Ragged(*gather_rows(g_ptr, np.arange(len(g_flat)), items))
    genres = Ragged(genres.indptr, g_flat[genres.values].astype(str))

    train_rows = parts[0]
    history = history_column(users, items, users[train_rows], items[train_rows], inter.n_users)
    cols = {"user": users, "item": items, "genres": genres,
            "age": age_group(uf["age"])[users], "gender": uf["gender"][users],
            "occupation": uf["occupation"][users], "history": history}
    full = enc.encode(cols, labels, users=users, items=items, perturbable="history")
    train, valid, test = (full.subset(r) for r in parts)
    notes = [f"label +1: rating >= 4 ({full.positive_rate:.2%} of all ratings); random "
             f"{'/'.join(f'{s:g}' for s in split)} split of ratings, seed {seed}",
             "history: items the user rated in the training split, own item excluded"]
    return FMData(train, valid, test, name="ml-100k (FM classification)", notes=notes)


# ----------------------------------------------------------------------------- libFM

def _binary_libfm(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices sorted per row, labels ±1) of a libFM file with binary features."""
    data = read_libfm(path)
    name = os.path.basename(os.fspath(path))
    if np.any(data.values != 1):
        k = int(np.argmax(data.values != 1))
        line = int(np.searchsorted(data.indptr, k, side="right"))
        raise FormatError(f"{name} line {line}: feature value {data.values[k]:g}; an FM over "
                          f"binary features needs every value to be 1")
    y = data.labels
    uniq = set(np.unique(y).tolist())
    if uniq <= {-1.0, 1.0}:
        labels = y.astype(np.int8)
    elif uniq <= {0.0, 1.0}:
        labels = np.where(y > 0, 1, -1).astype(np.int8)
    else:
        raise FormatError(f"{name}: labels must be 1/-1 or 1/0 (binary classification), got "
                          f"{sorted(uniq)[:5]}")
    indptr, indices = data.indptr, data.indices
    row = np.repeat(np.arange(len(labels)), np.diff(indptr))
    order = np.lexsort((indices, row))
    indices = indices[order]
    same = (np.diff(indices) == 0) & (np.diff(row) == 0)
    if same.any():
        line = int(row[int(np.argmax(same))]) + 1
        raise FormatError(f"{name} line {line}: feature {indices[int(np.argmax(same))]} appears "
                          f"twice in one instance")
    return indptr, indices, labels


def _one_per_row(indptr: np.ndarray, indices: np.ndarray, lo: int, hi: int, what: str,
                 name: str) -> np.ndarray:
    inside = (indices >= lo) & (indices < hi)
    m = len(indptr) - 1
    counts = np.bincount(np.repeat(np.arange(m), np.diff(indptr))[inside], minlength=m)
    if np.any(counts != 1):
        r = int(np.argmax(counts != 1))
        raise ValueError(f"{name} line {r + 1}: expected exactly one {what} feature in "
                         f"[{lo}, {hi}), found {counts[r]}")
    return indices[inside] - lo


def libfm_fm(train_path: str | os.PathLike[str], valid_path: str | os.PathLike[str] | None = None,
             test_path: str | os.PathLike[str] | None = None, *,
             history: tuple[tuple[int, int], tuple[int, int]] | None = None,
             perturbable: Sequence[int] | None = None,
             n_features: int | None = None) -> FMData:
    """Binary libFM files (Frappe as distributed with NFM/AFM) as FM instances.

    Every feature value must be 1 and labels 1/-1 (Frappe) or 1/0; both become ±1.

    history=((user_lo, user_hi), (item_lo, item_hi)): the half-open feature-id ranges of the
    user and the item field (each instance has exactly one of each). A multi-hot ``history``
    field over the items is appended after the file's features: for instance (u, i), the items
    u has a *positive* (+1) training instance with, minus i, as the paper does for Frappe. It
    becomes ``perturbable``. Without ``history``, ``perturbable`` may name existing feature ids
    an adversary may flip (None: none). n_features defaults to the largest id in any file + 1.
    """
    paths = {"train": train_path, "valid": valid_path, "test": test_path}
    raw = {k: _binary_libfm(p) for k, p in paths.items() if p is not None}
    top = max((int(ind.max()) + 1 for _, ind, _ in raw.values() if len(ind)), default=0)
    if n_features is None:
        n_features = top
    elif top > n_features:
        raise ValueError(f"libfm_fm: a file uses feature id {top - 1} >= n_features={n_features}")
    fields: list[Field] = []
    if history is not None:
        if perturbable is not None:
            raise ValueError("libfm_fm: give history or perturbable, not both (with history the "
                             "history field is the perturbable set)")
        try:
            (ulo, uhi), (ilo, ihi) = ((int(a), int(b)) for a, b in history)
        except (TypeError, ValueError):
            raise ValueError(f"libfm_fm: history must be ((user_lo, user_hi), (item_lo, "
                             f"item_hi)), got {history!r}") from None
        if not (0 <= ulo < uhi <= n_features and 0 <= ilo < ihi <= n_features) or \
                (ulo < ihi and ilo < uhi):
            raise ValueError(f"libfm_fm: user range [{ulo}, {uhi}) and item range [{ilo}, "
                             f"{ihi}) must be non-empty, disjoint and inside [0, {n_features})")
        n_items = ihi - ilo
        fields = [Field("user", ulo, uhi - ulo, False), Field("item", ilo, n_items, False)]
        ui = {}
        for k, (ptr, ind, _) in raw.items():
            fname = os.path.basename(os.fspath(paths[k]))
            ui[k] = (_one_per_row(ptr, ind, ulo, uhi, "user", fname),
                     _one_per_row(ptr, ind, ilo, ihi, "item", fname))
        tu, ti = ui["train"]
        pos = raw["train"][2] == 1
        hist_field = Field("history", n_features, n_items, True)
        fields.append(hist_field)
        out = {}
        for k, (ptr, ind, y) in raw.items():
            u, i = ui[k]
            h = history_column(u, i, tu[pos], ti[pos], uhi - ulo)
            m = len(y)
            rows = np.concatenate([np.repeat(np.arange(m), np.diff(ptr)),
                                   np.repeat(np.arange(m), np.diff(h.indptr))])
            ids = np.concatenate([ind, h.values + n_features])
            order = np.lexsort((ids, rows))
            new_ptr = np.zeros(m + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=m), out=new_ptr[1:])
            out[k] = InstanceMatrix(new_ptr, ids[order], y, fields, n_features + n_items,
                                    users=u, items=i, perturbable=hist_field.ids())
        notes = ["history: items of the user's positive training instances, own item excluded"]
    else:
        p = None if perturbable is None else np.unique(_int_array("perturbable", perturbable))
        out = {k: InstanceMatrix(ptr, ind, y, [], n_features, perturbable=p)
               for k, (ptr, ind, y) in raw.items()}
        notes = []
    name = f"libfm {os.path.basename(os.fspath(train_path))}"
    return FMData(out["train"], out.get("valid"), out.get("test"), name=name, notes=notes)

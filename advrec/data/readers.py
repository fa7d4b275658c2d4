"""Readers for the file formats the papers' datasets come in.

Every reader is strict: a line that does not match the format raises `FormatError` naming the
file, the 1-based line number and the expected format; no line is ever skipped.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np

from advrec._logging import report

from ._parse import FormatError, column, iter_lines, maybe_int_ids, read_lines, split_columns
from .interactions import Interactions
from .movielens import read_ml1m, read_ml100k

__all__ = ["FormatError", "LibFMData", "read_ml100k", "read_ml1m", "read_lastfm", "read_libfm",
           "read_amazon", "read_csv"]


def _in_dir(path: str | os.PathLike[str], default_name: str) -> Path:
    p = Path(path)
    return p / default_name if p.is_dir() else p


# ----------------------------------------------------------------------------- Last.fm

def read_lastfm(path: str | os.PathLike[str]) -> Interactions:
    """Last.fm hetrec-2011 user_artists.dat (a file, or its directory); weight becomes rating."""
    p = _in_dir(path, "user_artists.dat")
    lines = read_lines(p, "utf-8")
    exp = "'userID artistID weight' (3 tab-separated fields after the header)"
    if lines[0].split() != ["userID", "artistID", "weight"]:
        raise FormatError(f"{p.name} line 1: expected header 'userID\\tartistID\\tweight', "
                          f"got {lines[0]!r}")
    if len(lines) == 1:
        raise FormatError(f"{p.name}: has a header but no data lines")
    u, i, w = split_columns(lines[1:], "\t", 3, p.name, exp, first_lineno=2)
    return Interactions.from_raw(column(u, "int", p.name, "userID", exp, 2),
                                 column(i, "int", p.name, "artistID", exp, 2),
                                 ratings=column(w, "float", p.name, "weight", exp, 2))


# ----------------------------------------------------------------------------- libFM

@dataclass(frozen=True, eq=False)
class LibFMData:
    """Rows of sparse features with a label each (libFM/Frappe), as CSR arrays."""

    labels: np.ndarray   # float32 [n]
    indptr: np.ndarray   # int64 [n+1]
    indices: np.ndarray  # int64 [nnz]
    values: np.ndarray   # float32 [nnz]
    n_features: int

    def __len__(self) -> int:
        return len(self.labels)


def read_libfm(path: str | os.PathLike[str], n_features: int | None = None) -> LibFMData:
    """libFM text: 'label idx:val idx:val ...' per line (Frappe, as used by NFM/AFM).

    n_features defaults to the largest index + 1; pass it to keep train/test files aligned
    (an index >= n_features is then an error).
    """
    p = Path(path)
    exp = "'label idx:val idx:val ...' (space-separated, idx a non-negative integer)"
    labels, idx, val, counts = [], [], [], []
    for lineno, line in iter_lines(p, "utf-8"):
        tokens = line.split()
        try:
            labels.append(float(tokens[0]))
        except ValueError:
            raise FormatError(f"{p.name} line {lineno}: label must be a number, got "
                              f"{tokens[0]!r}; expected {exp}") from None
        for tok in tokens[1:]:
            k, sep, v = tok.partition(":")
            try:
                if not sep or not k.isdigit():
                    raise ValueError
                idx.append(int(k))
                val.append(float(v))
            except ValueError:
                raise FormatError(f"{p.name} line {lineno}: bad feature {tok!r}; "
                                  f"expected {exp}") from None
        counts.append(len(tokens) - 1)
    indices = np.array(idx, dtype=np.int64)
    top = int(indices.max()) + 1 if len(indices) else 0
    if n_features is None:
        n_features = top
    elif top > n_features:
        j = int(np.argmax(indices >= n_features))
        line = int(np.searchsorted(np.cumsum(counts), j, side="right")) + 1
        raise FormatError(f"{p.name} line {line}: feature index {indices[j]} >= "
                          f"n_features={n_features}")
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return LibFMData(np.array(labels, dtype=np.float32), indptr, indices,
                     np.array(val, dtype=np.float32), int(n_features))


# ----------------------------------------------------------------------------- Amazon

_AMAZON_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")


def read_amazon(path: str | os.PathLike[str]) -> Interactions:
    """Amazon review JSON lines (5-core files, optionally .gz): reviewer x asin, overall, time.

    Raw ids are kept as strings (ASINs can have leading zeros).
    """
    p = Path(path)
    exp = "one JSON object per line with " + ", ".join(_AMAZON_FIELDS)
    users, items, ratings, times = [], [], [], []
    for lineno, line in iter_lines(p, "utf-8"):
        where = f"{p.name} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{where}: invalid JSON ({e.msg}); expected {exp}") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _AMAZON_FIELDS if k not in obj]
        if missing:
            raise FormatError(f"{where}: missing {', '.join(map(repr, missing))}; expected {exp}")
        r, t = obj["overall"], obj["unixReviewTime"]
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise FormatError(f"{where}: 'overall' must be a number, got {r!r}")
        if isinstance(t, bool) or not isinstance(t, int):
            raise FormatError(f"{where}: 'unixReviewTime' must be an integer, got {t!r}")
        users.append(str(obj["reviewerID"]))
        items.append(str(obj["asin"]))
        ratings.append(r)
        times.append(t)
    return Interactions.from_raw(np.array(users, dtype=str), np.array(items, dtype=str),
                                 np.array(ratings, dtype=np.float32),
                                 np.array(times, dtype=np.int64))


# ----------------------------------------------------------------------------- CSV / TSV

ROLES = ("user", "item", "rating", "timestamp")
_ALIASES = {
    "user": {"user", "users", "user_id", "userid", "uid", "reviewerid", "customer_id"},
    "item": {"item", "items", "item_id", "itemid", "iid", "movieid", "movie_id", "asin",
             "artistid", "artist_id", "product_id", "productid", "business_id"},
    "rating": {"rating", "ratings", "score", "overall", "weight", "stars"},
    "timestamp": {"timestamp", "time", "ts", "unixreviewtime", "unix_time"},
}
Role = Union[Literal["user", "item", "rating", "timestamp"], None]


def _role(name: str) -> Role:
    key = name.split(":")[0].strip().lower()  # RecBole headers: 'user_id:token'
    return next((r for r, names in _ALIASES.items() if key in names), None)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_csv(path: str | os.PathLike[str], sep: str | None = None,
             header: bool | Literal["auto"] = "auto",
             columns: Sequence[Role] | None = None) -> Interactions:
    """A delimited file of user,item[,rating][,timestamp] rows (optionally .gz).

    sep: None sniffs tab, then comma, from the first line. header: "auto" takes the first line
    as a header when it names a known column (user_id, movieId, rating, ...) or its third
    field is not a number. columns: the role of each file column ("user", "item", "rating",
    "timestamp", or None to ignore it); by default taken from the header names, else by
    position. Integer ids are kept as int64, others as str.
    """
    p = Path(path)
    lines = read_lines(p, "utf-8")
    if sep is None:
        sep = "\t" if "\t" in lines[0] else "," if "," in lines[0] else None
        if sep is None:
            raise FormatError(f"{p.name} line 1: cannot tell the separator (no tab or comma); "
                              f"pass sep=")
    head = next(csv.reader(lines[:1], delimiter=sep))
    width = len(head)
    if header == "auto":
        header = any(_role(f) for f in head) or (width >= 3 and not _is_number(head[2]))
        if header:
            report(f"{p.name}: line 1 taken as a header: {lines[0]!r}")
    elif header not in (True, False):
        raise ValueError(f"read_csv: header must be True, False or 'auto', got {header!r}")
    roles = _csv_roles(p.name, head if header else None, width, columns)
    first = 2 if header else 1
    body = lines[first - 1:]
    if not body:
        raise FormatError(f"{p.name}: has a header but no data lines")
    exp = f"{width} fields separated by {sep!r} ({', '.join(str(r) for r in roles)})"
    cols_all = _split_csv(body, sep, width, p.name, exp, first)
    cols = {r: cols_all[j] for j, r in enumerate(roles) if r is not None}
    return Interactions.from_raw(
        maybe_int_ids(cols["user"]), maybe_int_ids(cols["item"]),
        ratings=column(cols["rating"], "float", p.name, "rating", exp, first)
        if "rating" in cols else None,
        timestamps=column(cols["timestamp"], "int", p.name, "timestamp", exp, first)
        if "timestamp" in cols else None)


def _split_csv(lines: list[str], sep: str, width: int, name: str, exp: str, first: int
               ) -> list[list[str]]:
    """Columns of the body: a plain split when nothing is quoted (fast), else the csv module."""
    if '"' not in "\n".join(lines):
        return split_columns(lines, sep, width, name, exp, first)
    rows = list(csv.reader(lines, delimiter=sep))
    for k, row in enumerate(rows):
        if len(row) != width:
            raise FormatError(f"{name} line {k + first}: expected {exp}, got {len(row)} fields")
    return [list(c) for c in zip(*rows)]


def _csv_roles(name: str, head: list[str] | None, width: int,
               columns: Sequence[Role] | None) -> list[Role]:
    if columns is not None:
        roles = list(columns)
        if len(roles) != width:
            raise ValueError(f"read_csv: columns has {len(roles)} entries but {name} has "
                             f"{width} columns")
        bad = [r for r in roles if r is not None and r not in ROLES]
        if bad:
            raise ValueError(f"read_csv: columns entries must be one of {ROLES} or None, got {bad}")
    elif head is not None:
        roles = [_role(h) for h in head]
        ignored = [h for h, r in zip(head, roles) if r is None]
        if ignored:
            report(f"{name}: ignoring columns {ignored} (not user/item/rating/timestamp)")
    elif 2 <= width <= 4:
        roles = list(ROLES[:width])
    else:
        raise FormatError(f"{name} line 1: expected 2 to 4 columns user,item[,rating]"
                          f"[,timestamp], got {width}; pass columns= to name them")
    for r in ("user", "item"):
        if r not in roles:
            raise FormatError(f"{name} line 1: no {r} column in {head or roles}; "
                              f"pass columns= to name the columns")
    dup = {r for r in roles if r is not None and roles.count(r) > 1}
    if dup:
        raise FormatError(f"{name} line 1: more than one column for {sorted(dup)}; "
                          f"pass columns= to choose")
    return roles

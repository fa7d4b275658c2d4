"""Readers for the file formats the papers' datasets come in.

Every reader is strict: a line that does not match the format raises `FormatError` naming the
file, the 1-based line number and the expected format; no line is ever skipped. Files may be
gzip-compressed, up to a limit on how far they expand (``ADVREC_GZIP_MAX_RATIO``, see
`advrec.data._parse`); '\r\n' and '\r' line ends and a UTF-8 byte-order mark are understood.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np

from advrec._logging import report

from ._parse import (_F32_MAX, FormatError, column, csv_rows, iter_lines, maybe_int_ids,
                     read_lines, split_columns)
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
    (an index >= n_features is then an error). Labels and values must be finite float32s.
    """
    p = Path(path)
    exp = "'label idx:val idx:val ...' (space-separated, idx a non-negative integer)"
    labels, idx, val, counts, linenos = [], [], [], [], []
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
                if not sep or not (k.isascii() and k.isdigit()):
                    raise ValueError
                idx.append(int(k))
                val.append(float(v))
            except ValueError:
                raise FormatError(f"{p.name} line {lineno}: bad feature {tok!r}; "
                                  f"expected {exp}") from None
        counts.append(len(tokens) - 1)
        linenos.append(lineno)
    ends = np.cumsum(counts)

    def line_of(j: int) -> int:  # the line of the j-th feature
        return linenos[int(np.searchsorted(ends, j, side="right"))]

    try:
        indices = np.array(idx, dtype=np.int64)
    except OverflowError:
        j = next(j for j, k in enumerate(idx) if k > np.iinfo(np.int64).max)
        raise FormatError(f"{p.name} line {line_of(j)}: feature index {idx[j]} is too large "
                          f"(over int64); expected {exp}") from None
    labels32, values32 = _finite32(labels), _finite32(val)
    for arr, what, where in ((labels32, "label", lambda j: linenos[j]),
                             (values32, "feature value", line_of)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            j = int(bad[0])
            got = labels[j] if what == "label" else val[j]
            raise FormatError(f"{p.name} line {where(j)}: {what} must be a finite number within "
                              f"float32 range, got {got!r}; expected {exp}")
    top = int(indices.max()) + 1 if len(indices) else 0
    if n_features is None:
        n_features = top
    elif top > n_features:
        j = int(np.argmax(indices >= n_features))
        raise FormatError(f"{p.name} line {line_of(j)}: feature index {indices[j]} >= "
                          f"n_features={n_features}")
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    indptr[1:] = ends
    _report_repeated_features(p.name, indptr, indices, linenos)
    return LibFMData(labels32, indptr, indices, values32, int(n_features))


def _report_repeated_features(name: str, indptr: np.ndarray, indices: np.ndarray,
                              linenos: list[int]) -> None:
    """Kept as given, but reported: an FM would pair such a feature with itself."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((indices, rows))
    same = (rows[order][1:] == rows[order][:-1]) & (indices[order][1:] == indices[order][:-1])
    if same.any():
        bad = np.unique(rows[order][1:][same])
        report(f"{name}: a feature index appears more than once on {len(bad)} line(s) (first: "
               f"line {linenos[bad[0]]}); kept as given")


def _finite32(values: list[float]) -> np.ndarray:
    """float32, with values beyond its range turned to inf (so that the finite check sees them)."""
    with np.errstate(over="ignore"):
        return np.array(values, dtype=np.float64).astype(np.float32)


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
        except RecursionError:
            raise FormatError(f"{where}: JSON nested too deeply; expected {exp}") from None
        except ValueError as e:  # bad JSON, or an integer of over 4300 digits
            why = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            raise FormatError(f"{where}: invalid JSON ({why}); expected {exp}") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _AMAZON_FIELDS if k not in obj]
        if missing:
            raise FormatError(f"{where}: missing {', '.join(map(repr, missing))}; expected {exp}")
        u, i = _amazon_id(obj, "reviewerID", where), _amazon_id(obj, "asin", where)
        r, t = obj["overall"], obj["unixReviewTime"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not _in_float32(r):
            raise FormatError(f"{where}: 'overall' must be a finite number, got {_short(r)}")
        if isinstance(t, bool) or not isinstance(t, int) or not -2**63 <= t < 2**63:
            raise FormatError(f"{where}: 'unixReviewTime' must be an integer within int64, "
                              f"got {_short(t)}")
        users.append(u)
        items.append(i)
        ratings.append(r)
        times.append(t)
    return Interactions.from_raw(np.array(users, dtype=str), np.array(items, dtype=str),
                                 np.array(ratings, dtype=np.float32),
                                 np.array(times, dtype=np.int64))


def _amazon_id(obj: dict, key: str, where: str) -> str:
    """A string (or integer) id, non-empty and NUL-free (numpy would strip a trailing NUL)."""
    v = obj[key]
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        raise FormatError(f"{where}: {key!r} must be a non-empty string id, got {_short(v)}")
    return v


def _in_float32(x: int | float) -> bool:
    try:
        return abs(float(x)) <= _F32_MAX  # False for NaN and inf
    except OverflowError:  # an int beyond float64
        return False


def _short(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


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
    if sep is not None and (not isinstance(sep, str) or not sep or any(c in sep for c in '"\r\n')):
        raise ValueError(f"read_csv: sep must be a non-empty string without quotes or line "
                         f"breaks, got {sep!r}")
    p = Path(path)
    lines = read_lines(p, "utf-8")
    if sep is None:
        sep = "\t" if "\t" in lines[0] else "," if "," in lines[0] else None
        if sep is None:
            raise FormatError(f"{p.name} line 1: cannot tell the separator (no tab or comma); "
                              f"pass sep=")
    quoted = len(sep) == 1 and '"' in lines[0]
    head = next(csv_rows(lines[:1], sep, p.name)) if quoted else lines[0].split(sep)
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
        maybe_int_ids(cols["user"], p.name, "user id", first),
        maybe_int_ids(cols["item"], p.name, "item id", first),
        ratings=column(cols["rating"], "float", p.name, "rating", exp, first)
        if "rating" in cols else None,
        timestamps=column(cols["timestamp"], "int", p.name, "timestamp", exp, first)
        if "timestamp" in cols else None)


def _split_csv(lines: list[str], sep: str, width: int, name: str, exp: str, first: int
               ) -> list[list[str]]:
    """Columns of the body: a plain split when nothing is quoted (fast), else the csv module
    (which knows one-character separators only: with a longer one, quotes are plain text)."""
    if len(sep) > 1 or '"' not in "\n".join(lines):
        return split_columns(lines, sep, width, name, exp, first)
    rows = list(csv_rows(lines, sep, name, first))
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

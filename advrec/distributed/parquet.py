"""Instances in and certificates out as Parquet (pyarrow), the columnar format data teams share.

Instances: one row per instance, a ``list<int>`` column of active feature ids (``features`` by
default), optionally an id column and a label column that are carried into the results. The file
is read in batches (row groups), re-cut into shards of a fixed number of rows, and each shard is
checked (no null lists or ids, ids in ``[0, n_features)``, strictly increasing within a row)
with errors that name the column and the row.

Results: one row per instance and budget q, in input order (row, then q): ``row`` (the instance's
position in the input), the id and label columns if given, ``q``, ``method``, ``status`` (1
certifiably robust, -1 certifiably non-robust, 0 unknown), ``certified`` (status == 1), ``score``
(f(x)), ``bound`` (NaN for greedy), ``flips`` (the feature ids whose injection flips a non-robust
instance) and ``nodes`` (branch-and-bound nodes). ``read_results`` turns such a file back into
``{q: CertResult}``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ..certify import CertResult
from ..data.fields import check_csr
from . import _deps

PathLike = Union[str, Path]
FEATURES = "features"


@dataclass
class Shard:
    """A contiguous block of instances: rows ``[start, start + rows)`` of the input, as CSR, with
    the carried columns (Arrow arrays, or None)."""

    index: int
    start: int
    indptr: np.ndarray
    indices: np.ndarray
    ids: Any = None
    labels: Any = None

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes)


class InstanceFile:
    """A Parquet file of instances, its columns checked on opening (nothing is read yet)."""

    def __init__(self, path: PathLike, *, features_column: str = FEATURES, id_column: Optional[str] = None,
                 label_column: Optional[str] = None):
        pa, pq = _deps.pyarrow(), _deps.parquet()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"instances file {self.path} does not exist")
        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises ArrowInvalid for a file that is not Parquet
            raise ValueError(f"{self.path} is not a readable Parquet file: {err}") from None
        schema = self._file.schema_arrow
        names = list(schema.names)
        for role, col in (("features_column", features_column), ("id_column", id_column),
                          ("label_column", label_column)):
            if col is not None and col not in names:
                raise ValueError(f"{role}: column {col!r} is not in {self.path} (columns: {names})")
        ftype = schema.field(features_column).type
        if not (pa.types.is_list(ftype) or pa.types.is_large_list(ftype)) or \
                not pa.types.is_integer(ftype.value_type):
            raise TypeError(f"features_column: column {features_column!r} must be a list of integers "
                            f"(list<int64>), got {ftype}")
        if label_column is not None and not pa.types.is_integer(schema.field(label_column).type):
            raise TypeError(f"label_column: column {label_column!r} must hold integers, got "
                            f"{schema.field(label_column).type}")
        self.features_column, self.id_column, self.label_column = features_column, id_column, label_column
        self.rows = int(self._file.metadata.num_rows)

    def n_shards(self, shard_size: int) -> int:
        return -(-self.rows // shard_size)

    def shards(self, shard_size: int, n_features: int) -> Iterator[Shard]:
        """The file's rows in shards of ``shard_size`` (the last one shorter), read batch by batch."""
        pa = _deps.pyarrow()
        columns = [c for c in (self.features_column, self.id_column, self.label_column) if c is not None]
        pending: List[Any] = []
        held = 0
        index = start = 0
        for batch in self._file.iter_batches(batch_size=shard_size, columns=list(dict.fromkeys(columns))):
            pending.append(batch)
            held += batch.num_rows
            while held >= shard_size:
                table = pa.Table.from_batches(pending)
                yield self._shard(index, start, table.slice(0, shard_size), n_features)
                rest = table.slice(shard_size)
                pending, held = rest.to_batches(), rest.num_rows
                index, start = index + 1, start + shard_size
        if held:
            yield self._shard(index, start, pa.Table.from_batches(pending), n_features)

    def _shard(self, index: int, start: int, table: Any, n_features: int) -> Shard:
        col = table.column(self.features_column).combine_chunks()
        name = f"features_column {self.features_column!r}"
        if col.null_count:
            row = start + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"{name}: row {row} is null (an instance with no active feature is an empty list)")
        values = col.flatten()
        if values.null_count:
            raise ValueError(f"{name}: rows {start}..{start + len(col) - 1} hold a null feature id")
        lengths = col.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = values.to_numpy(zero_copy_only=False).astype(np.int64)
        try:
            indptr, indices = check_csr(indptr, indices, n_features)
        except (ValueError, IndexError) as err:
            if len(indices) and (indices.min() < 0 or indices.max() >= n_features):
                k = int(np.flatnonzero((indices < 0) | (indices >= n_features))[0])
                row = start + int(np.searchsorted(indptr, k, side="right")) - 1
                raise IndexError(f"{name}: row {row} has feature id {indices[k]} outside [0, {n_features}) "
                                 f"(the model's features)") from None
            raise type(err)(f"{name}, rows from {start}: {err} (row numbers counted from {start})") from None
        ids = table.column(self.id_column).combine_chunks() if self.id_column else None
        labels = table.column(self.label_column).combine_chunks() if self.label_column else None
        return Shard(index, start, indptr, indices, ids, labels)


def write_instances(path: PathLike, indptr: Any, indices: Any, *, ids: Any = None, labels: Any = None,
                    row_group_size: int = 65_536) -> Path:
    """Write a CSR of instances as a Parquet instances file (``features`` list<int64>, optional
    ``id`` and ``label``): the layout ``certify_parquet`` reads."""
    pa, pq = _deps.pyarrow(), _deps.parquet()
    indptr = np.asarray(indptr, np.int64)
    indices = np.asarray(indices, np.int64)
    if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or indptr[-1] != len(indices) \
            or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must be a non-decreasing 1-D array from 0 to len(indices)")
    m = len(indptr) - 1
    cols = {"features": pa.LargeListArray.from_arrays(pa.array(indptr), pa.array(indices))}
    for name, col in (("id", ids), ("label", labels)):
        if col is not None:
            arr = pa.array(np.asarray(col))
            if len(arr) != m:
                raise ValueError(f"{name}s must have one entry per instance ({m}), got {len(arr)}")
            cols[name] = arr
    path = Path(path)
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def result_table(shard: Shard, results: Dict[int, CertResult], id_column: Optional[str],
                 label_column: Optional[str]) -> Any:
    """The shard's certificates as an Arrow table, one row per instance and q (row, then q)."""
    pa = _deps.pyarrow()
    qs = sorted(results)
    n, k = shard.rows, len(qs)
    sel = np.repeat(np.arange(n), k)
    cols: Dict[str, Any] = {"row": pa.array(shard.start + sel, pa.int64())}
    if id_column is not None:
        cols[id_column] = shard.ids.take(pa.array(sel))
    if label_column is not None:
        cols[label_column] = shard.labels.take(pa.array(sel))
    method = results[qs[0]].method if qs else ""
    status = np.stack([results[q].status for q in qs], axis=1).ravel().astype(np.int8)
    cols["q"] = pa.array(np.tile(np.asarray(qs, np.int32), n), pa.int32())
    cols["method"] = pa.array([method] * (n * k), pa.string()).dictionary_encode()
    cols["status"] = pa.array(status, pa.int8())
    cols["certified"] = pa.array(status == 1, pa.bool_())
    for field, dtype in (("score", np.float64), ("bound", np.float64), ("nodes", np.int64)):
        cols[field] = pa.array(np.stack([getattr(results[q], field) for q in qs], axis=1).ravel().astype(dtype))
    # flips: row-major interleave of the per-q CSRs
    lengths = np.stack([np.diff(results[q].flips_indptr) for q in qs], axis=1).ravel().astype(np.int64)
    bases = np.cumsum([0] + [len(results[q].flips_indices) for q in qs[:-1]])
    starts = np.stack([results[q].flips_indptr[:-1] + b for q, b in zip(qs, bases)], axis=1).ravel()
    flat = np.concatenate([results[q].flips_indices for q in qs]).astype(np.int64) if qs else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    take = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    cols["flips"] = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat[take], pa.int64()))
    # pyarrow.Table.from_pydict keeps the columns' order (the documented layout)
    return pa.table(cols)


def write_atomic(table: Any, path: Path) -> int:
    """Write ``table`` to ``path`` through a temporary file renamed into place (a crash leaves
    either no file or a complete one); returns the file's size in bytes."""
    pq = _deps.parquet()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path.stat().st_size


def concat_files(parts: Sequence[Path], path: Path) -> int:
    """Concatenate Parquet files with one schema into ``path`` (atomically), reading one at a time."""
    pq = _deps.parquet()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = None
    try:
        for part in parts:
            table = pq.read_table(part)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return path.stat().st_size if path.exists() else 0


def read_results(path: PathLike) -> Dict[int, CertResult]:
    """A results file (or one shard's) back as ``{q: CertResult}``, instances in row order."""
    pq = _deps.parquet()
    table = pq.read_table(Path(path), columns=["row", "q", "method", "status", "score", "bound",
                                                "flips", "nodes"])
    q_col = table.column("q").to_numpy()
    rows = table.column("row").to_numpy()
    methods = table.column("method").combine_chunks().dictionary_decode().to_pylist() if len(table) else []
    flips = table.column("flips").combine_chunks()
    out: Dict[int, CertResult] = {}
    for q in sorted(set(q_col.tolist())):
        pick = np.flatnonzero(q_col == q)
        pick = pick[np.argsort(rows[pick], kind="stable")]
        f = flips.take(pick)
        lengths = f.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        out[int(q)] = CertResult(
            status=table.column("status").to_numpy()[pick].astype(np.int8),
            score=table.column("score").to_numpy()[pick], bound=table.column("bound").to_numpy()[pick],
            flips_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            flips_indices=f.flatten().to_numpy(zero_copy_only=False).astype(np.int64),
            nodes=table.column("nodes").to_numpy()[pick].astype(np.int64), q=int(q), method=methods[pick[0]])
    return out


def file_sha256(path: PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (the manifest's input fingerprint), read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()

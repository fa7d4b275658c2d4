"""What a worker needs to certify a shard: one FM's parameters, and the per-shard computation.

``ModelPayload`` is the model as plain arrays (``w0``, ``w``, ``V``, ``perturbable``), put once in
Ray's object store and read zero-copy by every task on a node. A worker process builds its
``FMCertifier`` from it once and keeps it (keyed by the payload's hash), so the per-model tables
(``FMCertifier.tables``) are selected once per worker process, not once per shard. The functions
here know nothing of Ray: ``certify_shard`` is what a Ray task runs, and what a test can call
directly.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Sequence

import numpy as np
import torch

from ..certify import METHODS, CertResult, FMCertifier

if TYPE_CHECKING:
    from ..models import FM


@dataclass(frozen=True)
class ModelPayload:
    """One FM's parameters as arrays, with a SHA-256 over all of them (the manifest's model hash
    and the workers' cache key)."""

    w0: float
    w: np.ndarray
    V: np.ndarray
    perturbable: np.ndarray
    sha256: str

    @classmethod
    def from_arrays(cls, w0: float, w: Any, V: Any, perturbable: Any) -> "ModelPayload":
        """Checked by ``FMCertifier`` (same errors), then frozen as float32 / int64 arrays."""
        cert = FMCertifier(w0, w, V, perturbable, gram_max_bytes=0)  # the checks, no tables
        w_, V_, P_ = (np.ascontiguousarray(a) for a in (cert.w, cert.V, cert.perturbable))
        h = hashlib.sha256()
        h.update(np.float64(cert.w0).tobytes())
        for a in (w_, V_, P_):
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return cls(cert.w0, w_, V_, P_, h.hexdigest())

    @classmethod
    def from_model(cls, model: "FM", perturbable: Any) -> "ModelPayload":
        """The payload of a trained ``advrec.models.FM``."""
        w0, w, V = model.parameters_numpy()
        return cls.from_arrays(w0, w, V, perturbable)

    @property
    def n_features(self) -> int:
        return int(self.w.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes shipped to the object store (the arrays; the tables are built on the workers)."""
        return int(self.w.nbytes + self.V.nbytes + self.perturbable.nbytes + 8)


#: the certifier of the last payload this process saw (one model per run; keyed by its hash)
_certifiers: Dict[str, FMCertifier] = {}


def certifier_for(payload: ModelPayload) -> FMCertifier:
    """This process's certifier of ``payload``, built on first use and kept (with its tables)."""
    cert = _certifiers.get(payload.sha256)
    if cert is None:
        _certifiers.clear()
        # arrays from the object store are read-only views; the certifier wants its own copies
        cert = FMCertifier(payload.w0, np.array(payload.w), np.array(payload.V),
                           np.array(payload.perturbable))
        _certifiers[payload.sha256] = cert
    return cert


@dataclass
class ShardResult:
    """The certificates of one shard: per budget q, the arrays of a ``CertResult``."""

    index: int
    rows: int
    results: Dict[int, CertResult]
    node: str = ""
    seconds: float = 0.0


def certify_shard(payload: ModelPayload, index: int, indptr: np.ndarray, indices: np.ndarray,
                  qs: Sequence[int], method: str, node_budget: int, threads: int) -> ShardResult:
    """Certify one shard (a CSR row block) at every budget in ``qs`` with ``threads`` threads.

    The thread count is set for this call only, so tasks sharing a node do not oversubscribe it
    (torch's intra-op threads and the core's OpenMP threads are the same pool)."""
    import time

    start = time.perf_counter()
    cert = certifier_for(payload)
    rows = len(indptr) - 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = cert.certify_budgets(np.array(indptr), np.array(indices), list(qs), method,
                                       node_budget=node_budget, progress=False)
    finally:
        torch.set_num_threads(previous)
    return ShardResult(index, rows, results, seconds=time.perf_counter() - start)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_qs(qs: Any) -> list:
    """Sorted distinct budgets, each an int >= 0 (at least one)."""
    if isinstance(qs, (int, np.integer)) and not isinstance(qs, bool):
        qs = [qs]
    try:
        items = list(qs)
    except TypeError:
        raise TypeError(f"qs must be an int or a sequence of ints, got {type(qs).__name__}") from None
    if not items:
        raise ValueError("qs must name at least one budget q")
    for q in items:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 0:
            raise ValueError(f"qs: each q must be an int >= 0, got {q!r}")
    return sorted({int(q) for q in items})


def concat_results(parts: Sequence[CertResult], q: int, method: str) -> CertResult:
    """One ``CertResult`` from the shards' results, in shard order."""
    if not parts:
        z = np.zeros(0)
        return CertResult(z.astype(np.int8), z, z, np.zeros(1, np.int64), z.astype(np.int64),
                          z.astype(np.int64), q, method)
    offsets = np.cumsum([0] + [int(p.flips_indptr[-1]) for p in parts[:-1]])
    indptr = np.concatenate([np.zeros(1, np.int64)] +
                            [np.asarray(p.flips_indptr[1:], np.int64) + off for p, off in zip(parts, offsets)])
    return CertResult(
        status=np.concatenate([p.status for p in parts]).astype(np.int8),
        score=np.concatenate([p.score for p in parts]).astype(np.float64),
        bound=np.concatenate([p.bound for p in parts]).astype(np.float64),
        flips_indptr=indptr,
        flips_indices=np.concatenate([p.flips_indices for p in parts]).astype(np.int64),
        nodes=np.concatenate([p.nodes for p in parts]).astype(np.int64), q=q, method=method)

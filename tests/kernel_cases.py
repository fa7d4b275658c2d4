"""Random inputs shared by the CPU and CUDA top-k tests (one generator, so both test the same cases)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

CSR = Tuple[np.ndarray, np.ndarray]


def make_csr(rows: Sequence[Sequence[int]]) -> CSR:
    """CSR (indptr, indices) int64 from a list of per-row item lists (kept as given)."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return indptr, indices


def random_exclusion(rng: np.random.Generator, n_rows: int, n_items: int, max_len: int,
                     dups: bool = True) -> CSR:
    """Unsorted per-row exclusion lists, with duplicates when asked, some rows empty."""
    rows: List[List[int]] = []
    for _ in range(n_rows):
        m = int(rng.integers(0, max_len + 1)) if n_items else 0
        row = rng.integers(0, n_items, size=m).tolist() if n_items else []
        if dups and row:
            row += row[: len(row) // 3]
        rng.shuffle(row)
        rows.append(row)
    return make_csr(rows)


def random_scores(rng: np.random.Generator, b: int, n: int, kind: str) -> np.ndarray:
    """Scores of a kind: "ties" (small integers), "zeros" (signed zeros, which must tie),
    "inf" (integers with ±inf), anything else standard normal."""
    if kind == "ties":
        return rng.integers(-3, 4, size=(b, n)).astype(np.float32)
    if kind == "zeros":
        return np.where(rng.random((b, n)) < 0.5, -0.0, 0.0).astype(np.float32)
    if kind == "inf":
        s = rng.integers(0, 3, size=(b, n)).astype(np.float32)
        s[rng.random((b, n)) < 0.3] = -np.inf
        s[rng.random((b, n)) < 0.05] = np.inf
        return s
    return rng.standard_normal((b, n)).astype(np.float32)

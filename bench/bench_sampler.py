"""BPR triple sampling throughput: advrec.data.sampling.BPRSampler against plain numpy.

Reference: a vectorised numpy rejection sampler (np.random.default_rng; membership of
(user, negative) among the positives by np.searchsorted on the sorted user*n_items+item keys;
redraw the rejected ones until none is left). Its key table is built outside the timing, as the
sampler's own tables are built in its constructor. With candidates, both draw an index into the
sorted candidate items instead of an item.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import pytest

sampling = pytest.importorskip("advrec.data.sampling")

N_TRIPLES = 1_000_000
Triples = Tuple[np.ndarray, np.ndarray, np.ndarray]


class NumpyBPR:
    """The reference sampler: the same interface, numpy only."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n_items: int, seed: int,
                 candidates: Optional[np.ndarray] = None) -> None:
        self.indices, self.n_items = indices, n_items
        self.candidates = None if candidates is None else np.unique(candidates)
        self.row_of = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
        self.keys = self.row_of * n_items + indices  # sorted: CSR rows in order, items sorted
        self.rng = np.random.default_rng(seed)

    def _draw(self, n: int) -> np.ndarray:
        if self.candidates is None:
            return self.rng.integers(0, self.n_items, size=n)
        return self.candidates[self.rng.integers(0, self.candidates.shape[0], size=n)]

    def _negatives(self, users: np.ndarray) -> np.ndarray:
        neg = self._draw(users.shape[0])
        todo = np.arange(users.shape[0])
        while todo.size:
            q = users[todo] * self.n_items + neg[todo]
            at = np.minimum(np.searchsorted(self.keys, q), self.keys.shape[0] - 1)
            todo = todo[self.keys[at] == q]
            neg[todo] = self._draw(todo.size)
        return neg

    def sample(self, n: int) -> Triples:
        positions = self.rng.integers(0, self.indices.shape[0], size=n)
        users = self.row_of[positions]
        return users, self.indices[positions], self._negatives(users)

    def epoch(self) -> Triples:
        positions = self.rng.permutation(self.indices.shape[0])
        users = self.row_of[positions]
        return users, self.indices[positions], self._negatives(users)


def check_triples(t: Triples, indptr: np.ndarray, indices: np.ndarray, n_items: int, n: int) -> None:
    users, pos, neg = t
    assert users.shape == pos.shape == neg.shape == (n,)
    keys = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr)) * n_items + indices
    for items, positive in ((pos, True), (neg, False)):
        q = users * n_items + items
        at = np.minimum(np.searchsorted(keys, q), keys.shape[0] - 1)
        assert np.all((keys[at] == q) == positive)


def run(benchmark, ratio, timed_best_of, name: str, data, n_items: int, method: str, n: int,
        candidates: Optional[np.ndarray] = None) -> None:
    indptr, indices = data
    ours = sampling.BPRSampler(indptr, indices, n_items, seed=0, candidates=candidates)
    ref = NumpyBPR(indptr, indices, n_items, seed=0, candidates=candidates)
    args = (n,) if method == "sample" else ()
    for sampler in (ours, ref):
        triples = getattr(sampler, method)(*args)  # also the JIT warm-up
        check_triples(triples, indptr, indices, n_items, n)
        assert candidates is None or np.isin(triples[2], candidates).all()
    benchmark.pedantic(getattr(ours, method), args=args, rounds=5, iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: getattr(ref, method)(*args), rounds=5)
    r = ratio(benchmark, name, ref_s, triples=n, reference_triples_per_s=n / ref_s)
    if r is not None:
        ours_tps = n / benchmark.stats.stats.min
        benchmark.extra_info["triples_per_s"] = ours_tps
        print(f"[{name}] ours {ours_tps / 1e6:.1f} M triples/s, "
              f"numpy reference {n / ref_s / 1e6:.1f} M triples/s")


def test_sample_1m_ml100k_like(benchmark, ratio, timed_best_of, interactions):
    """1M triples drawn from ~100k interactions of 943 users x 1682 items (ML-100K shape)."""
    data = interactions(2, 943, 1682, 100_000)
    run(benchmark, ratio, timed_best_of, "BPRSampler.sample(1M) ML-100K-like", data, 1682,
        "sample", N_TRIPLES)


def test_epoch_1m_ml1m_like(benchmark, ratio, timed_best_of, interactions):
    """One epoch (one triple per interaction, shuffled) of ~1M interactions, 6040 x 3706."""
    data = interactions(3, 6040, 3706, 1_000_000)
    run(benchmark, ratio, timed_best_of, "BPRSampler.epoch() ML-1M-like", data, 3706,
        "epoch", int(data[1].shape[0]))


def test_sample_1m_ml100k_like_candidates(benchmark, ratio, timed_best_of, interactions):
    """As test_sample_1m_ml100k_like, negatives restricted to a random 80% of the items (the
    warm items of a cold-item split at share 0.2)."""
    data = interactions(2, 943, 1682, 100_000)
    cand = np.sort(np.random.default_rng(4).choice(1682, 1346, replace=False))
    run(benchmark, ratio, timed_best_of, "BPRSampler.sample(1M, candidates) ML-100K-like", data,
        1682, "sample", N_TRIPLES, candidates=cand)

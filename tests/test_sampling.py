"""BPR sampler: negatives are never positives, positives are the user's, seeds reproduce."""
import numpy as np
import pytest

from advrec.data.sampling import BPRSampler


def _random_csr(rng, n_users=50, n_items=40, density=0.3):
    dense = rng.random((n_users, n_items)) < density
    dense[:, 0] = False  # every user has at least one negative
    indptr = np.concatenate([[0], np.cumsum(dense.sum(1))]).astype(np.int64)
    indices = np.nonzero(dense)[1].astype(np.int64)
    return dense, indptr, indices


def test_triples_respect_positives():
    rng = np.random.default_rng(0)
    dense, indptr, indices = _random_csr(rng)
    s = BPRSampler(indptr, indices, dense.shape[1], seed=3)
    u, p, n = s.sample(20000)
    assert u.dtype == p.dtype == n.dtype == np.int64
    assert dense[u, p].all()
    assert not dense[u, n].any()
    u, p, n = s.epoch()
    assert len(u) == len(s) == dense.sum()
    # an epoch visits every interaction exactly once
    assert sorted(zip(u.tolist(), p.tolist())) == sorted(zip(*np.nonzero(dense)))
    assert not dense[u, n].any()


def test_negatives_are_uniform_over_non_positives():
    indptr = np.array([0, 2], dtype=np.int64)
    indices = np.array([1, 3], dtype=np.int64)
    _, _, n = BPRSampler(indptr, indices, 5, seed=0).sample(50000)
    counts = np.bincount(n, minlength=5)
    assert counts[1] == counts[3] == 0
    assert np.allclose(counts[[0, 2, 4]] / 50000, 1 / 3, atol=0.01)


def test_same_seed_same_triples_and_different_seed_differs():
    rng = np.random.default_rng(1)
    _, indptr, indices = _random_csr(rng)
    a = BPRSampler(indptr, indices, 40, seed=7)
    b = BPRSampler(indptr, indices, 40, seed=7)
    c = BPRSampler(indptr, indices, 40, seed=8)
    for x, y in zip(a.epoch() + a.sample(100), b.epoch() + b.sample(100)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.epoch()[2], c.epoch()[2])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="indptr"):
        BPRSampler(np.array([1, 2]), np.array([0]), 3)
    with pytest.raises(IndexError, match="indices"):
        BPRSampler(np.array([0, 1]), np.array([5]), 3)
    with pytest.raises(ValueError, match="sorted"):
        BPRSampler(np.array([0, 2]), np.array([2, 1]), 3)
    with pytest.raises(ValueError, match="repeat"):
        BPRSampler(np.array([0, 2]), np.array([1, 1]), 3)
    with pytest.raises(ValueError, match="every item"):
        BPRSampler(np.array([0, 3]), np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="n_items"):
        BPRSampler(np.array([0, 0]), np.array([], dtype=np.int64), 0)
    s = BPRSampler(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="n must be"):
        s.sample(-1)


def test_the_bitmap_membership_test_draws_the_same_triples_as_the_binary_search(monkeypatch):
    """Issue 18: small catalogues test membership in a per-user bitmap; the generator's calls are
    the same, so the triples must be too (and where the bitmap would be too large, the binary
    search runs)."""
    import advrec.data.sampling as sampling

    rng = np.random.default_rng(1)
    dense, indptr, indices = _random_csr(rng, n_users=70, n_items=130, density=0.4)
    fast = BPRSampler(indptr, indices, dense.shape[1], seed=5)
    monkeypatch.setattr(sampling, "BITMAP_MAX_BYTES", 0)
    slow = BPRSampler(indptr, indices, dense.shape[1], seed=5)
    assert fast._bits is not None and slow._bits is None
    for _ in range(3):
        for a, b in zip(fast.epoch(), slow.epoch()):
            assert np.array_equal(a, b)
    u, _, n = fast.sample(5000)
    assert not dense[u, n].any()

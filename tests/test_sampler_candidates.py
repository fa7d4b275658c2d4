"""BPRSampler(candidates=...): negatives only from the candidates, uniform over the candidates
that are not positives; candidates=None unchanged from before the option existed."""
import hashlib

import numpy as np
import pytest

from advrec.data.sampling import BPRSampler


def _random_csr(rng, n_users=50, n_items=40, density=0.3):
    dense = rng.random((n_users, n_items)) < density
    dense[:, 0] = False  # every user has at least one negative
    indptr = np.concatenate([[0], np.cumsum(dense.sum(1))]).astype(np.int64)
    indices = np.nonzero(dense)[1].astype(np.int64)
    return dense, indptr, indices


def _digest(triples):
    h = hashlib.sha256()
    for t in triples:
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


def test_none_gives_the_triples_of_the_sampler_before_candidates_existed():
    # Recorded with the sampler as it was before `candidates` was added (commit f691161).
    rng = np.random.default_rng(11)
    dense, indptr, indices = _random_csr(rng, 6, 9, 0.4)
    assert indices.tolist() == [3, 4, 6, 7, 1, 4, 5, 3, 6, 8, 2, 4, 5, 8, 1, 3, 4, 5, 6, 1, 2,
                                3, 7, 8]
    s = BPRSampler(indptr, indices, 9, seed=5, candidates=None)
    got = [t.tolist() for t in s.sample(12) + s.epoch()]
    assert got == [
        [0, 3, 3, 0, 5, 2, 4, 4, 4, 0, 4, 2],
        [3, 8, 5, 4, 2, 8, 6, 6, 3, 3, 4, 6],
        [0, 0, 0, 0, 4, 1, 8, 2, 7, 2, 2, 1],
        [4, 2, 3, 0, 5, 1, 2, 2, 3, 0, 5, 5, 4, 4, 4, 0, 1, 5, 4, 3, 3, 0, 1, 5],
        [6, 8, 5, 7, 1, 5, 6, 3, 4, 4, 8, 2, 4, 5, 1, 6, 1, 7, 3, 2, 8, 3, 4, 3],
        [0, 5, 0, 5, 5, 2, 4, 0, 3, 0, 4, 0, 8, 2, 2, 2, 2, 4, 2, 3, 7, 5, 8, 0],
    ]
    _, indptr, indices = _random_csr(np.random.default_rng(12))
    s = BPRSampler(indptr, indices, 40, seed=9)
    assert _digest(s.sample(5000) + s.epoch()) == \
        "f38698a30b79a3eb118c7599f7b2c6998fe6d2584811335d2bc919257e6bd815"


def test_all_items_as_candidates_equals_none():
    # an index into arange(n_items) is the item itself: the same random stream, the same triples
    _, indptr, indices = _random_csr(np.random.default_rng(3))
    a = BPRSampler(indptr, indices, 40, seed=4)
    b = BPRSampler(indptr, indices, 40, seed=4, candidates=np.arange(40))
    for x, y in zip(a.epoch() + a.sample(3000), b.epoch() + b.sample(3000)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negatives_come_from_candidates_and_are_not_positives(seed):
    rng = np.random.default_rng(seed)
    dense, indptr, indices = _random_csr(rng, 60, 50, 0.35)
    cand = rng.choice(50, 20, replace=False)
    cand[0] = 0  # item 0 is nobody's positive, so every user has a candidate negative
    s = BPRSampler(indptr, indices, 50, seed=seed, candidates=cand)
    for u, p, n in (s.sample(20000), s.epoch()):
        assert dense[u, p].all()
        assert not dense[u, n].any()
        assert np.isin(n, cand).all()
    u, p, _ = s.epoch()  # positives are untouched: every interaction once, candidates or not
    assert sorted(zip(u.tolist(), p.tolist())) == sorted(zip(*np.nonzero(dense)))


def test_negatives_are_uniform_over_candidates_minus_positives():
    # user 0: positives {1, 3}; candidates {0, 1, 2, 3, 5} -> negatives uniform on {0, 2, 5}
    # user 1: positives {0, 4}, 4 not a candidate -> uniform on {1, 2, 3, 5}
    indptr = np.array([0, 2, 4], dtype=np.int64)
    indices = np.array([1, 3, 0, 4], dtype=np.int64)
    s = BPRSampler(indptr, indices, 7, seed=1, candidates=np.array([5, 3, 2, 1, 0, 3]))
    np.testing.assert_array_equal(s.candidates, [0, 1, 2, 3, 5])
    u, _, n = s.sample(80000)
    for user, support in ((0, [0, 2, 5]), (1, [1, 2, 3, 5])):
        counts = np.bincount(n[u == user], minlength=7)
        assert counts.sum() == (u == user).sum()
        assert counts[np.setdiff1d(np.arange(7), support)].sum() == 0
        assert np.allclose(counts[support] / counts.sum(), 1 / len(support), atol=0.01)


def test_duplicates_in_candidates_do_not_bias_the_draw():
    indptr, indices = np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64)
    plain = BPRSampler(indptr, indices, 4, seed=2, candidates=np.array([1, 2]))
    dup = BPRSampler(indptr, indices, 4, seed=2, candidates=np.array([2, 1, 1, 1, 2]))
    np.testing.assert_array_equal(plain.sample(500)[2], dup.sample(500)[2])


def test_single_candidate_and_users_without_rows():
    # user 1 has no interactions (never sampled); the only candidate is 2, nobody's positive
    indptr = np.array([0, 2, 2, 3], dtype=np.int64)
    indices = np.array([0, 1, 3], dtype=np.int64)
    u, _, n = BPRSampler(indptr, indices, 4, seed=0, candidates=np.array([2])).sample(100)
    assert (n == 2).all() and not (u == 1).any()


def test_same_seed_same_triples_and_different_seed_differs():
    _, indptr, indices = _random_csr(np.random.default_rng(5))
    cand = np.arange(0, 40, 2)
    a = BPRSampler(indptr, indices, 40, seed=7, candidates=cand)
    b = BPRSampler(indptr, indices, 40, seed=7, candidates=cand)
    c = BPRSampler(indptr, indices, 40, seed=8, candidates=cand)
    for x, y in zip(a.epoch() + a.sample(100), b.epoch() + b.sample(100)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.epoch()[2], c.epoch()[2])


def test_user_covering_every_candidate_is_rejected():
    indptr = np.array([0, 1, 3], dtype=np.int64)
    indices = np.array([0, 1, 2], dtype=np.int64)  # user 1 holds items 1 and 2
    with pytest.raises(ValueError, match=r"every one of the 2 candidates \(e.g. user 1\)"):
        BPRSampler(indptr, indices, 5, candidates=np.array([2, 1, 2]))
    BPRSampler(indptr, indices, 5, candidates=np.array([1, 2, 4]))  # item 4 is free: fine


@pytest.mark.parametrize("cand, match", [
    (np.array([[0, 1]]), "1-D"),
    (np.array([], dtype=np.int64), "empty"),
    (np.array([0.0, 1.0]), "integer"),
    (np.array([True, False]), "integer"),
    (np.array([0, 5]), r"\[0, n_items=5\)"),
    (np.array([-1, 2]), r"\[0, n_items=5\)"),
    ([1, "a"], "integer"),
])
def test_bad_candidates_are_rejected(cand, match):
    indptr, indices = np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64)
    with pytest.raises(ValueError, match="candidates") as info:
        BPRSampler(indptr, indices, 5, candidates=cand)
    assert info.match(match)


# -- Trainer(negative_items=...) and the adversarial trainers that forward it -----------------

def _train_log(n_users=20, n_items=12, seed=0):
    from advrec.data import Interactions
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 4)
    # items n_items-2 and n_items-1 are nobody's positive: every user has candidate negatives
    items = np.concatenate([rng.choice(n_items - 2, 4, replace=False) for _ in range(n_users)])
    return Interactions(users, items, None, None, n_users, n_items, np.arange(n_users),
                        np.arange(n_items))


def test_trainer_draws_negatives_from_negative_items_only():
    import torch

    from advrec.models import MF
    from advrec.training import Trainer
    train = _train_log()
    allowed = np.array([0, 2, 4, 6, 8, 10, 11, 11])
    seen = []

    def loss_fn(model, batch):
        seen.append(batch["neg"].numpy().copy())
        return model.loss(batch)

    t = Trainer(lr=0.01, epochs=3, batch_size=16, patience=None, progress=False, loss_fn=loss_fn,
                negative_items=allowed)
    np.testing.assert_array_equal(t.negative_items, [0, 2, 4, 6, 8, 10, 11])
    t.fit(MF(train.n_users, train.n_items, dim=4), train)
    neg = np.concatenate(seen)
    assert len(neg) == 3 * len(train) and np.isin(neg, allowed).all()
    assert set(neg.tolist()) == set(allowed.tolist())  # every allowed item does get drawn

    # None and "all items" train the same model, bit for bit
    states = []
    for items in (None, np.arange(train.n_items)):
        m = MF(train.n_users, train.n_items, dim=4, seed=1)
        Trainer(lr=0.01, epochs=2, batch_size=16, patience=None, progress=False, seed=3,
                negative_items=items).fit(m, train)
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("items, match", [
    (np.array([[1, 2]]), "1-D"), (np.array([], dtype=np.int64), "non-empty"),
    (np.array([1.0]), "integer"), (np.array([-2, 1]), ">= 0"),
])
def test_trainer_rejects_bad_negative_items(items, match):
    from advrec.training import Trainer
    with pytest.raises(ValueError, match="negative_items") as info:
        Trainer(negative_items=items)
    assert info.match(match)


def test_trainer_checks_negative_items_against_the_data_at_fit():
    from advrec.models import MF
    from advrec.training import Trainer
    train = _train_log()
    m = MF(train.n_users, train.n_items, dim=4)
    with pytest.raises(ValueError, match=r"negative_items must lie in \[0, n_items=12\)"):
        Trainer(epochs=1, progress=False, negative_items=np.array([3, 12])).fit(m, train)
    pos0 = np.unique(train.item[train.user == 0])  # user 0's positives are all the candidates
    with pytest.raises(ValueError, match="negative_items .*every one of the 4 candidates"):
        Trainer(epochs=1, progress=False, negative_items=pos0).fit(m, train)


def _recording_sampler(monkeypatch):
    from advrec.training import trainer as trainer_module
    got = []

    class Recording(trainer_module.BPRSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            got.append(None if self.candidates is None else self.candidates.copy())

    monkeypatch.setattr(trainer_module, "BPRSampler", Recording)
    return got


def test_train_amf_and_train_amr_forward_negative_items(monkeypatch):
    from advrec.models import MF, VBPR
    from advrec.training import train_amf, train_amr
    got = _recording_sampler(monkeypatch)
    train = _train_log()
    allowed = np.array([1, 3, 5, 7, 9, 10, 11])
    train_amf(MF(train.n_users, train.n_items, dim=4), train, epochs=1, progress=False,
              negative_items=allowed)
    feats = np.random.default_rng(0).normal(size=(train.n_items, 5)).astype(np.float32)
    train_amr(VBPR(train.n_users, train.n_items, feats, dim=4), train, epochs=1, progress=False,
              negative_items=allowed)
    train_amf(MF(train.n_users, train.n_items, dim=4), train, epochs=1, progress=False)
    assert len(got) == 3
    np.testing.assert_array_equal(got[0], allowed)
    np.testing.assert_array_equal(got[1], allowed)
    assert got[2] is None

"""Target-item measures against plain NumPy references: dense scores, a stable argsort for the
ranks, users who have the target in train left out, fake users left out."""
import numpy as np
import pytest
import torch

from advrec import kernels
from advrec.data import Interactions
from advrec.evaluation import prediction_shift, target_exposure
from advrec.models import MF, ExplicitMF


class Dense:
    """A model that is a fixed score matrix (``full_scores`` and ``predict`` read it)."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.n_users, self.n_items = self.scores.shape

    def full_scores(self, users):
        return torch.from_numpy(self.scores[np.asarray(users)])

    def predict(self, users, items):
        return self.scores[np.asarray(users), np.asarray(items)].astype(np.float64)


def log(user, item, n_users, n_items, rating=None):
    return Interactions(np.asarray(user), np.asarray(item), rating, None, n_users, n_items,
                        np.arange(n_users), np.arange(n_items) + 100)


def random_case(seed, n_real=17, n_fake=4, n_items=23, n=120, ties=True):
    rng = np.random.default_rng(seed)
    n_users = n_real + n_fake
    train = log(rng.integers(0, n_users, n), rng.integers(0, n_items, n), n_users, n_items)
    scores = rng.integers(0, 4, (n_users, n_items)) if ties else rng.normal(size=(n_users, n_items))
    return train, Dense(scores.astype(np.float32))


def reference(scores, train, targets, users, ks):
    """Per target: ranks by a stable argsort of -scores over each user's unseen items."""
    seen = np.zeros(scores.shape, dtype=bool)
    seen[train.user, train.item] = True
    ranks = np.zeros((len(users), len(targets)), dtype=np.int64)
    for j, u in enumerate(users):
        order = np.argsort(-scores[u], kind="stable")
        order = order[~seen[u, order]]
        for t, item in enumerate(targets):
            if not seen[u, item]:
                ranks[j, t] = 1 + int(np.flatnonzero(order == item)[0])
    eligible = ranks > 0
    per_target = {f"HR@{k}": (eligible & (ranks <= k)).sum(0) / eligible.sum(0) for k in ks}
    per_target["MeanRank"] = ranks.sum(0) / eligible.sum(0)
    return ranks, per_target


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [True, False])
def test_matches_the_numpy_reference(seed, ties):
    train, model = random_case(seed, ties=ties)
    targets = np.array([5, 0, 22, 11])
    ks = (1, 3, 10)
    result = target_exposure(model, train, targets, k=ks, real_users=17, batch_size=5, progress=False)
    ranks, per_target = reference(model.scores, train, targets, np.arange(17), ks)
    assert np.array_equal(result.users, np.arange(17))
    np.testing.assert_array_equal(result.ranks, ranks)
    np.testing.assert_array_equal(result.eligible, ranks > 0)
    assert (ranks == 0).any()  # some real users had a target in train and were left out
    assert set(result.per_target) == {"HR@1", "HR@3", "HR@10", "MeanRank"}
    for name, v in per_target.items():
        np.testing.assert_allclose(result.per_target[name], v, err_msg=name)
        assert result.summary()[name] == pytest.approx(np.mean(v))
    np.testing.assert_array_equal(result.n_users, (ranks > 0).sum(0))
    # rank <= k is exactly membership in the library's top-k lists (evaluate's tie rule)
    top, _ = kernels.topk_scores(model.scores[:17], 10, exclude=train.to_csr(), rows=np.arange(17))
    for t, item in enumerate(targets):
        ok = ranks[:, t] > 0
        np.testing.assert_array_equal((top[ok] == item).any(1), ranks[ok, t] <= 10)


def test_fake_users_do_not_count_and_masks_work():
    train, model = random_case(1)
    base = target_exposure(model, train, [3, 7], real_users=17)
    fake = np.arange(17, 21)
    model.scores[fake] = 99.0  # fake users love everything: irrelevant
    rows = train.user >= 17
    more = log(np.r_[train.user, fake], np.r_[train.item, [3, 7, 3, 7]], 21, 23)
    for again in (target_exposure(model, more, [3, 7], real_users=17),
                  target_exposure(model, train, [3, 7], real_users=np.arange(21) < 17)):
        np.testing.assert_array_equal(again.ranks, base.ranks)
    assert rows.any()
    mask = np.zeros(21, dtype=bool)
    mask[[2, 5, 9]] = True
    picked = target_exposure(model, train, [3, 7], real_users=mask)
    np.testing.assert_array_equal(picked.users, [2, 5, 9])
    np.testing.assert_array_equal(picked.ranks, base.ranks[[2, 5, 9]])


def test_mf_model_and_table():
    train, _ = random_case(2, n_fake=0)
    model = MF(train.n_users, train.n_items, dim=4, seed=0)
    result = target_exposure(model, train, 4, k=5)
    scores = model.full_scores(torch.arange(train.n_users)).detach().numpy()
    ranks, per_target = reference(scores, train, [4], np.arange(train.n_users), (5,))
    np.testing.assert_array_equal(result.ranks, ranks)
    np.testing.assert_allclose(result.per_target["HR@5"], per_target["HR@5"])
    text = result.table()
    assert "HR@5" in text and "MeanRank" in text and "104" in text and "mean" in text


def test_target_every_real_user_has_seen_is_nan():
    train = log([0, 1, 2, 1], [1, 1, 1, 2], 3, 4)
    result = target_exposure(Dense(np.ones((3, 4))), train, [1, 2], k=1)
    assert result.n_users.tolist() == [0, 2]
    assert np.isnan(result.per_target["HR@1"][0]) and np.isnan(result.per_target["MeanRank"][0])
    assert result.summary()["HR@1"] == result.per_target["HR@1"][1]
    # all scores tie: user 0's candidates are 0, 2, 3 -> item 2 is second; user 2's the same
    assert result.ranks[:, 1].tolist() == [2, 0, 2]


def test_bad_arguments_name_themselves():
    train, model = random_case(0)
    for targets, err in (([], ValueError), ([3, 3], ValueError), ([23], IndexError), ([-1], IndexError),
                         ([1.0], ValueError), ([[1, 2]], ValueError)):
        with pytest.raises(err, match="^targets"):
            target_exposure(model, train, targets)
        with pytest.raises(err, match="^targets"):
            prediction_shift(model, model, train, targets)
    for k in (0, -5, (10, 0), ()):
        with pytest.raises(ValueError, match=r"^k\b"):
            target_exposure(model, train, [1], k=k)
    for real in (0, 22, np.ones(5, bool), np.ones(21, int), True):
        with pytest.raises(ValueError, match="^real_users"):
            target_exposure(model, train, [1], real_users=real)
    with pytest.raises(ValueError, match="batch_size"):
        target_exposure(model, train, [1], batch_size=0)
    with pytest.raises(ValueError, match="model.n_users"):
        target_exposure(Dense(model.scores[:17]), train, [1])
    with pytest.raises(TypeError, match="predict"):
        prediction_shift(MF(21, 23), model, train, [1])


def test_prediction_shift_matches_reference():
    train, clean = random_case(3)
    poisoned = Dense(clean.scores + np.random.default_rng(0).normal(size=clean.scores.shape))
    targets = [2, 9]
    shift = prediction_shift(clean, poisoned, train, targets, real_users=17, batch_size=7)
    seen = np.zeros(clean.scores.shape, dtype=bool)
    seen[train.user, train.item] = True
    for t, item in enumerate(targets):
        users = [u for u in range(17) if not seen[u, item]]
        diff = poisoned.scores[users, item].astype(np.float64) - clean.scores[users, item]
        assert shift.n_users[t] == len(users)
        assert shift.per_target[t] == pytest.approx(diff.mean())
        assert np.isnan(shift.per_user[[u for u in range(17) if seen[u, item]], t]).all()
    assert shift.mean == pytest.approx(np.mean(shift.per_target))


def test_prediction_shift_of_a_push_attack_on_explicit_mf():
    """Fake users rating the target 5 (and a few fillers at their mean) raise its predictions."""
    rng = np.random.default_rng(0)
    n_real, n_items, target = 40, 30, 7
    user, item = rng.integers(0, n_real, 400), rng.integers(0, n_items, 400)
    keep = item != target
    keep[:3] = True  # a few real ratings of the target
    user, item = user[keep], item[keep]
    rating = rng.integers(1, 6, len(user)).astype(np.float32)
    rating[item == target] = 1.0
    train = log(user, item, n_real, n_items, rating)
    fake_u = np.repeat(np.arange(n_real, n_real + 10), 4)
    fake_i = np.tile([target, 1, 2, 3], 10)
    fake_r = np.tile([5.0, 3.0, 3.0, 3.0], 10).astype(np.float32)
    poisoned_log = log(np.r_[user, fake_u], np.r_[item, fake_i], n_real + 10, n_items, np.r_[rating, fake_r])
    clean = ExplicitMF(dim=4, iterations=5).fit(train)
    poisoned = ExplicitMF(dim=4, iterations=5).fit(poisoned_log)
    shift = prediction_shift(clean, poisoned, train, [target])
    assert shift.per_target[0] > 0.5
    same = prediction_shift(clean, poisoned, poisoned_log, [target], real_users=n_real)
    np.testing.assert_allclose(same.per_user, shift.per_user)
    before = target_exposure(clean, train, [target], k=5)
    after = target_exposure(poisoned, poisoned_log, [target], k=5, real_users=n_real)
    assert after.summary()["MeanRank"] < before.summary()["MeanRank"]

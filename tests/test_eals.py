"""MF-eALS: the cached element-wise updates equal exact coordinate minimisation of the dense
weighted objective; the objective never rises; the result is an MF."""
import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.models import MF
from advrec.training.eals import eals_epoch, eals_objective, fit_eals, popularity_weights


def interactions(users, items, n_users, n_items):
    return Interactions(np.asarray(users), np.asarray(items), None, None, n_users, n_items,
                        np.arange(n_users), np.arange(n_items))


def random_train(seed, n_users=9, n_items=11, n=40):
    rng = np.random.default_rng(seed)
    return interactions(rng.integers(0, n_users, n), rng.integers(0, n_items, n), n_users, n_items)


def csrs(train):
    indptr, indices = train.to_csr()
    users = np.repeat(np.arange(train.n_users), np.diff(indptr))
    order = np.lexsort((users, indices))
    item_indptr = np.zeros(train.n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=train.n_items), out=item_indptr[1:])
    return (indptr, indices), (item_indptr, users[order])


def dense_epoch(P, Q, train, c, w, reg):
    """Coordinate descent on the dense objective: each p_uf, then each q_if, set to its exact
    1-D minimiser sum_x W (T - r_hat^f) q / (sum_x W q^2 + reg)."""
    obs = np.zeros((train.n_users, train.n_items), dtype=bool)
    obs[train.user, train.item] = True
    W = np.where(obs, w, c[None, :])
    T = obs.astype(np.float64)
    for A, B, Wm, Tm in ((P, Q, W, T), (Q, P, W.T, T.T)):
        for r in range(A.shape[0]):
            for f in range(A.shape[1]):
                rest = A[r] @ B.T - A[r, f] * B[:, f]
                A[r, f] = (Wm[r] * (Tm[r] - rest) * B[:, f]).sum() / ((Wm[r] * B[:, f] ** 2).sum() + reg)


@pytest.mark.parametrize("seed", range(4))
def test_epoch_equals_dense_coordinate_descent(seed):
    train = random_train(seed)
    rng = np.random.default_rng(100 + seed)
    P, Q = rng.normal(size=(train.n_users, 5)), rng.normal(size=(train.n_items, 5))
    c = popularity_weights(np.bincount(train.to_csr()[1], minlength=train.n_items), c0=3.0, alpha=0.5)
    w, reg = 2.0, 0.1
    P2, Q2 = P.copy(), Q.copy()
    user_csr, item_csr = csrs(train)
    eals_epoch(P, Q, user_csr, item_csr, c, w, reg)
    dense_epoch(P2, Q2, train, c, w, reg)
    np.testing.assert_allclose(P, P2, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(Q, Q2, rtol=1e-9, atol=1e-10)


def test_objective_never_rises_and_popularity_weights():
    train = random_train(7, 20, 15, 120)
    counts = np.bincount(train.to_csr()[1], minlength=train.n_items)
    c = popularity_weights(counts, c0=10.0, alpha=0.4)
    assert c.sum() == pytest.approx(10.0) and np.all(c[counts == 0] == 0)
    assert np.all(np.diff(c[np.argsort(counts)]) >= -1e-12)  # more popular, heavier negative
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(20, 4)) * 0.1, rng.normal(size=(15, 4)) * 0.1
    user_csr, item_csr = csrs(train)
    losses = [eals_objective(P, Q, train, c, 1.0, 0.05)]
    for _ in range(6):
        eals_epoch(P, Q, user_csr, item_csr, c, 1.0, 0.05)
        losses.append(eals_objective(P, Q, train, c, 1.0, 0.05))
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0]


def test_fit_returns_a_reproducible_mf_that_ranks_observed_items_higher():
    train = random_train(3, 30, 25, 300)
    a = fit_eals(train, dim=8, c0=20.0, epochs=15, seed=1, progress=False)
    b = fit_eals(train, dim=8, c0=20.0, epochs=15, seed=1, progress=False)
    assert isinstance(a, MF) and torch.equal(a.user_factors, b.user_factors)
    scores = a.full_scores(torch.arange(30)).detach().numpy()
    obs = np.zeros((30, 25), dtype=bool)
    obs[train.user, train.item] = True
    assert scores[obs].mean() > scores[~obs].mean() + 0.2


@pytest.mark.parametrize("kw, match", [(dict(dim=0), "dim"), (dict(epochs=0), "epochs"), (dict(c0=-1.0), "c0"),
                                       (dict(alpha=float("nan")), "alpha"), (dict(w=0.0), "w")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        fit_eals(random_train(0), **kw)
    with pytest.raises(ValueError, match="no interactions"):
        fit_eals(interactions([], [], 3, 3))


def test_ml100k_eals_beats_popularity():
    """MF-eALS on the real ML-100K (leave-one-out by time, 20 epochs, defaults): clearly above Pop
    (HR@10 0.0859 on this split); measured 0.128 (BPR-MF: 0.138)."""
    from advrec import data as D
    from advrec.evaluation import evaluate
    from advrec.models import Pop

    inter = D.implicit(D.load("ml-100k").interactions, _quiet=True)
    sp = D.leave_one_out(inter, order="time", validation=True)
    model = fit_eals(sp.train, dim=64, epochs=20, progress=False)
    seen = (sp.train, sp.valid)
    hr = evaluate(model, sp.test, exclude=seen, k=10, progress=False, auc=False).summary()["HR@10"]
    pop = evaluate(Pop.fit(sp.train), sp.test, exclude=seen, k=10, progress=False, auc=False).summary()["HR@10"]
    assert hr > pop + 0.02, (hr, pop)

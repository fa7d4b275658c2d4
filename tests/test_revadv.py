"""RevAdv (Tang et al. 2020) against WRMF: the unrolled ALS sweeps equal a dense NumPy ALS and the
victim's own fit, their gradient equals finite differences, the profiles obey the budget, one
seed gives one set of profiles, bad input is refused by name, and the attack beats the random
attack at the same budget on its victim."""
import numpy as np
import pytest
import torch

from advrec.attacks import RandomAttack
from advrec.attacks.revadv import RevAdvAttack, _real_matrix, unrolled_wrmf_sweeps
from advrec.data import Interactions, inject
from advrec.evaluation import target_exposure
from advrec.models import WRMF


def implicit_log(seed, n_users=30, n_items=25, n=200):
    """Random implicit log; the last item has no interactions, one (u, i) pair repeats."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items - 1, n)
    user, item = np.r_[user, user[0]], np.r_[item, item[0]]
    return Interactions(user, item, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


def dense_sweeps(P, Y, sweeps, reg, alpha):
    """Reference: ALS on the dense weighted objective sum c (p - x.y)^2 + reg |.|^2, entries P
    in [0, 1] counting with preference P and confidence 1 + alpha P; users first."""
    d = Y.shape[1]
    C, B = alpha * P, (1 + alpha * P) * P
    for _ in range(sweeps):
        X = np.stack([np.linalg.solve(Y.T @ Y + (Y.T * C[u]) @ Y + reg * np.eye(d), Y.T @ B[u])
                      for u in range(len(P))])
        Y = np.stack([np.linalg.solve(X.T @ X + (X.T * C[:, i]) @ X + reg * np.eye(d), X.T @ B[:, i])
                      for i in range(P.shape[1])])
    return X, Y


@pytest.mark.parametrize("seed", range(3))
def test_unrolled_sweeps_equal_dense_alternating_least_squares(seed):
    train = implicit_log(seed)
    rng = np.random.default_rng(seed)
    fake = rng.random((4, train.n_items))  # relaxed entries
    fake[0] = (fake[0] > 0.5)  # and one 0/1 row
    Y0 = rng.normal(0, 0.1, (train.n_items, 5))
    x, y = unrolled_wrmf_sweeps(_real_matrix(train), torch.from_numpy(fake), torch.from_numpy(Y0), 3, 0.3, 4.0)
    P = np.zeros((train.n_users, train.n_items))
    P[train.user, train.item] = 1.0  # the repeated pair counts once
    X_ref, Y_ref = dense_sweeps(np.vstack([P, fake]), Y0, 3, 0.3, 4.0)
    np.testing.assert_allclose(x.numpy(), X_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(y.numpy(), Y_ref, rtol=1e-9, atol=1e-11)


def test_unrolled_sweeps_from_the_victims_init_reproduce_its_fit():
    train = implicit_log(7, 40, 30, 300)
    victim = WRMF(dim=6, reg=0.5, alpha=3.0, iterations=4, seed=3)
    fake = np.zeros((3, train.n_items))
    fake[[0, 0, 1, 2, 2], [1, 4, 4, 7, 9]] = 1.0
    rows, cols = np.nonzero(fake)
    poisoned = inject(train, Interactions(train.n_users + rows, cols, None, None, train.n_users + 3, train.n_items,
                                          np.r_[train.user_ids, -1 - np.arange(3)], train.item_ids))
    fitted = victim.fit(poisoned, progress=False)
    Y0 = np.random.default_rng(3).normal(0.0, victim.init_std, (train.n_items, 6))
    x, y = unrolled_wrmf_sweeps(_real_matrix(train), torch.from_numpy(fake), torch.from_numpy(Y0), 4, 0.5, 3.0)
    np.testing.assert_allclose(x.numpy(), fitted.user_factors.detach().double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.numpy(), fitted.item_factors.detach().double().numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_through_the_sweeps_equals_finite_differences():
    train = implicit_log(1, 20, 15, 120)
    rng = np.random.default_rng(1)
    fake = rng.random((3, train.n_items))
    Y0 = torch.from_numpy(rng.normal(0, 0.3, (train.n_items, 4)))
    real = _real_matrix(train)
    w = torch.from_numpy(rng.normal(size=(train.n_users, train.n_items)))

    def objective(f):
        x, y = unrolled_wrmf_sweeps(real, f, Y0, 2, 0.2, 5.0)
        return ((x[:train.n_users] @ y.t()) * w).sum()

    f = torch.from_numpy(fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(f), f)
    h = 1e-6
    for r, c in [(0, 0), (1, 7), (2, 14), (0, 3)]:
        up, down = fake.copy(), fake.copy()
        up[r, c] += h
        down[r, c] -= h
        numeric = (objective(torch.from_numpy(up)) - objective(torch.from_numpy(down))).item() / (2 * h)
        assert grad[r, c].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def small_attack(**kw):
    args = dict(targets=[3, 11], n_fake=4, filler=6, victim=WRMF(dim=8, iterations=5), steps=3, k=5, progress=False,
                seed=0)
    args.update(kw)
    return RevAdvAttack(**args)


def test_profiles_obey_the_budget_and_the_real_rows_survive_inject():
    train = implicit_log(2, 40, 30, 400)
    run = small_attack().run(train)
    fake = run.fake
    assert fake.rating is None and fake.n_users == train.n_users + 4
    rows = fake.user - train.n_users
    assert np.array_equal(np.bincount(rows, minlength=4), np.full(4, 6 + 2))
    for f in range(4):
        items = fake.item[rows == f]
        assert {3, 11} <= set(items.tolist()) and len(set(items.tolist())) == 8
    poisoned = inject(train, fake)
    assert np.array_equal(poisoned.user[:len(train)], train.user)
    assert np.array_equal(poisoned.item[:len(train)], train.item)
    assert len(run.hit_ratio) == len(run.loss) == 3 and 0 <= run.best_step < 3
    assert run.hit_ratio[run.best_step] == run.hit_ratio.max()


def test_same_seed_same_profiles_and_another_seed_differs():
    train = implicit_log(4, 40, 30, 400)
    a, b, c = small_attack().attack(train), small_attack().attack(train), small_attack(seed=1).attack(train)
    assert np.array_equal(a.user, b.user) and np.array_equal(a.item, b.item)
    assert not (len(a.item) == len(c.item) and np.array_equal(a.item, c.item))


@pytest.mark.parametrize("kw, name", [
    (dict(steps=0), "steps"), (dict(unroll=0), "unroll"), (dict(lr=0.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(momentum=1.0), "momentum"), (dict(k=0), "k"), (dict(victim=object()), "victim"),
    (dict(goal="nuke"), "goal"), (dict(n_fake=0), "n_fake"), (dict(targets=[99]), "targets"),
    (dict(filler=40), "filler"), (dict(victim=WRMF(solver="cg")), "victim")])
def test_bad_arguments_are_refused_by_name(kw, name):
    train = implicit_log(0, 20, 30, 100)
    with pytest.raises(ValueError, match=name):
        small_attack(**kw).attack(train)


def test_a_rating_log_is_refused_naming_train():
    train = implicit_log(0)
    rated = Interactions(train.user, train.item, np.ones(len(train), np.float32), None, train.n_users,
                         train.n_items, train.user_ids, train.item_ids)
    with pytest.raises(ValueError, match="train"):
        small_attack().attack(rated)


def test_revadv_beats_the_random_attack_at_the_same_budget_on_its_victim():
    """A clustered log and a target nobody has: the random filler's fake users sit between the
    clusters and reach no real user's top 10; RevAdv's must reach some (HR@10 over eligible
    users). The ML-100K comparison at the experiment's budget is the acceptance check of
    ``advrec run poison`` (docs/results/poison/optimised)."""
    rng = np.random.default_rng(0)
    n_users, n_items = 150, 80
    taste = rng.integers(0, 4, n_users)
    user, item = [], []
    for u in range(n_users):
        block = np.arange(taste[u] * 19, taste[u] * 19 + 19)
        chosen = rng.choice(block, 8, replace=False)
        user += [u] * 8
        item += chosen.tolist()
    train = Interactions(np.array(user), np.array(item), None, None, n_users, n_items, np.arange(n_users),
                         np.arange(n_items))
    victim = WRMF(dim=8, reg=0.1, alpha=10.0, iterations=8)
    targets = [79]
    common = dict(targets=targets, n_fake=8, filler=6, seed=0)
    revadv = RevAdvAttack(victim=victim, steps=8, k=10, swaps=2, progress=False, **common).attack(train)
    random = RandomAttack(**common)(train)

    def hr(fake):
        poisoned = inject(train, fake)
        model = WRMF(**{k: v for k, v in victim.config().items() if k not in ("n_users", "n_items")}).fit(poisoned)
        return target_exposure(model, poisoned, targets, k=10, real_users=n_users).summary()["HR@10"]

    assert hr(random) == 0.0 and hr(revadv) >= 0.02

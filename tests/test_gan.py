"""IRGAN and CFGAN (advrec.models.gan) and the minimax trainer (advrec.training.gan): samplers and
losses against hand computations, the Gumbel-softmax gradient against finite differences, the
Recommender contract, checkpoints, and same seed, same numbers."""
import math

import numpy as np
import pytest
import torch

from advrec.attacks import FGSM
from advrec.data import Interactions
from advrec.models.gan import (CFGAN, IRGAN, gumbel_softmax, importance_sample, reinforce_loss,
                               sample_unobserved)
from advrec.training import load_checkpoint, save_checkpoint
from advrec.training.gan import GANPlayers, GANTrainer


def _log(n_users=6, n_items=9, seed=0, per_user=4):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        its = rng.choice(n_items, per_user, replace=False)
        users += [u] * per_user
        items += list(its)
    return Interactions(np.array(users), np.array(items), None, None, n_users, n_items,
                        np.arange(n_users), np.arange(n_items))


# -- samplers ----------------------------------------------------------------------------------

def test_importance_sample_weights_are_prob_over_the_mixture():
    prob = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.3, 0.4]])
    positives = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    samples, weights = importance_sample(prob, positives, 0.2, 50, torch.Generator().manual_seed(0))
    # row 0: p_n = 0.8 p + 0.2 * (0, 1/2, 1/2, 0); row 1 has no positives: p_n = p
    pn0 = torch.tensor([0.4, 0.3, 0.2, 0.1])
    assert torch.allclose(weights[0], prob[0][samples[0]] / pn0[samples[0]])
    assert torch.allclose(weights[1], torch.ones(50))


def test_importance_sample_draws_from_the_mixture():
    prob = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    positives = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    samples, _ = importance_sample(prob, positives, 0.5, 200_000, torch.Generator().manual_seed(1))
    freq = torch.bincount(samples[0], minlength=4).double() / 200_000
    expected = torch.tensor([0.35, 0.05, 0.05, 0.55], dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=4e-3)


def test_importance_sample_rejects_a_bad_mix():
    with pytest.raises(ValueError, match="mix"):
        importance_sample(torch.ones(1, 3) / 3, torch.zeros(1, 3), 1.5, 2, torch.Generator())


def test_reinforce_loss_by_hand_and_its_gradient():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], requires_grad=True)
    log_prob = torch.log_softmax(logits, 1)
    samples = torch.tensor([[0, 2], [1, 1]])
    reward = torch.tensor([[0.5, -1.0], [2.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = reinforce_loss(log_prob, samples, reward, mask)
    p = torch.softmax(logits.detach(), 1).numpy()
    lp = np.log(p)
    by_hand = -((lp[0, 0] * 0.5 + lp[0, 2] * -1.0) / 2 + (lp[1, 1] * 2.0) / 1) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    # d/dz log p_i = e_i - p: the REINFORCE estimate (1/K) sum_k r_k (e_ik - p), averaged over users
    g = np.zeros((2, 3))
    g[0] = -(0.5 * (np.eye(3)[0] - p[0]) + -1.0 * (np.eye(3)[2] - p[0])) / 2 / 2
    g[1] = -(2.0 * (np.eye(3)[1] - p[1])) / 1 / 2
    assert np.allclose(logits.grad.numpy(), g, atol=1e-6)


def test_gumbel_softmax_with_given_noise_is_the_formula():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.0]])
    noise = torch.tensor([[0.1, -0.5, 0.7, 1.3]])
    v = gumbel_softmax(logits, 0.5, noise=noise).numpy()
    lp = logits.numpy() - np.log(np.exp(logits.numpy()).sum())
    z = (lp + noise.numpy()) / 0.5
    assert np.allclose(v, np.exp(z) / np.exp(z).sum(), atol=1e-6)
    assert v.sum() == pytest.approx(1.0, abs=1e-6)


def test_gumbel_softmax_gradient_matches_finite_differences():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    u = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    noise = -torch.log(-torch.log(u))
    weights = torch.randn(5, dtype=torch.float64)

    def f(x):
        return (gumbel_softmax(x, 0.7, noise=noise) * weights).sum()

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-7)
    # and a plain central difference on one entry
    f(logits).backward()
    h = 1e-6
    x_plus, x_minus = logits.detach().clone(), logits.detach().clone()
    x_plus[1, 3] += h
    x_minus[1, 3] -= h
    fd = (f(x_plus) - f(x_minus)).item() / (2 * h)
    assert logits.grad[1, 3].item() == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_gumbel_softmax_samples_follow_the_distribution_at_low_temperature():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(100_000, 3)
    v = gumbel_softmax(logits, 0.01, torch.Generator().manual_seed(0))
    freq = torch.bincount(v.argmax(1), minlength=3).double() / 100_000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), atol=6e-3)
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(logits, 0.0)


def test_sample_unobserved_counts_and_never_picks_observed():
    observed = torch.tensor([[1.0, 0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    m = sample_unobserved(observed, 0.7, torch.Generator().manual_seed(0))
    assert m.sum(1).tolist() == [math.floor(0.7 * 6), math.floor(0.7 * 8), 0]
    assert float((m * observed).sum()) == 0.0
    again = sample_unobserved(observed, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)
    with pytest.raises(ValueError, match="ratio"):
        sample_unobserved(observed, 1.2, torch.Generator())


# -- IRGAN ---------------------------------------------------------------------------------------

def test_irgan_discriminator_loss_and_reward_by_hand():
    m = IRGAN(2, 3, dim=2, d_l2=0.5, seed=0)
    with torch.no_grad():
        m.discriminator.user_factors.copy_(torch.tensor([[1.0, 0.0], [0.5, -1.0]]))
        m.discriminator.item_factors.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0], [-1.0, 0.5]]))
        m.discriminator.item_bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    users, items, labels = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([1.0, 0.0])
    s = np.array([1.0 + 0.1, 0.5 * -1.0 + -1.0 * 0.5 + 0.3])
    bce = np.log1p(np.exp(-s[0])) + np.log1p(np.exp(s[1]))
    l2 = 0.5 * ((1 + 0) + (1 + 4) + 0.01 + (0.25 + 1) + (1 + 0.25) + 0.09)
    assert m.discriminator_loss(users, items, labels).item() == pytest.approx((bce + 0.5 * l2) / 2, rel=1e-6)
    r = m.reward(users, items).numpy()
    assert np.allclose(r, 2 * (1 / (1 + np.exp(-s)) - 0.5), atol=1e-6)


def test_irgan_generator_losses_move_the_generator_only():
    train = _log()
    for sampler in ("reinforce", "gumbel"):
        m = IRGAN(train.n_users, train.n_items, dim=4, sampler=sampler, n_gumbel=3, seed=1)
        m.gan_setup(train)
        step = m.generator_reinforce_loss if sampler == "reinforce" else m.generator_gumbel_loss
        loss = step(torch.arange(3), torch.Generator().manual_seed(0))
        loss.backward()
        assert m.generator.user_factors.grad is not None and m.generator.user_factors.grad.abs().sum() > 0
        assert m.discriminator.user_factors.grad is None or sampler == "gumbel"


def test_irgan_gumbel_loss_is_log_one_minus_d_by_hand():
    m = IRGAN(1, 3, dim=1, sampler="gumbel", n_gumbel=1, tau=1.0, seed=0)
    with torch.no_grad():
        m.generator.user_factors.fill_(1.0)
        m.generator.item_factors.copy_(torch.tensor([[1.0], [0.0], [-1.0]]))
        m.generator.item_bias.zero_()
        m.discriminator.user_factors.fill_(2.0)
        m.discriminator.item_factors.copy_(torch.tensor([[0.5], [1.0], [0.0]]))
        m.discriminator.item_bias.copy_(torch.tensor([0.0, 0.1, -0.1]))
    noise = torch.zeros(1, 1, 3)
    v = torch.softmax(torch.log_softmax(torch.tensor([1.0, 0.0, -1.0]), 0), 0).numpy()
    d_logit = 2.0 * (v @ np.array([0.5, 1.0, 0.0])) + v @ np.array([0.0, 0.1, -0.1])
    expected = np.log(1 - 1 / (1 + np.exp(-d_logit)))
    got = m.generator_gumbel_loss(torch.tensor([0]), torch.Generator(), noise=noise)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_irgan_contract_and_argument_errors():
    m = IRGAN(4, 5, dim=3, seed=0)
    assert isinstance(m, GANPlayers)
    full = m.full_scores(torch.arange(4))
    assert full.shape == (4, 5)
    assert torch.allclose(m.score(torch.tensor([1, 2]), torch.tensor([3, 0])), full[[1, 2], [3, 0]])
    delta = {"user": torch.ones(4, 3), "item": torch.zeros(5, 3)}
    shifted = m.full_scores(torch.arange(4), delta)
    assert torch.allclose(shifted - full, (m.generator.item_factors.sum(1))[None, :].expand(4, 5), atol=1e-6)
    with pytest.raises(ValueError, match="rank_with"):
        IRGAN(2, 2, rank_with="both")
    with pytest.raises(ValueError, match="sampler"):
        IRGAN(2, 2, sampler="gumbel-max")
    with pytest.raises(ValueError, match="dim"):
        IRGAN(2, 2, dim=0)
    with pytest.raises(RuntimeError, match="gan_setup"):
        m.generator_epoch(torch.optim.Adam(m.generator.parameters()), 2, torch.Generator())


# -- CFGAN ---------------------------------------------------------------------------------------

def _numpy_mlp(mlp, x):
    ws = [w.detach().numpy() for w in mlp.weights]
    bs = [b.detach().numpy() for b in mlp.biases]
    for k, (w, b) in enumerate(zip(ws, bs)):
        x = x @ w.T + b
        if k < len(ws) - 1:
            x = 1 / (1 + np.exp(-x))
    return x


@pytest.mark.parametrize("mode", ["item", "user"])
def test_cfgan_scores_are_the_generator_outputs(mode):
    train = _log()
    m = CFGAN(train.n_users, train.n_items, mode=mode, g_hidden=5, d_hidden=3, seed=0)
    m.set_purchases(train)
    x = np.zeros((train.n_users, train.n_items), dtype=np.float32)
    x[train.user, train.item] = 1
    cond = x.T if mode == "item" else x
    out = _numpy_mlp(m.gen, cond)
    scores = out.T if mode == "item" else out
    assert np.allclose(m.full_scores(torch.arange(train.n_users)).detach().numpy(), scores, atol=1e-5)
    assert np.allclose(m.score(torch.tensor([0, 3]), torch.tensor([2, 5])).detach().numpy(),
                       scores[[0, 3], [2, 5]], atol=1e-5)


def test_cfgan_losses_by_hand():
    train = _log()
    m = CFGAN(train.n_users, train.n_items, mode="user", g_hidden=4, d_hidden=3, zr_coef=0.3, g_l2=0.01,
              d_l2=0.02, seed=2)
    m.set_purchases(train)
    rows = torch.tensor([0, 2, 5])
    x = m.purchases[rows].numpy()
    mask = np.clip(x + (np.arange(x.shape[1]) % 3 == 0), 0, 1).astype(np.float32)
    zr = (np.arange(x.shape[1]) % 2 == 1).astype(np.float32)[None, :].repeat(3, 0) * (1 - x)
    g = _numpy_mlp(m.gen, x)

    def bce(logit, label):
        return np.mean(np.log1p(np.exp(-logit)) if label else np.log1p(np.exp(logit)))

    real = _numpy_mlp(m.dis, np.concatenate([x, x], 1))[:, 0]
    fake = _numpy_mlp(m.dis, np.concatenate([x, g * mask], 1))[:, 0]
    l2 = lambda mlp: 0.5 * sum(float((p.detach().numpy() ** 2).sum()) for p in mlp.parameters())  # noqa: E731
    d_hand = bce(real, 1) + bce(fake, 0) + 0.02 * l2(m.dis)
    g_hand = bce(fake, 1) + 0.01 * l2(m.gen) + 0.3 * np.mean(((g ** 2) * zr).sum(1))
    assert m.discriminator_loss(rows, torch.tensor(mask)).item() == pytest.approx(d_hand, rel=1e-5)
    assert m.generator_loss(rows, torch.tensor(mask), torch.tensor(zr)).item() == pytest.approx(g_hand, rel=1e-5)


def test_cfgan_perturbations_reach_the_scores():
    train = _log()
    m = CFGAN(train.n_users, train.n_items, g_hidden=4, d_hidden=3, seed=0)
    m.set_purchases(train)
    tables = m.perturbable()
    assert tables["input"].shape == (train.n_users, 4) and tables["output"].shape == (train.n_users, 4)
    delta = {"output": torch.zeros(train.n_users, 4)}
    delta["output"][2] = 1.0
    clean, moved = m.full_scores(torch.arange(6)), m.full_scores(torch.arange(6), delta)
    hidden = torch.sigmoid(m.purchases @ m.gen.weights[0].t() + m.gen.biases[0])   # [items, h]
    assert torch.allclose((moved - clean)[2], hidden.sum(1), atol=1e-5)            # user 2's row only
    assert torch.allclose((moved - clean)[[0, 1, 3, 4, 5]], torch.zeros(5, train.n_items), atol=1e-6)
    batch = {"user": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 2]), "neg": torch.tensor([3, 4, 5])}
    d = FGSM(m, 0.5)(batch)
    assert m.loss(batch, d).item() > m.loss(batch).item()


def test_cfgan_argument_errors_and_epoch_order():
    with pytest.raises(ValueError, match="mode"):
        CFGAN(2, 2, mode="both")
    with pytest.raises(ValueError, match="scheme"):
        CFGAN(2, 2, scheme="ZZ")
    with pytest.raises(ValueError, match="zr_ratio"):
        CFGAN(2, 2, zr_ratio=2.0)
    m = CFGAN(6, 9, g_hidden=3, d_hidden=2)
    with pytest.raises(ValueError, match="users"):
        m.set_purchases(_log(n_users=5))
    m.set_purchases(_log())
    with pytest.raises(RuntimeError, match="gan_begin_epoch"):
        m.generator_epoch(torch.optim.Adam(m.gen.parameters()), 2, torch.Generator())


# -- trainer, seeds, checkpoints ------------------------------------------------------------------

def _fit(model, seed=0, epochs=3, validator=None, patience=None):
    return GANTrainer(epochs=epochs, d_steps=2, g_steps=1, d_batch=4, g_batch=2, seed=seed, patience=patience,
                      progress=False, pretrain_d_epochs=1 if isinstance(model, IRGAN) else 0
                      ).fit(model, _log(), validator)


@pytest.mark.parametrize("make", [lambda: IRGAN(6, 9, dim=3, seed=0), lambda: IRGAN(6, 9, dim=3, sampler="gumbel"),
                                  lambda: CFGAN(6, 9, g_hidden=5, d_hidden=3, seed=0),
                                  lambda: CFGAN(6, 9, mode="user", scheme="PM", g_hidden=5, d_hidden=3)])
def test_same_seed_same_numbers(make):
    a, b, c = make(), make(), make()
    ha, hb, hc = _fit(a, 0), _fit(b, 0), _fit(c, 1)
    assert ha.loss == hb.loss and ha.d_loss == hb.d_loss
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert ha.loss != hc.loss
    assert len(ha.loss) == 3 and all(np.isfinite(ha.loss + ha.d_loss))


def test_trainer_keeps_the_best_validated_weights():
    m = CFGAN(6, 9, g_hidden=5, d_hidden=3, seed=0)
    scores = iter([0.3, 0.9, 0.1, 0.2, 0.0])
    kept = {}

    def validator(model):
        value = next(scores)
        kept[value] = {k: v.clone() for k, v in model.state_dict().items()}
        return value

    h = _fit(m, epochs=5, validator=validator, patience=2)
    assert h.best_epoch == 1 and h.stopped_early and len(h.loss) == 4
    for k, v in m.state_dict().items():
        assert torch.equal(v, kept[0.9][k])


def test_trainer_refuses_bad_arguments_and_models():
    with pytest.raises(ValueError, match="epochs"):
        GANTrainer(epochs=0)
    with pytest.raises(ValueError, match="g_lr"):
        GANTrainer(g_lr=-1.0)
    with pytest.raises(ValueError, match="pretrain_d_epochs"):
        GANTrainer(pretrain_d_epochs=-1)
    from advrec.models import MF
    with pytest.raises(ValueError, match="GANPlayers"):
        GANTrainer().fit(MF(6, 9), _log())
    with pytest.raises(ValueError, match="users"):
        GANTrainer().fit(CFGAN(7, 9), _log())
    with pytest.raises(ValueError, match="discriminator_pretrain_epoch"):
        GANTrainer(epochs=1, pretrain_d_epochs=1, progress=False).fit(CFGAN(6, 9, g_hidden=2, d_hidden=2), _log())


@pytest.mark.parametrize("make", [lambda: IRGAN(6, 9, dim=3, rank_with="discriminator", seed=4),
                                  lambda: CFGAN(6, 9, g_hidden=5, d_hidden=3, seed=4)])
def test_checkpoint_round_trip(tmp_path, make):
    m = make()
    _fit(m, epochs=1)
    save_checkpoint(m, tmp_path / "gan")
    back = load_checkpoint(tmp_path / "gan")
    assert type(back) is type(m) and back.config() == m.config()
    users = torch.arange(6)
    assert torch.equal(back.full_scores(users), m.full_scores(users))


def test_irgan_discriminator_negatives_come_from_the_generator():
    train = _log()
    m = IRGAN(train.n_users, train.n_items, dim=2, seed=0)
    m.gan_setup(train)
    with torch.no_grad():
        m.generator.item_bias[7] = 50.0          # the generator puts all its mass on item 7
    seen = {}
    original = m.discriminator_loss

    def spy(users, items, labels):
        seen["pairs"] = (users.clone(), items.clone(), labels.clone())
        return original(users, items, labels)

    m.discriminator_loss = spy
    m.discriminator_epoch(torch.optim.SGD(m.discriminator.parameters(), lr=0.0), 10_000, torch.Generator())
    users, items, labels = seen["pairs"]
    assert int(labels.sum()) == len(train) and len(labels) == 2 * len(train)
    assert torch.all(items[labels == 0] == 7)
    # one negative per training positive, for the same user
    assert torch.equal(torch.sort(users[labels == 0]).values, torch.sort(users[labels == 1]).values)

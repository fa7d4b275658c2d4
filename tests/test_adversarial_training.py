"""Adversarial regulariser (APR) and AMF: the loss is the hand sum, delta* is a constant, AMF is
seeded and, after the same training from the same BPR-MF, is more robust to FGSM than BPR-MF."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from advrec.attacks import BIM, FGSM, PGD
from advrec.data import Interactions
from advrec.data.sampling import BPRSampler
from advrec.models import MF
from advrec.models.base import Recommender
from advrec.training import AdversarialRegularizer, Trainer, train_amf


def _interactions(seed=0, n_users=80, n_items=40, per_user=8):
    """Two taste clusters with a little noise, so BPR-MF has something to fit."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        pool = np.arange(0, n_items // 2) if u < n_users // 2 else np.arange(n_items // 2, n_items)
        chosen = set(rng.choice(pool, size=per_user - 1, replace=False).tolist())
        chosen.add(int(rng.integers(n_items)))
        for i in sorted(chosen):
            users.append(u)
            items.append(i)
    return Interactions.from_raw(np.array(users), np.array(items))


def _batch(model, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(model.n_users, (n,), generator=g),
            "pos": torch.randint(model.n_items, (n,), generator=g),
            "neg": torch.randint(model.n_items, (n,), generator=g)}


def _all_triples(train, seed=0):
    """Every training pair with one sampled negative: the 'whole training set' batch."""
    indptr, indices = train.to_csr()
    u, i, j = BPRSampler(indptr, indices, train.n_items, seed=seed).epoch()
    return {"user": torch.from_numpy(u), "pos": torch.from_numpy(i), "neg": torch.from_numpy(j)}


@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5])
def test_loss_is_the_hand_sum_with_fgsm(lam):
    m = MF(20, 15, dim=6, seed=1)
    batch = _batch(m)
    reg = AdversarialRegularizer(FGSM(m, 0.5), lam)
    expected = m.loss(batch) + lam * m.loss(batch, FGSM(m, 0.5)(batch))
    assert torch.allclose(reg(m, batch), expected, rtol=1e-6, atol=1e-7)


def test_lam_zero_is_the_plain_loss():
    m = MF(20, 15, dim=6, seed=2)
    batch = _batch(m, seed=3)
    assert torch.equal(AdversarialRegularizer(FGSM(m, 0.5), 0.0)(m, batch), m.loss(batch))
    assert torch.equal(AdversarialRegularizer(FGSM(m, 0.5), 0)(m, batch), m.loss(batch))


def test_multistep_attacks_give_the_hand_sum():
    m = MF(20, 15, dim=6, seed=4)
    batch = _batch(m, seed=5)
    bim = AdversarialRegularizer(BIM(m, 0.5, steps=4), 1.0)(m, batch)
    assert torch.allclose(bim, m.loss(batch) + m.loss(batch, BIM(m, 0.5, steps=4)(batch)), rtol=1e-6)
    pgd = AdversarialRegularizer(PGD(m, 0.5, steps=3, seed=7), 0.5)(m, batch)
    assert torch.allclose(pgd, m.loss(batch) + 0.5 * m.loss(batch, PGD(m, 0.5, steps=3, seed=7)(batch)), rtol=1e-6)
    # the multi-step adversary is at least as strong as FGSM here, and both beat the clean loss
    fgsm = AdversarialRegularizer(FGSM(m, 0.5), 1.0)(m, batch)
    assert bim >= fgsm - 1e-6 and fgsm > 2 * m.loss(batch)


class _Cube(Recommender):
    """loss = mean over the batch's users of sum_k (w_u + delta_u)_k^3: gradients by hand, and FGSM
    is not the inner maximiser, so differentiating through delta would change the gradient."""

    n_users, n_items = 5, 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0], [2.0, -0.7], [0.3, 0.4]]))

    def perturbable(self):
        return {"w": self.w}

    def loss(self, batch, delta=None):
        w = self.w + self.check_delta(delta).get("w", 0)
        return w[batch["user"]].pow(3).sum(-1).mean()


def test_gradient_reaches_the_parameters_but_not_through_delta():
    m = _Cube()
    batch = {"user": torch.tensor([0, 1, 3, 3]), "pos": torch.zeros(4, dtype=torch.long),
             "neg": torch.zeros(4, dtype=torch.long)}
    eps, lam = 0.5, 2.0
    reg = AdversarialRegularizer(FGSM(m, eps), lam)
    delta = reg.perturbation(batch)["w"]
    assert delta.grad_fn is None and not delta.requires_grad
    # FGSM: d loss / d w_u is proportional to w_u^2, normalised per row; untouched rows stay 0
    w = m.w.detach()
    touched = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])[:, None]
    w2 = w.pow(2)
    assert torch.allclose(delta, eps * w2 / w2.norm(dim=1, keepdim=True) * touched, atol=1e-6)

    loss = reg(m, batch)
    assert loss.grad_fn is not None
    loss.backward()
    # d/dw with delta held constant: (3 w_u^2 + lam * 3 (w_u + delta_u)^2) * count_u / b
    count = torch.bincount(batch["user"], minlength=5).to(torch.float32)[:, None]
    expected = (3 * w2 + lam * 3 * (w + delta).pow(2)) * count / 4
    assert torch.allclose(m.w.grad, expected, atol=1e-5)
    # the gradient had it flowed through delta = eps * w^2 / ||w^2|| is measurably different
    v = w.clone().requires_grad_(True)
    d = eps * v.pow(2) / v.pow(2).norm(dim=1, keepdim=True) * touched
    through = (v[batch["user"]].pow(3).sum(-1).mean()
               + lam * (v + d)[batch["user"]].pow(3).sum(-1).mean())
    (g_through,) = torch.autograd.grad(through, v)
    assert torch.allclose(through.detach(), loss.detach(), atol=1e-5)
    assert (g_through - m.w.grad).abs().max() > 0.1


def test_bad_arguments():
    m, other = MF(10, 8, dim=4, seed=0), MF(10, 8, dim=4, seed=0)
    for lam in (-0.1, float("nan"), float("inf"), True, "1", None):
        with pytest.raises(ValueError, match="lam"):
            AdversarialRegularizer(FGSM(m, 0.5), lam)
    with pytest.raises(ValueError, match="attack"):
        AdversarialRegularizer(m, 1.0)
    with pytest.raises(ValueError, match="attack"):
        AdversarialRegularizer(lambda b: {}, 1.0)
    with pytest.raises(ValueError, match="different model"):
        AdversarialRegularizer(FGSM(other, 0.5), 1.0)(m, _batch(m))
    train = _interactions(n_users=10, n_items=8, per_user=3)
    with pytest.raises(ValueError, match="attack"):
        train_amf(m, train, attack="cw", epochs=1)
    with pytest.raises(ValueError, match="attack"):
        train_amf(m, train, attack=FGSM(other, 0.5), epochs=1)
    with pytest.raises(ValueError, match="attack_kwargs"):
        train_amf(m, train, attack=FGSM(m, 0.5), attack_kwargs={"steps": 2}, epochs=1)
    with pytest.raises(ValueError, match="loss_fn"):
        train_amf(m, train, epochs=1, loss_fn=lambda mm, b: mm.loss(b))
    with pytest.raises(ValueError, match="epochs"):
        train_amf(m, train, epochs=0)
    with pytest.raises(ValueError, match="lam"):
        train_amf(m, train, lam=-1.0, epochs=1)
    with pytest.raises(ValueError, match="eps"):
        train_amf(m, train, eps=-0.5, epochs=1)
    with pytest.raises(ValueError, match="norm"):
        train_amf(m, train, norm="l1", epochs=1)


def test_train_amf_is_seeded_and_accepts_multistep_attacks():
    train = _interactions(n_users=30, n_items=20, per_user=5)
    states = []
    for _ in range(2):
        m = MF(train.n_users, train.n_items, dim=4, seed=3)
        h = train_amf(m, train, epochs=3, lr=0.05, batch_size=32, seed=9, progress=False)
        assert h.epochs == 3 and all(math.isfinite(x) for x in h.loss)
        states.append(copy.deepcopy(m.state_dict()))
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k])
    m = MF(train.n_users, train.n_items, dim=4, seed=3)
    train_amf(m, train, epochs=3, lr=0.05, batch_size=32, seed=9, progress=False)
    assert not torch.equal(m.state_dict()["user_factors"], MF(30, 20, dim=4, seed=3).user_factors.detach())
    for attack, kwargs in (("bim", {"steps": 3}), ("pgd", {"steps": 2, "seed": 1})):
        m = MF(train.n_users, train.n_items, dim=4, seed=3)
        h = train_amf(m, train, epochs=2, attack=attack, attack_kwargs=kwargs, lr=0.05, batch_size=32,
                      progress=False)
        assert h.epochs == 2 and all(math.isfinite(x) for x in h.loss)


def _fgsm_damage(model, batch, eps=0.5):
    """(increase of the BPR loss, relative drop of the pairwise ranking accuracy) under FGSM."""
    delta = FGSM(model, eps)(batch)
    with torch.no_grad():
        clean, adv = model.score_batch(batch), model.score_batch(batch, delta)
        acc_clean = float((clean[:, 0] > clean[:, 1]).double().mean())
        acc_adv = float((adv[:, 0] > adv[:, 1]).double().mean())
        increase = float(model.loss(batch, delta)) - float(model.loss(batch))
    return increase, (acc_clean - acc_adv) / acc_clean


def test_amf_is_more_robust_to_fgsm_than_bprmf_from_the_same_start():
    """The MSAP protocol at toy scale: pretrain BPR-MF, then continue the same number of epochs
    either plainly (BPR-MF) or with the regulariser (AMF); FGSM at eps=0.5 on the whole training
    set then raises AMF's BPR loss less, and costs it a smaller relative share of its correctly
    ordered (pos, neg) pairs (APR's measure is a relative drop of ranking quality).

    The loss increase is compared in absolute terms: AMF fits the training set tighter (its clean
    loss is a few times lower), so the increase *divided by the clean loss* is ill-conditioned at
    this scale. Fixed seeds make the test deterministic; the margins (0.9 and 0.75) were checked
    to hold on five data/trainer seeds (worst ratios seen: 0.83 and 0.59).
    """
    train = _interactions(seed=0)
    bpr = MF(train.n_users, train.n_items, dim=16, seed=0)
    common = dict(lr=0.05, batch_size=64, l2=0.003, seed=1, progress=False)
    Trainer(epochs=20, patience=None, **common).fit(bpr, train)
    amf = copy.deepcopy(bpr)
    Trainer(epochs=20, patience=None, **common).fit(bpr, train)
    h = train_amf(amf, train, eps=0.5, lam=1.0, epochs=20, **common)
    assert h.epochs == 20
    batch = _all_triples(train, seed=2)
    bpr_increase, bpr_drop = _fgsm_damage(bpr, batch)
    amf_increase, amf_drop = _fgsm_damage(amf, batch)
    assert bpr_increase > 0 and amf_increase > 0 and bpr_drop > 0
    assert amf_increase < 0.9 * bpr_increase, (amf_increase, bpr_increase)
    assert amf_drop < 0.75 * bpr_drop, (amf_drop, bpr_drop)

"""VBPR's closed forms: the feature gradient (``VBPR.delta_gradient``, ``Attack.gradient``'s hook)
against torch autograd over a dense perturbation, and the one-forward AMR loss (``AMRLoss``,
``VBPR.amr_loss``, what ``train_amr`` trains with) against ``AdversarialRegularizer(FGSM(...))``."""
import numpy as np
import pytest
import torch

from advrec.attacks import FGSM
from advrec.data import Interactions
from advrec.models import DUIF, MF, VBPR
from advrec.training import AdversarialRegularizer, AMRLoss, Trainer, train_amr

N_USERS, N_ITEMS, D, K = 12, 9, 7, 5
KINDS = ["simplified", "full", "full-biases", "content", "duif"]


def make(kind: str, seed: int = 0, scale: float = 1.0, cold=(2, 6)) -> VBPR:
    """A model with every parameter drawn at a trained-looking scale and a few cold items."""
    feats = np.random.default_rng(seed).normal(size=(N_ITEMS, D)).astype(np.float32) * 3
    if kind == "duif":
        m = DUIF(N_USERS, N_ITEMS, feats, dim=K, seed=seed)
    else:
        variant = "full" if kind.startswith("full") else kind
        m = VBPR(N_USERS, N_ITEMS, feats, dim=K, variant=variant, biases=kind == "full-biases", seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7 * scale)
    m.cold[list(cold)] = True
    return m


def batch_of(users, pos, neg):
    return {"user": torch.tensor(users), "pos": torch.tensor(pos), "neg": torch.tensor(neg)}


def random_batch(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, N_USERS, (n,), generator=g),
            "pos": torch.randint(0, N_ITEMS, (n,), generator=g),
            "neg": torch.randint(0, N_ITEMS, (n,), generator=g)}


BATCHES = {
    "random": random_batch(40, 1),  # 40 draws over 9 items: every item repeats
    "one": batch_of([3], [4], [0]),
    "cold-both": batch_of([0, 1], [2, 6], [6, 2]),  # cold items as positive and as negative
    "pos-and-neg": batch_of([0, 1, 2, 5], [4, 1, 4, 7], [1, 4, 8, 4]),  # 4 and 1 on both sides
    "same-triple-twice": batch_of([5, 5, 5], [3, 3, 0], [8, 8, 3]),
}


class AutogradFGSM(FGSM):
    """FGSM whose gradient is always autograd's: the reference, independent of the hook."""

    def gradient(self, batch, delta):
        return self.autograd_gradient(batch, delta)


def close(actual, expected, rtol=1e-5, msg=None):
    """Equal to float32 precision: elementwise ``rtol``, plus an absolute slack of ``rtol`` times
    the largest entry (sums of terms of either sign round differently in either order)."""
    atol = rtol * float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=max(atol, 1e-12), msg=msg)


def feature_delta(seed: int, scale: float = 0.2):
    return {"feature": torch.randn(N_ITEMS, D, generator=torch.Generator().manual_seed(seed)) * scale}


# -- delta_gradient ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(BATCHES))
@pytest.mark.parametrize("perturbed", [False, True])
def test_feature_gradient_equals_autograd(kind, name, perturbed):
    m = make(kind, seed=len(name))
    batch = BATCHES[name]
    atk = FGSM(m, 0.5, targets="feature")
    delta = feature_delta(7) if perturbed else atk.zeros()
    fast = m.delta_gradient(batch, delta, ("feature",))["feature"]
    ref = atk.autograd_gradient(batch, delta)["feature"]
    assert fast.shape == ref.shape == (N_ITEMS, D) and fast.dtype == torch.float32
    assert not fast.requires_grad
    close(fast, ref)
    untouched = sorted(set(range(N_ITEMS)) - set(batch["pos"].tolist()) - set(batch["neg"].tolist()))
    assert torch.count_nonzero(fast[untouched]) == 0  # rows the batch does not touch: exactly zero
    assert torch.count_nonzero(fast) > 0
    assert all(p.grad is None for p in m.parameters())  # no parameter gradient left behind


@pytest.mark.parametrize("kind", KINDS)
def test_feature_gradient_many_random_batches(kind):
    for seed in range(8):
        m = make(kind, seed=seed, scale=1.0 + seed / 2)  # margins up to saturation of the sigmoid
        n = [1, 2, 5, 17, 64, 200, 3, 9][seed]
        batch = random_batch(n, seed)
        atk = FGSM(m, 0.1)
        delta = feature_delta(seed, scale=0.5)
        close(m.delta_gradient(batch, delta, ["feature"])["feature"], atk.autograd_gradient(batch, delta)["feature"])


def test_attack_gradient_takes_the_hook(monkeypatch):
    m = make("simplified")
    atk = FGSM(m, 0.5)
    expected = atk.autograd_gradient(BATCHES["random"], atk.zeros())["feature"]

    def refuse(*args, **kwargs):
        raise AssertionError("autograd path taken")

    monkeypatch.setattr(atk, "autograd_gradient", refuse)
    close(atk.gradient(BATCHES["random"], atk.zeros())["feature"], expected)
    # and FGSM on it: row norms eps on the batch's items, zero elsewhere
    step = atk(BATCHES["pos-and-neg"])["feature"]
    touched = [1, 4, 7, 8]
    torch.testing.assert_close(step.norm(dim=1)[touched], torch.full((4,), 0.5))
    assert torch.count_nonzero(step[[0, 2, 3, 5, 6]]) == 0


def test_cold_items_take_gradient_through_content_only():
    m = make("simplified", cold=(2, 6))
    batch = batch_of([0, 1], [2, 3], [6, 5])
    g = m.delta_gradient(batch, {}, ("feature",))["feature"]
    with torch.no_grad():
        m.item_factors[[2, 6]] += 50.0  # a cold item's ID embedding changes nothing
    torch.testing.assert_close(m.delta_gradient(batch, {}, ("feature",))["feature"], g, rtol=0, atol=0)
    assert torch.count_nonzero(g[[2, 6]]) > 0


def test_empty_batch_gives_zeros_like_autograd():
    m = make("full-biases")
    empty = {k: torch.zeros(0, dtype=torch.int64) for k in ("user", "pos", "neg")}
    atk = FGSM(m, 0.5)
    fast = m.delta_gradient(empty, atk.zeros(), ("feature",))["feature"]
    torch.testing.assert_close(fast, atk.autograd_gradient(empty, atk.zeros())["feature"], rtol=0, atol=0)
    assert torch.count_nonzero(fast) == 0


def test_gradient_hook_declines_where_it_does_not_apply():
    m = make("simplified")
    batch = BATCHES["random"]
    leaf = feature_delta(1)["feature"].requires_grad_(True)
    assert m.delta_gradient(batch, {"feature": leaf}, ("feature",)) is None  # caller may want a graph
    nd = {"user": torch.tensor([0, 1]), "pos": torch.tensor([[0, 1], [2, 3]]), "neg": torch.tensor([[4, 5], [6, 7]])}
    assert m.delta_gradient(nd, {}, ("feature",)) is None

    class Hinge(VBPR):
        def loss(self, batch, delta=None):
            return torch.relu(1 - self.score(batch["user"], batch["pos"], delta)
                              + self.score(batch["user"], batch["neg"], delta)).mean()

    h = Hinge(N_USERS, N_ITEMS, m.features.numpy(), dim=K)
    assert h.delta_gradient(batch, {}, ("feature",)) is None
    assert h.amr_loss(batch, 0.1, 1.0) is None
    atk = FGSM(h, 0.5)  # Attack.gradient falls back to autograd on the subclass's own loss
    torch.testing.assert_close(atk.gradient(batch, atk.zeros())["feature"],
                               atk.autograd_gradient(batch, atk.zeros())["feature"], rtol=0, atol=0)


def test_gradient_hook_bad_input():
    m = make("full")
    with pytest.raises(ValueError, match="targets"):
        m.delta_gradient(BATCHES["one"], {}, ("item",))
    with pytest.raises(ValueError, match="same length"):
        m.delta_gradient(batch_of([0, 1], [1], [2]), {}, ("feature",))
    with pytest.raises(IndexError, match="pos"):
        m.delta_gradient(batch_of([0], [N_ITEMS], [2]), {}, ("feature",))
    with pytest.raises(IndexError, match="user"):
        m.delta_gradient(batch_of([-1], [0], [2]), {}, ("feature",))
    with pytest.raises(ValueError, match="delta"):
        m.delta_gradient(BATCHES["one"], {"feature": torch.zeros(N_ITEMS, D + 1)}, ("feature",))
    with pytest.raises(IndexError, match="neg"):
        m.amr_loss(batch_of([0], [1], [N_ITEMS + 3]), 0.1, 1.0)
    for kw in ({"eps": -0.1}, {"eps": float("nan")}, {"lam": -1.0}, {"lam": float("inf")}, {"eps": None}):
        args = {"eps": 0.1, "lam": 1.0, **kw}
        with pytest.raises(ValueError, match=next(iter(kw))):
            m.amr_loss(BATCHES["one"], **args)


# -- the AMR loss --------------------------------------------------------------------------------
def loss_and_grads(model, loss_fn, batch):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(BATCHES))
@pytest.mark.parametrize("eps, lam", [(0.5, 1.0), (0.05, 0.3), (2.0, 2.5)])
def test_amr_loss_equals_the_regulariser(kind, name, eps, lam):
    m = make(kind, seed=3)
    batch = BATCHES[name]
    fast = AMRLoss(m, eps, lam)
    loss, grads = loss_and_grads(m, fast, batch)
    for attack in (AutogradFGSM(m, eps, targets="feature", norm="l2"),  # autograd for Gamma
                   FGSM(m, eps, targets="feature", norm="l2")):  # the hook for Gamma
        ref_loss, ref_grads = loss_and_grads(m, AdversarialRegularizer(attack, lam), batch)
        close(loss, ref_loss)
        assert grads.keys() == ref_grads.keys()
        for n in grads:
            close(grads[n], ref_grads[n], rtol=1e-4, msg=n)
    # the adversarial term is there: larger than the clean loss scaled
    assert float(loss) > (1 + lam) * float(m.loss(batch).detach()) - 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_amr_loss_many_random_batches(kind):
    for seed in range(6):
        m = make(kind, seed=seed, scale=0.5 + seed / 2)
        batch = random_batch([1, 3, 8, 30, 100, 257][seed], 50 + seed)
        loss, grads = loss_and_grads(m, AMRLoss(m, 0.2, 1.0), batch)
        ref_loss, ref_grads = loss_and_grads(
            m, AdversarialRegularizer(AutogradFGSM(m, 0.2, targets="feature"), 1.0), batch)
        close(loss, ref_loss)
        for n in grads:
            close(grads[n], ref_grads[n], rtol=1e-4, msg=n)


@pytest.mark.parametrize("kind", ["simplified", "full-biases"])
def test_amr_loss_zero_eps_and_zero_lam_are_the_clean_loss(kind):
    m = make(kind, seed=4)
    batch = BATCHES["random"]
    clean, clean_grads = loss_and_grads(m, lambda mm, b: mm.loss(b), batch)
    for eps, lam, factor in ((0.0, 1.5, 2.5), (0.3, 0.0, 1.0), (0.3, 0, 1.0)):
        loss, grads = loss_and_grads(m, AMRLoss(m, eps, lam), batch)
        close(loss, clean * factor)
        for n in grads:
            close(grads[n], clean_grads[n] * factor, msg=n)


def test_amr_loss_empty_batch_is_nan_like_the_reference():
    m = make("simplified")
    empty = {k: torch.zeros(0, dtype=torch.int64) for k in ("user", "pos", "neg")}
    assert torch.isnan(AMRLoss(m, 0.1, 1.0)(m, empty))
    assert torch.isnan(AdversarialRegularizer(AutogradFGSM(m, 0.1, targets="feature"), 1.0)(m, empty))


def test_amr_loss_perturbation_is_fgsm():
    """The adversarial term is model.loss under FGSM's Delta (rows of norm eps on the batch's items)."""
    m = make("full-biases", seed=5)
    batch = BATCHES["pos-and-neg"]
    delta = AutogradFGSM(m, 0.4, targets="feature")(batch)
    with torch.no_grad():
        expected = m.loss(batch) + 0.7 * m.loss(batch, delta)
        close(m.amr_loss(batch, 0.4, 0.7), expected)


def test_amr_loss_falls_back_to_the_reference():
    class Hinge(VBPR):
        def loss(self, batch, delta=None):
            return torch.relu(1 - self.score(batch["user"], batch["pos"], delta)
                              + self.score(batch["user"], batch["neg"], delta)).mean()

    h = Hinge(N_USERS, N_ITEMS, make("simplified").features.numpy(), dim=K, init_std=0.5)
    batch = BATCHES["random"]
    fast = AMRLoss(h, 0.3, 1.0)
    assert torch.equal(fast(h, batch), AdversarialRegularizer(FGSM(h, 0.3, targets="feature"), 1.0)(h, batch))


def test_amr_loss_bad_arguments():
    m = make("simplified")
    with pytest.raises(ValueError, match="feature"):
        AMRLoss(MF(4, 5), 0.1)
    for eps in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="eps"):
            AMRLoss(m, eps)
    for lam in (-1.0, float("inf"), "1"):
        with pytest.raises(ValueError, match="lam"):
            AMRLoss(m, 0.1, lam)
    other = make("simplified", seed=1)
    with pytest.raises(ValueError, match="different model"):
        AMRLoss(m, 0.1)(other, BATCHES["one"])
    assert "eps=0.1" in repr(AMRLoss(m, 0.1))


# -- train_amr -----------------------------------------------------------------------------------
def interactions(seed=0, n_users=40, n_items=25, n=300):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items - 3, n)  # last 3 items cold
    return Interactions(users, items, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


def _amr_model(train, kind="simplified"):
    feats = np.random.default_rng(1).normal(size=(train.n_items, 6)).astype(np.float32)
    variant = "full" if kind.startswith("full") else kind
    m = VBPR(train.n_users, train.n_items, feats, dim=8, variant=variant, biases=kind == "full-biases",
             init_std=0.1, seed=0)
    m.mark_cold(train)
    return m


@pytest.mark.parametrize("kind", ["simplified", "full-biases", "content"])
def test_train_amr_matches_the_regulariser_and_repeats(kind, monkeypatch):
    train = interactions()
    kw = dict(epochs=3, lr=0.05, l2=1e-3, patience=None, progress=False, seed=4, batch_size=64)
    runs = []
    for _ in range(2):
        m = _amr_model(train, kind)
        h = train_amr(m, train, eps=0.3, lam=1.0, **kw)
        runs.append((h.loss, {n: p.detach().clone() for n, p in m.named_parameters()}))
    assert runs[0][0] == runs[1][0]  # same seed, same numbers
    for n in runs[0][1]:
        assert torch.equal(runs[0][1][n], runs[1][1][n]), n
    ref = _amr_model(train, kind)
    kw.pop("epochs")
    h_ref = Trainer(optimizer="adagrad", epochs=3, loss_fn=AdversarialRegularizer(
        AutogradFGSM(ref, 0.3, targets="feature"), 1.0), **kw).fit(ref, train)
    np.testing.assert_allclose(runs[0][0], h_ref.loss, rtol=1e-5)
    for n, p in ref.named_parameters():
        torch.testing.assert_close(runs[0][1][n], p.detach(), rtol=1e-4, atol=1e-5, msg=n)
    # train_amr trains through the closed form
    calls = []
    original = VBPR.amr_loss
    monkeypatch.setattr(VBPR, "amr_loss", lambda self, *a: calls.append(1) or original(self, *a))
    train_amr(_amr_model(train, kind), train, eps=0.3, lam=1.0, epochs=1, patience=None, progress=False,
              batch_size=64)
    assert len(calls) == -(-len(train) // 64)


def test_train_amr_bad_arguments():
    train = interactions()
    m = _amr_model(train)
    with pytest.raises(ValueError, match="epochs"):
        train_amr(m, train, epochs=0)
    with pytest.raises(ValueError, match="loss_fn"):
        train_amr(m, train, epochs=1, loss_fn=lambda model, batch: model.loss(batch))
    with pytest.raises(ValueError, match="eps"):
        train_amr(m, train, eps=-1.0, epochs=1)
    with pytest.raises(ValueError, match="feature"):
        train_amr(MF(train.n_users, train.n_items), train, epochs=1)

"""Attacks on perturbable tensors: FGSM, BIM, PGD, random noise, and the projected step."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrec.attacks import BIM, FGSM, NORMS, PGD, RandomNoise, perturb_step, project, random_in_ball
from advrec.models import MF
from advrec.models.base import Recommender

N_USERS, N_ITEMS = 943, 1682  # ML-100K's shape
TOL = 1e-5


def _triples(n, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, N_USERS, n)
    # planted structure: users prefer items with the same residue mod 7, so training learns something
    pos = (rng.integers(0, N_ITEMS // 7, n) * 7 + u % 7) % N_ITEMS
    neg = rng.integers(0, N_ITEMS, n)
    return {"user": torch.as_tensor(u), "pos": torch.as_tensor(pos), "neg": torch.as_tensor(neg)}


@pytest.fixture(scope="module")
def trained():
    """A trained-ish BPR-MF on ML-100K-shaped data and a batch to attack."""
    model = MF(N_USERS, N_ITEMS, dim=16, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    data = _triples(20000, 0)
    for _ in range(30):
        opt.zero_grad()
        model.loss(data).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, _triples(500, 1)


def _row_norms(t):
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


def _touched_rows(batch):
    return {"user": torch.unique(batch["user"]), "item": torch.unique(torch.cat([batch["pos"], batch["neg"]]))}


# ---- the step against a plain loop ------------------------------------------------------------

def _reference_step(delta, grad, alpha, eps, norm):
    out = delta.clone().double()
    g = grad.double()
    for r in range(out.shape[0]):
        n = math.sqrt(float((g[r] ** 2).sum()))
        if norm == "linf":
            out[r] = out[r] + alpha * torch.sign(g[r])
        elif n > 0:
            out[r] = out[r] + alpha * g[r] / n
        if norm == "l2":
            m = math.sqrt(float((out[r] ** 2).sum()))
            if m > eps:
                out[r] = out[r] * (eps / m)
        else:
            out[r] = out[r].clamp(-eps, eps)
    return out.float()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps,alpha", [(0.5, 0.125), (0.1, 1.0), (0.0, 0.3), (3.0, 0.01)])
def test_perturb_step_matches_loop(norm, eps, alpha):
    g = torch.Generator().manual_seed(3)
    delta = torch.randn(40, 8, generator=g) * 0.3
    grad = torch.randn(40, 8, generator=g)
    grad[::5] = 0  # zero-gradient rows take no step
    grad[1, :4] = 0
    before = delta.clone()
    want = _reference_step(delta, grad, alpha, eps, norm)
    # default (the fused kernel for float32 CPU), the kernel forced, and the torch path
    for fused in (None, True, False):
        out = perturb_step(delta, grad, alpha, eps, norm, fused=fused)
        torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
        assert torch.equal(delta, before)  # the input is not modified


def test_perturb_step_zero_rows_take_no_step():
    delta = torch.zeros(3, 4)
    grad = torch.zeros(3, 4)
    grad[1] = 1.0
    out = perturb_step(delta, grad, 0.2, 1.0, "l2")
    assert torch.equal(out[0], torch.zeros(4)) and torch.equal(out[2], torch.zeros(4))
    torch.testing.assert_close(out[1], torch.full((4,), 0.1))


def test_perturb_step_errors():
    with pytest.raises(ValueError, match="norm"):
        perturb_step(torch.zeros(2, 2), torch.zeros(2, 2), 0.1, 0.1, "l3")
    with pytest.raises(ValueError, match="same shape"):
        perturb_step(torch.zeros(2, 2), torch.zeros(2, 3), 0.1, 0.1, "l2")
    with pytest.raises(ValueError, match="eps"):
        perturb_step(torch.zeros(2, 2), torch.zeros(2, 2), 0.1, -1.0, "l2")
    with pytest.raises(ValueError, match="norm"):
        project(torch.zeros(2, 2), 1.0, "L2")


# ---- FGSM ---------------------------------------------------------------------------------------

def test_fgsm_l2_rows_have_norm_eps_and_untouched_rows_are_zero(trained):
    model, batch = trained
    eps = 0.5
    delta = FGSM(model, eps)(batch)
    assert set(delta) == {"user", "item"}
    for name, rows in _touched_rows(batch).items():
        assert delta[name].shape == model.perturbable()[name].shape
        norms = _row_norms(delta[name])
        assert torch.all((norms[rows] - eps).abs() <= TOL)
        mask = torch.ones(norms.shape[0], dtype=torch.bool)
        mask[rows] = False
        assert mask.any() and torch.all(delta[name][mask] == 0)


def test_fgsm_linf_is_eps_times_sign(trained):
    model, batch = trained
    atk = FGSM(model, 0.3, norm="linf")
    delta = atk(batch)
    grad = atk.gradient(batch, atk.zeros())
    for name in delta:
        torch.testing.assert_close(delta[name], 0.3 * torch.sign(grad[name]))
        assert delta[name].abs().max() <= 0.3 + 1e-7


def test_fgsm_single_target(trained):
    model, batch = trained
    delta = FGSM(model, 0.5, targets="item")(batch)
    assert set(delta) == {"item"}


@pytest.mark.parametrize("norm", NORMS)
def test_fgsm_beats_no_delta_and_random_noise(trained, norm):
    model, batch = trained
    eps = 0.5
    with torch.no_grad():
        clean = float(model.loss(batch))
        adv = float(model.loss(batch, FGSM(model, eps, norm=norm)(batch)))
        rnd = float(model.loss(batch, RandomNoise(model, eps, norm=norm, only_touched=True)(batch)))
    assert adv > clean
    assert adv - clean > 5 * abs(rnd - clean)


def test_random_noise_norms(trained):
    model, batch = trained
    d = RandomNoise(model, 0.5)(batch)
    for t in d.values():
        assert torch.all((_row_norms(t) - 0.5).abs() <= TOL)
    d = RandomNoise(model, 0.5, norm="linf")(batch)
    for t in d.values():
        assert torch.all(t.abs() == 0.5)
    d = RandomNoise(model, 0.5, only_touched=True)(batch)
    for name, rows in _touched_rows(batch).items():
        norms = _row_norms(d[name])
        assert torch.all((norms[rows] - 0.5).abs() <= TOL)
        assert int((norms > 0).sum()) == rows.numel()
    a = RandomNoise(model, 0.5, seed=4)(batch)
    b = RandomNoise(model, 0.5, seed=4)(batch)
    c = RandomNoise(model, 0.5, seed=5)(batch)
    assert all(torch.equal(a[n], b[n]) for n in a) and not torch.equal(a["user"], c["user"])


# ---- BIM / PGD ------------------------------------------------------------------------------------

def _in_set(delta, eps, norm):
    for t in delta.values():
        if norm == "l2":
            assert torch.all(_row_norms(t) <= eps + TOL)
        else:
            assert torch.all(t.abs() <= eps + 1e-7)


@pytest.mark.parametrize("cls", [BIM, PGD])
@pytest.mark.parametrize("norm", NORMS)
def test_multistep_stays_in_the_feasible_set_every_step(trained, cls, norm):
    model, batch = trained
    eps = 0.5
    atk = cls(model, eps, steps=8, norm=norm)
    assert atk.alpha == eps / 4
    seen = []
    losses = []
    for step, delta in atk.steps_iter(batch):
        seen.append(step)
        _in_set(delta, eps, norm)
        with torch.no_grad():
            losses.append(float(model.loss(batch, delta)))
    assert seen == list(range(1, 9))
    with torch.no_grad():
        clean = float(model.loss(batch))
    assert losses[-1] > clean


def test_bim_l2_rows_reach_the_sphere_and_earlier_steps_are_kept(trained):
    model, batch = trained
    eps = 0.5
    deltas = []
    final = BIM(model, eps, steps=6)(batch, callback=lambda s, d: deltas.append((s, d)))
    assert [s for s, _ in deltas] == list(range(1, 7))
    assert all(torch.equal(final[n], deltas[-1][1][n]) for n in final)
    rows = _touched_rows(batch)["user"]
    # first step: rows have norm alpha exactly; later steps may not leave the ball
    assert torch.all((_row_norms(deltas[0][1]["user"])[rows] - eps / 4).abs() <= TOL)
    assert not torch.equal(deltas[0][1]["user"], deltas[-1][1]["user"])
    # more steps hurt at least as much as FGSM
    with torch.no_grad():
        assert float(model.loss(batch, final)) >= float(model.loss(batch, FGSM(model, eps)(batch))) - 1e-6


def test_bim_first_step_of_size_eps_is_fgsm(trained):
    model, batch = trained
    a = BIM(model, 0.5, alpha=0.5, steps=1)(batch)
    b = FGSM(model, 0.5)(batch)
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_start_inside_and_seeded(trained, norm):
    model, _ = trained
    eps = 0.5
    s1 = PGD(model, eps, seed=1, norm=norm).start()
    s1b = PGD(model, eps, seed=1, norm=norm).start()
    s2 = PGD(model, eps, seed=2, norm=norm).start()
    _in_set(s1, eps, norm)
    for n in s1:
        assert torch.equal(s1[n], s1b[n])
        assert not torch.equal(s1[n], s2[n])
        assert s1[n].abs().sum() > 0


def test_pgd_same_seed_same_numbers(trained):
    model, batch = trained
    a = PGD(model, 0.5, steps=3, seed=7)(batch)
    b = PGD(model, 0.5, steps=3, seed=7)(batch)
    c = PGD(model, 0.5, steps=3, seed=8)(batch)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["item"], c["item"])
    z = PGD(model, 0.5, steps=3, random_start=False)(batch)
    bim = BIM(model, 0.5, steps=3)(batch)
    assert all(torch.equal(z[n], bim[n]) for n in z)


def test_random_in_ball_is_uniform_in_radius():
    # uniform in a d-ball: P(||x|| <= r) = (r/eps)^d, so ||x||^d / eps^d is uniform on [0, 1]
    g = torch.Generator().manual_seed(0)
    d, eps = 4, 2.0
    x = random_in_ball((20000, d), eps, "l2", g)
    u = (_row_norms(x) / eps) ** d
    assert torch.all(_row_norms(x) <= eps + TOL)
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float((u < 0.25).float().mean()) - 0.25) < 0.015
    box = random_in_ball((20000, d), eps, "linf", g)
    assert float(box.abs().max()) <= eps and abs(float(box.mean())) < 0.03


# ---- protocol: parameters untouched, any model -----------------------------------------------

@pytest.mark.parametrize("make", [lambda m: FGSM(m, 0.5), lambda m: BIM(m, 0.5, steps=3),
                                  lambda m: PGD(m, 0.5, steps=3, norm="linf"),
                                  lambda m: RandomNoise(m, 0.5, only_touched=True)])
def test_parameters_unchanged_and_no_grad_left(trained, make):
    model, batch = trained
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    delta = make(model)(batch)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
    assert all(not t.requires_grad for t in delta.values())


class ToyBiasModel(Recommender):
    """Not MF: scores are bias_i + <w, E_i> with a 1-D perturbable bias and a perturbable E."""

    def __init__(self, n_items=30, dim=5):
        super().__init__()
        self.n_users, self.n_items = 4, n_items
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(n_items, dim, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(n_items, generator=g))
        self.w = torch.nn.Parameter(torch.randn(dim, generator=g))

    def perturbable(self):
        return {"emb": self.emb, "bias": self.bias}

    def score(self, users, items, delta=None):
        d = self.check_delta(delta)
        E = self.emb + d["emb"] if "emb" in d else self.emb
        b = self.bias + d["bias"] if "bias" in d else self.bias
        return b[items] + E[items] @ self.w

    def loss(self, batch, delta=None):
        s = self.score(batch["user"], batch["pos"], delta) - self.score(batch["user"], batch["neg"], delta)
        return F.softplus(-s).mean()


def test_custom_model():
    model = ToyBiasModel()
    batch = {"user": torch.tensor([0, 1, 2]), "pos": torch.tensor([1, 2, 3]), "neg": torch.tensor([4, 5, 3])}
    delta = FGSM(model, 0.2)(batch)
    assert set(delta) == {"emb", "bias"}
    assert delta["bias"].shape == (30,) and delta["emb"].shape == (30, 5)
    norms = _row_norms(delta["emb"])
    assert torch.all((norms[[1, 2, 4, 5]] - 0.2).abs() <= TOL)
    assert torch.all(norms[[0, 3, 6]] == 0)  # item 3 is pos and neg of the same user: zero gradient
    assert torch.all((delta["bias"][[1, 2, 4, 5]].abs() - 0.2).abs() <= TOL)  # 1-D rows: sign steps
    with torch.no_grad():
        assert float(model.loss(batch, delta)) > float(model.loss(batch))
    for step, d in PGD(model, 0.2, steps=4, seed=0).steps_iter(batch):
        assert torch.all(_row_norms(d["emb"]) <= 0.2 + TOL) and torch.all(d["bias"].abs() <= 0.2 + TOL)
    with pytest.raises(ValueError, match=r"\['bias', 'emb'\]"):
        FGSM(model, 0.2, targets=("user", "item"))


# ---- errors -------------------------------------------------------------------------------------

def test_errors(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="eps"):
        FGSM(model, -0.1)
    with pytest.raises(ValueError, match="eps"):
        PGD(model, float("nan"))
    with pytest.raises(ValueError, match="norm"):
        FGSM(model, 0.5, norm="l1")
    with pytest.raises(ValueError, match=r"\['item', 'user'\]"):
        FGSM(model, 0.5, targets=("users",))
    with pytest.raises(ValueError, match="targets"):
        FGSM(model, 0.5, targets=())
    with pytest.raises(ValueError, match="steps"):
        BIM(model, 0.5, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        PGD(model, 0.5, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        BIM(model, 0.5, alpha=-1.0)
    with pytest.raises(ValueError, match="model"):
        FGSM(object(), 0.5)


def test_eps_zero_gives_zero_delta(trained):
    model, batch = trained
    for atk in (FGSM(model, 0.0), BIM(model, 0.0, steps=2), PGD(model, 0.0, steps=2)):
        assert all(torch.all(t == 0) for t in atk(batch).values())


def test_attacks_give_the_same_delta_fused_or_not(trained, monkeypatch):
    """BIM through the kernel (the default for float32 CPU tables) equals BIM through torch."""
    from advrec.attacks import step as step_module
    model, batch = trained
    fused = BIM(model, 0.5, steps=5)(batch)
    real = step_module.perturb_step
    monkeypatch.setattr("advrec.attacks.embedding.perturb_step",
                        lambda *a, **k: real(*a, **{**k, "fused": False}))
    unfused = BIM(model, 0.5, steps=5)(batch)
    for name in fused:
        torch.testing.assert_close(fused[name], unfused[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_perturb_step_refuses_non_finite_delta_or_grad_on_both_paths(fused, bad):
    """Issue 15: an inf in delta silently became NaN; the fused kernel and the torch path now
    both refuse it, naming the tensor."""
    delta, grad = torch.zeros(4, 3), torch.ones(4, 3)
    for name in ("delta", "grad"):
        d, g = delta.clone(), grad.clone()
        (d if name == "delta" else g)[2, 1] = bad
        with pytest.raises(ValueError, match=name):
            perturb_step(d, g, 0.1, 0.5, "l2", fused=fused)

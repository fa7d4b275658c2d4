"""Cascade-guided adversarial training's loss (advrec.training.cat) against direct references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advrec.models import GRU4Rec, SASRec
from advrec.models.sequential import bce_pairs
from advrec.training.cat import METHODS, CascadeAdversarialLoss

N_ITEMS, T = 25, 6
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed: int = 0, b: int = 5):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, size=b)
    lengths[0] = T          # one full row
    lengths[-1] = 0         # one all-padding row
    seq = np.full((b, T), -1, dtype=np.int64)
    for r, n in enumerate(lengths):
        seq[r, T - n:] = rng.integers(0, N_ITEMS, size=n)
    pos = np.full_like(seq, -1)
    pos[seq != -1] = rng.integers(0, N_ITEMS, size=int((seq != -1).sum()))
    neg = np.where(pos != -1, rng.integers(0, N_ITEMS, size=seq.shape), -1)
    return {"user": torch.arange(b), "seq": torch.from_numpy(seq), "pos": torch.from_numpy(pos),
            "neg": torch.from_numpy(neg)}


def _model(cls, dropout=0.0, seed=0):
    m = cls(8, N_ITEMS, dim=8, max_len=T, dropout=dropout, seed=seed)
    return m


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_no_adversarial_weight_is_the_base_loss(cls):
    model, batch = _model(cls), _batch()
    model.train()
    for method in ("adv_linear", "adv_seq", "adv_global"):
        loss = CascadeAdversarialLoss(method, eps=3.0, lam1=0.0, lam2=0.0)(model, batch)
        assert torch.allclose(loss, model.loss(batch), atol=1e-6)


def test_embedding_perturbations_equal_normalised_autograd_gradients():
    torch.manual_seed(0)
    w, e_j, e_n = (torch.randn(7, 5, requires_grad=True) for _ in range(3))
    valid = torch.ones(7, dtype=torch.bool)
    loss = bce_pairs((w * e_j).sum(-1), (w * e_n).sum(-1), valid) * valid.sum()  # per-row losses summed
    grads = torch.autograd.grad(loss, (w, e_j, e_n))
    deltas = CascadeAdversarialLoss("adv_linear", eps=2.5).embedding_perturbations(w, e_j, e_n)
    for g, d in zip(grads, deltas):
        ref = 2.5 * g / g.norm(dim=-1, keepdim=True)
        assert torch.allclose(d, ref, atol=1e-5)
        assert torch.allclose(d.norm(dim=-1), torch.full((7,), 2.5), atol=1e-5)


def test_second_level_raises_the_loss_more_than_random_directions():
    torch.manual_seed(1)
    w, e_j, e_n = (torch.randn(400, 6) for _ in range(3))
    valid = torch.ones(400, dtype=torch.bool)
    cat = CascadeAdversarialLoss("adv_linear", eps=0.5)
    adv = cat._second_level(w, torch.cat([e_j, e_n]), torch.arange(400), torch.arange(400, 800), valid)
    rand = [torch.randn(400, 6) for _ in range(3)]
    rand = [0.5 * r / r.norm(dim=-1, keepdim=True) for r in rand]
    w_r = w + rand[0]
    noisy = bce_pairs((w_r * (e_j + rand[1])).sum(-1), (w_r * (e_n + rand[2])).sum(-1), valid)
    clean = bce_pairs((w * e_j).sum(-1), (w * e_n).sum(-1), valid)
    assert adv > noisy + 0.1 and adv > clean + 0.1


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_sequence_perturbation_norm_padding_and_scale(cls):
    model, batch = _model(cls), _batch(2)
    model.eval()
    mask = batch["seq"] != -1
    S = model.sequence_embeddings(batch["seq"])
    rng = torch.get_rng_state()
    states = model.encode(batch["seq"], embeddings=S)
    plain = CascadeAdversarialLoss("adv_global", eps=2.0).sequence_perturbation(model, batch, S, states, rng)
    has_target = (batch["pos"] != -1).any(1)
    norms = plain.norm(dim=(1, 2))
    assert torch.allclose(norms[has_target], torch.full((int(has_target.sum()),), 2.0), atol=1e-4)
    assert float(plain[~mask].abs().max()) == 0.0
    ones = CascadeAdversarialLoss("adv_cas", eps=2.0, scale=torch.ones(batch["seq"].shape))
    same = ones.sequence_perturbation(model, batch, S, states, rng)
    assert torch.equal(same, plain)  # a scale of 1 is adv_global (same seed: same random start)
    scale = torch.rand(batch["seq"].shape) + 0.5
    cas = CascadeAdversarialLoss("adv_cas", eps=2.0, scale=scale)
    scaled = cas.sequence_perturbation(model, batch, S, states, rng)
    unscaled = scaled / scale.unsqueeze(-1)  # A itself has norm eps per sequence; 1/C applies after
    assert torch.allclose(unscaled.norm(dim=(1, 2))[has_target], norms[has_target], atol=1e-4)
    assert float(scaled[~mask].abs().max()) == 0.0


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_first_level_direction_beats_random_directions(cls):
    model, batch = _model(cls, seed=3), _batch(4, b=12)
    model.eval()
    S = model.sequence_embeddings(batch["seq"])
    states = model.encode(batch["seq"], embeddings=S).detach()
    valid = batch["pos"] != -1
    cat = CascadeAdversarialLoss("adv_seq", eps=0.3)
    delta = cat.sequence_perturbation(model, batch, S, states, torch.get_rng_state()).detach()

    def dist(d):
        out = model.encode(batch["seq"], embeddings=S.detach() + d)
        return float(((out - states).norm(dim=-1) * valid).sum())

    gen = torch.Generator().manual_seed(0)
    mask = (batch["seq"] != -1).unsqueeze(-1)
    randoms = []
    for _ in range(20):
        r = torch.randn(S.shape, generator=gen) * mask
        r = r / r.norm(dim=(1, 2), keepdim=True).clamp(min=1e-12) * delta.norm(dim=(1, 2), keepdim=True)
        randoms.append(dist(r))
    assert dist(delta) > 1.5 * np.mean(randoms)


def test_dropout_masks_are_shared_between_clean_and_perturbed_passes():
    model, batch = _model(SASRec, dropout=0.5), _batch(5)
    model.train()
    cat = CascadeAdversarialLoss("adv_seq", eps=0.0, lam1=1.0)
    S = model.sequence_embeddings(batch["seq"])
    rng = torch.get_rng_state()
    states = model.encode(batch["seq"], embeddings=S)
    l1 = cat._first_level(model, batch["seq"], batch["seq"] != -1, batch["pos"] != -1, S, states, rng, batch)
    assert float(l1) < 1e-4          # eps 0: the perturbed pass repeats the clean one exactly
    torch.manual_seed(123)           # a fresh mask instead: far from zero
    other = model.encode(batch["seq"], embeddings=S)
    assert float(((other - states).norm(dim=-1) * (batch["pos"] != -1)).sum()) > 0.1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_every_method_backpropagates_finite_gradients(cls, method):
    model, batch = _model(cls, dropout=0.2), _batch(6)
    model.train()
    scale = torch.rand(batch["seq"].shape) + 0.5
    loss = CascadeAdversarialLoss(method, eps=1.0, scale=scale if method == "adv_cas" else None)(model, batch)
    base = model.loss(batch)
    assert torch.isfinite(loss) and float(loss) > float(base) - 1e-3  # adversarial terms are >= 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert float(model.item.grad.abs().sum()) > 0


def test_levels_per_method():
    model, batch = _model(SASRec), _batch(7)
    model.eval()
    base = float(model.loss(batch))
    linear = float(CascadeAdversarialLoss("adv_linear", eps=1.0)(model, batch))
    seq = float(CascadeAdversarialLoss("adv_seq", eps=1.0)(model, batch))
    both = float(CascadeAdversarialLoss("adv_global", eps=1.0)(model, batch))
    assert linear > base and seq > base
    assert both == pytest.approx(linear + seq - base, rel=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        CascadeAdversarialLoss("adv_everything")
    with pytest.raises(ValueError, match="scale"):
        CascadeAdversarialLoss("adv_cas")
    for name in ("eps", "lam1", "lam2", "xi"):
        with pytest.raises(ValueError, match=name):
            CascadeAdversarialLoss("adv_global", **{name: -1.0})
        with pytest.raises(ValueError, match=name):
            CascadeAdversarialLoss("adv_global", **{name: float("nan")})
    with pytest.raises(ValueError, match="scale"):
        CascadeAdversarialLoss("adv_cas", scale=torch.full((3, T), float("nan")))
    model, batch = _model(SASRec), _batch(8)
    cat = CascadeAdversarialLoss("adv_cas", scale=torch.ones(5, T + 2))
    with pytest.raises(ValueError, match="columns"):
        cat(model, batch)

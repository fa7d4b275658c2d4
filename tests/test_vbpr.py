"""VBPR (AMR's eq. 4 and VBPR's eq. 2), DUIF, cold items, feature perturbations and AMR training."""
import numpy as np
import pytest
import torch

from advrec.attacks import FGSM, RandomNoise
from advrec.data import Interactions
from advrec.models import DUIF, VBPR
from advrec.training import train_amr

N_USERS, N_ITEMS, D, K = 5, 7, 4, 3


def interactions(users, items, n_users, n_items):
    users, items = np.asarray(users), np.asarray(items)
    return Interactions(users, items, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


def features(seed=0):
    return np.random.default_rng(seed).normal(size=(N_ITEMS, D)).astype(np.float32) * 3


def np_params(m):
    return {n: p.detach().double().numpy() for n, p in m.named_parameters()}


@pytest.mark.parametrize("variant", ["simplified", "full", "content"])
def test_scores_equal_a_hand_computation(variant):
    feats = features()
    m = VBPR(N_USERS, N_ITEMS, feats, dim=K, variant=variant, biases=variant == "full", init_std=0.5, seed=1)
    if m.biases:
        with torch.no_grad():
            m.item_bias.normal_()
            m.visual_bias.normal_()
    p = np_params(m)
    c = feats.astype(np.float64) / np.abs(feats).max()  # divided by the global max |value|
    content = c @ p["projection"]
    if variant == "simplified":
        expected = p["user_factors"] @ (p["item_factors"] + content).T
    elif variant == "content":
        expected = p["user_factors"] @ content.T
    else:
        expected = (p["user_factors"] @ p["item_factors"].T + p["user_visual"] @ content.T
                    + p["item_bias"][None, :] + (c @ p["visual_bias"])[None, :])
    users = torch.arange(N_USERS)
    np.testing.assert_allclose(m.full_scores(users).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    items = torch.tensor([[0, 6], [3, 3], [1, 2], [5, 4], [2, 0]])
    np.testing.assert_allclose(m.score(users, items).detach().numpy(),
                               expected[np.arange(N_USERS)[:, None], items.numpy()], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.score(users, items[:, 0]).detach().numpy(),
                               expected[np.arange(N_USERS), items[:, 0].numpy()], rtol=1e-5, atol=1e-5)


def test_feature_scaling_and_unscaled():
    feats = features()
    assert float(VBPR(2, N_ITEMS, feats).features.abs().max()) == pytest.approx(1.0)
    raw = VBPR(2, N_ITEMS, feats, scale_features=False).features
    np.testing.assert_array_equal(raw.numpy(), feats)
    zeros = VBPR(2, N_ITEMS, np.zeros((N_ITEMS, D), np.float32)).features  # nothing to scale by
    assert torch.count_nonzero(zeros) == 0


def test_cold_items_are_scored_by_content_only():
    feats = features()
    m = VBPR(N_USERS, N_ITEMS, feats, dim=K, init_std=0.5)
    train = interactions([0, 1, 2, 3], [0, 1, 2, 2], N_USERS, N_ITEMS)
    assert m.mark_cold(train) == 4 and m.cold.tolist() == [False, False, False, True, True, True, True]
    p = np_params(m)
    c = feats.astype(np.float64) / np.abs(feats).max()
    scores = m.full_scores(torch.arange(N_USERS)).detach().numpy()
    np.testing.assert_allclose(scores[:, 3:], p["user_factors"] @ (c[3:] @ p["projection"]).T, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        m.item_factors[3:] += 100.0  # a cold item's ID embedding is never read
    np.testing.assert_allclose(m.full_scores(torch.arange(N_USERS)).detach().numpy(), scores, rtol=1e-6)
    # ... and gets no gradient, even when sampled as a negative
    m.zero_grad()
    m.loss({"user": torch.tensor([0, 1]), "pos": torch.tensor([0, 1]), "neg": torch.tensor([4, 5])}).backward()
    assert torch.count_nonzero(m.item_factors.grad[3:]) == 0
    assert torch.count_nonzero(m.item_factors.grad[:2]) > 0
    with pytest.raises(ValueError, match="items"):
        m.mark_cold(interactions([0], [0], N_USERS, 3))


def test_duif_is_content_only():
    feats = features()
    m = DUIF(N_USERS, N_ITEMS, feats, dim=K, init_std=0.5)
    assert not hasattr(m, "item_factors") and m.config()["dim"] == K
    p = np_params(m)
    c = feats.astype(np.float64) / np.abs(feats).max()
    np.testing.assert_allclose(m.full_scores(torch.arange(N_USERS)).detach().numpy(),
                               p["user_factors"] @ (c @ p["projection"]).T, rtol=1e-5, atol=1e-5)


def test_feature_delta_is_additive_and_leaves_the_model_alone():
    m = VBPR(N_USERS, N_ITEMS, features(), dim=K, init_std=0.5)
    before = {n: t.clone() for n, t in m.state_dict().items()}
    delta = {"feature": torch.randn(N_ITEMS, D, generator=torch.Generator().manual_seed(3))}
    shifted = VBPR(N_USERS, N_ITEMS, (m.features + delta["feature"]).numpy(), dim=K, init_std=0.5,
                   scale_features=False)
    shifted.load_state_dict({**m.state_dict(), "features": m.features + delta["feature"]})
    users = torch.arange(N_USERS)
    torch.testing.assert_close(m.full_scores(users, delta), shifted.full_scores(users))
    for name, t in m.state_dict().items():
        assert torch.equal(t, before[name])
    assert set(m.perturbable()) == {"feature"}
    with pytest.raises(ValueError, match="delta"):
        m.full_scores(users, {"item": torch.zeros(N_ITEMS, K)})


def test_fgsm_on_features_has_row_norm_eps_on_both_items_of_a_triple():
    m = VBPR(N_USERS, N_ITEMS, features(), dim=K, init_std=0.5)
    batch = {"user": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 1]), "neg": torch.tensor([4, 5, 0])}
    delta = FGSM(m, eps=0.3)(batch)["feature"]
    norms = delta.norm(dim=1)
    touched = [0, 1, 4, 5]  # positives and negatives alike
    torch.testing.assert_close(norms[touched], torch.full((4,), 0.3), rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(delta[[2, 3, 6]]) == 0
    # adversarial beats random noise of the same norm on the batch's loss
    with torch.no_grad():
        adv = float(m.loss(batch, {"feature": delta}))
        rnd = float(m.loss(batch, RandomNoise(m, 0.3, seed=0, only_touched=True)(batch)))
        assert adv > float(m.loss(batch)) and adv > rnd


def test_amr_training_runs_and_is_reproducible():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 400)
    items = rng.integers(0, 20, 400)
    train = interactions(users, items, 30, 20)
    feats = rng.normal(size=(20, 6)).astype(np.float32)
    out = []
    for _ in range(2):
        m = VBPR(30, 20, feats, dim=8, seed=0)
        history = train_amr(m, train, eps=0.1, lam=1.0, epochs=3, lr=0.05, patience=None, progress=False)
        assert len(history.loss) == 3 and all(np.isfinite(history.loss))
        out.append(m.full_scores(torch.arange(30)).detach())
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature"):
        from advrec.models import MF

        train_amr(MF(30, 20), train, epochs=1)


@pytest.mark.parametrize("kw, match", [
    (dict(features=np.zeros((3, 2), np.float32)), "n_items"),
    (dict(features=np.zeros((N_ITEMS, 0), np.float32)), "column"),
    (dict(features=np.zeros((N_ITEMS, 2), np.int64)), "floating"),
    (dict(features=np.full((N_ITEMS, 2), np.nan, np.float32)), "NaN"),
    (dict(variant="other"), "variant"),
    (dict(biases=True), "biases"),
    (dict(dim=0), "dim"),
])
def test_bad_arguments(kw, match):
    args = dict(n_users=N_USERS, n_items=N_ITEMS, features=features())
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        VBPR(**args)


@pytest.mark.parametrize("variant", ["simplified", "full", "content", "duif"])
def test_checkpoint_round_trip_keeps_features_cold_mask_and_scores(tmp_path, variant):
    from advrec.training import load_checkpoint, save_checkpoint

    feats = features(3)
    if variant == "duif":
        m = DUIF(N_USERS, N_ITEMS, feats, dim=K, init_std=0.5, seed=2)
    else:
        m = VBPR(N_USERS, N_ITEMS, feats, dim=K, variant=variant, biases=variant == "full", init_std=0.5, seed=2)
    m.mark_cold(interactions([0, 1, 2], [0, 1, 2], N_USERS, N_ITEMS))  # items 3..6 cold
    save_checkpoint(m, tmp_path / "model")
    back = load_checkpoint(tmp_path / "model")
    assert type(back) is type(m) and back.config() == m.config()
    torch.testing.assert_close(back.features, m.features)  # the scaled features come back as they were
    assert torch.equal(back.cold, m.cold)
    users = torch.arange(N_USERS)
    torch.testing.assert_close(back.full_scores(users), m.full_scores(users))


def test_from_config_needs_the_feature_width():
    cfg = VBPR(N_USERS, N_ITEMS, features(), dim=K).config()
    cfg.pop("n_features")
    with pytest.raises(ValueError, match="n_features"):
        VBPR.from_config(cfg)

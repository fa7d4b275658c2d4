"""FM with self-interactions: scores against an explicit pair loop, gradients, checks, export."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrec.models import FM, MODELS
from advrec.training import load_checkpoint, save_checkpoint


def random_csr(rng, m, d, max_len, empty_rows=()):
    """m rows of distinct, sorted feature ids (some rows forced empty)."""
    rows = []
    for r in range(m):
        n = 0 if r in empty_rows else int(rng.integers(0, min(max_len, d) + 1))
        rows.append(np.sort(rng.choice(d, size=n, replace=False)))
    indptr = np.zeros(m + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return indptr, indices


def randomized(model, rng, scale=0.5):
    """Give every parameter non-trivial random values (w0 and w start at zero)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, scale, size=tuple(p.shape)).astype(np.float32)))
    return model


def pair_loop_score(w0, w, V, row):
    """f(x) = w0 + Σ_i w_i + Σ_{i<=j} <v_i, v_j>, written as the double loop of paper eq. 2."""
    total = float(w0)
    for a, i in enumerate(row):
        total += float(w[i])
        for j in row[a:]:  # j >= i, self pair included
            total += float(np.dot(V[i].astype(np.float64), V[j].astype(np.float64)))
    return total


@pytest.mark.parametrize("seed,d,k,m,max_len", [(0, 1, 1, 3, 1), (1, 7, 3, 6, 7),
                                                (2, 30, 8, 12, 10), (3, 200, 16, 9, 40)])
def test_scores_equal_explicit_pair_loop(seed, d, k, m, max_len):
    rng = np.random.default_rng(seed)
    model = randomized(FM(d, k, seed=seed), rng)
    indptr, indices = random_csr(rng, m, d, max_len, empty_rows={0})
    got = model(indptr, indices).detach().numpy()
    w0, w, V = model.parameters_numpy()
    want = [pair_loop_score(w0, w, V, indices[indptr[r]:indptr[r + 1]]) for r in range(m)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got[0] == pytest.approx(w0)  # empty instance: bias only


def test_instance_sums_and_input_types():
    rng = np.random.default_rng(4)
    model = randomized(FM(20, 5, seed=0), rng)
    indptr, indices = random_csr(rng, 8, 20, 6, empty_rows={3})
    s = model.instance_sums(indptr, indices).detach().numpy()
    _, _, V = model.parameters_numpy()
    for r in range(8):
        np.testing.assert_allclose(s[r], V[indices[indptr[r]:indptr[r + 1]]].sum(0), atol=1e-6)
    a = model(indptr, indices)
    b = model(torch.from_numpy(indptr), torch.from_numpy(indices))
    c = model(indptr.astype(np.int32), indices.astype(np.int32))
    assert torch.equal(a, b) and torch.equal(a, c) and a.dtype == torch.float32


def test_unsorted_distinct_rows_are_accepted():
    model = randomized(FM(10, 4, seed=0), np.random.default_rng(0))
    a = model(np.array([0, 3, 5]), np.array([1, 4, 9, 2, 7]))
    b = model(np.array([0, 3, 5]), np.array([9, 1, 4, 7, 2]))
    torch.testing.assert_close(a, b)


def test_gradients_match_the_closed_form():
    """df/dw_i = 1 and df/dv_i = s + v_i for active i; inactive features get no gradient."""
    rng = np.random.default_rng(5)
    model = randomized(FM(12, 3, seed=0), rng)
    row = np.array([1, 4, 7])
    model(np.array([0, 3]), row).sum().backward()
    _, _, V = model.parameters_numpy()
    s = V[row].sum(0)
    w_grad, V_grad = model.w.grad.numpy(), model.V.grad.numpy()
    assert model.w0.grad.item() == 1.0
    np.testing.assert_allclose(w_grad[row], 1.0)
    np.testing.assert_allclose(V_grad[row], s + V[row], atol=1e-6)
    off = np.setdiff1d(np.arange(12), row)
    assert not w_grad[off].any() and not V_grad[off].any()


def test_loss_is_mean_softplus_and_gradient_flows():
    rng = np.random.default_rng(6)
    model = randomized(FM(15, 4, seed=0), rng, scale=0.3)
    indptr, indices = random_csr(rng, 10, 15, 5)
    y = rng.choice([-1, 1], size=10)
    batch = {"indptr": torch.from_numpy(indptr), "indices": torch.from_numpy(indices),
             "labels": torch.from_numpy(y.astype(np.float32))}
    loss = model.loss(batch)
    scores = model(indptr, indices).detach().double()
    want = F.softplus(-torch.from_numpy(y).double() * scores).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.V.grad.abs().sum() > 0 and model.w.grad.abs().sum() > 0
    # int8 labels as numpy work as well
    assert model.loss({**batch, "labels": y.astype(np.int8)}).item() == pytest.approx(loss.item())


def test_l2_penalty_counts_each_active_feature_once():
    rng = np.random.default_rng(7)
    model = randomized(FM(9, 2, seed=0), rng)
    batch = {"indptr": np.array([0, 2, 4]), "indices": np.array([1, 3, 1, 5])}
    _, w, V = model.parameters_numpy()
    act = [1, 3, 5]
    want = (w[act] ** 2).sum() + (V[act] ** 2).sum()
    assert model.l2_penalty(batch).item() == pytest.approx(float(want), rel=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = FM(10, 3, seed=0)
    with pytest.raises(IndexError, match="indices"):
        model(np.array([0, 2]), np.array([3, 10]))
    with pytest.raises(IndexError, match="indices"):
        model(np.array([0, 1]), np.array([-1]))
    with pytest.raises(ValueError, match="indptr"):
        model(np.array([1, 2]), np.array([3, 4]))       # does not start at 0
    with pytest.raises(ValueError, match="indptr"):
        model(np.array([0, 1]), np.array([3, 4]))       # does not end at len(indices)
    with pytest.raises(ValueError, match="indptr"):
        model(np.array([0, 2, 1, 3]), np.array([1, 2, 3]))  # decreasing
    with pytest.raises(ValueError, match="indptr"):
        model(np.zeros((2, 2), np.int64), np.array([1]))
    with pytest.raises(ValueError, match="indices"):
        model(np.array([0, 2]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="twice"):
        model(np.array([0, 3]), np.array([4, 2, 4]))
    batch = {"indptr": np.array([0, 1, 2]), "indices": np.array([1, 2])}
    with pytest.raises(ValueError, match="labels"):
        model.loss({**batch, "labels": np.array([1, 0])})
    with pytest.raises(ValueError, match="labels"):
        model.loss({**batch, "labels": np.array([1, -1, 1])})
    for kw in ({"n_features": 0, "dim": 2}, {"n_features": 3, "dim": 0},
               {"n_features": 3, "dim": 2, "init_std": 0.0},
               {"n_features": 3, "dim": 2, "seed": "a"}, {"n_features": True, "dim": 2}):
        with pytest.raises(ValueError):
            FM(**kw)


def test_empty_batch_and_zero_rows():
    model = FM(5, 2, seed=0)
    assert model(np.array([0]), np.array([], dtype=np.int64)).shape == (0,)
    out = model(np.array([0, 0, 0]), np.array([], dtype=np.int64))
    assert torch.equal(out, torch.zeros(2))


def test_seed_config_checkpoint_and_numpy_export(tmp_path):
    a, b = FM(50, 8, seed=3), FM(50, 8, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.V, FM(50, 8, seed=4).V)
    assert a.w0.item() == 0 and not a.w.any() and a.V.std().item() == pytest.approx(0.01, rel=0.2)
    assert FM(**a.config()).config() == a.config() and "FM" in MODELS
    randomized(a, np.random.default_rng(8))
    save_checkpoint(a, tmp_path / "fm")
    c = load_checkpoint(tmp_path / "fm")
    assert isinstance(c, FM) and all(torch.equal(p, q) for p, q in zip(a.parameters(),
                                                                        c.parameters()))
    w0, w, V = a.parameters_numpy()
    assert isinstance(w0, float) and w.dtype == np.float32 and V.dtype == np.float32
    assert w.shape == (50,) and V.shape == (50, 8) and V.flags.c_contiguous
    V[:] = 0  # a copy: the model keeps its weights
    assert a.V.abs().sum() > 0
    FM(5, 2)  # seed=None draws from torch's global generator

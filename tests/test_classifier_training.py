"""ClassifierTrainer on FMs: learns, reproduces, stops early, hands loss_fn the right batches;
RFM-1's worst-case loss against brute force; an FM on ML-100K beats the majority class."""
import numpy as np
import pytest
import torch

from advrec.data import Field, InstanceMatrix, load, ml100k_fm
from advrec.models import FM
from advrec.training import (ClassifierHistory, ClassifierTrainer, accuracy, evaluate, predict,
                             rfm2_loss, rfm_loss)
from advrec.training.rfm import capped_trace_penalty, rfm_margin


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are per-op-overhead bound: one thread is faster, and immune to a busy box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def teacher_data(seed=0, m=1500, d=30, k=4, per_row=4):
    """Instances of `per_row` random features labelled by a random FM teacher's sign."""
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(d, size=per_row, replace=False)) for _ in range(m)]
    indptr = np.arange(m + 1, dtype=np.int64) * per_row
    indices = np.concatenate(rows).astype(np.int64)
    teacher = FM(d, k, seed=seed + 100)
    with torch.no_grad():
        teacher.w.copy_(torch.from_numpy(rng.normal(0, 1, d).astype(np.float32)))
        teacher.V.mul_(30)
        f = teacher(indptr, indices)
        teacher.w0.fill_(-float(f.median()))
        y = np.where(teacher(indptr, indices).numpy() > 0, 1, -1)
    full = InstanceMatrix(indptr, indices, y, [Field("x", 0, d, True)], d)
    return full.subset(np.arange(0, 1200)), full.subset(np.arange(1200, m))


def test_training_lowers_loss_and_learns():
    train, valid = teacher_data()
    model = FM(train.n_features, 4, seed=0)
    h = ClassifierTrainer(lr=0.05, epochs=25, batch_size=128, patience=None,
                          progress=False).fit(model, train, valid)
    assert isinstance(h, ClassifierHistory) and h.epochs == 25 and not h.stopped_early
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert len(h.valid_accuracy) == len(h.valid_logloss) == len(h.seconds) == 25
    assert accuracy(model, train) > 0.9 and h.best_accuracy > 0.8
    assert evaluate(model, valid)["accuracy"] == pytest.approx(h.best_accuracy)


def test_same_seed_same_model_and_history():
    train, valid = teacher_data(1)
    runs = []
    for _ in range(2):
        model = FM(train.n_features, 3, seed=5)
        h = ClassifierTrainer(lr=0.02, epochs=4, batch_size=100, seed=7, progress=False,
                              threads=1).fit(model, train, valid)
        runs.append((h, model.state_dict()))
    (h1, s1), (h2, s2) = runs
    assert h1.loss == h2.loss and h1.valid_accuracy == h2.valid_accuracy
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_early_stopping_keeps_the_best_epoch():
    train, valid = teacher_data(2)
    model = FM(train.n_features, 4, seed=0)
    # a large learning rate makes validation accuracy wander, so patience 2 stops early
    h = ClassifierTrainer(lr=0.5, epochs=60, batch_size=64, patience=2,
                          progress=False).fit(model, train, valid)
    assert h.stopped_early and h.epochs == h.best_epoch + 3
    assert h.best_accuracy == max(h.valid_accuracy)
    assert accuracy(model, valid) == pytest.approx(h.best_accuracy)


def test_no_validation_trains_every_epoch():
    train, _ = teacher_data(3)
    h = ClassifierTrainer(epochs=3, batch_size=500, progress=False).fit(FM(30, 2, seed=0), train)
    assert h.epochs == 3 and h.best_epoch == 2 and np.isnan(h.valid_accuracy).all()


def test_loss_fn_sees_every_row_once_per_epoch_with_its_own_data():
    train, _ = teacher_data(4, m=1300)
    seen = []

    def loss_fn(model, batch):
        rows = batch["rows"].numpy()
        seen.append(rows)
        sub = train.subset(rows)
        assert np.array_equal(batch["indptr"].numpy(), sub.indptr)
        assert np.array_equal(batch["indices"].numpy(), sub.indices)
        assert np.array_equal(batch["labels"].numpy(), sub.labels.astype(np.float32))
        assert batch["labels"].dtype == torch.float32
        return model.loss(batch)

    ClassifierTrainer(epochs=2, batch_size=300, progress=False).fit(
        FM(30, 2, seed=0), train, loss_fn=loss_fn)
    assert [len(r) for r in seen] == [300, 300, 300, 300] * 2
    first, second = np.concatenate(seen[:4]), np.concatenate(seen[4:])
    assert sorted(first) == list(range(1200)) == sorted(second)
    assert not np.array_equal(first, second)  # reshuffled each epoch


def test_l2_shrinks_the_active_parameters():
    train, _ = teacher_data(5)
    norms = []
    for l2 in (0.0, 0.05):
        model = FM(30, 4, seed=0)
        ClassifierTrainer(lr=0.05, epochs=5, batch_size=128, l2=l2,
                          progress=False).fit(model, train)
        norms.append(float(model.V.detach().norm() + model.w.detach().norm()))
    assert norms[1] < 0.7 * norms[0]


def test_predict_and_accuracy_conventions():
    train, _ = teacher_data(6)
    model = FM(30, 2, seed=0)
    with torch.no_grad():
        model.V.zero_()
    scores = predict(model, train, batch_size=77)
    assert scores.dtype == np.float32 and not scores.any()
    # f(x) = 0 predicts -1
    assert accuracy(model, train) == pytest.approx(np.mean(train.labels == -1))
    with torch.no_grad():
        model.V.normal_()
    np.testing.assert_allclose(predict(model, train, batch_size=77),
                               model(train.indptr, train.indices).detach().numpy(), rtol=1e-6)
    ev = evaluate(model, train)
    y = train.labels.astype(np.float64)
    want = np.mean(np.logaddexp(0, -y * predict(model, train).astype(np.float64)))
    assert ev["logloss"] == pytest.approx(want, rel=1e-5)


def test_trainer_rejects_bad_arguments():
    train, _ = teacher_data(7, m=1250)
    for kw in ({"lr": 0}, {"lr": -1}, {"epochs": 0}, {"batch_size": 1.5}, {"patience": 0},
               {"l2": -1}, {"weight_decay": float("nan")}, {"threads": 0}, {"seed": "x"}):
        with pytest.raises(ValueError):
            ClassifierTrainer(**kw)
    t = ClassifierTrainer(epochs=1, progress=False)
    with pytest.raises(ValueError, match="features"):
        t.fit(FM(31, 2), train)
    with pytest.raises(ValueError, match="no instances"):
        t.fit(FM(30, 2), train.subset([]))
    with pytest.raises(ValueError, match="InstanceMatrix"):
        t.fit(FM(30, 2), (train.indptr, train.indices))
    with pytest.raises(ValueError, match="scalar"):
        t.fit(FM(30, 2), train, loss_fn=lambda m, b: m(b["indptr"], b["indices"]))


# ----------------------------------------------------------------------------- RFM-1

def random_batch(rng, m=12, d=25, max_len=6):
    lens = rng.integers(0, max_len + 1, size=m)
    indptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(d, n, replace=False)) for n in lens]
                             ).astype(np.int64)
    return {"indptr": torch.from_numpy(indptr), "indices": torch.from_numpy(indices),
            "labels": torch.from_numpy(rng.choice([-1.0, 1.0], size=m).astype(np.float32))}


def random_fm(rng, d=25, k=3):
    model = FM(d, k, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, 0.5, tuple(p.shape)).astype(np.float32)))
    return model


@pytest.mark.parametrize("seed", range(4))
def test_rfm_loss_bounds_the_plain_loss(seed):
    rng = np.random.default_rng(seed)
    model, batch = random_fm(rng), random_batch(rng)
    plain = model.loss(batch)
    assert torch.equal(rfm_loss(0.0, 0.0)(model, batch), plain)
    for eta, rho in [(0.001, 0.0), (0.0, 0.002)]:
        assert rfm_loss(eta, rho)(model, batch).item() >= plain.item() - 1e-7
    previous = plain.item()
    for eta, rho in [(0.001, 0.001), (0.002, 0.002), (0.005, 0.005), (0.01, 0.01), (0.1, 0.2)]:
        value = rfm_loss(eta, rho)(model, batch).item()
        assert value >= previous - 1e-7  # larger boxes, larger worst case
        previous = value
    assert previous > plain.item() + 1e-3


def test_rfm_margin_is_the_worst_case_over_the_box():
    """Brute force over the box's vertices (a convex quadratic peaks at one): positives lose
    exactly eta*sum|w|; for negatives the closed form bounds the true worst case and equals it
    when k = 1 (one factor: sigma_j = rho*sign(v_j) aligns everything)."""
    import itertools
    rng = np.random.default_rng(9)
    eta, rho = 0.3, 0.4
    for k in (1, 3):
        model, batch = random_fm(rng, d=8, k=k), random_batch(rng, m=10, d=8, max_len=5)
        margin = rfm_margin(model, batch, eta, rho).detach().numpy().astype(np.float64)
        w0, w, V = model.parameters_numpy()
        scores = model(batch["indptr"], batch["indices"]).detach().numpy().astype(np.float64)
        ptr, ind, y = (batch[n].numpy() for n in ("indptr", "indices", "labels"))
        for r in range(10):
            act = ind[ptr[r]:ptr[r + 1]]
            lin = eta * np.abs(w[act]).astype(np.float64).sum()
            Va = V[act].astype(np.float64)
            q_max = max((0.5 * (np.sum((np.array(s) @ Va) ** 2)
                                + np.sum(np.array(s) ** 2 * (Va ** 2).sum(1)))
                         for s in itertools.product((-rho, rho), repeat=len(act))), default=0.0)
            if y[r] > 0:
                assert margin[r] == pytest.approx(scores[r] - lin, abs=1e-5)
            else:
                exact = -scores[r] - lin - q_max
                assert margin[r] <= exact + 1e-5
                if k == 1:
                    assert margin[r] == pytest.approx(exact, abs=1e-5)


def test_rfm_loss_trains_and_rejects_bad_arguments():
    train, valid = teacher_data(8)
    model = FM(train.n_features, 4, seed=0)
    h = ClassifierTrainer(lr=0.05, epochs=6, batch_size=128, progress=False).fit(
        model, train, valid, loss_fn=rfm_loss(0.01, 0.01))
    assert h.loss[-1] < h.loss[0] and h.best_accuracy > 0.7
    for bad in (-0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError):
            rfm_loss(bad, 0.0)
        with pytest.raises(ValueError):
            rfm_loss(0.0, bad)


@pytest.mark.parametrize("seed", range(3))
def test_rfm2_loss_against_numpy(seed):
    """Capped l1 of the predicted probability against the 0/1 label plus
    lam * sum_j min(sigma_j(V)^2, eps2), from an SVD in float64; the penalty's gradient moves only
    the singular directions under the cap."""
    rng = np.random.default_rng(seed)
    model, batch = random_fm(rng), random_batch(rng)
    scores = model(batch["indptr"], batch["indices"]).detach().numpy().astype(np.float64)
    y01 = (batch["labels"].numpy().astype(np.float64) + 1) / 2
    prob = 1 / (1 + np.exp(-scores))
    V = model.V.detach().numpy().astype(np.float64)
    sv2 = np.linalg.svd(V, compute_uv=False) ** 2
    for eps1, eps2, lam in [(0.1, 0.01, 1.0), (0.5, 0.5, 0.3), (1.0, 1e6, 1.0), (0.3, 0.05, 0.0)]:
        want = np.minimum(np.abs(y01 - prob), eps1).mean() + lam * np.minimum(sv2, eps2).sum()
        got = rfm2_loss(eps1, eps2, lam)(model, batch).item()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # uncapped (eps2 above every sigma^2): the squared Frobenius norm
    assert capped_trace_penalty(model.V, 1e9).item() == pytest.approx((V ** 2).sum(), rel=1e-5)
    # gradient: zero on directions past the cap, 2 V v v^T on those under it
    U, S, Wt = np.linalg.svd(V, full_matrices=False)
    eps2 = float(np.sqrt(S[0] * S[1])) ** 2            # between the two largest: they pass the cap
    Vt = model.V.detach().clone().requires_grad_(True)
    capped_trace_penalty(Vt, eps2).backward()
    under = S ** 2 < eps2
    want_grad = 2 * V @ Wt[under].T @ Wt[under]
    np.testing.assert_allclose(Vt.grad.numpy(), want_grad, rtol=1e-3, atol=1e-5)


def test_rfm2_capped_instances_stop_pulling():
    """An instance whose residual passes eps1 contributes no gradient to the linear weights."""
    rng = np.random.default_rng(3)
    model, batch = random_fm(rng, d=8, k=2), random_batch(rng, m=12, d=8, max_len=3)
    with torch.no_grad():
        scores = model(batch["indptr"], batch["indices"])
    resid = ((batch["labels"].float() + 1) / 2 - torch.sigmoid(scores)).abs()
    eps1 = float(resid.min()) / 2                     # every residual is past the cap
    model.zero_grad()
    rfm2_loss(eps1, 1.0, 0.0)(model, batch).backward()
    assert float(model.w.grad.abs().max()) == 0.0


def test_rfm2_fine_tunes_an_fm_and_rejects_bad_arguments():
    train, valid = teacher_data(8)
    model = FM(train.n_features, 4, seed=0)
    ClassifierTrainer(lr=0.05, epochs=6, batch_size=128, progress=False).fit(model, train, valid)
    before = accuracy(model, valid)
    h = ClassifierTrainer(lr=0.01, epochs=4, batch_size=128, patience=None, progress=False).fit(
        model, train, valid, loss_fn=rfm2_loss(1.0, 0.1))
    assert h.loss[-1] <= h.loss[0] and h.best_accuracy > before - 0.1
    for kw in (dict(eps1=0.0), dict(eps1=-1.0), dict(eps2=0.0), dict(eps2=float("nan")), dict(lam=-0.1),
               dict(lam=True), dict(eps1="0.5")):
        args = {"eps1": 0.5, "eps2": 0.1, "lam": 1.0, **kw}
        with pytest.raises(ValueError, match=next(iter(kw))):
            rfm2_loss(**args)


# ----------------------------------------------------------------------------- ML-100K

def test_fm_on_ml100k_beats_the_majority_class():
    data = ml100k_fm(load("ml-100k"), seed=0)
    majority = max(data.valid.positive_rate, 1 - data.valid.positive_rate)
    model = FM(data.n_features, 16, seed=0)
    h = ClassifierTrainer(lr=1e-3, epochs=2, batch_size=2048, progress=False,
                          threads=1).fit(model, data.train, data.valid)
    assert h.loss[1] < h.loss[0]
    assert accuracy(model, data.valid) > majority + 0.05

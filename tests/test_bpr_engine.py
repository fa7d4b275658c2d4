"""The compiled BPR-MF / AMF training engine (issue 18): ``advrec.kernels.mf_bpr_train_epoch``
against a plain NumPy reference and against the torch path (``Trainer(engine="torch")``, the
reference it must match to float tolerance), same bits at any thread count and on both SIMD
paths, the engine choice of ``Trainer``, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advrec import kernels
from advrec.attacks import BIM, FGSM
from advrec.data import Interactions
from advrec.kernels._native import _core
from advrec.models import MF, Pop
from advrec.training import AdversarialRegularizer, Trainer, train_amf

# ---- plain NumPy reference -----------------------------------------------------------------------


def _np_fgsm(g: np.ndarray, eps: float, norm: str) -> np.ndarray:
    if norm == "linf":
        return eps * np.sign(g)
    n = np.linalg.norm(g, axis=1, keepdims=True)
    step = np.where(n > 0, g * (eps / np.where(n > 0, n, 1.0)), 0.0)
    return np.clip(step, -eps, eps) if norm == "l2-step-linf-clip" else step


def _np_bpr_grad(P, Q, u, i, j):
    """Mean BPR loss over the triples and its gradients (float64)."""
    x = np.einsum("kd,kd->k", P[u], Q[i] - Q[j])
    loss = np.logaddexp(0.0, -x).mean()
    c = -1.0 / (1.0 + np.exp(x)) / len(u)
    gP, gQ = np.zeros_like(P), np.zeros_like(Q)
    np.add.at(gP, u, c[:, None] * (Q[i] - Q[j]))
    np.add.at(gQ, i, c[:, None] * P[u])
    np.add.at(gQ, j, -c[:, None] * P[u])
    return loss, gP, gQ


def np_epoch(P, Q, u, i, j, batch_size, l2, opt, lr, wd=0.0, adv=None, betas=(0.9, 0.999), eps=None):
    """One epoch as MF.regularized_loss + torch.optim define it, in float64."""
    P, Q = P.astype(np.float64), Q.astype(np.float64)
    eps = (1e-10 if opt == "adagrad" else 1e-8) if eps is None else eps
    s1 = [np.zeros_like(P), np.zeros_like(Q)]
    s2 = [np.zeros_like(P), np.zeros_like(Q)]
    total, step = 0.0, 0
    for s in range(0, len(u), batch_size):
        bu, bi, bj = u[s:s + batch_size], i[s:s + batch_size], j[s:s + batch_size]
        B = len(bu)
        loss, gP, gQ = _np_bpr_grad(P, Q, bu, bi, bj)
        if adv and (adv["user"] or adv["item"]):
            dP = _np_fgsm(gP, adv["eps"], adv["norm"]) if adv["user"] else 0 * P
            dQ = _np_fgsm(gQ, adv["eps"], adv["norm"]) if adv["item"] else 0 * Q
            aloss, aP, aQ = _np_bpr_grad(P + dP, Q + dQ, bu, bi, bj)
            loss, gP, gQ = loss + adv["lam"] * aloss, gP + adv["lam"] * aP, gQ + adv["lam"] * aQ
        pen = (P[bu] ** 2).sum() + (Q[bi] ** 2).sum() + (Q[bj] ** 2).sum()
        loss += l2 * pen / B
        np.add.at(gP, bu, 2 * l2 / B * P[bu])
        np.add.at(gQ, bi, 2 * l2 / B * Q[bi])
        np.add.at(gQ, bj, 2 * l2 / B * Q[bj])
        total += loss * B
        step += 1
        for k, (T, G) in enumerate(((P, gP), (Q, gQ))):
            G = G + wd * T
            if opt == "sgd":
                T -= lr * G
            elif opt == "adagrad":
                s1[k] += G * G
                T -= lr * G / (np.sqrt(s1[k]) + eps)
            else:
                s1[k] = betas[0] * s1[k] + (1 - betas[0]) * G
                s2[k] = betas[1] * s2[k] + (1 - betas[1]) * G * G
                mhat = s1[k] / (1 - betas[0] ** step)
                vhat = s2[k] / (1 - betas[1] ** step)
                T -= lr * mhat / (np.sqrt(vhat) + eps)
    return total / len(u), P, Q


def state_for(opt: str, P: np.ndarray, Q: np.ndarray) -> list:
    shapes = {"adam": (P, P, Q, Q), "adagrad": (P, Q), "sgd": ()}[opt]
    return [np.zeros_like(t) for t in shapes]


def random_case(n_users=13, n_items=17, dim=11, n=300, seed=0):
    rng = np.random.default_rng(seed)
    P = (rng.standard_normal((n_users, dim)) * 0.3).astype(np.float32)
    Q = (rng.standard_normal((n_items, dim)) * 0.3).astype(np.float32)
    u, i, j = (rng.integers(0, m, n) for m in (n_users, n_items, n_items))
    return P, Q, u, i, j


ADVERSARIES = [None,
               {"user": True, "item": True, "norm": "l2", "eps": 0.5, "lam": 1.0},
               {"user": False, "item": True, "norm": "linf", "eps": 0.05, "lam": 0.5},
               {"user": True, "item": False, "norm": "l2-step-linf-clip", "eps": 0.2, "lam": 2.0}]


@pytest.mark.parametrize("opt", ["adam", "adagrad", "sgd"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("adv", ADVERSARIES, ids=["plain", "amf-l2", "item-linf", "user-clip"])
@pytest.mark.parametrize("dim", [11, 16])
def test_epoch_matches_the_numpy_reference(opt, wd, adv, dim):
    """Several batches (the last one short), repeated pairs, i == j triples, a dim that is and one
    that is not a multiple of the 8 lanes."""
    P, Q, u, i, j = random_case(dim=dim, seed=dim)
    j[:5] = i[:5]  # the margin's item terms cancel; the L2 term still counts the row twice
    lr = {"adam": 0.01, "adagrad": 0.05, "sgd": 0.5}[opt]
    want_loss, wP, wQ = np_epoch(P, Q, u, i, j, 64, 0.01, opt, lr, wd, adv)
    loss, step = kernels.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=64, l2=0.01, optimizer=opt, lr=lr,
                                            weight_decay=wd, state=state_for(opt, P, Q), adversary=adv)
    assert step == 5
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(P, wP, atol=2e-5)
    np.testing.assert_allclose(Q, wQ, atol=2e-5)


@pytest.mark.parametrize("adv", ADVERSARIES[1:], ids=["amf-l2", "item-linf", "user-clip"])
def test_amf_on_tables_larger_than_a_batch_matches_the_numpy_reference(adv):
    """Tables with more rows than a batch reads (300 + 400 > 3 x 32) take AMF's per-row work on
    the listed touched rows instead of on every row: the same epoch."""
    P, Q, u, i, j = random_case(n_users=300, n_items=400, dim=12, n=500, seed=9)
    want_loss, wP, wQ = np_epoch(P, Q, u, i, j, 32, 0.01, "adam", 0.01, 0.0, adv)
    loss, _ = kernels.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=32, l2=0.01, lr=0.01,
                                         state=state_for("adam", P, Q), adversary=adv)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(P, wP, atol=2e-5)
    np.testing.assert_allclose(Q, wQ, atol=2e-5)


def test_one_batch_equals_the_torch_paths_update():
    """One mini-batch through Trainer's torch path (autograd + torch.optim.Adam) and through the
    kernel: the same update to float tolerance."""
    P, Q, u, i, j = random_case(dim=64, n=200, seed=3)
    model = MF(13, 17, dim=64)
    with torch.no_grad():
        model.user_factors.copy_(torch.from_numpy(P))
        model.item_factors.copy_(torch.from_numpy(Q))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.001)
    batch = {"user": torch.from_numpy(u), "pos": torch.from_numpy(i), "neg": torch.from_numpy(j)}
    loss = model.regularized_loss(batch, 1e-3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    got_loss, _ = kernels.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=200, l2=1e-3, lr=0.01,
                                             weight_decay=0.001, state=state_for("adam", P, Q))
    assert got_loss == pytest.approx(float(loss.detach()), rel=1e-6)
    np.testing.assert_allclose(P, model.user_factors.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(Q, model.item_factors.detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("batch", [256, 16])  # AMF's per-row work on every row, on listed rows
@pytest.mark.parametrize("adv", ADVERSARIES[:2], ids=["plain", "amf"])
def test_same_bits_for_any_thread_count_and_simd_path(adv, batch):
    P0, Q0, u, i, j = random_case(n_users=40, n_items=50, dim=37, n=2000, seed=5)
    results = []
    for threads, portable in ((1, False), (2, False), (3, False), (2, True), (1, True)):
        P, Q = P0.copy(), Q0.copy()
        st = state_for("adam", P, Q)
        a = adv or {}
        loss, _ = _core.mf_bpr_train_epoch(P, Q, u, i, j, batch, 1e-3, "adam", 0.01, 0.0, 0.9, 0.999, 1e-8, 0.0,
                                           st, 0, bool(a.get("user")), bool(a.get("item")), a.get("norm", "l2"),
                                           float(a.get("eps", 0.0)), float(a.get("lam", 1.0)), threads, portable)
        results.append((loss, P, Q, *st))
    for other in results[1:]:
        assert other[0] == results[0][0]
        for x, y in zip(results[0][1:], other[1:]):
            assert np.array_equal(x, y)


# ---- Trainer: engine choice, equivalence with the torch path, determinism ------------------------


def toy_interactions(n_users=30, n_items=25, per_user=6, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return Interactions(users, items, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


def fit(engine: str, threads=None, **kw):
    data = toy_interactions()
    model = MF(data.n_users, data.n_items, dim=16, init_std=0.1, seed=0)
    defaults = dict(lr=0.01, epochs=3, batch_size=32, l2=1e-3, patience=None, seed=0, progress=False)
    defaults.update(kw)
    history = Trainer(engine=engine, threads=threads, **defaults).fit(model, data)
    return model, history


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_trainer_compiled_fit_matches_the_torch_fit(optimizer):
    a, ha = fit("compiled", optimizer=optimizer, weight_decay=1e-3)
    b, hb = fit("torch", optimizer=optimizer, weight_decay=1e-3)
    assert (ha.engine, hb.engine) == ("compiled", "torch")
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-5)
    for x, y in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), atol=1e-4)


def test_amf_on_the_compiled_engine_matches_the_torch_path():
    data = toy_interactions()
    models, histories = [], []
    for engine in ("compiled", "torch"):
        model = MF(data.n_users, data.n_items, dim=16, init_std=0.1, seed=0)
        histories.append(train_amf(model, data, eps=0.5, lam=1.0, epochs=3, lr=0.01, batch_size=32, l2=1e-3,
                                   seed=0, patience=None, progress=False, engine=engine))
        models.append(model)
    assert [h.engine for h in histories] == ["compiled", "torch"]
    np.testing.assert_allclose(histories[0].loss, histories[1].loss, rtol=1e-5)
    for x, y in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), atol=1e-4)


def test_compiled_fit_is_the_same_bits_at_one_and_two_threads():
    a, ha = fit("compiled", threads=1)
    b, hb = fit("compiled", threads=2)
    assert ha.loss == hb.loss
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


class ScaledMF(MF):
    """A subclass that redefines the loss: not plain BPR-MF any more."""

    def loss(self, batch, delta=None):
        return 2 * super().loss(batch, delta)


def test_auto_takes_the_torch_path_where_the_engine_does_not_apply():
    data = toy_interactions()
    kw = dict(epochs=1, batch_size=32, patience=None, progress=False)
    model = ScaledMF(data.n_users, data.n_items, dim=8)
    assert model.bpr_tables() is None
    assert Trainer(**kw).fit(model, data).engine == "torch"
    mf = MF(data.n_users, data.n_items, dim=8)
    bim = AdversarialRegularizer(BIM(mf, 0.1, steps=2))
    assert Trainer(loss_fn=bim, **kw).fit(mf, data).engine == "torch"
    fgsm = AdversarialRegularizer(FGSM(mf, 0.1))
    assert Trainer(loss_fn=fgsm, **kw).fit(mf, data).engine == "compiled"
    frozen = MF(data.n_users, data.n_items, dim=8)
    frozen.item_factors.requires_grad_(False)
    assert frozen.bpr_tables() is None


def test_engine_compiled_says_why_it_cannot_run():
    data = toy_interactions()
    with pytest.raises(ValueError, match="engine='compiled'.*bpr_tables"):
        Trainer(engine="compiled", epochs=1, progress=False).fit(ScaledMF(data.n_users, data.n_items, dim=4), data)
    with pytest.raises(ValueError, match="engine='compiled'.*BPRTables"):
        Trainer(engine="compiled", epochs=1, progress=False).fit(Pop(data.n_users, data.n_items), data)
    with pytest.raises(ValueError, match="engine must be one of"):
        Trainer(engine="fast")


# ---- errors --------------------------------------------------------------------------------------


def test_bad_input_is_refused_naming_the_argument():
    P, Q, u, i, j = random_case()
    st = state_for("adam", P, Q)
    call = kernels.mf_bpr_train_epoch
    with pytest.raises(IndexError, match=r"neg\[3\] = 17"):
        jj = j.copy()
        jj[3] = 17
        call(P, Q, u, i, jj, batch_size=8, state=st)
    with pytest.raises(ValueError, match="P must have dtype float32"):
        call(P.astype(np.float64), Q, u, i, j, batch_size=8, state=st)
    with pytest.raises(ValueError, match="Q must be C-contiguous"):
        call(P, np.asfortranarray(Q), u, i, j, batch_size=8, state=st)
    readonly = P.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="P must be writable"):
        call(readonly, Q, u, i, j, batch_size=8, state=st)
    with pytest.raises(ValueError, match="state must hold 4 arrays"):
        call(P, Q, u, i, j, batch_size=8, state=st[:2])
    with pytest.raises(ValueError, match=r"state\[2\] must have shape \(17, 11\)"):
        call(P, Q, u, i, j, batch_size=8, state=[st[0], st[1], st[0], st[3]])
    with pytest.raises(ValueError, match="P and state.* must not share memory"):
        call(P, Q, u, i, j, batch_size=8, state=[P, st[1], st[2], st[3]])
    with pytest.raises(ValueError, match="users must not be empty"):
        call(P, Q, u[:0], i[:0], j[:0], batch_size=8, state=st)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        call(P, Q, u, i, j, batch_size=8, state=st, lr=float("nan"))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        call(P, Q, u, i, j, batch_size=8, state=st, optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"adversary\['norm'\]"):
        call(P, Q, u, i, j, batch_size=8, state=st, adversary={"user": True, "norm": "l1"})
    with pytest.raises(ValueError, match="batch_size must be"):
        call(P, Q, u, i, j, batch_size=0, state=st)
    with pytest.raises(ValueError, match="users, pos and neg must have the same length"):
        call(P, Q, u, i[:-1], j, batch_size=8, state=st)

"""advrec.kernels.mf_bpr_gradient (the BPR-MF loss gradient of issue 4) against a plain NumPy
reference and torch autograd, its determinism, its argument checks, and the attacks' hook
(MF.delta_gradient inside Attack.gradient) against the autograd path.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import advrec
from advrec import _core
from advrec import kernels as K
from advrec.attacks import BIM, FGSM, PGD
from advrec.models import MF

F32_ULP = 2.0**-24


# ----------------------------------------------------------------------------- references

def reference(P, Q, u, i, j):
    """Float64 NumPy: loss, gP, gQ and, per gradient entry, the sum of its terms' magnitudes
    (the scale of a double-precision summation error)."""
    P64, Q64 = P.astype(np.float64), Q.astype(np.float64)
    n = u.shape[0]
    diff = Q64[i] - Q64[j]
    x = np.einsum("kd,kd->k", P64[u], diff)
    loss = float(np.mean(np.logaddexp(0.0, -x)))
    with np.errstate(over="ignore"):
        c = -1.0 / (1.0 + np.exp(x)) / n  # -sigmoid(-x) / n
    gP, gQ = np.zeros_like(P64), np.zeros_like(Q64)
    aP, aQ = np.zeros_like(P64), np.zeros_like(Q64)
    np.add.at(gP, u, c[:, None] * diff)
    np.add.at(aP, u, np.abs(c[:, None] * diff))
    t = c[:, None] * P64[u]
    np.add.at(gQ, i, t)
    np.add.at(gQ, j, -t)
    np.add.at(aQ, i, np.abs(t))
    np.add.at(aQ, j, np.abs(t))
    return loss, gP, gQ, aP, aQ


def assert_matches_reference(P, Q, u, i, j, got=None):
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, u, i, j) if got is None else got
    rl, rP, rQ, aP, aQ = reference(P, Q, u, i, j)
    assert gP.dtype == np.float32 and gP.shape == P.shape
    assert gQ.dtype == np.float32 and gQ.shape == Q.shape
    assert abs(loss - rl) <= 1e-13 * (1.0 + abs(rl))
    # One float32 rounding of a double-accurate sum: within 1 ulp of float32 of the exact value,
    # plus double rounding errors on the order of 1e-16 x the terms' magnitudes.
    for got_g, ref_g, mag in ((gP, rP, aP), (gQ, rQ, aQ)):
        err = np.abs(got_g.astype(np.float64) - ref_g)
        tol = F32_ULP * np.abs(ref_g) + 1e-13 * mag + 1e-45
        assert np.all(err <= tol), float(np.max(err - tol))


def random_case(seed, n_users, n_items, dim, n, scale=0.5):
    rng = np.random.default_rng(seed)
    P = (rng.standard_normal((n_users, dim)) * scale).astype(np.float32)
    Q = (rng.standard_normal((n_items, dim)) * scale).astype(np.float32)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    j = rng.integers(0, n_items, n)
    return P, Q, u, i, j


# ----------------------------------------------------------------------------- against references

@pytest.mark.parametrize("n_users,n_items,dim,n", [
    (1, 2, 1, 1),          # a single triple
    (3, 4, 5, 200),        # every row repeated many times
    (50, 70, 13, 400),     # dim not a multiple of the 8 lanes
    (40, 30, 16, 1000),    # one 16-column slice
    (100, 120, 64, 3000),  # ML-100K's dim: four slices
    (20, 25, 100, 500),    # a narrower last slice
    (943, 1682, 64, 5000),
])
def test_matches_numpy_reference(n_users, n_items, dim, n):
    assert_matches_reference(*random_case((n_users, dim, n), n_users, n_items, dim, n))


def test_one_user_in_every_triple():
    P, Q, _, i, j = random_case(1, 5, 40, 24, 700)
    assert_matches_reference(P, Q, np.full(700, 3), i, j)


def test_pos_equal_neg_triples_contribute_nothing_to_items():
    P, Q, u, i, j = random_case(2, 10, 20, 9, 300)
    j[::3] = i[::3]
    assert_matches_reference(P, Q, u, i, j)
    # all triples degenerate: x = 0 everywhere, loss log 2, no gradient at all
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, u, i, i)
    assert loss == pytest.approx(np.log(2.0), rel=1e-14)
    assert not gP.any() and not gQ.any()


@pytest.mark.parametrize("scale", [30.0, 1e3])
def test_large_magnitudes_saturate_like_the_reference(scale):
    # |x| up to ~1e8: sigmoid saturates at 0 or 1, softplus(-x) is -x or 0.
    P, Q, u, i, j = random_case(3, 30, 40, 16, 500, scale=scale)
    assert_matches_reference(P, Q, u, i, j)


def test_dim_zero_tables():
    P, Q = np.zeros((3, 0), np.float32), np.zeros((4, 0), np.float32)
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, [0, 2], [1, 3], [0, 0])
    assert loss == pytest.approx(np.log(2.0), rel=1e-14)
    assert gP.shape == (3, 0) and gQ.shape == (4, 0)


def test_matches_torch_autograd():
    P, Q, u, i, j = random_case(4, 60, 80, 32, 2000)
    # float64 autograd: as tight as the NumPy reference
    Pt = torch.from_numpy(P).double().requires_grad_(True)
    Qt = torch.from_numpy(Q).double().requires_grad_(True)
    ut, it, jt = (torch.from_numpy(a) for a in (u, i, j))
    loss_t = F.softplus(-(Pt[ut] * (Qt[it] - Qt[jt])).sum(-1)).mean()
    gPt, gQt = torch.autograd.grad(loss_t, [Pt, Qt])
    loss, gP, gQ = K.mf_bpr_gradient(torch.from_numpy(P), torch.from_numpy(Q), ut, it, jt)
    assert isinstance(gP, torch.Tensor) and isinstance(gQ, torch.Tensor)
    assert loss == pytest.approx(loss_t.item(), rel=1e-13)
    torch.testing.assert_close(gP, gPt.float(), rtol=2 * F32_ULP, atol=1e-12)
    torch.testing.assert_close(gQ, gQt.float(), rtol=2 * F32_ULP, atol=1e-12)
    # float32 autograd through the model's own loss: agrees to float32 precision
    m = MF(60, 80, dim=32)
    with torch.no_grad():
        m.user_factors.copy_(torch.from_numpy(P))
        m.item_factors.copy_(torch.from_numpy(Q))
    g32 = torch.autograd.grad(m.loss({"user": ut, "pos": it, "neg": jt}),
                              [m.user_factors, m.item_factors])
    torch.testing.assert_close(gP, g32[0], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gQ, g32[1], rtol=1e-4, atol=1e-7)


def test_kinds_flags_and_layouts():
    P, Q, u, i, j = random_case(5, 20, 30, 12, 100)
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, u, i, j)
    assert isinstance(gP, np.ndarray) and isinstance(gQ, np.ndarray)
    # only one gradient, asked for
    l2, gP2, none = K.mf_bpr_gradient(P, Q, u, i, j, item_grad=False)
    assert none is None and l2 == loss and np.array_equal(gP2, gP)
    l3, none, gQ3 = K.mf_bpr_gradient(P, Q, u, i, j, user_grad=False)
    assert none is None and l3 == loss and np.array_equal(gQ3, gQ)
    # torch in (requiring grad, one table only), torch out; int32 and list ids
    Pt = torch.from_numpy(P).requires_grad_(True)
    l4, gP4, gQ4 = K.mf_bpr_gradient(Pt, Q, u.astype(np.int32), list(i), torch.from_numpy(j))
    assert isinstance(gP4, torch.Tensor) and isinstance(gQ4, torch.Tensor)
    assert l4 == loss and np.array_equal(gP4.numpy(), gP) and np.array_equal(gQ4.numpy(), gQ)
    # non-contiguous tables are read through a copy: same result
    l5, gP5, gQ5 = K.mf_bpr_gradient(np.asfortranarray(P), Q[:, :].T.copy().T, u, i, j)
    assert l5 == loss and np.array_equal(gP5, gP) and np.array_equal(gQ5, gQ)


def test_nan_and_inf_propagate():
    P, Q, u, i, j = random_case(6, 6, 8, 4, 50)
    j = (i + 1) % 8  # no pos == neg triple: the reference would add NaN - NaN there
    u[0] = 2
    P[2, 1] = np.nan
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, u, i, j)
    assert np.isnan(loss)
    with np.errstate(invalid="ignore"):
        _, rP, rQ, _, _ = reference(P, Q, u, i, j)
    assert np.isnan(gP).any() and np.isnan(gQ).any()
    assert np.array_equal(np.isnan(gP), np.isnan(rP))
    assert np.array_equal(np.isnan(gQ), np.isnan(rQ))
    ok = ~np.isnan(rP)
    np.testing.assert_allclose(gP[ok], rP[ok], rtol=1e-6, atol=1e-12)
    # x = +inf: loss term 0 and c = -0; x = -inf: loss inf and c = -1/n
    P = np.array([[1.0]], np.float32)
    Q = np.array([[np.inf], [0.0]], np.float32)
    assert K.mf_bpr_gradient(P, Q, [0], [0], [1])[0] == 0.0
    loss, gP, gQ = K.mf_bpr_gradient(P, Q, [0], [1], [0])
    assert loss == np.inf and gQ[1, 0] == -1.0 and gQ[0, 0] == 1.0


# ----------------------------------------------------------------------------- determinism

def test_simd_paths_give_the_same_bits():
    # AVX2 (where the CPU has it) and the baseline build of the same loops.
    for dims in (64, 13, 100):
        P, Q, u, i, j = random_case(dims, 90, 110, dims, 3000)
        assert _results_equal(_core.mf_bpr_gradient(P, Q, u, i, j),
                              _core.mf_bpr_gradient(P, Q, u, i, j, portable=True))
    assert _core.mf_bpr_gradient_simd() in ("avx2", "baseline")


def _omp_set_num_threads():
    """omp_set_num_threads of the OpenMP runtime the core uses (checked through build_info), or
    None when it cannot be reached from here (then subprocesses with OMP_NUM_THREADS serve)."""
    for name in ("libgomp.so.1", "libomp.so", "libomp.dylib", "libiomp5.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        before = _core.build_info()["openmp_threads"]
        lib.omp_set_num_threads(before + 1)
        ok = _core.build_info()["openmp_threads"] == before + 1
        lib.omp_set_num_threads(before)
        if ok:
            return lib.omp_set_num_threads
    return None


def _results_equal(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def test_thread_count_does_not_change_the_result(tmp_path):
    # 1, 3 and 5 OpenMP threads (5 > 64 / 16 switches to 8-column slices) against the default.
    P, Q, u, i, j = random_case(7, 300, 400, 64, 20000)
    want = K.mf_bpr_gradient(P, Q, u, i, j)
    counts = (1, 3, 5)
    set_threads = _omp_set_num_threads()
    if set_threads is not None:
        before = _core.build_info()["openmp_threads"]
        try:
            for t in counts:
                set_threads(t)
                assert _results_equal(K.mf_bpr_gradient(P, Q, u, i, j), want), t
        finally:
            set_threads(before)
        return
    np.savez(tmp_path / "case.npz", P=P, Q=Q, u=u, i=i, j=j)
    code = (
        "import sys, numpy as np\n"
        "from advrec import kernels as K\n"
        "d = sys.argv[1]\n"
        "c = np.load(d + '/case.npz')\n"
        "loss, gP, gQ = K.mf_bpr_gradient(c['P'], c['Q'], c['u'], c['i'], c['j'])\n"
        "np.savez(d + '/out' + sys.argv[2] + '.npz', loss=loss, gP=gP, gQ=gQ)\n")
    package_root = Path(advrec.__file__).resolve().parents[1]  # the advrec these tests import
    for t in counts:
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
        res = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(t)], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        with np.load(tmp_path / f"out{t}.npz") as f:
            assert _results_equal((float(f["loss"]), f["gP"], f["gQ"]), want), t


def test_repeated_calls_are_identical():
    P, Q, u, i, j = random_case(8, 50, 60, 64, 5000)
    assert _results_equal(K.mf_bpr_gradient(P, Q, u, i, j), K.mf_bpr_gradient(P, Q, u, i, j))


# ----------------------------------------------------------------------------- bad input

def _good():
    P, Q, u, i, j = random_case(9, 5, 6, 3, 10)
    return dict(P=P, Q=Q, users=u, pos=i, neg=j)


@pytest.mark.parametrize("change,err,match", [
    ({"P": np.zeros((5, 3))}, ValueError, "P must have dtype float32"),
    ({"Q": np.zeros((6, 3), np.int32)}, ValueError, "Q must have dtype float32"),
    ({"P": np.zeros(5, np.float32)}, ValueError, "P must be 2-D"),
    ({"Q": np.zeros((6, 4), np.float32)}, ValueError, "same number of columns"),
    ({"users": np.zeros(10)}, ValueError, "users must hold integers"),
    ({"pos": np.zeros(10, bool)}, ValueError, "pos must hold integers"),
    ({"neg": np.zeros((10, 1), np.int64)}, ValueError, "neg must be 1-D"),
    ({"neg": np.zeros(9, np.int64)}, ValueError, "same length"),
    ({"users": np.r_[0, 1, 5, np.zeros(7, np.int64)]}, IndexError, r"users\[2\] = 5 is outside \[0, n_users = 5\)"),
    ({"pos": np.r_[np.zeros(9, np.int64), -1]}, IndexError, r"pos\[9\] = -1"),
    ({"neg": np.r_[6, np.zeros(9, np.int64)]}, IndexError, r"neg\[0\] = 6 is outside \[0, n_items = 6\)"),
    ({"users": np.array([2**63], np.uint64)}, IndexError, "users"),
    ({"users": [], "pos": [], "neg": []}, ValueError, "users must not be empty"),
    ({"P": torch.zeros(5, 3, dtype=torch.float64)}, ValueError, "P must have dtype float32"),
    ({"Q": torch.zeros(6, 3, device="meta")}, ValueError, "Q is on meta.*CPU only"),
    ({"users": torch.zeros(10, dtype=torch.int64, device="meta")}, ValueError, "users is on meta"),
    ({"P": "not a table"}, ValueError, "P must be a numpy array"),
])
def test_bad_arguments_are_named(change, err, match):
    args = _good()
    args.update(change)
    with pytest.raises(err, match=match):
        K.mf_bpr_gradient(**args)


def test_raw_core_is_strict():
    a = _good()
    P, Q, u, i, j = a["P"], a["Q"], a["users"], a["pos"], a["neg"]
    with pytest.raises(ValueError, match="P must be C-contiguous"):
        _core.mf_bpr_gradient(np.asfortranarray(np.zeros((5, 3), np.float32)), Q, u, i, j)
    with pytest.raises(ValueError, match="users must have dtype int64"):
        _core.mf_bpr_gradient(P, Q, u.astype(np.int32), i, j)
    with pytest.raises(ValueError, match="neg must be a numpy array"):
        _core.mf_bpr_gradient(P, Q, u, i, list(j))


# ----------------------------------------------------------------------------- the attacks' hook

N_USERS, N_ITEMS = 120, 150


def _model(seed=0, dim=16):
    m = MF(N_USERS, N_ITEMS, dim=dim, init_std=0.5, seed=seed)
    return m


def _batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(N_USERS, (n,), generator=g),
            "pos": torch.randint(N_ITEMS, (n,), generator=g),
            "neg": torch.randint(N_ITEMS, (n,), generator=g)}


@pytest.mark.parametrize("targets", [("user",), ("item",), ("user", "item")])
def test_delta_gradient_matches_autograd(targets):
    m, batch = _model(), _batch(3000, 1)
    atk = FGSM(m, 0.5, targets=targets)
    g = torch.Generator().manual_seed(2)
    delta = {n: torch.randn(t.shape, generator=g) * 0.1 for n, t in atk._tables().items()}
    fast = m.delta_gradient(batch, delta, tuple(delta))
    ref = atk.autograd_gradient(batch, delta)
    assert set(fast) == set(targets) == set(ref)
    for n in targets:
        assert fast[n].dtype == torch.float32 and not fast[n].requires_grad
        torch.testing.assert_close(fast[n], ref[n], rtol=1e-4, atol=1e-8)
    assert all(p.grad is None for p in m.parameters())  # the model's parameters are not touched


def test_delta_gradient_declines_where_it_does_not_apply():
    m, batch = _model(), _batch(50, 3)
    zero = {"user": torch.zeros(N_USERS, 16), "item": torch.zeros(N_ITEMS, 16)}
    assert m.delta_gradient(batch, zero, ("user", "item")) is not None
    assert m.delta_gradient(batch, {"user": zero["user"].double()}, ("user",)) is None
    assert m.delta_gradient(batch, {"user": zero["user"].clone().requires_grad_(True)},
                            ("user",)) is None
    empty = {k: v[:0] for k, v in batch.items()}
    assert m.delta_gradient(empty, {"item": zero["item"]}, ("item",)) is None
    assert _model().double().delta_gradient(batch, None, ("user",)) is None

    class Scaled(MF):
        def loss(self, batch, delta=None):
            return 2 * super().loss(batch, delta)

    assert Scaled(N_USERS, N_ITEMS, dim=16).delta_gradient(batch, zero, ("user",)) is None
    assert m.delta_gradient({k: v.reshape(5, 10) for k, v in batch.items()}, zero, ("user",)) is None
    with pytest.raises(ValueError, match="same length"):
        m.delta_gradient(dict(batch, neg=batch["neg"][:-1]), zero, ("user",))
    with pytest.raises(ValueError, match="not perturbable"):
        m.delta_gradient(batch, zero, ("bias",))
    with pytest.raises(ValueError, match="shape"):
        m.delta_gradient(batch, {"user": torch.zeros(3, 16)}, ("user",))


def test_attack_gradient_uses_the_hook_and_falls_back(monkeypatch):
    m, batch = _model(), _batch(400, 4)
    atk = FGSM(m, 0.5)
    calls = []
    real = K.mf_bpr_gradient

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(K, "mf_bpr_gradient", counting)
    fast = atk.gradient(batch, atk.zeros())
    assert len(calls) == 1
    monkeypatch.setattr(MF, "delta_gradient", lambda self, b, d, t: None)
    slow = atk.gradient(batch, atk.zeros())
    assert len(calls) == 1
    for n in ("user", "item"):
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-4, atol=1e-8)


def _attack_pair(monkeypatch, make, batch):
    with_hook = make()(batch)
    with monkeypatch.context() as mp:
        mp.setattr(MF, "delta_gradient", lambda self, b, d, t: None)
        without = make()(batch)
    return with_hook, without


@pytest.mark.parametrize("norm", ["l2", "l2-step-linf-clip"])
@pytest.mark.parametrize("targets", [None, "item"])
def test_attacks_agree_with_and_without_the_hook(monkeypatch, norm, targets):
    m, batch = _model(seed=5, dim=24), _batch(5000, 6)
    makers = {
        "fgsm": lambda: FGSM(m, 0.5, targets=targets, norm=norm),
        "bim": lambda: BIM(m, 0.5, steps=10, targets=targets, norm=norm),
        "pgd": lambda: PGD(m, 0.5, steps=5, seed=3, targets=targets, norm=norm),
    }
    for name, make in makers.items():
        a, b = _attack_pair(monkeypatch, make, batch)
        assert set(a) == set(b) == ({"user", "item"} if targets is None else {"item"})
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-6, msg=f"{name} {n}")


def test_small_batch_on_large_tables_gives_the_same_bits():
    # 50 triples on 5000 rows: the hook runs the kernel on the touched rows only.
    m = MF(3000, 2000, dim=16, init_std=0.5, seed=7)
    g = torch.Generator().manual_seed(8)
    batch = {"user": torch.randint(3000, (50,), generator=g),
             "pos": torch.randint(2000, (50,), generator=g),
             "neg": torch.randint(2000, (50,), generator=g)}
    batch["user"][:10] = 17  # repeated rows
    batch["neg"][:5] = batch["pos"][:5]
    for names in (("user", "item"), ("item",), ("user",)):
        delta = {n: torch.randn(t.shape, generator=g) * 0.1 for n, t in m.perturbable().items()
                 if n in names}
        got = m.delta_gradient(batch, delta, names)
        P = m.user_factors.detach() + delta.get("user", 0)
        Q = m.item_factors.detach() + delta.get("item", 0)
        _, gP, gQ = K.mf_bpr_gradient(P, Q, batch["user"], batch["pos"], batch["neg"])
        want = {"user": gP, "item": gQ}
        assert set(got) == set(names)
        for n in names:
            assert torch.equal(got[n], want[n]), n
        ref = FGSM(m, 0.5, targets=names).autograd_gradient(batch, delta)
        for n in names:
            torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("n", [5, 5000])  # the touched-rows path and the whole-table path
@pytest.mark.parametrize("key,value,match", [("user", -1, "users"), ("pos", N_ITEMS, "pos"),
                                             ("neg", -3, "neg")])
def test_hook_rejects_bad_ids_by_name(n, key, value, match):
    m = MF(400, 500, dim=8) if n == 5 else _model()
    batch = {k: torch.zeros(n, dtype=torch.int64) for k in ("user", "pos", "neg")}
    batch[key][n // 2] = value if value != N_ITEMS else m.n_items
    with pytest.raises(IndexError, match=match):
        m.delta_gradient(batch, None, ("user", "item"))

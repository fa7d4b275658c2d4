"""Extreme arguments never end the process (issue 15): every call runs in a child process, which
must exit normally, and the call must either work or raise a Python exception that names the
argument. A C++ exception escaping an OpenMP region (std::terminate, SIGABRT) or an allocation
the size of k fails these tests with the child's signal."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import advrec

PRELUDE = """
import numpy as np, torch
from advrec import kernels as K
def expect(fn, *names):
    try:
        fn()
    except (ValueError, IndexError, TypeError, MemoryError) as err:
        msg = str(err)
        assert any(n in msg for n in names) or isinstance(err, MemoryError), msg
        print("raised", type(err).__name__, msg[:200])
    else:
        print("ok")
"""


def run_child(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """The child imports the advrec these tests import (the source tree with a built core, or the
    installed package), from a folder that holds no other ``advrec``."""
    env = dict(os.environ)
    package_root = Path(advrec.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def assert_survives(code: str, expected_lines: int, cwd: Path) -> list:
    res = run_child(code, cwd)
    assert res.returncode == 0, f"child ended with {res.returncode}:\n{res.stderr[-2000:]}"
    lines = [line for line in res.stdout.splitlines() if line.startswith(("ok", "raised"))]
    assert len(lines) == expected_lines, res.stdout + res.stderr
    return lines


def test_huge_k_in_the_selection_kernels_is_an_error_not_an_abort(tmp_path):
    lines = assert_survives("""
        s = np.ones((1, 5), np.float32)
        expect(lambda: K.topk_scores(s, 10**9), "k (1000000000)")
        expect(lambda: K.topk_scores(s, 2**62), "k (")
        expect(lambda: K.topk_scores(s, 2**63 - 1), "k (")
        expect(lambda: K.topk_dot(np.ones((3, 2), np.float32), np.ones((5, 2), np.float32), 10**9), "k (")
        idx, val = K.topk_scores(np.ones((2, 5), np.float32), 1000)  # padding of a modest k still works
        assert idx.shape == (2, 1000) and (idx[:, 5:] == -1).all() and np.isneginf(val[:, 5:]).all()
        print("ok")
    """, 5, tmp_path)
    assert [line.split()[0] for line in lines] == ["raised"] * 4 + ["ok"]


def test_huge_k_in_evaluate_is_an_error_not_an_abort(tmp_path):
    assert_survives("""
        from advrec.data import Interactions
        from advrec.evaluation import evaluate
        from advrec.models import MF
        def log(users, items):
            return Interactions(user=np.array(users), item=np.array(items), rating=None, timestamp=None,
                                n_users=3, n_items=4, user_ids=np.arange(3), item_ids=np.arange(4))
        train, test = log([0, 0, 1, 2], [0, 1, 2, 3]), log([0, 1, 2], [2, 0, 1])
        model = MF(3, 4, dim=4)
        expect(lambda: evaluate(model, test, exclude=train, k=(10**9,)), "k (1000000000)")
    """, 1, tmp_path)


def test_huge_counts_in_the_other_kernels_are_errors_not_aborts(tmp_path):
    assert_survives("""
        V = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
        expect(lambda: K.gram_extremes(V, 2**62, 1), "n_pairs", "V")
        expect(lambda: K.gram_extremes(V, 1, 2**62), "n_row", "V")
        seq = np.array([[-1, 1, 2], [3, 4, 5]], np.int64)
        expect(lambda: K.cascade_effects(seq, 2**62), "batch_size")
        expect(lambda: K.cascade_effects(np.array([[2**62, 1]]), 4), "sequences")
        P, Q = np.ones((3, 2), np.float32), np.ones((4, 2), np.float32)
        expect(lambda: K.mf_bpr_gradient(P, Q, [2**62], [0], [1]), "users")
        d = np.zeros((4, 2), np.float32)
        expect(lambda: K.perturb_step(d, np.ones((4, 2), np.float32), 0.1, 1.0, rows=[2**62]), "rows")
    """, 6, tmp_path)


def test_huge_sizes_with_empty_inputs_name_the_argument(tmp_path):
    """Zero rows used to let an absurd k through to numpy ("array is too big", naming nothing)."""
    lines = assert_survives("""
        expect(lambda: K.topk_scores(np.ones((0, 5), np.float32), 2**62), "k (")
        expect(lambda: K.topk_scores(np.ones((0, 5)), 2**63 - 1), "k (")
        expect(lambda: K.topk_dot(np.ones((0, 2), np.float32), np.ones((5, 2), np.float32), 2**62), "k (")
        expect(lambda: K.gram_extremes(np.ones((0, 3), np.float32), 0, 2**62), "n_row")
        expect(lambda: K.fm_certify_batch([0], [], 0.0, np.ones(2, np.float32), np.ones((2, 1), np.float32),
                                          [0], [], [], np.zeros((1, 0)), np.zeros((1, 0)), 2**64), "q")
        idx, val = K.topk_scores(np.ones((0, 5)), 7)  # a modest k on zero rows is still an empty result
        assert idx.shape == val.shape == (0, 7) and val.dtype == np.float64
        print("ok")
    """, 6, tmp_path)
    assert [line.split()[0] for line in lines] == ["raised"] * 5 + ["ok"]


def test_the_bpr_training_epoch_survives_extreme_arguments(tmp_path):
    """Issue 18's mf_bpr_train_epoch: huge batch sizes, thread counts and step counters, empty and
    mismatched inputs, wrong dtypes, NaN/inf tables (and, with threads=2, inside the OpenMP
    regions): an error naming the argument or a result, never a signal."""
    lines = assert_survives("""
        rng = np.random.default_rng(0)
        def tables():
            return (rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32))
        def adam(P, Q):
            return [np.zeros_like(P), np.zeros_like(P), np.zeros_like(Q), np.zeros_like(Q)]
        u, i, j = np.array([0, 5, 2]), np.array([1, 6, 0]), np.array([3, 3, 4])
        amf = {"user": True, "item": True, "eps": 0.5, "lam": 1.0}
        for batch in (1, 2**31, 2**62, 2**63 - 1):                      # one batch of every triple
            P, Q = tables()
            K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=batch, state=adam(P, Q), threads=2, adversary=amf)
        print("ok")
        P, Q = tables()
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=2**63, state=adam(P, Q)), "batch_size")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=2, threads=2**31, state=adam(P, Q)), "threads")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=2, step=2**63 - 1, state=adam(P, Q)), "step")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=2, step=-1, state=adam(P, Q)), "step")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u[:0], i[:0], j[:0], batch_size=2, state=adam(P, Q)), "users")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, j.astype(np.float64), batch_size=2, state=adam(P, Q)), "neg")
        expect(lambda: K.mf_bpr_train_epoch(P.astype(np.float16), Q, u, i, j, batch_size=2, state=adam(P, Q)), "P")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, np.array([2**62, 0, 0]), i, j, batch_size=2, state=adam(P, Q)),
               "users[0]")
        expect(lambda: K.mf_bpr_train_epoch(P, Q, u, i, np.array([-1, 0, 0]), batch_size=2, state=adam(P, Q)),
               "neg[0]")
        expect(lambda: K.mf_bpr_train_epoch(np.zeros((0, 5), np.float32), Q, u, i, j, batch_size=2, state=[]),
               "users[0]", "state")
        for bad in (np.nan, np.inf, -np.inf):
            P, Q = tables()
            P[0, 0] = bad
            loss, _ = K.mf_bpr_train_epoch(P, Q, u, i, j, batch_size=2, state=adam(P, Q), threads=2, adversary=amf)
            assert isinstance(loss, float) and (np.isnan(loss) if bad != bad else True)  # NaN propagates
        print("ok")
    """, 12, tmp_path)
    assert [line.split()[0] for line in lines] == ["ok"] + ["raised"] * 10 + ["ok"]


def test_the_serving_and_multi_budget_kernels_survive_extreme_arguments(tmp_path):
    """Issue 21's entry points: the serving merge and the fused multi-budget certification pass."""
    lines = assert_survives("""
        from advrec.certify import FMCertifier
        s = np.ones((2, 5), np.float32)
        def bufs(k):
            return np.full((2, k), -1, np.int64), np.full((2, k), -np.inf, np.float32)
        expect(lambda: K.serve_topk_merge(s, 0, 5, 2**31, *bufs(1)), "k", "best_idx")
        expect(lambda: K.serve_topk_merge(s, 0, 5, 2**63 - 1, *bufs(1)), "k", "best_idx")
        expect(lambda: K.serve_topk_merge(s, 2**62, 5, 1, *bufs(1)), "col0", "n_items")
        expect(lambda: K.serve_topk_merge(s, 0, 2**63 - 1, 1, *bufs(1)), "n_items", "col0")
        expect(lambda: K.serve_topk_merge(s.astype(np.float64), 0, 5, 1, *bufs(1)), "scores")
        expect(lambda: K.serve_topk_merge(np.full((2, 5), np.inf, np.float32), 0, 5, 1, *bufs(1)), "scores")
        expect(lambda: K.serve_topk_merge(np.full((2, 5), np.nan, np.float32), 0, 5, 1, *bufs(1)), "NaN")
        expect(lambda: K.serve_topk_merge(np.ones((0, 5), np.float32), 0, 5, 1, *bufs(1)), "best_idx", "rows")
        U, V = torch.ones(3, 2), torch.ones(4, 2)
        expect(lambda: K.topk_dot_blocked(U, V, 2**63 - 1), "k")
        i, v = K.topk_dot_blocked(U, V, 2, user_block=2**62, item_block=2**62)  # blocks capped to the data
        assert i.shape == (3, 2)
        print("ok")
        expect(lambda: K.topk_dot_blocked(U.double(), V.double(), 2), "user_factors")
        rng = np.random.default_rng(0)
        w, Vf = rng.normal(size=6).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
        cert = FMCertifier(0.1, w, Vf, np.arange(3, 6))
        ip, ix = np.array([0, 2, 2]), np.array([0, 3])
        expect(lambda: cert.certify_budgets(ip, ix, [1, 2**31], "best"), "q")
        expect(lambda: cert.certify_budgets(ip, ix, [2**63 - 1], "greedy"), "q")
        expect(lambda: cert.certify_budgets(ip, ix, [-1], "best"), "q")
        t = cert.tables(2)
        args = (ip, ix, 0.1, w, Vf, np.arange(3, 6), t.pair_top_val, t.pair_bot_val, t.row_top_val, t.row_bot_val)
        bad_p = np.full((2, 3), np.nan, np.float32)
        expect(lambda: K.fm_certify_budgets_batch(*args, [1, 2], "best", p=bad_p), "p")
        expect(lambda: K.fm_certify_budgets_batch(*args, [1], "best", s=np.full((2, 2), np.inf)), "s")
        expect(lambda: K.fm_certify_budgets_batch(*args, [1], "best", s=np.ones((2, 2), np.float32)), "s")
        out = K.fm_certify_budgets_batch(np.array([0]), np.zeros(0, np.int64), *args[2:], [1, 2], "best")
        assert all(len(r.status) == 0 for r in out.values())
        print("ok")
    """, 18, tmp_path)
    assert lines[-1] == "ok" and sum(line.startswith("raised") for line in lines) == 14

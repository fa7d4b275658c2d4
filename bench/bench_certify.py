"""FM certification speed: ``FMCertifier.certify`` against the references in certify_references.py.

On the ML-100K test split (10,000 instances, history field perturbable, an FM with k = 64):

- ``best`` at q = 1..4 against (a) the paper's per-instance NumPy enumeration of the n(n+1)/2
  upper-triangle entries (run on a seeded subset, extrapolated to instances/s) and (b) the same
  bounds vectorised in torch, per-model extremes selected once;
- ``greedy`` at q = 4 against a torch batched-GEMM greedy.

Both sides start from the model's parameters (ours builds its certifier, torch its tables) and
must give the same statuses. ``test_references_agree`` (no timing; runs without
``--benchmark-only``) checks the references against brute force on a small random FM.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from certify_references import TorchFM, numpy_paper_best, torch_best, torch_best_budgets, torch_greedy

QS = (1, 2, 3, 4)
DIM = 64
EPOCHS = 3             # "trained briefly": enough for a realistic mix of statuses
N_NUMPY = 200          # instances the per-instance NumPy reference runs on (seeded subset)
MAX_MISMATCH = 1e-3    # share of decided-vs-unknown disagreements tolerated (float ties)


# ----------------------------------------------------------------------------- brute force check

def _small_fm(seed: int):
    """A random FM over 25 features, 12 perturbable, k = 5, and 300 instances around f = 0,
    with an empty instance and one holding every perturbable feature (no candidates)."""
    rng = np.random.default_rng(seed)
    d, k = 25, 5
    P = np.sort(rng.choice(d, 12, replace=False))
    V = rng.normal(0, 0.5, (d, k)).astype(np.float32)
    w = rng.normal(0, 0.5, d).astype(np.float32)
    others = np.setdiff1d(np.arange(d), P)
    rows = [sorted(set(rng.choice(others, rng.integers(1, 4), replace=False).tolist())
                   | set(rng.choice(P, rng.integers(0, 6), replace=False).tolist()))
            for _ in range(300)]
    rows[0], rows[1] = [], P.tolist()
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.array([x for r in rows for x in r], np.int64)
    f0 = np.array([_score64(0.0, w, V, r) for r in rows])
    return float(-np.median(f0)), w, V, P, indptr, indices, rows


def _score64(w0, w, V, row) -> float:
    row = np.asarray(row, np.int64)
    V64 = V.astype(np.float64)[row]
    s = V64.sum(0)
    return w0 + float(w.astype(np.float64)[row].sum()) + 0.5 * float(s @ s + (V64 * V64).sum())


def _brute(w0, w, V, P, row, q):
    """(worst σ-signed change of f over every S ⊆ C with |S| <= q, whether some S flips)."""
    f = _score64(w0, w, V, row)
    sigma = 1.0 if f <= 0 else -1.0
    cand = [j for j in P.tolist() if j not in set(row)]
    worst, flips = 0.0, False
    for r in range(1, q + 1):
        for S in itertools.combinations(cand, r):
            fs = _score64(w0, w, V, sorted(row + list(S)))
            worst = max(worst, sigma * (fs - f))
            flips |= (fs > 0) if sigma > 0 else (fs <= 0)
    return worst, flips


def test_references_agree():
    """The three references agree with each other and are sound against brute force (float64)."""
    w0, w, V, P, indptr, indices, rows = _small_fm(0)
    seen = set()
    for q in (0, 1, 2, 3):
        truth = [_brute(w0, w, V, P, r, q) for r in rows]
        worst = np.array([t[0] for t in truth])
        flippable = np.array([t[1] for t in truth])
        greedy = torch_greedy(w0, w, V, P, indptr, indices, q)
        assert np.all(np.isnan(greedy.bound)) and set(np.unique(greedy.status)) <= {-1, 0}
        for method in ("paper", "joint", "best"):
            a = numpy_paper_best(w0, w, V, P, indptr, indices, q, method)
            b = torch_best(w0, w, V, P, indptr, indices, q, method)
            c = torch_best(w0, w, V, P, indptr, indices, q, method, greedy_update="addmm")
            np.testing.assert_array_equal(a.status, b.status)
            np.testing.assert_array_equal(b.status, c.status)
            np.testing.assert_array_equal(a.flips, b.flips)
            np.testing.assert_allclose(a.score, b.score, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a.bound, b.bound, rtol=1e-5, atol=1e-5)
            sigma = np.where(a.score <= 0, 1.0, -1.0)
            assert np.all(sigma * a.bound >= worst - 1e-5), "bound below the brute-force worst case"
            assert not np.any((a.status == 1) & flippable), "certified robust but some S flips it"
            assert np.all(flippable[a.status == -1])
            # A row is non-robust under a bound method iff greedy alone finds its flip (a sound
            # bound never certifies a row greedy can flip).
            np.testing.assert_array_equal(a.status == -1, greedy.status == -1)
            for i in np.flatnonzero(a.status == -1):  # the flip set re-scores to the other label
                S = a.flips[i][a.flips[i] >= 0].tolist()
                assert 1 <= len(S) <= q and not set(S) & set(rows[i]) and set(S) <= set(P.tolist())
                fs = _score64(w0, w, V, sorted(rows[i] + S))
                assert (fs > 0) != (a.score[i] > 0)
            seen.update(np.unique(a.status).tolist())
        np.testing.assert_array_equal(greedy.flips[greedy.status == -1],
                                      a.flips[greedy.status == -1])
    assert seen == {-1, 0, 1}, "the small FM should exercise every status"


# ----------------------------------------------------------------------------- ML-100K setup

@dataclass
class Setup:
    w0: float
    w: np.ndarray
    V: np.ndarray
    P: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    note: str


@pytest.fixture(scope="module")
def ml100k() -> Setup:
    """The ML-100K test split (10,000 instances) and an FM (k = 64) trained briefly (seeded)."""
    from advrec.data.fields import ml100k_fm
    from advrec.models import FM
    from advrec.training.classifier import ClassifierTrainer
    torch.manual_seed(0)
    data = ml100k_fm(seed=0)
    fm = FM(data.train.n_features, DIM, seed=0)
    ClassifierTrainer(lr=1e-2, epochs=EPOCHS, batch_size=2048, patience=None, seed=0,
                      progress=False).fit(fm, data.train, data.valid)
    w0, w, V = fm.parameters_numpy()
    test = data.test
    return Setup(float(w0), np.asarray(w, np.float32), np.asarray(V, np.float32),
                 np.asarray(test.feature_ids("history"), np.int64),
                 np.asarray(test.indptr, np.int64), np.asarray(test.indices, np.int64),
                 f"ml100k_fm(seed=0) test split, FM k={DIM} trained {EPOCHS} epochs (lr 1e-2, seed 0)")


def _subset(indptr, indices, rows):
    counts = np.diff(indptr)[rows]
    ip = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ix = np.concatenate([indices[indptr[r]:indptr[r + 1]] for r in rows]).astype(np.int64)
    return ip, ix


def _compare(ours, ref, what: str) -> dict:
    """Counts of status disagreements; a robust/non-robust contradiction is a soundness bug."""
    contra = int(np.sum(ours * ref == -1))
    one_side = int(np.sum((ours != ref) & (ours * ref == 0)))
    print(f"  {what}: {len(ours)} instances, {contra} contradictions, "
          f"{one_side} decided by one side only")
    assert contra == 0, f"{what}: robust vs non-robust contradictions"
    assert one_side <= MAX_MISMATCH * len(ours), f"{what}: {one_side} status disagreements"
    return {"contradictions": contra, "one_sided": one_side}


@pytest.mark.large
def test_certify_best_q1_4(benchmark, ratio, timed_best_of, ml100k):
    """best at q = 1..4 on the 10K test instances: ours vs torch (all) and the paper's NumPy
    per-instance enumeration (seeded subset of N_NUMPY, extrapolated by instances/s)."""
    from advrec.certify import FMCertifier
    s = ml100k
    m = len(s.indptr) - 1
    args = (s.w0, s.w, s.V, s.P)

    def ours():
        cert = FMCertifier(*args)
        by_q = cert.certify_budgets(s.indptr, s.indices, QS, "best", progress=False)
        return [by_q[q] for q in QS]

    def ref_torch():
        fm = TorchFM(*args, q_max=max(QS))
        return torch_best_budgets(*args, s.indptr, s.indices, QS, fm=fm)

    sub = np.sort(np.random.default_rng(0).choice(m, N_NUMPY, replace=False))
    sub_ip, sub_ix = _subset(s.indptr, s.indices, sub)

    def ref_numpy():
        return [numpy_paper_best(*args, sub_ip, sub_ix, q) for q in QS]

    # Mins of several rounds: on a shared machine the quiet moments are the comparable ones.
    got = benchmark.pedantic(ours, rounds=5, iterations=1, warmup_rounds=1)
    torch_s = timed_best_of(ref_torch, 5)
    numpy_s = timed_best_of(ref_numpy, 2, warmup=0)  # ~10-20 s a round: no warm-up
    print(f"\n[certify best q=1..4] {s.note}")
    ref_t, ref_n = ref_torch(), ref_numpy()
    agree = {}
    for q, o, t, nres in zip(QS, got, ref_t, ref_n):
        shares = {k: round(v, 4) for k, v in o.fractions().items()}
        print(f" q={q} ours {shares}")
        agree[f"q{q}_torch"] = _compare(o.status, t.status, f"q={q} ours vs torch_best")
        agree[f"q{q}_numpy"] = _compare(o.status[sub], nres.status, f"q={q} ours vs numpy_paper_best")
        np.testing.assert_allclose(o.bound, t.bound, rtol=1e-4, atol=1e-4)

    ours_s = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else float("nan")
    numpy_full_s = numpy_s * m / N_NUMPY
    ips = {"ours_instances_per_s": m / ours_s, "torch_instances_per_s": m / torch_s,
           "numpy_paper_instances_per_s": N_NUMPY / numpy_s}
    benchmark.extra_info.update(ips, agreement=agree, data=s.note, numpy_subset=N_NUMPY)
    r_numpy = ratio(benchmark, "certify best q=1..4 vs numpy paper (extrapolated)", numpy_full_s,
                    instances=m, numpy_subset=N_NUMPY, **{k: round(v, 1) for k, v in ips.items()},
                    threads=torch.get_num_threads())
    r_torch = ratio(benchmark, "certify best q=1..4 vs torch vectorised", torch_s, instances=m)
    benchmark.extra_info.update(ratio_vs_numpy_paper=r_numpy, ratio_vs_torch=r_torch,
                                reference_s=torch_s, numpy_paper_s_extrapolated=numpy_full_s)


@pytest.mark.large
def test_greedy_q4(benchmark, ratio, timed_best_of, ml100k):
    """greedy at q = 4 on the 10K test instances: ours vs the torch batched-GEMM greedy."""
    from advrec.certify import FMCertifier
    s = ml100k
    m = len(s.indptr) - 1
    args = (s.w0, s.w, s.V, s.P)

    def ours():
        return FMCertifier(*args).certify(s.indptr, s.indices, 4, "greedy", progress=False)

    got = benchmark.pedantic(ours, rounds=10, iterations=1, warmup_rounds=1)
    ref_s = timed_best_of(lambda: torch_greedy(*args, s.indptr, s.indices, 4), 10)
    print(f"\n[greedy q=4] {s.note}")
    ref = torch_greedy(*args, s.indptr, s.indices, 4)
    agree = _compare(got.status, ref.status, "greedy q=4 ours vs torch_greedy")
    ours_s = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else float("nan")
    ratio(benchmark, "certify greedy q=4 vs torch batched GEMM", ref_s, instances=m,
          ours_instances_per_s=round(m / ours_s, 1), torch_instances_per_s=round(m / ref_s, 1),
          non_robust=round(float(np.mean(got.status == -1)), 4), **agree)


# ----------------------------------------------------------------------------- fused budgets

def per_q_budgets(cert, s: Setup, qs, method: str, tile_rows: int = 2048):
    """Today's path before the fused pass (the reference): per tile one BLAS product
    ``p = w_P + s V_Pᵀ`` (s summed in double by the core, the product by torch, as the
    certifier does), then ``kernels.fm_certify_batch`` once per budget."""
    from advrec import kernels as K
    t = cert.tables(max(qs))
    tables = (t.pair_top_val, t.pair_bot_val, t.row_top_val, t.row_bot_val)
    VP = torch.from_numpy(np.ascontiguousarray(s.V[s.P]))
    wP = torch.from_numpy(np.ascontiguousarray(s.w[s.P]))
    gram = np.ascontiguousarray((VP @ VP.T).numpy())
    m = len(s.indptr) - 1
    parts = {q: [] for q in qs}
    for lo in range(0, m, tile_rows):
        hi = min(lo + tile_rows, m)
        ip = np.ascontiguousarray(s.indptr[lo:hi + 1] - s.indptr[lo])
        ix = s.indices[s.indptr[lo]:s.indptr[hi]]
        p = torch.addmm(wP, torch.from_numpy(K.fm_scores_sums(ip, ix, s.w0, s.w, s.V)[1]), VP.T).numpy()
        for q in qs:
            parts[q].append(K.fm_certify_batch(ip, ix, s.w0, s.w, s.V, s.P, *tables, q, method,
                                               p=p, gram=gram))
    return {q: parts[q] for q in qs}


@pytest.mark.large
@pytest.mark.parametrize("threads", [1, 2])
def test_certify_budgets_fused_vs_per_q(benchmark, ratio, timed_best_of, ml100k, threads):
    """best at q = 1..4 on the 10K test instances: ``FMCertifier.certify_budgets`` (one fused
    pass per tile, ``kernels.fm_certify_budgets_batch``) against today's per-budget path
    (``per_q_budgets``), same certifier tables, at 1 and 2 threads (OpenMP and torch). Every
    field of every budget must be equal. Both sides include the per-tile BLAS product; the
    per-model tables are built once, outside the timing. CPU seconds (process time) are
    reported too: on a shared machine they are the steadier figure."""
    import time as _time
    from threadpoolctl import threadpool_limits
    from advrec.certify import FMCertifier
    s = ml100k
    m = len(s.indptr) - 1
    cert = FMCertifier(s.w0, s.w, s.V, s.P)
    cert.tables(max(QS))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads, user_api="openmp"):
            def ours():
                return cert.certify_budgets(s.indptr, s.indices, QS, "best", progress=False)

            def ref():
                return per_q_budgets(cert, s, QS, "best")

            def cpu_s(fn, rounds):
                best = float("inf")
                for _ in range(rounds):
                    t0 = _time.process_time()
                    fn()
                    best = min(best, _time.process_time() - t0)
                return best

            got = benchmark.pedantic(ours, rounds=5, iterations=1, warmup_rounds=1)
            ref_s = timed_best_of(ref, 3)
            ours_cpu, ref_cpu = cpu_s(ours, 3), cpu_s(ref, 2)
            want = ref()
    finally:
        torch.set_num_threads(torch_threads)
    for q in QS:
        w = want[q]
        for name in ("status", "score", "bound", "nodes"):
            np.testing.assert_array_equal(getattr(got[q], name), np.concatenate([getattr(b, name) for b in w]))
        flips = [b.flips_indices[b.flips_indptr[r]:b.flips_indptr[r + 1]] for b in w for r in range(len(b.status))]
        assert all(np.array_equal(got[q].flip_set(i), f) for i, f in enumerate(flips))
    ours_s = benchmark.stats.stats.min if getattr(benchmark, "stats", None) else float("nan")
    print(f"\n[certify_budgets best q=1..4, {threads} thread(s)] {s.note}: fused {m / ours_s:,.0f} "
          f"instances/s, per-q {m / ref_s:,.0f} instances/s (wall, min); CPU {ours_cpu * 1e3:.0f} ms "
          f"vs {ref_cpu * 1e3:.0f} ms = {m / ours_cpu:,.0f} vs {m / ref_cpu:,.0f} instances per CPU second")
    ratio(benchmark, f"certify_budgets fused vs per-q, {threads} thread(s)", ref_s, instances=m,
          threads=threads, fused_instances_per_s=round(m / ours_s, 1),
          per_q_instances_per_s=round(m / ref_s, 1), fused_cpu_s=ours_cpu, per_q_cpu_s=ref_cpu,
          cpu_ratio=ref_cpu / ours_cpu)

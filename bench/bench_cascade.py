"""Cascade effects (issue 6; CAT, Algorithm 1): advrec.training.cascade_effects against (a) a
pure-Python loop over the entries and (b) a vectorised NumPy version, in the same process.

Random right-aligned sequences (fixed seed): lengths uniform in [1, T], items uniform over
3,000 ids, so about half the entries are padding. Benched with CAT's setting (``"both"``,
``normalize="inverse-mean"``) and the raw values (``normalize=None``). Every result is checked
equal to ours before the times are reported (bit for bit, or 1 ulp where NumPy's pairwise sum
of 1 / C rounds the mean differently).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import pytest

from advrec import kernels as K
from advrec.training import cascade_effects

N_ITEMS, T, BATCH = 3_000, 200, 256


def make_sequences(seed: int, m: int, t: int = T, n_items: int = N_ITEMS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, n_items, size=(m, t), dtype=np.int64)
    lengths = rng.integers(1, t + 1, size=m)
    seq[np.arange(t)[None, :] < (t - lengths)[:, None]] = -1
    return seq


def python_cascade(seq: np.ndarray, b: int, normalize: Optional[str] = None) -> np.ndarray:
    """Algorithm 1 with plain Python loops, one row at a time (a list of T ints per row keeps
    memory at the size of the output, not 200M Python objects); the values are recomputed per
    pass, as the kernel does."""
    m, t_max = seq.shape
    D: dict = {}
    for i in range(m):
        row = seq[i].tolist()
        for c in range(t_max):
            v = row[c]
            if v != -1:
                D[v] = D.get(v, 0) + (t_max - c)
    r = b / m
    scale = 1.0
    if normalize == "inverse-mean":
        total, count = 0.0, 0
        for i in range(m):
            row = seq[i].tolist()
            s = 0.0
            for c in range(t_max):
                v = row[c]
                if v != -1:
                    s += 1.0 / ((t_max - c) + r * D[v])
                    count += 1
            total += s
        scale = total / count if count else 1.0
    out = np.zeros((m, t_max), np.float32)
    for i in range(m):
        row = seq[i].tolist()
        vals = [0.0] * t_max
        for c in range(t_max):
            v = row[c]
            if v != -1:
                x = (t_max - c) + r * D[v]
                vals[c] = x if normalize is None else (1.0 / x) / scale
        out[i] = vals
    return out


def numpy_cascade(seq: np.ndarray, b: int, normalize: Optional[str] = None) -> np.ndarray:
    """Vectorised: np.bincount for D (float64 weights, exact below 2^53), fancy indexing for
    the fill. Ids must be small (bincount allocates max id + 1)."""
    m, t_max = seq.shape
    mask = seq >= 0
    ids = seq[mask]
    own = np.broadcast_to(np.arange(t_max, 0, -1, dtype=np.float64), seq.shape)[mask]
    D = np.bincount(ids, weights=own)
    vals = own + (b / m) * D[ids]
    if normalize == "inverse-mean":
        vals = 1.0 / vals
        vals /= vals.mean()
    out = np.zeros((m, t_max), np.float32)
    out[mask] = vals
    return out


def check_equal(ours: np.ndarray, ref: np.ndarray, normalize: Optional[str], name: str) -> None:
    if normalize is None:
        assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32)), name
    else:  # the mean of 1 / C summed in another order: at most 1 ulp apart in float32
        diff = np.abs(ours.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
        assert diff.max() <= 1, (name, int(diff.max()))


def run(benchmark, ratio, timed_best_of, m: int, normalize: Optional[str], rounds: int,
        python_rounds: int) -> None:
    seq = make_sequences(0, m)
    ours = cascade_effects(seq, BATCH, "both", normalize)
    ref_np = numpy_cascade(seq, BATCH, normalize)
    check_equal(ours, ref_np, normalize, "numpy")
    del ref_np
    t0 = time.perf_counter()
    ref_py = python_cascade(seq, BATCH, normalize)
    py_first_s = time.perf_counter() - t0
    check_equal(ours, ref_py, normalize, "python")
    del ref_py, ours
    py_s = py_first_s
    if python_rounds > 1:
        py_s = min(py_s, timed_best_of(lambda: python_cascade(seq, BATCH, normalize),
                                       python_rounds - 1, warmup=0))
    np_s = timed_best_of(lambda: numpy_cascade(seq, BATCH, normalize), rounds)
    # One OpenMP thread too: on a loaded machine, spinning OpenMP workers can cost more than
    # they bring; this shows the per-core speed against the (single-threaded) references.
    one_s = timed_best_of(lambda: K.cascade_effects(seq, BATCH, "both", normalize, threads=1),
                          rounds)
    benchmark.pedantic(cascade_effects, args=(seq, BATCH, "both", normalize), rounds=rounds,
                       iterations=1, warmup_rounds=1)
    label = f"cascade_effects {m}x{T} normalize={normalize}"
    r_py = ratio(benchmark, label + " vs pure Python", py_s, items=N_ITEMS,
                 python_rounds=python_rounds)
    r_np = ratio(benchmark, label + " vs NumPy", np_s, items=N_ITEMS,
                 omp_threads=K.info()["openmp_threads"])
    print(f"[{label}, 1 thread] ours {one_s * 1e3:.2f} ms: NumPy/ours = {np_s / one_s:.2f}, "
          f"Python/ours = {py_s / one_s:.2f}")
    benchmark.extra_info.update(ratio_vs_python=r_py, ratio_vs_numpy=r_np, python_s=py_s,
                                numpy_s=np_s, ours_1_thread_s=one_s,
                                ratio_vs_numpy_1_thread=np_s / one_s,
                                ratio_vs_python_1_thread=py_s / one_s)


@pytest.mark.parametrize("normalize", [None, "inverse-mean"])
def test_cascade_10k_x_200(benchmark, ratio, timed_best_of, normalize):
    run(benchmark, ratio, timed_best_of, 10_000, normalize, rounds=10, python_rounds=3)


@pytest.mark.large
@pytest.mark.parametrize("normalize", [None, "inverse-mean"])
def test_cascade_1m_x_200(benchmark, ratio, timed_best_of, normalize):
    # The pure-Python side runs once (minutes); ours and NumPy best of 3.
    run(benchmark, ratio, timed_best_of, 1_000_000, normalize, rounds=3, python_rounds=1)

"""Fuzz of every public function of ``advrec.kernels`` (issue 15) with hostile arguments: empty
and single-element arrays, wrong dtypes (int8, uint64, float16, bool, complex, object, lists,
torch tensors of the wrong dtype), non-contiguous, negative-stride and Fortran-ordered views,
wrong ranks, NaN/inf, huge values, out-of-range and int64-extreme indices, huge and negative
sizes, mismatched shapes.

Each family runs in one child process (``run_child`` of ``test_kernels_extremes``: a signal, a
C++ exception escaping OpenMP or an abort fails the test with the child's return code; a hang
fails it with the timeout). Every call must either succeed with the result of a plain
NumPy/torch reference (``ref_*``: the shapes, dtypes and values, computed from the very
argument the kernel got; the kNN references work in exact rationals, so valid values at float64's
ends are checked too) or raise ValueError/TypeError/IndexError/MemoryError/OverflowError whose
message names the argument that was varied. The child functions live in this file (the
child loads it by path), so they are ordinary, linted code.
"""
from __future__ import annotations

import itertools
import math
import re
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

from test_kernels_extremes import run_child

ERRORS = (ValueError, TypeError, IndexError, MemoryError, OverflowError)
I64_MIN, I64_MAX = -2**63, 2**63 - 1
F32_MAX = float(np.finfo(np.float32).max)


class Invalid(Exception):
    """The reference finds the input invalid: the kernel must have raised."""


# ---------------------------------------------------------------------------------------------
# The probe: one call, one verdict line.


class Fuzz:
    def __init__(self) -> None:
        self.count = 0

    def probe(self, label: str, fn: Callable[[], Any], names: Sequence[str],
              check: Optional[Callable[[Any], None]] = None) -> None:
        """Calls ``fn``: ``OK`` when it returns and ``check(result)`` passes, ``RAISED`` for an
        expected exception naming one of ``names``; ``UNCLEAR`` (the message names none of
        them), ``BADTYPE`` (another exception type) and ``WRONG`` (the check failed) fail."""
        self.count += 1
        print("CALL", label, file=sys.stderr, flush=True)  # the last line before a crash
        try:
            out = fn()
        except ERRORS as err:
            msg = str(err)
            # pybind11's own "incompatible function arguments" lists every parameter: never clear.
            named = "incompatible function arguments" not in msg and any(
                re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_])", msg) for n in names)
            verdict = "RAISED" if named or isinstance(err, MemoryError) else "UNCLEAR"
            print(verdict, label, "|", type(err).__name__, msg[:300].replace("\n", " "), flush=True)
            return
        except Exception as err:  # noqa: BLE001 - the point is to catch what should not happen
            print("BADTYPE", label, "|", type(err).__name__, str(err)[:300].replace("\n", " "),
                  flush=True)
            return
        if check is not None:
            try:
                check(out)
            except Exception as err:  # noqa: BLE001
                print("WRONG", label, "|", type(err).__name__, str(err)[:300].replace("\n", " "),
                      flush=True)
                return
        print("OK", label, flush=True)


# ---------------------------------------------------------------------------------------------
# Hostile variants of a valid argument, as (label, value) pairs.


def float_variants(base: np.ndarray) -> Iterator[Tuple[str, Any]]:
    """Variants of a valid float32 array (1-D or 2-D, at least 2 entries per axis)."""
    f = np.ascontiguousarray(base, dtype=np.float32)
    nd = f.ndim

    def put(v: float) -> np.ndarray:
        a = f.copy()
        a.flat[0] = v
        return a

    ro = f.copy()
    ro.flags.writeable = False
    t = torch.from_numpy(f.copy())
    yield from [
        ("empty", f[..., :0].copy()), ("single", f.reshape(-1)[:1].reshape((1,) * nd).copy()),
        ("float64", f.astype(np.float64)), ("float16", f.astype(np.float16)),
        ("longdouble", f.astype(np.longdouble)), ("int8", f.astype(np.int8)),
        ("uint64", np.abs(f).astype(np.uint64)), ("bool", f > 0), ("complex", f.astype(np.complex64)),
        ("object", f.astype(object)), ("list", f.tolist()), ("str", "1.0"), ("none", None),
        ("scalar", 1.5),
        ("torch", t.clone()), ("torch_f64", t.double()), ("torch_f16", t.half()),
        ("torch_bf16", t.bfloat16()), ("torch_i32", t.int()), ("torch_bool", t > 0),
        ("torch_complex", t.to(torch.complex64)), ("torch_grad", t.clone().requires_grad_()),
        ("torch_noncontig", torch.from_numpy(np.repeat(f, 2, axis=-1))[..., ::2]),
        ("noncontig", np.repeat(f, 2, axis=-1)[..., ::2]), ("negstride", f[(slice(None, None, -1),) * nd]),
        ("fortran", np.asfortranarray(f)), ("readonly", ro),
        ("ndim_minus", f[0].copy()), ("ndim_plus", f[None].copy()),
        ("nan", put(np.nan)), ("inf", put(np.inf)), ("neginf", put(-np.inf)),
        ("allnan", np.full_like(f, np.nan)), ("allinf", np.full_like(f, np.inf)),
        ("huge", np.full_like(f, 1e38)), ("fmax", put(F32_MAX)), ("fmin", put(-F32_MAX)),
        ("f64_huge", f.astype(np.float64) * 1e300), ("f64_tiny_diff", f.astype(np.float64) + 1e-12),
        ("denormal", f * np.float32(1e-40)), ("zeros", np.zeros_like(f)), ("negzero", np.full_like(f, -0.0)),
    ]
    if nd == 2:
        yield from [("rows0", f[:0].copy()), ("empty00", np.zeros((0, 0), np.float32)),
                    ("torch_t", torch.from_numpy(f.T.copy()).t())]


def index_variants(base: Sequence[int], n: int) -> Iterator[Tuple[str, Any]]:
    """Variants of a valid non-empty int64 index vector whose entries lie in [0, n)."""
    b = np.asarray(base, dtype=np.int64)

    def put(v: int, dtype: Any = np.int64) -> np.ndarray:
        a = b.astype(dtype)
        a[0] = v
        return a

    t = torch.from_numpy(b.copy())
    yield from [
        ("empty", b[:0].copy()), ("single", b[:1].copy()), ("int8", b.astype(np.int8)),
        ("int32", b.astype(np.int32)), ("uint64", b.astype(np.uint64)),
        ("uint64_max", put(2**64 - 1, np.uint64)), ("uint64_2p63", put(2**63, np.uint64)),
        ("float", b.astype(np.float64)), ("bool", b.astype(bool)), ("complex", b.astype(np.complex128)),
        ("object", b.astype(object)), ("list", b.tolist()), ("list_2p64", [2**64] + b.tolist()[1:]),
        ("list_float", [float(x) for x in b]), ("str", "0"),
        ("torch", t.clone()), ("torch_i32", t.int()), ("torch_f32", t.float()), ("torch_bool", t > 0),
        ("noncontig", np.repeat(b, 2)[::2]), ("negstride", b[::-1]),
        ("ndim_plus", b[None].copy()), ("ndim0", np.array(b[0])),
        ("minus1", put(-1)), ("n", put(n)), ("i64min", put(I64_MIN)), ("i64max", put(I64_MAX)),
    ]


def int_variants(valid: int) -> List[Tuple[str, Any]]:
    """Variants of a valid int scalar (a count, k, a size)."""
    return [("zero", 0), ("one", 1), ("valid", valid), ("valid_np", np.int32(valid)), ("2p31", 2**31),
            ("2p62", 2**62), ("i64max", I64_MAX), ("2p63", 2**63), ("2p64", 2**64), ("minus1", -1),
            ("i64min", I64_MIN), ("bool", True), ("float", float(valid)), ("nan", math.nan),
            ("np_u64", np.uint64(2**63)), ("str", str(valid)), ("none", None),
            ("torch", torch.tensor(valid))]


def real_variants(valid: float) -> List[Tuple[str, Any]]:
    """Variants of a valid real scalar (alpha, eps, w0)."""
    return [("zero", 0.0), ("valid", valid), ("int", 1), ("np_f32", np.float32(valid)),
            ("negative", -1.0), ("nan", math.nan), ("inf", math.inf), ("neginf", -math.inf),
            ("f32max", F32_MAX), ("above_f32max", F32_MAX * 2), ("f64max", 1.7e308),
            ("denormal", 5e-324), ("huge_int", 10**400), ("bool", True), ("str", "1"),
            ("none", None), ("complex", 1j), ("array", np.array([valid]))]


def choice_variants(valid: Iterable[Optional[str]]) -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = [(f"valid_{v}", v) for v in valid]
    return out + [("empty", ""), ("upper", "L2X"), ("space", "both "), ("int", 3), ("bytes", b"l2"),
                  ("list", ["both"])]


# ---------------------------------------------------------------------------------------------
# References (plain NumPy/torch) and helpers.


def numeric(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """The values of an accepted argument as a NumPy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x.numpy()
    return np.asarray(x).astype(dtype)


def is_f64(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype == torch.float64
    return isinstance(x, np.ndarray) and x.dtype == np.float64


def must_raise(out: Any) -> None:
    raise AssertionError(f"returned {type(out).__name__} where the call must raise")


def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert np.array_equal(got.astype(np.float64), want.astype(np.float64), equal_nan=True), \
        f"{what}: {got.ravel()[:8]} != {want.ravel()[:8]}"


def close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 1e-6) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    fin = np.isfinite(want)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(got[~fin & ~np.isnan(want)],
                                                                           want[~fin & ~np.isnan(want)]), \
        f"{what}: non-finite entries differ: {got.ravel()[:8]} vs {want.ravel()[:8]}"
    scale = float(np.abs(want[fin]).max()) if fin.any() else 0.0
    assert np.allclose(got[fin], want[fin], rtol=rtol, atol=rtol * scale * 1e-3 + 1e-300), \
        f"{what}: {got.ravel()[:8]} != {want.ravel()[:8]}"


def excluded_sets(exclude: Any, rows: Any, n_rows: int) -> List[set]:
    if exclude is None:
        return [set() for _ in range(n_rows)]
    ip, ix = numeric(exclude[0], np.int64), numeric(exclude[1], np.int64)
    rr = range(n_rows) if rows is None else numeric(rows, np.int64)
    return [set(ix[ip[e]:ip[e + 1]].tolist()) for e in rr]


def ref_topk(scores: Any, k: int, exclude: Any = None, rows: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Stable argsort of -scores over the candidates, padded with (-1, -inf); scores compared in
    float64 (exact for float16/32 inputs)."""
    s = numeric(scores)
    b, n = s.shape
    ex = excluded_sets(exclude, rows, b)
    idx, val = np.full((b, k), -1, np.int64), np.full((b, k), -np.inf)
    for r in range(b):
        cand = [j for j in range(n) if j not in ex[r]]
        if np.isnan(s[r, cand]).any():
            raise Invalid("NaN among the candidates")
        cand = sorted(cand, key=lambda j: (-s[r, j], j))[:k]
        idx[r, :len(cand)] = cand
        val[r, :len(cand)] = s[r, cand]
    return idx, val


def check_topk(scores: Any, k: int, exclude: Any = None, rows: Any = None,
               f64: Optional[bool] = None) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        idx, val = out
        want_idx, want_val = ref_topk(scores, k, exclude, rows)
        dtype = np.float64 if (is_f64(scores) if f64 is None else f64) else np.float32
        assert isinstance(idx, np.ndarray) and idx.dtype == np.int64, type(idx)
        assert isinstance(val, np.ndarray) and val.dtype == dtype, f"values dtype {val.dtype}, expected {dtype}"
        same(idx, want_idx, "indices")
        same(val, want_val, "values")
    return check


def ref_rank(scores: Any, targets: Any, exclude: Any = None, rows: Any = None):
    s = numeric(scores)
    b, n = s.shape
    tp, ti = numeric(targets[0], np.int64), numeric(targets[1], np.int64)
    ex = excluded_sets(exclude, rows, b)
    greater, equal, n_neg = [], [], np.zeros(b, np.int64)
    for r in range(b):
        part = [j for j in range(n) if j not in ex[r]]
        if np.isnan(s[r, part]).any():
            raise Invalid("NaN among the scored items")
        tset = set(ti[tp[r]:tp[r + 1]].tolist())
        neg = np.array([j for j in part if j not in tset], np.int64)
        n_neg[r] = len(neg)
        for t in ti[tp[r]:tp[r + 1]]:
            greater.append(int((s[r, neg] > s[r, t]).sum()))
            equal.append(int((s[r, neg] == s[r, t]).sum()))
    return np.array(greater, np.int64), np.array(equal, np.int64), n_neg


def check_rank(scores: Any, targets: Any, exclude: Any = None, rows: Any = None):
    def check(out: Any) -> None:
        want = ref_rank(scores, targets, exclude, rows)
        for got, w, what in zip(out, want, ("greater", "equal", "n_neg")):
            assert isinstance(got, np.ndarray) and got.dtype == np.int64, what
            same(got, w, what)
    return check


def as_float_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t if t.dtype == torch.float64 else t.float()


def check_topk_dot(U: Any, V: Any, k: int, exclude: Any = None, rows: Any = None, bias: Any = None,
                   tile_rows: int = 2048):
    """The same tiled products (torch, in float64 when any factor is float64), then ref_topk."""
    def check(out: Any) -> None:
        Ut, Vt = as_float_tensor(U), as_float_tensor(V)
        bt = None if bias is None else as_float_tensor(bias)
        f64 = any(t is not None and t.dtype == torch.float64 for t in (Ut, Vt, bt))
        dtype = torch.float64 if f64 else torch.float32
        Ut, Vt = Ut.to(dtype), Vt.to(dtype)
        Vtt = Vt.t().contiguous()
        parts = []
        for start in range(0, Ut.shape[0], tile_rows):
            tile = Ut[start:start + tile_rows] @ Vtt
            if bt is not None:
                tile += bt.to(dtype)
            parts.append(tile.numpy())
        s = np.concatenate(parts) if parts else np.zeros((0, Vt.shape[0]))
        check_topk(s, k, exclude, rows, f64=f64)(out)
    return check


GRAM_FIELDS = ("pair_top_val", "pair_top_idx", "pair_bot_val", "pair_bot_idx",
               "row_top_val", "row_top_idx", "row_bot_val", "row_bot_idx")


def ref_gram(V: Any, n_pairs: int, n_row: int) -> dict:
    Vt = torch.from_numpy(numeric(V).astype(np.float32))
    if n_pairs == 0 and n_row == 0:
        if torch.isnan(Vt).any():
            raise Invalid("V has NaN")
        G = np.zeros((Vt.shape[0],) * 2)
    else:
        G = torch.mm(Vt, Vt.t()).double().numpy()
        if np.isnan(G).any():
            raise Invalid("G has NaN")
    n = G.shape[0]
    pairs = [(G[i, j], i, j) for i in range(n) for j in range(i, n)]
    out = {}
    for name, sign in (("pair_top", -1), ("pair_bot", 1)):
        sel = sorted(pairs, key=lambda p: (sign * p[0], p[1], p[2]))[:n_pairs]
        val = np.full(n_pairs, sign * np.inf)
        idx = np.full((n_pairs, 2), -1, np.int64)
        for s, (v, i, j) in enumerate(sel):
            val[s], idx[s] = v, (i, j)
        out[name + "_val"], out[name + "_idx"] = val, idx
    for name, sign in (("row_top", -1), ("row_bot", 1)):
        val = np.full((n, n_row), sign * np.inf)
        idx = np.full((n, n_row), -1, np.int64)
        for j in range(n):
            sel = sorted((l for l in range(n) if l != j), key=lambda l: (sign * G[j, l], l))[:n_row]
            val[j, :len(sel)] = G[j, sel]
            idx[j, :len(sel)] = sel
        out[name + "_val"], out[name + "_idx"] = val, idx
    return out


def check_gram(V: Any, n_pairs: int, n_row: int):
    def check(out: Any) -> None:
        want = ref_gram(V, n_pairs, n_row)
        for name in GRAM_FIELDS:
            got = getattr(out, name)
            assert got.dtype == (np.int64 if name.endswith("idx") else np.float64), name
            same(got, want[name], name)
    return check


def fm_rows(indptr: Any, indices: Any) -> List[np.ndarray]:
    ip, ix = numeric(indptr, np.int64), numeric(indices, np.int64)
    rows = [ix[ip[r]:ip[r + 1]] for r in range(len(ip) - 1)]
    for r in rows:
        if np.any(np.diff(r) <= 0):
            raise Invalid("a row is not strictly increasing")
    return rows


def fm_model(w0: Any, w: Any, V: Any) -> Tuple[float, np.ndarray, np.ndarray]:
    w32, V32 = numeric(w).astype(np.float32), numeric(V).astype(np.float32)
    if not (np.isfinite(w32).all() and np.isfinite(V32).all() and math.isfinite(float(w0))):
        raise Invalid("non-finite model")
    return float(w0), w32.astype(np.float64), V32.astype(np.float64)


def fm_score(model: Tuple[float, np.ndarray, np.ndarray], feats: Iterable[int]) -> float:
    w0, w, V = model
    f = np.array(sorted(set(int(i) for i in feats)), np.int64)
    s = V[f].sum(0)
    return w0 + w[f].sum() + 0.5 * (s @ s + (V[f] ** 2).sum())


def check_fm_scores(indptr: Any, indices: Any, w0: Any, w: Any, V: Any, sums: bool = False):
    def check(out: Any) -> None:
        model = fm_model(w0, w, V)
        rows = fm_rows(indptr, indices)
        scores = out[0] if sums else out
        assert scores.dtype == np.float64
        close(scores, np.array([fm_score(model, r) for r in rows]), "scores", rtol=1e-9)
        if sums:
            want = np.array([model[2][r].sum(0) for r in rows]).reshape(len(rows), model[2].shape[1])
            assert out[1].dtype == np.float32
            close(out[1], want.astype(np.float32), "sums")
    return check


def flips(model: Any, row: np.ndarray, S: Iterable[int]) -> bool:
    before = fm_score(model, row)
    return (fm_score(model, list(row) + list(S)) > 0) != (before > 0)


def flip_sets(cand: List[int], q: int, limit: int = 4000) -> Optional[Iterator[Tuple[int, ...]]]:
    """Every non-empty subset of at most q candidates, or None when there are too many."""
    q = min(q, len(cand))
    if sum(math.comb(len(cand), s) for s in range(1, q + 1)) > limit:
        return None
    return itertools.chain.from_iterable(itertools.combinations(cand, s) for s in range(1, q + 1))


def check_certify(indptr: Any, indices: Any, w0: Any, w: Any, V: Any, perturbable: Any, q: int,
                  sound: bool = True):
    """Shapes and dtypes; every flip set flips the exact score; robust rows have no flip set
    (``sound``: only when the tables, p and gram are those of the model: the kernel trusts them)."""
    def check(out: Any) -> None:
        model = fm_model(w0, w, V)
        rows = fm_rows(indptr, indices)
        P = numeric(perturbable, np.int64).tolist()
        m = len(rows)
        for name, dtype in (("status", np.int8), ("score", np.float64), ("bound", np.float64),
                            ("nodes", np.int64), ("flips_indptr", np.int64), ("flips_indices", np.int64)):
            assert getattr(out, name).dtype == dtype, name
        assert out.status.shape == out.score.shape == out.bound.shape == out.nodes.shape == (m,)
        assert out.flips_indptr.shape == (m + 1,) and out.flips_indptr[0] == 0
        assert out.flips_indptr[-1] == len(out.flips_indices)
        close(out.score, np.array([fm_score(model, r) for r in rows]), "score", rtol=1e-9)
        for r, row in enumerate(rows):
            S = out.flips_indices[out.flips_indptr[r]:out.flips_indptr[r + 1]].tolist()
            assert out.status[r] in (-1, 0, 1)
            if out.status[r] == -1:
                assert 0 < len(S) <= q and set(S) <= set(P) - set(row.tolist()), (r, S)
                assert flips(model, row, S), f"row {r}: the flip set {S} does not flip the label"
            else:
                assert not S, (r, S)
            if out.status[r] == 1 and sound:
                subsets = flip_sets([p for p in P if p not in set(row.tolist())], q)
                for T in subsets or ():
                    assert not flips(model, row, T), f"row {r} certified robust but {T} flips it"
    return check


def check_max_q(indptr: Any, indices: Any, w0: Any, w: Any, V: Any, perturbable: Any, q_max: int,
                sound: bool = True):
    def check(out: Any) -> None:
        model = fm_model(w0, w, V)
        rows = fm_rows(indptr, indices)
        P = numeric(perturbable, np.int64).tolist()
        assert isinstance(out, np.ndarray) and out.dtype == np.int32 and out.shape == (len(rows),)
        assert ((out >= 0) & (out <= q_max)).all(), out
        for r, row in enumerate(rows if sound else []):
            subsets = flip_sets([p for p in P if p not in set(row.tolist())], int(out[r]))
            for T in subsets or ():
                assert not flips(model, row, T), f"row {r}: max_q {out[r]} but {T} flips it"
    return check


def ref_perturb(delta: np.ndarray, grad: Any, alpha: float, eps: float, norm: str, rows: Any) -> np.ndarray:
    d = np.array(delta, np.float32)
    g = numeric(grad)
    rr = range(d.shape[0]) if rows is None else numeric(rows, np.int64)
    if not (np.isfinite(g[rr]).all() and np.isfinite(d[rr]).all()):
        raise Invalid("non-finite grad or delta in the rows updated")
    for r in rr:
        if norm == "linf":
            v = d[r] + np.sign(g[r]).astype(np.float32) * np.float32(alpha)
            d[r] = np.clip(v, np.float32(-eps), np.float32(eps))
            continue
        gn = math.sqrt(float((g[r] ** 2).sum()))
        v = d[r].astype(np.float64) + (alpha / gn if gn > 0 else 0.0) * g[r]
        if norm == "l2":
            dn = math.sqrt(float((v ** 2).sum()))
            v = v * (eps / dn if dn > eps else 1.0)
        else:
            v = np.clip(v, -eps, eps)
        d[r] = v.astype(np.float32)
    return d


def ref_bpr(P: Any, Q: Any, users: Any, pos: Any, neg: Any):
    P64, Q64 = numeric(P), numeric(Q)
    u, i, j = (numeric(x, np.int64) for x in (users, pos, neg))
    diff = Q64[i] - Q64[j]
    x = (P64[u] * diff).sum(1)
    loss = float(np.mean(np.logaddexp(0.0, -x)))
    coef = -0.5 * (1 - np.tanh(x / 2)) / len(u)  # d softplus(-x) / dx = -sigmoid(-x), / n
    gP, gQ = np.zeros_like(P64), np.zeros_like(Q64)
    np.add.at(gP, u, coef[:, None] * diff)
    same_item = i == j
    np.add.at(gQ, i[~same_item], coef[~same_item, None] * P64[u[~same_item]])
    np.add.at(gQ, j[~same_item], -coef[~same_item, None] * P64[u[~same_item]])
    return loss, gP.astype(np.float32), gQ.astype(np.float32)


def check_bpr(P: Any, Q: Any, users: Any, pos: Any, neg: Any, user_grad: bool = True, item_grad: bool = True):
    def check(out: Any) -> None:
        loss, gP, gQ = out
        with np.errstate(all="ignore"):  # NaN/inf in the tables propagate (documented), as here
            want_loss, want_gP, want_gQ = ref_bpr(P, Q, users, pos, neg)
        assert isinstance(loss, float)
        torch_out = isinstance(P, torch.Tensor) or isinstance(Q, torch.Tensor)
        for got, want, flag, what in ((gP, want_gP, user_grad, "gP"), (gQ, want_gQ, item_grad, "gQ")):
            if not flag:
                assert got is None, what
                continue
            assert isinstance(got, torch.Tensor if torch_out else np.ndarray), (what, type(got))
            got = numeric(got, np.float32)
            close(got, want, what, rtol=1e-5)
        close(np.array([loss]), np.array([want_loss]), "loss", rtol=1e-9)
    return check


def ref_cascade(seq: Any, b: int, components: str, normalize: Optional[str]) -> np.ndarray:
    s = numeric(seq, np.int64)
    m, T = s.shape
    D: Counter = Counter()
    for i, t in zip(*np.nonzero(s >= 0)):
        D[s[i, t]] += T - t
    C = np.full((m, T), np.nan)
    for i, t in zip(*np.nonzero(s >= 0)):
        own, cross = float(T - t), (b / m) * D[s[i, t]]
        C[i, t] = own if components == "sequence" else cross if components == "cross" else own + cross
    real = ~np.isnan(C)
    if normalize == "minmax" and real.any():
        lo, hi = C[real].min(), C[real].max()
        C[real] = (C[real] - lo) / (hi - lo) if hi > lo else 1.0
    elif normalize == "inverse-mean" and real.any():
        C[real] = (1.0 / C[real]) / np.mean(1.0 / C[real])
    return np.where(real, C, 0.0).astype(np.float32)


def check_cascade(seq: Any, b: int, components: str = "both", normalize: Optional[str] = None):
    def check(out: Any) -> None:
        assert isinstance(out, torch.Tensor if isinstance(seq, torch.Tensor) else np.ndarray)
        got = numeric(out, np.float32)
        assert got.dtype == np.float32
        close(got, ref_cascade(seq, b, components, normalize), "effects", rtol=1e-6)
    return check


# kNN (``advrec.kernels.knn``): similarities in exact rational arithmetic (``Fraction``), so the
# reference neither overflows nor underflows where the kernel must not either.

DBL_MAX = float(np.finfo(np.float64).max)
KNN_TIE = 1e-12  # reference similarities closer than this may come back in either order


def knn_ints(x: Any) -> np.ndarray:
    """The int64 ids an accepted index argument stands for; Invalid where ids must be refused
    (floats, bools, complex, beyond int64, not 1-D)."""
    if isinstance(x, torch.Tensor):
        if x.numel() and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise Invalid(f"ids of dtype {x.dtype}")
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError, OverflowError):
            raise Invalid("not array-like") from None
        if a.size and (a.dtype == np.bool_ or a.dtype.kind not in "iu"):
            raise Invalid(f"ids of dtype {a.dtype}")
        if a.dtype == np.uint64 and a.size and int(a.max()) > I64_MAX:
            raise Invalid("ids beyond int64")
    a = numeric(x, np.int64)
    if a.ndim != 1:
        raise Invalid("ids not 1-D")
    return a


def knn_reals(x: Any, n: int) -> np.ndarray:
    """The float64 values an accepted values/means argument stands for (None: all ones);
    Invalid for bools, complex, long double, objects, a wrong length, NaN or inf."""
    if x is None:
        return np.ones(n)
    if isinstance(x, torch.Tensor):
        if x.numel() and (x.dtype == torch.bool or x.is_complex()):
            raise Invalid(f"values of dtype {x.dtype}")
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError, OverflowError):
            raise Invalid("not array-like") from None
        if a.size and (a.dtype.kind not in "iuf" or a.dtype.itemsize > 8):
            raise Invalid(f"values of dtype {a.dtype}")
    v = numeric(x)
    if v.ndim != 1 or v.shape[0] != n:
        raise Invalid(f"values of shape {v.shape}, expected ({n},)")
    if not np.isfinite(v).all():
        raise Invalid("non-finite values")
    return v


def knn_count(x: Any, minimum: int = 0) -> int:
    """An int argument (k, n_cols, min_overlap): Python or NumPy int, no bool, in [minimum, int64]."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not minimum <= x <= I64_MAX:
        raise Invalid(f"count {x!r}")
    return int(x)


def knn_csr(indptr: Any, indices: Any, n_cols: Any, strict: bool = True) -> Tuple[np.ndarray, np.ndarray, int]:
    """A CSR's (indptr, indices, n_cols), checked: n_cols None is the largest index + 1;
    ``strict``: columns strictly increasing within each row."""
    ip, ix = knn_ints(indptr), knn_ints(indices)
    if len(ip) < 1 or ip[0] != 0 or np.any(np.diff(ip) < 0) or ip[-1] != len(ix):
        raise Invalid("CSR structure")
    if n_cols is None:
        n_cols = int(ix.max()) + 1 if len(ix) else 0
        if n_cols > I64_MAX:
            raise Invalid("an index of int64's max leaves no column count")
    n_cols = knn_count(n_cols)
    if len(ix) and (ix.min() < 0 or ix.max() >= n_cols):
        raise Invalid("index out of range")
    if strict and any(np.any(np.diff(ix[ip[r]:ip[r + 1]]) <= 0) for r in range(len(ip) - 1)):
        raise Invalid("a row is not strictly increasing")
    return ip, ix, n_cols


def knn_options(similarity: Any, norms: Any, min_overlap: Any) -> int:
    if not isinstance(similarity, str) or similarity not in ("cosine", "pearson"):
        raise Invalid(f"similarity {similarity!r}")
    if not isinstance(norms, str) or norms not in ("co-rated", "rows"):
        raise Invalid(f"norms {norms!r}")
    return knn_count(min_overlap, 1)


def round53(x: Fraction) -> Fraction:
    """``x`` rounded to 53 significant bits, half to even, with no exponent limit: a double
    operation's result where nothing overflows or underflows."""
    if x == 0:
        return x
    e = (abs(x.numerator).bit_length() - abs(x.denominator).bit_length()) - 53
    scaled = x / Fraction(2) ** e
    while abs(scaled) >= 2**53:
        e, scaled = e + 1, scaled / 2
    while abs(scaled) < 2**52:
        e, scaled = e - 1, scaled * 2
    return Fraction(round(scaled)) * Fraction(2) ** e


def frac_float(x: Fraction) -> float:
    """The nearest double of an exact value; +-inf beyond float64's range."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def ref_knn_row_means(indptr: Any, values: Any, empty: Any = None) -> np.ndarray:
    """Exact row means, rounded once; ``empty`` (a finite real, default the mean of all values,
    0 without any) for rows without entries."""
    ip = knn_ints(indptr)
    if len(ip) < 1 or ip[0] != 0 or np.any(np.diff(ip) < 0):
        raise Invalid("indptr structure")
    v = knn_reals(values, int(ip[-1]))
    if empty is None:
        fill = float(sum(map(Fraction, v.tolist())) / len(v)) if len(v) else 0.0
    else:
        if isinstance(empty, (bool, np.bool_)) or not isinstance(empty, (int, float, np.integer, np.floating)):
            raise Invalid(f"empty {empty!r}")
        try:
            fill = float(empty)
        except OverflowError:
            raise Invalid("empty beyond float64") from None
        if not math.isfinite(fill):
            raise Invalid("empty not finite")
    out = np.full(len(ip) - 1, fill)
    for r in range(len(ip) - 1):
        row = v[ip[r]:ip[r + 1]].tolist()
        if row:
            out[r] = float(sum(map(Fraction, row)) / len(row))
    return out


def check_knn_row_means(indptr: Any, values: Any, empty: Any = None) -> Callable[[Any], None]:
    """Sums in float64: each mean within 1e-12 of the mean magnitude of what it averages;
    a constant row's mean is its value, exactly; none beyond its row's values."""
    def check(out: Any) -> None:
        want = ref_knn_row_means(indptr, values, empty)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == want.shape, \
            f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}"
        ip = knn_ints(indptr)
        v = knn_reals(values, int(ip[-1]))
        for r in range(len(ip) - 1):
            row = v[ip[r]:ip[r + 1]]
            if not len(row):
                if empty is None and len(v):  # the mean of all values
                    assert abs(out[r] - want[r]) <= 1e-12 * float(np.mean(np.abs(v / len(v))) * len(v)), \
                        f"row {r} (empty): {out[r]!r}, expected {want[r]!r}"
                else:
                    assert out[r] == want[r], f"row {r} (empty): {out[r]!r}, expected {want[r]!r}"
                continue
            assert row.min() <= out[r] <= row.max(), f"row {r}: mean {out[r]!r} outside its values"
            if (row == row[0]).all():
                assert out[r] == row[0], f"row {r}: mean {out[r]!r} of a constant row of {row[0]!r}"
            assert abs(out[r] - want[r]) <= 1e-12 * float(np.mean(np.abs(row / len(row))) * len(row)), \
                f"row {r}: mean {out[r]!r}, expected {want[r]!r}"
    return check


class KnnRef:
    """The rating matrix of a kNN call as rows of {column: value}, its checked options, and its
    exact similarities: ``S[a][b]`` (NaN: no similarity) and ``exact[a][b]`` (the kernel's
    double sums of this pair are exact, so its similarity is this one to the bit)."""

    def __init__(self, indptr: Any, indices: Any, values: Any, n_cols: Any, similarity: Any, min_overlap: Any,
                 norms: Any, centre: Optional[np.ndarray]) -> None:
        self.overlap = knn_options(similarity, norms, min_overlap)
        ip, ix, self.n_cols = knn_csr(indptr, indices, n_cols)
        self.v = knn_reals(values, len(ix))
        self.n = len(ip) - 1
        self.rows = [dict(zip(ix[ip[r]:ip[r + 1]].tolist(), self.v[ip[r]:ip[r + 1]].tolist()))
                     for r in range(self.n)]
        self.ip = ip
        self.centre, self.row_norms = centre, norms == "rows"

    def default_means(self) -> np.ndarray:
        return ref_knn_row_means(self.ip, self.v)

    def similarities(self) -> Tuple[List[List[float]], List[List[bool]]]:
        n, F = self.n, Fraction
        # x = value - mean rounded as in double (the kernel's one rounding before the sums).
        X = [{c: round53(F(x) - F(self.centre[r])) if self.centre is not None else F(x) for c, x in row.items()}
             for r, row in enumerate(self.rows)]
        sq = [sum((x * x for x in Xr.values()), F(0)) for Xr in X]
        S = [[math.nan] * n for _ in range(n)]
        exact = [[True] * n for _ in range(n)]
        for a in range(n):
            for b in range(n):
                C = sorted(X[a].keys() & X[b].keys())
                if a == b or not C or len(C) < self.overlap:
                    continue
                dot = sum((X[a][c] * X[b][c] for c in C), F(0))
                A = sq[a] if self.row_norms else sum((X[a][c] ** 2 for c in C), F(0))
                B = sq[b] if self.row_norms else sum((X[b][c] ** 2 for c in C), F(0))
                if A == 0 or B == 0:
                    continue
                d, Af, Bf = frac_float(dot), frac_float(A), frac_float(B)
                if d == dot and Af == A and Bf == B and sys.float_info.min <= Af * Bf < math.inf:
                    S[a][b] = min(1.0, max(-1.0, d / math.sqrt(Af * Bf)))  # the kernel's own formula
                else:  # |sim| = sqrt(dot^2 / (A B)), rounded twice: within 2 ulp
                    exact[a][b] = False
                    mag = math.sqrt(float(dot * dot / (A * B)))
                    S[a][b] = min(1.0, mag) * (1 if dot > 0 else -1 if dot < 0 else 0)
        return S, exact


def knn_rank(S_row: List[float], k: int, among: Iterable[int]) -> List[int]:
    """The k best of ``among`` by similarity, ties to the lower index."""
    return sorted((b for b in among if not math.isnan(S_row[b])), key=lambda b: (-S_row[b], b))[:k]


def check_knn_choice(got: List[int], want: List[int], cand: List[int], S_row: List[float], exact: bool,
                     what: str) -> None:
    """``got`` is the reference's choice ``want`` (``exact``), else a choice as good up to ties."""
    if exact:
        assert got == want, f"{what}: {got}, expected {want}"
        return
    assert len(got) == len(want) and len(set(got)) == len(got) and set(got) <= set(cand), \
        f"{what}: {got}, expected {want}"
    sims = [S_row[b] for b in got]
    assert all(s >= t - KNN_TIE for s, t in zip(sims, sims[1:])), f"{what}: {got} not by similarity {sims}"
    rest = [S_row[b] for b in cand if b not in got]
    assert not rest or not sims or max(rest) <= min(sims) + KNN_TIE, f"{what}: {got} misses a better one"


def check_knn_neighbors(indptr: Any, indices: Any, values: Any, k: Any, similarity: Any = "cosine",
                        min_overlap: Any = 1, means: Any = None, n_cols: Any = None,
                        norms: Any = "co-rated") -> Callable[[Any], None]:
    def check(out: Any) -> None:
        kk = knn_count(k)
        ref = KnnRef(indptr, indices, values, n_cols, similarity, min_overlap, norms, None)
        if similarity == "pearson":
            ref.centre = ref.default_means() if means is None else knn_reals(means, ref.n)
        elif means is not None:
            raise Invalid("means with the cosine similarity")
        idx, sim = out
        assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.shape == (ref.n, kk), \
            f"idx {getattr(idx, 'dtype', type(idx))} {getattr(idx, 'shape', '')}"
        assert isinstance(sim, np.ndarray) and sim.dtype == np.float32 and sim.shape == (ref.n, kk), \
            f"sim {getattr(sim, 'dtype', type(sim))} {getattr(sim, 'shape', '')}"
        S, exact = ref.similarities()
        for a in range(ref.n):
            cand = [b for b in range(ref.n) if not math.isnan(S[a][b])]
            want = knn_rank(S[a], kk, cand)
            m = len(want)
            assert (idx[a, m:] == -1).all() and np.isneginf(sim[a, m:]).all(), f"row {a}: padding {idx[a]}"
            got = idx[a, :m].tolist()
            check_knn_choice(got, want, cand, S[a], all(exact[a][b] for b in cand), f"row {a}")
            want_sim = np.array([S[a][b] for b in got], np.float32)
            if all(exact[a][b] for b in cand):
                same(sim[a, :m], want_sim, f"row {a} similarities")
            else:
                assert np.allclose(sim[a, :m], want_sim, rtol=0, atol=2.5e-7), \
                    f"row {a} similarities {sim[a, :m]} != {want_sim}"
    return check


def check_knn_predict(indptr: Any, indices: Any, values: Any, rows: Any, cols: Any, k: Any,
                      similarity: Any = "cosine", min_overlap: Any = 1, means: Any = None, n_cols: Any = None,
                      norms: Any = "co-rated") -> Callable[[Any], None]:
    """pred = m_r + sum_N s (x - m_v) / sum_N s over the k most similar positive raters of the
    column: exact, rounded once (inf only beyond float64)."""
    def check(out: Any) -> None:
        kk = knn_count(k)
        ref = KnnRef(indptr, indices, values, n_cols, similarity, min_overlap, norms, None)
        m = ref.default_means() if means is None else knn_reals(means, ref.n)
        ref.centre = m if similarity == "pearson" else None
        r, c = knn_ints(rows), knn_ints(cols)
        if r.shape != c.shape or (len(r) and (r.min() < 0 or r.max() >= ref.n or c.min() < 0
                                               or c.max() >= ref.n_cols)):
            raise Invalid("queries")
        pred, used = out
        assert isinstance(pred, np.ndarray) and pred.dtype == np.float64 and pred.shape == r.shape, type(pred)
        assert isinstance(used, np.ndarray) and used.dtype == np.int64 and used.shape == r.shape, type(used)
        S, exact = ref.similarities()
        want = np.zeros(len(r))
        for q, (u, col) in enumerate(zip(r.tolist(), c.tolist())):
            raters = [v for v in range(ref.n) if v != u and col in ref.rows[v] and S[u][v] > 0]
            ranked = knn_rank(S[u], len(raters), raters)
            nb = ranked[:kk]
            assert used[q] == len(nb), f"query {q} ({u}, {col}): {used[q]} neighbours, expected {len(nb)}"
            F = Fraction
            num = sum((F(S[u][v]) * (F(ref.rows[v][col]) - F(m[v])) for v in nb), F(0))
            want[q] = frac_float(F(m[u]) + num / sum((F(S[u][v]) for v in nb), F(0))) if nb else m[u]
            if (len(ranked) > kk > 0 and S[u][ranked[kk - 1]] - S[u][ranked[kk]] <= KNN_TIE
                    and not all(exact[u][v] for v in raters)):
                # Tied at the k-th place up to rounding: the kernel may pick either; the weighted
                # mean still lies within the deviations of the candidates.
                devs = [float(F(ref.rows[v][col]) - F(m[v])) for v in ranked
                        if S[u][v] >= S[u][ranked[kk - 1]] - KNN_TIE]
                lo, hi = m[u] + min(devs), m[u] + max(devs)
                slack = 1e-9 * max(abs(lo), abs(hi))
                assert lo - slack <= pred[q] <= hi + slack, f"query {q}: {pred[q]!r} outside [{lo!r}, {hi!r}]"
                want[q] = pred[q]
        close(pred, want, "predictions", rtol=1e-9)
    return check


def check_knn_scores(weights: Any, rows: Any, ratings: Any, n_cols: Any) -> Callable[[Any], None]:
    """Row t: weights[rows[t]] @ ratings, products and sums in float64 in the CSR's order,
    rounded to float32 once."""
    def triple(x: Any, n_cols: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        if not isinstance(x, (tuple, list)) or len(x) != 3:
            raise Invalid("not a triple")
        ip, ix, nc = knn_csr(x[0], x[1], n_cols, strict=False)
        return ip, ix, knn_reals(x[2], len(ix)), nc

    def check(out: Any) -> None:
        if n_cols is None:
            raise Invalid("n_cols is required")
        b_ip, b_ix, b_v, nc = triple(ratings, n_cols)
        a_ip, a_ix, a_v, _ = triple(weights, len(b_ip) - 1)
        r = knn_ints(rows)
        if len(r) and (r.min() < 0 or r.max() >= len(a_ip) - 1):
            raise Invalid("rows out of range")
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (len(r), nc), \
            f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}"
        acc = np.zeros((len(r), nc))
        with np.errstate(all="ignore"):
            for t, u in enumerate(r.tolist()):
                for p in range(a_ip[u], a_ip[u + 1]):
                    w, j = float(a_v[p]), int(a_ix[p])
                    for q in range(b_ip[j], b_ip[j + 1]):
                        acc[t, b_ix[q]] += w * float(b_v[q])
            want = acc.astype(np.float32)
        close(out, want, "scores", rtol=1e-6)
    return check


# ---------------------------------------------------------------------------------------------
# The families: each is one child process.


def fuzz_select(F: Fuzz) -> None:
    from advrec import kernels as K

    rng = np.random.default_rng(0)
    S = rng.integers(-2, 3, size=(4, 6)).astype(np.float32)  # integers: many ties
    ex = (np.array([0, 1, 1, 3, 3]), np.array([2, 0, 5]))
    rows = np.array([3, 2, 1, 0])
    tg = (np.array([0, 1, 2, 2, 4]), np.array([1, 0, 3, 4]))
    SC, EX, RW = ("scores",), ("exclude", "exclusion"), ("rows",)

    for lab, s in float_variants(S):
        F.probe(f"topk_scores scores={lab}", lambda: K.topk_scores(s, 3), SC, check_topk(s, 3))
        F.probe(f"topk_scores scores={lab} +exclude", lambda: K.topk_scores(s, 2, ex, rows), SC + EX + RW,
                check_topk(s, 2, ex, rows))
        F.probe(f"rank_targets scores={lab}", lambda: K.rank_targets(s, tg, ex), SC + EX + ("targets",),
                check_rank(s, tg, ex))
    for lab, k in int_variants(3) + [("n_items", 6), ("above_n", 7), ("big_pad", 1000)]:
        F.probe(f"topk_scores k={lab}", lambda: K.topk_scores(S, k), ("k",), check_topk(S, k))
        F.probe(f"topk_scores rows0 k={lab}", lambda: K.topk_scores(S[:0], k), ("k",), check_topk(S[:0], k))
    for part in (0, 1):
        for lab, v in index_variants(ex[part], 4 if part == 0 else 6):
            e = (v, ex[1]) if part == 0 else (ex[0], v)
            F.probe(f"topk_scores exclude[{part}]={lab}", lambda: K.topk_scores(S, 2, e, rows), EX,
                    check_topk(S, 2, e, rows))
            F.probe(f"rank_targets exclude[{part}]={lab}", lambda: K.rank_targets(S, tg, e, rows), EX,
                    check_rank(S, tg, e, rows))
        for lab, v in index_variants(tg[part], 5 if part == 0 else 6):
            t = (v, tg[1]) if part == 0 else (tg[0], v)
            F.probe(f"rank_targets targets[{part}]={lab}", lambda: K.rank_targets(S, t), ("targets",),
                    check_rank(S, t))
    for lab, e in [("triple", ex + ex[:1]), ("single", ex[:1]), ("str", "ab"), ("dict", {0: 1}),
                   ("array2", np.array([[0, 1], [0, 0]])), ("none_pair", (None, None)), ("int", 3)]:
        F.probe(f"topk_scores exclude={lab}", lambda: K.topk_scores(S, 2, e), EX, check_topk(S, 2, e))
        F.probe(f"rank_targets exclude={lab}", lambda: K.rank_targets(S, tg, e), EX, check_rank(S, tg, e))
        F.probe(f"rank_targets targets={lab}", lambda: K.rank_targets(S, e), ("targets",), check_rank(S, e))
    F.probe("rank_targets targets=None", lambda: K.rank_targets(S, None), ("targets",), must_raise)
    for lab, r in index_variants(rows, 4):
        F.probe(f"topk_scores rows={lab}", lambda: K.topk_scores(S, 2, ex, r), RW, check_topk(S, 2, ex, r))
        F.probe(f"topk_scores rows={lab} no exclude", lambda: K.topk_scores(S, 2, None, r), RW, must_raise)
        F.probe(f"rank_targets rows={lab}", lambda: K.rank_targets(S, tg, ex, r), RW, check_rank(S, tg, ex, r))

    U = rng.integers(-2, 3, size=(5, 3)).astype(np.float32)
    V = rng.integers(-2, 3, size=(6, 3)).astype(np.float32)
    bias = rng.integers(-2, 3, size=6).astype(np.float32)
    ex5 = (np.array([0, 1, 1, 3, 3, 4]), np.array([2, 0, 5, 1]))
    r5 = np.array([4, 3, 2, 1, 0])
    UF, IF = ("user_factors",), ("item_factors",)
    for lab, u in float_variants(U):
        F.probe(f"topk_dot user_factors={lab}", lambda: K.topk_dot(u, V, 3), UF + IF, check_topk_dot(u, V, 3))
        F.probe(f"topk_dot user_factors={lab} +exclude", lambda: K.topk_dot(u, V, 3, ex5, tile_rows=2),
                UF + EX + ("rows",), check_topk_dot(u, V, 3, ex5, tile_rows=2))
    for lab, v in float_variants(V):
        F.probe(f"topk_dot item_factors={lab}", lambda: K.topk_dot(U, v, 3, item_bias=None), UF + IF,
                check_topk_dot(U, v, 3))
    for lab, b in float_variants(bias):
        F.probe(f"topk_dot item_bias={lab}", lambda: K.topk_dot(U, V, 3, item_bias=b), ("item_bias",),
                check_topk_dot(U, V, 3, bias=b))
    for lab, k in int_variants(3):
        F.probe(f"topk_dot k={lab}", lambda: K.topk_dot(U, V, k), ("k",), check_topk_dot(U, V, k))
        F.probe(f"topk_dot users0 k={lab}", lambda: K.topk_dot(U[:0], V, k), ("k",), check_topk_dot(U[:0], V, k))
    for lab, t in int_variants(2):
        F.probe(f"topk_dot tile_rows={lab}", lambda: K.topk_dot(U, V, 3, ex5, r5, tile_rows=t), ("tile_rows",),
                check_topk_dot(U, V, 3, ex5, r5, tile_rows=t))
    for part in (0, 1):
        for lab, v in index_variants(ex5[part], 5 if part == 0 else 6):
            e = (v, ex5[1]) if part == 0 else (ex5[0], v)
            F.probe(f"topk_dot exclude[{part}]={lab}", lambda: K.topk_dot(U, V, 3, e, tile_rows=2), EX,
                    check_topk_dot(U, V, 3, e, tile_rows=2))
    for lab, r in index_variants(r5, 5):
        F.probe(f"topk_dot rows={lab}", lambda: K.topk_dot(U, V, 3, ex5, r, tile_rows=2), RW,
                check_topk_dot(U, V, 3, ex5, r, tile_rows=2))


def fuzz_pairs(F: Fuzz) -> None:
    from advrec import kernels as K

    V = np.random.default_rng(1).integers(-3, 4, size=(6, 3)).astype(np.float32)  # exact products
    for lab, v in float_variants(V):
        F.probe(f"gram_extremes V={lab}", lambda: K.gram_extremes(v, 4, 2), ("V",), check_gram(v, 4, 2))
        F.probe(f"gram_extremes V={lab} tile1", lambda: K.gram_extremes(v, 25, 6, tile_rows=1), ("V",),
                check_gram(v, 25, 6))
        F.probe(f"gram_extremes V={lab} counts0", lambda: K.gram_extremes(v, 0, 0), ("V",), check_gram(v, 0, 0))
    for lab, c in int_variants(4) + [("all", 21), ("above", 22), ("pad", 1000)]:
        F.probe(f"gram_extremes n_pairs={lab}", lambda: K.gram_extremes(V, c, 1), ("n_pairs",), check_gram(V, c, 1))
        F.probe(f"gram_extremes n_row={lab}", lambda: K.gram_extremes(V, 1, c), ("n_row",), check_gram(V, 1, c))
        F.probe(f"gram_extremes empty V n_pairs={lab}", lambda: K.gram_extremes(V[:0], c, c),
                ("n_pairs", "n_row"), check_gram(V[:0], c, c))
        F.probe(f"gram_extremes empty V n_row={lab}", lambda: K.gram_extremes(V[:0], 0, c), ("n_row",),
                check_gram(V[:0], 0, c))
    for lab, t in int_variants(2):
        F.probe(f"gram_extremes tile_rows={lab}", lambda: K.gram_extremes(V, 5, 2, tile_rows=t), ("tile_rows",),
                check_gram(V, 5, 2))


def fuzz_certify(F: Fuzz) -> None:
    from advrec import kernels as K

    rng = np.random.default_rng(2)
    d, k = 8, 3
    w = rng.integers(-4, 5, size=d).astype(np.float32) / 4
    V = rng.integers(-3, 4, size=(d, k)).astype(np.float32) / 4
    w0 = -1.0
    indptr, indices = np.array([0, 2, 3, 3, 6]), np.array([0, 3, 5, 1, 2, 7])
    P = np.array([2, 3, 4, 5, 6, 7])
    q = 2
    tab = K.gram_extremes(V[P], 6, 3)
    tables = dict(pair_top=tab.pair_top_val, pair_bot=tab.pair_bot_val, row_top=tab.row_top_val,
                  row_bot=tab.row_bot_val)
    base = dict(indptr=indptr, indices=indices, w0=w0, w=w, V=V, perturbable=P, **tables)

    def scores_probe(lab: str, names: Sequence[str], **over: Any) -> None:
        a = {key: base[key] for key in ("indptr", "indices", "w0", "w", "V")}
        a.update(over)
        F.probe(f"fm_scores {lab}", lambda: K.fm_scores(**a), names, check_fm_scores(**a))
        F.probe(f"fm_scores_sums {lab}", lambda: K.fm_scores_sums(**a), names, check_fm_scores(**a, sums=True))

    p_ok = (w[P] + np.stack([V[indices[a:b]].sum(0) for a, b in zip(indptr[:-1], indptr[1:])]) @ V[P].T)
    gram_ok = V[P] @ V[P].T
    truth = dict(tables, perturbable=P, p=p_ok, gram=gram_ok)

    def consistent(over: dict) -> bool:
        """The trusted inputs (tables, p, gram) are those of the model: certificates must be sound."""
        for key, v in over.items():
            if key in truth:
                try:
                    a = numeric(v)
                except Exception:  # noqa: BLE001
                    return False
                if a.shape != truth[key].shape or not np.allclose(a, truth[key], rtol=1e-6, atol=1e-6):
                    return False
        return True

    def certify_probe(lab: str, names: Sequence[str], q: Any = q, method: Any = "best", **over: Any) -> None:
        a = dict(base, **over)
        args = [a[x] for x in ("indptr", "indices", "w0", "w", "V", "perturbable")]
        sound = consistent(over)
        F.probe(f"fm_certify_batch {lab} {method}", lambda: K.fm_certify_batch(q=q, method=method, **a), names,
                check_certify(*args, q, sound))
        if lab.startswith(("method", "q=")) or method in ("paper", "joint", "best", "exact"):
            names_max = tuple(names) + ("q_max",) * lab.startswith("q=") + ("method",) * (method == "greedy")
            F.probe(f"fm_max_q_batch {lab} {method}", lambda: K.fm_max_q_batch(q_max=q, method=method, **a),
                    names_max, check_max_q(*args, q, sound))

    for part, name in ((indptr, "indptr"), (indices, "indices")):
        for lab, v in index_variants(part, len(part) + 4 if name == "indptr" else d):
            scores_probe(f"{name}={lab}", (name,), **{name: v})
            certify_probe(f"{name}={lab}", (name,), **{name: v})
    for lab, v in real_variants(w0):
        scores_probe(f"w0={lab}", ("w0",), w0=v)
        certify_probe(f"w0={lab}", ("w0",), w0=v)
    for lab, v in float_variants(w):
        scores_probe(f"w={lab}", ("w", "V"), w=v)
        certify_probe(f"w={lab}", ("w", "V"), w=v)
    for lab, v in float_variants(V):
        scores_probe(f"V={lab}", ("V", "w"), V=v)
        certify_probe(f"V={lab}", ("V", "w"), V=v)
    for lab, v in index_variants(P, d):
        certify_probe(f"perturbable={lab}", ("perturbable", "row_top", "row_bot"), perturbable=v)
    for name, tv in tables.items():
        for lab, v in float_variants(tv):
            certify_probe(f"{name}={lab}", (name, "pair_top", "pair_bot", "row_top", "row_bot"), **{name: v})
    for lab, v in int_variants(q) + [("3", 3), ("above_n", 7), ("2p30", 2**30)]:
        certify_probe(f"q={lab}", ("q",), q=v)
        certify_probe(f"q={lab} greedy", ("q",), q=v, method="greedy")
    for lab, v in choice_variants(("greedy", "paper", "joint", "best", "exact")):
        certify_probe(f"method={lab}", ("method",), method=v)
    for name, ok in (("p", p_ok.astype(np.float32)), ("gram", gram_ok.astype(np.float32))):
        for lab, v in float_variants(ok):
            certify_probe(f"{name}={lab}", (name,), **{name: v})
            certify_probe(f"{name}={lab}", (name,), method="exact", **{name: v})
    for lab, v in int_variants(100):
        F.probe(f"fm_certify_batch node_budget={lab}",
                lambda: K.fm_certify_batch(q=q, method="exact", node_budget=v, **base), ("node_budget",),
                check_certify(indptr, indices, w0, w, V, P, q))
    # fm_greedy_batch: the CUDA twin. Without a GPU every call raises, naming the argument.
    g_base = dict(indptr=indptr, indices=indices, w0=w0, w=w, V=V, perturbable=P)
    pt = torch.from_numpy(p_ok.astype(np.float32))
    VP = torch.from_numpy(V[P])
    for name, good in g_base.items():
        variants = (real_variants(good) if name == "w0" else
                    float_variants(good) if name in ("w", "V") else index_variants(good, d))
        for lab, v in variants:
            a = dict(g_base, **{name: v})
            try:
                nv = np.atleast_1d(numeric(v, np.int64)).shape[0] if name == "perturbable" else len(P)
            except Exception:  # noqa: BLE001
                nv = len(P)
            empty = dict(pair_top=np.zeros(0), pair_bot=np.zeros(0), row_top=np.zeros((nv, 0)),
                         row_bot=np.zeros((nv, 0)))  # greedy reads no table
            try:  # what the CPU twin refuses, the CUDA one must refuse first, naming the same argument
                K.fm_certify_batch(q=q, method="greedy", **a, **empty)
                names = ("p",)
            except ERRORS:
                names = (name, "V", "w") if name in ("V", "w") else (name,)
            F.probe(f"fm_greedy_batch {name}={lab}", lambda: K.fm_greedy_batch(q=q, p=pt, V_P=VP, **a), names,
                    must_raise)  # p is a CPU tensor
    for lab, v in int_variants(q):
        F.probe(f"fm_greedy_batch q={lab}", lambda: K.fm_greedy_batch(q=v, p=pt, V_P=VP, **g_base), ("q", "p"),
                must_raise)
    for lab, v in float_variants(p_ok):
        F.probe(f"fm_greedy_batch p={lab}", lambda: K.fm_greedy_batch(q=q, p=v, V_P=VP, **g_base), ("p",),
                must_raise)  # no CUDA tensor among the variants


def fuzz_perturb(F: Fuzz) -> None:
    from advrec import kernels as K

    rng = np.random.default_rng(3)
    D = (rng.standard_normal((5, 4)) * 0.3).astype(np.float32)
    G = rng.standard_normal((5, 4)).astype(np.float32)
    G[1] = 0.0  # a zero-gradient row
    rows = np.array([4, 0, 2])

    base = object()

    def probe(lab: str, names: Sequence[str], delta: Any = base, grad: Any = G, alpha: Any = 0.5, eps: Any = 0.4,
              norm: Any = "l2", rows: Any = None) -> None:
        fresh = D.copy() if delta is base else delta
        try:
            before = numeric(fresh, np.float32).copy()
        except Exception:  # noqa: BLE001 - not even array-like: the kernel must refuse it
            before = None

        def check(out: Any) -> None:
            assert out is fresh, "the result must be delta itself (updated in place)"
            assert before is not None
            close(numeric(fresh, np.float32), ref_perturb(before, grad, alpha, eps, norm, rows), "delta")

        F.probe(f"perturb_step {lab} {norm}", lambda: K.perturb_step(fresh, grad, alpha, eps, norm, rows=rows),
                names, check)

    for norm in ("l2", "linf", "l2-step-linf-clip"):
        for lab, v in float_variants(D):
            probe(f"delta={lab}", ("delta", "grad"), delta=v, norm=norm)
            probe(f"delta={lab} rows", ("delta", "grad", "rows"), delta=v, norm=norm, rows=np.array([0]))
        for lab, v in float_variants(G):
            probe(f"grad={lab}", ("grad",), grad=v, norm=norm)
        for lab, v in real_variants(0.5):
            probe(f"alpha={lab}", ("alpha",), alpha=v, norm=norm)
        for lab, v in real_variants(0.4):
            probe(f"eps={lab}", ("eps",), eps=v, norm=norm)
        for lab, v in index_variants(rows, 5):
            probe(f"rows={lab}", ("rows",), rows=v, norm=norm)
        probe("rows=repeat", ("rows",), rows=np.array([1, 1]), norm=norm)
        probe("rows=all", ("rows",), rows=np.arange(5), norm=norm)
    for lab, v in choice_variants(("l2", "linf", "l2-step-linf-clip")):
        probe(f"norm={lab}", ("norm",), norm=v)
    # A row whose step lands exactly on float32's max: the projection, not an overflow.
    probe("alpha=f32max linf", ("alpha",), alpha=F32_MAX, norm="linf", eps=F32_MAX)


def fuzz_bpr(F: Fuzz) -> None:
    from advrec import kernels as K

    rng = np.random.default_rng(4)
    P = (rng.standard_normal((4, 3)) * 0.5).astype(np.float32)
    Q = (rng.standard_normal((6, 3)) * 0.5).astype(np.float32)
    users, pos, neg = np.array([0, 3, 1, 1]), np.array([2, 5, 0, 4]), np.array([1, 5, 3, 0])
    base = dict(P=P, Q=Q, users=users, pos=pos, neg=neg)

    def probe(lab: str, names: Sequence[str], **over: Any) -> None:
        a = dict(base, **over)
        ug, ig = a.pop("user_grad", True), a.pop("item_grad", True)
        F.probe(f"mf_bpr_gradient {lab}", lambda: K.mf_bpr_gradient(**a, user_grad=ug, item_grad=ig), names,
                check_bpr(**a, user_grad=ug, item_grad=ig))

    for name in ("P", "Q"):
        for lab, v in float_variants(base[name]):
            probe(f"{name}={lab}", ("P", "Q", "users" if name == "P" else "pos"), **{name: v})
    for name, n in (("users", 4), ("pos", 6), ("neg", 6)):
        for lab, v in index_variants(base[name], n):
            probe(f"{name}={lab}", ("users", "pos", "neg"), **{name: v})
    for name in ("user_grad", "item_grad"):
        for lab, v in [("false", False), ("np_bool", np.bool_(False)), ("int", 0), ("str", "no"), ("none", None)]:
            probe(f"{name}={lab}", (name,), **{name: v})


def fuzz_seq_and_misc(F: Fuzz) -> None:
    from advrec import kernels as K

    seq = np.array([[-1, -1, 3, 1], [2, 1, 1, 0], [-1, -1, -1, -1], [-1, 5, 2, 3]], np.int64)

    def probe(lab: str, names: Sequence[str], s: Any = seq, b: Any = 2, comp: Any = "both", norm: Any = None,
              threads: Any = None) -> None:
        F.probe(f"cascade_effects {lab}", lambda: K.cascade_effects(s, b, comp, norm, threads=threads), names,
                check_cascade(s, b, comp, norm))

    for lab, v in index_variants(seq.ravel(), 6):
        if isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim == 1 and v.shape[0] == seq.size:
            v = v.reshape(seq.shape)  # keep the matrix shape: the values are what vary
        probe(f"sequences={lab}", ("sequences",), s=v)
    for lab, v in [("rows0", seq[:0]), ("cols0", seq[:, :0]), ("fortran", np.asfortranarray(seq)),
                   ("negstride", seq[::-1]), ("noncontig", seq[:, ::2]),
                   ("uint8", np.where(seq < 0, 0, seq).astype(np.uint8)),
                   ("left_padded", seq[:, ::-1]), ("minus2", np.where(seq == 5, -2, seq)),
                   ("i64max", np.where(seq == 5, I64_MAX, seq)), ("torch", torch.from_numpy(seq)),
                   ("torch_f", torch.from_numpy(seq).float()), ("list", seq.tolist()), ("3d", seq[None]),
                   ("float", seq.astype(np.float64)), ("bool", seq > 0), ("object", seq.astype(object))]:
        probe(f"sequences={lab}", ("sequences",), s=v)
    for lab, v in int_variants(2):
        probe(f"batch_size={lab}", ("batch_size",), b=v)
    for lab, v in choice_variants(("sequence", "cross", "both")):
        probe(f"components={lab}", ("components",), comp=v)
    for lab, v in choice_variants(("minmax", "inverse-mean", None)):
        probe(f"normalize={lab}", ("normalize",), norm=v)
    for lab, v in int_variants(2) + [("256", 256), ("257", 257)]:
        probe(f"threads={lab}", ("threads",), threads=v)
    for comp in ("sequence", "cross"):
        for norm in ("minmax", "inverse-mean"):
            probe(f"{comp}/{norm} huge batch", ("batch_size",), b=I64_MAX, comp=comp, norm=norm)

    ip, ix = np.array([0, 2, 2, 3]), np.array([4, 1, 0])

    def check_csr(a: Any, b: Any) -> Callable[[Any], None]:
        def check(out: Any) -> None:
            for got, want in zip(out, (a, b)):
                assert isinstance(got, np.ndarray) and got.dtype == np.int64
                same(got, numeric(want, np.int64), "csr")
        return check

    for lab, v in index_variants(ip, 4):
        F.probe(f"as_csr indptr={lab}", lambda: K.as_csr(v, ix, "hist"), ("hist indptr",), check_csr(v, ix))
    for lab, v in index_variants(ix, 5):
        F.probe(f"as_csr indices={lab}", lambda: K.as_csr(ip, v), ("indices", "indptr"), check_csr(ip, v))
    for lab, v in [("int", 3), ("none", None), ("empty", "")]:
        F.probe(f"as_csr name={lab}", lambda: K.as_csr(ip, ix, v), ("name",), check_csr(ip, ix))

    def check_info(out: Any) -> None:
        assert isinstance(out, dict) and {"cuda_built", "cuda_devices", "openmp_threads"} <= set(out)

    def check_has_cuda(out: Any) -> None:
        assert isinstance(out, bool)

    F.probe("has_cuda", K.has_cuda, (), check_has_cuda)
    F.probe("info", K.info, (), check_info)


def knn_extremes(v: np.ndarray, ip: np.ndarray) -> List[Tuple[str, np.ndarray]]:
    """Valid but extreme values of a CSR: scaled to float64's ends (by powers of two: exact), rows
    at opposite ends, entries at the largest double or the smallest subnormal, values far from 0."""
    row = np.repeat(np.arange(len(ip) - 1), np.diff(ip))

    def put(*first: float) -> np.ndarray:
        """``v`` with its first entries replaced by ``first``."""
        a = v.copy()
        a[:len(first)] = first
        return a

    return [("2p900", v * 2.0**900), ("2m900", v * 2.0**-900), ("1e300", v * 1e300), ("1e-300", v * 1e-300),
            ("subnormal", v * 5e-324), ("rows_2pm960", v * np.where(row % 2 == 1, 2.0**960, 2.0**-960)),
            ("f64max", put(DBL_MAX)), ("two_f64max", put(DBL_MAX, DBL_MAX)),
            ("f64max_pm", put(DBL_MAX, -DBL_MAX)), ("tiny_entry", put(5e-324)),
            ("negated", -v), ("halves", v + 0.5), ("offset_2p52", v + 2.0**52),
            ("signs", v * np.where(np.arange(len(v)) % 3 == 0, -1.0, 1.0))]


def no_memory_error(fn: Callable[[], Any], what: str) -> Callable[[], Any]:
    """``fn``, where a MemoryError (otherwise an accepted answer) is a failure: ``what`` needs
    next to no memory."""
    def call() -> Any:
        try:
            return fn()
        except MemoryError as err:
            raise AssertionError(f"MemoryError for {what}: {err}") from None
    return call


def fuzz_knn(F: Fuzz) -> None:
    from advrec import kernels as K

    # 7 rows over 6 columns: row 5 repeats row 0 (tied neighbours), row 3 is constant (no Pearson
    # similarity), row 6 is empty. Rows of 2 or 4 small integers: every mean and sum is exact.
    R = [[(0, 5), (1, 3), (2, 4), (4, 1)], [(0, 4), (1, 3), (3, 2), (4, 2)], [(1, 1), (2, 5)],
         [(0, 2), (2, 2), (3, 2), (5, 2)], [(2, 5), (3, 4), (4, 1), (5, 3)], [(0, 5), (1, 3), (2, 4), (4, 1)], []]
    ip = np.cumsum([0] + [len(r) for r in R]).astype(np.int64)
    ix = np.array([c for r in R for c, _ in r], np.int64)
    v = np.array([x for r in R for _, x in r], np.float64)
    nnz, n, nc = len(ix), len(R), 6
    means = np.array([3.5, 2.5, 3.0, 2.0, 3.5, 3.0, 1.0])  # halves: exact centring
    MODES = (("pearson", "co-rated"), ("cosine", "co-rated"), ("pearson", "rows"), ("cosine", "rows"))
    base = dict(indptr=ip, indices=ix, values=v, k=3, similarity="pearson", min_overlap=1, means=None,
                n_cols=None, norms="co-rated")
    q_rows, q_cols = np.array([0, 1, 2, 3, 4, 5, 6, 0, 2, 4, 1]), np.array([3, 5, 0, 1, 0, 3, 2, 0, 4, 1, 0])
    IP, IX, VA = ("indptr", "indices"), ("indices",), ("values",)

    def nb(lab: str, names: Sequence[str], memory: bool = True, **over: Any) -> None:
        a = dict(base, **over)
        fn = lambda: K.knn_neighbors(a["indptr"], a["indices"], a["values"], a["k"], a["similarity"],  # noqa: E731
                                     a["min_overlap"], a["means"], n_cols=a["n_cols"], norms=a["norms"])
        F.probe(f"knn_neighbors {lab} {a['similarity']!s}/{a['norms']!s}",
                fn if memory else no_memory_error(fn, f"{nnz} entries"), names, check_knn_neighbors(**a))

    def pr(lab: str, names: Sequence[str], rows: Any = q_rows, cols: Any = q_cols, memory: bool = True,
           **over: Any) -> None:
        a = dict(base, **over)
        fn = lambda: K.knn_predict(a["indptr"], a["indices"], a["values"], rows, cols, a["k"],  # noqa: E731
                                   a["similarity"], a["min_overlap"], a["means"], n_cols=a["n_cols"],
                                   norms=a["norms"])
        F.probe(f"knn_predict {lab} {a['similarity']!s}/{a['norms']!s}",
                fn if memory else no_memory_error(fn, f"{nnz} entries"), names,
                check_knn_predict(rows=rows, cols=cols, **a))

    # ---- knn_neighbors
    for sim, norms in MODES:
        mode = dict(similarity=sim, norms=norms)
        for lab, x in list(float_variants(v)) + knn_extremes(v, ip) + [("none", None)]:
            nb(f"values={lab}", VA, values=x, **mode)
        for lab, x in [("0", 0), ("1", 1), ("all", 6), ("pad", 9)]:
            nb(f"k={lab}", ("k",), k=x, **mode)
        for lab, x in [("2", 2), ("3", 3), ("4", 4), ("5", 5)]:
            nb(f"min_overlap={lab}", ("min_overlap",), min_overlap=x, k=6, **mode)
        if sim == "pearson":
            for lab, x in list(float_variants(means)) + knn_extremes(means, np.array([0, 7])):
                nb(f"means={lab}", ("means",), means=x, **mode)
        else:
            nb("means=given", ("means",), means=means, **mode)
    last = int(ip[6]) - 1  # row 5's last column: raising it keeps the row sorted
    big = [("last_n", nc), ("last_2p40", 2**40), ("last_i64max-1", I64_MAX - 1), ("last_i64max", I64_MAX)]
    for sim, norms in MODES[:2]:
        mode = dict(similarity=sim, norms=norms)
        for lab, x in list(index_variants(ip, nnz)) + [
                ("decreasing", np.r_[0, 4, 3, ip[3:]]), ("merged", np.array([0, 8, 12, 18, 22, 22])),
                ("split", np.array([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 22])), ("empty_rows", np.r_[0, 0, ip[1:], 22]),
                ("one_row_short", ip[:-1]), ("beyond", np.r_[ip[:-1], 23])]:
            nb(f"indptr={lab}", IP, indptr=x, **mode)
        for n_cols in (None, nc):
            for lab, x in list(index_variants(ix, nc)) + [
                    ("unsorted", ix[[1, 0, *range(2, nnz)]]), ("duplicate", ix[[0, 0, *range(2, nnz)]])]:
                nb(f"indices={lab} n_cols={n_cols}", IX, indices=x, n_cols=n_cols, **mode)
            for lab, x in big:
                nb(f"indices={lab} n_cols={n_cols}", IX + ("n_cols",) * (n_cols is not None), memory=False,
                   indices=np.r_[ix[:last], x, ix[last + 1:]], n_cols=n_cols, **mode)
        for lab, x in int_variants(3) + [("n_rows", 7), ("above", 8), ("pad", 1000)]:
            nb(f"k={lab}", ("k",), k=x, **mode)
        for lab, x in int_variants(1) + [("2", 2), ("4", 4)]:
            nb(f"min_overlap={lab}", ("min_overlap",), min_overlap=x, **mode)
        for lab, x in int_variants(nc) + [("max_index", nc - 1), ("above", nc + 1), ("2p40", 2**40)]:
            nb(f"n_cols={lab}", ("n_cols",), n_cols=x, **mode)
    for lab, x in choice_variants(("cosine", "pearson")) + [("none", None), ("title", "Cosine")]:
        nb(f"similarity={lab}", ("similarity",), similarity=x)
    for lab, x in choice_variants(("co-rated", "rows")) + [("none", None), ("underscore", "co_rated")]:
        nb(f"norms={lab}", ("norms",), norms=x)
    for lab, (p, i, x) in [("rows0", (ip[:1], ix[:0], v[:0])), ("one_row", (ip[:2], ix[:4], v[:4]))]:
        for kl, k in int_variants(3) + [("pad", 1000)]:
            nb(f"{lab} k={kl}", ("k",), indptr=p, indices=i, values=x, k=k)
        nb(f"{lab} n_cols=0", ("n_cols",), indptr=p, indices=i, values=x, n_cols=0)

    # ---- knn_predict
    for sim, norms in MODES[:2]:
        mode = dict(similarity=sim, norms=norms)
        for lab, x in list(float_variants(v)) + knn_extremes(v, ip) + [("none", None)]:
            pr(f"values={lab}", VA, values=x, **mode)
        for lab, x in list(float_variants(means)) + knn_extremes(means, np.array([0, 7])):
            pr(f"means={lab}", ("means",), means=x, **mode)
        for lab, x in index_variants(q_rows, n):
            pr(f"rows={lab}", ("rows", "cols"), rows=x, **mode)
        for lab, x in index_variants(q_cols, nc):
            pr(f"cols={lab}", ("rows", "cols"), cols=x, **mode)
        for lab, x in int_variants(3) + [("n_rows", 7), ("pad", 1000)]:
            pr(f"k={lab}", ("k",), k=x, **mode)
        for lab, x in int_variants(1) + [("2", 2), ("3", 3)]:
            pr(f"min_overlap={lab}", ("min_overlap",), min_overlap=x, **mode)
    for lab, x in list(index_variants(ip, nnz)) + [("split", np.array([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 22]))]:
        pr(f"indptr={lab}", IP, indptr=x, cols=q_cols % 2)
    for lab, x in index_variants(ix, nc):
        pr(f"indices={lab}", IX, indices=x, n_cols=nc)
    for lab, x in big:
        pr(f"indices={lab}", IX, memory=False, indices=np.r_[ix[:last], x, ix[last + 1:]],
           rows=np.r_[q_rows, 5], cols=np.r_[q_cols, x if x < I64_MAX else 0])
    for lab, x in int_variants(nc) + [("max_index", nc - 1), ("2p40", 2**40)]:
        pr(f"n_cols={lab}", ("n_cols", "cols"), n_cols=x)
    pr("cols=2p39 n_cols=2p40", ("cols",), cols=np.r_[q_cols, 2**39], rows=np.r_[q_rows, 0], n_cols=2**40)
    pr("rows/cols shorter", ("rows", "cols"), rows=q_rows[:-1])
    pr("rows/cols longer", ("rows", "cols"), cols=np.r_[q_cols, 0])
    pr("no queries", ("rows", "cols"), rows=q_rows[:0], cols=[])
    for lab, x in choice_variants(("cosine", "pearson")) + [("none", None)]:
        pr(f"similarity={lab}", ("similarity",), similarity=x)
    for lab, x in choice_variants(("co-rated", "rows")) + [("none", None)]:
        pr(f"norms={lab}", ("norms",), norms=x)
    # Deviations of +-2 * DBL_MAX: the weighted mean and the prediction are finite.
    vv, mm = v.copy(), means.copy()
    for r in (0, 5):
        vv[ip[r]:ip[r + 1]] = DBL_MAX
    mm[[0, 1, 5]] = -DBL_MAX
    for sim in ("cosine", "pearson"):
        pr("deviation overflow", ("values", "means"), rows=[1, 1, 0], cols=[0, 1, 3], values=vv, means=mm,
           similarity=sim)

    # ---- knn_row_means
    def rm(lab: str, names: Sequence[str], indptr: Any = ip, values: Any = v, **kw: Any) -> None:
        F.probe(f"knn_row_means {lab}", lambda: K.knn_row_means(indptr, values, **kw), names,
                check_knn_row_means(indptr, values, kw.get("empty")))

    for lab, x in list(index_variants(ip, nnz)) + [("decreasing", np.r_[0, 4, 3, ip[3:]]),
                                                  ("start1", np.r_[1, ip[1:]]), ("empty_rows", np.r_[0, 0, ip[1:], 22]),
                                                  ("beyond", np.r_[ip[:-1], 23]), ("one_row_short", ip[:-1])]:
        rm(f"indptr={lab}", ("indptr", "values"), indptr=x)
    overflow = np.full(nnz, DBL_MAX)
    overflow[1] = DBL_MAX / 2  # rows and the global mean: sums beyond float64, means within
    for lab, x in list(float_variants(v)) + knn_extremes(v, ip) + [("none", None), ("sum_overflow", overflow)]:
        rm(f"values={lab}", VA, values=x)
        rm(f"values={lab} empty=2", VA, values=x, empty=2)
    for lab, x in real_variants(2.5) + [("none", None), ("np_f64", np.float64(-1.5)), ("np_int", np.int64(4))]:
        rm(f"empty={lab}", ("empty",), empty=x)
    rm("no rows", ("indptr",), indptr=ip[:1], values=v[:0])

    # ---- knn_scores: weights [7 x 7] (a duplicate and an unsorted row: both allowed) @ the ratings
    W = (np.array([0, 2, 3, 3, 6, 7, 10, 11]), np.array([1, 5, 0, 4, 2, 4, 6, 0, 1, 2, 3]),
         np.array([0.5, 1.0, 0.5, -1.0, 0.25, 0.5, 1.0, 1.0, 1.0, -2.0, 2.0]))
    RT = (ip, ix, v)
    s_rows = np.array([0, 3, 6, 0, 5, 2])

    def sc(lab: str, names: Sequence[str], w: Any = W, rows: Any = s_rows, r: Any = RT, n_cols: Any = nc) -> None:
        F.probe(f"knn_scores {lab}", lambda: K.knn_scores(w, rows, r, n_cols), names,
                check_knn_scores(w, rows, r, n_cols))

    for name, trip, n_rows in (("weights", W, 7), ("ratings", RT, nc)):
        names = (name,) if name == "weights" else ("ratings", "weights")
        for part, label in enumerate(("indptr", "indices", "values")):
            good = trip[part]
            variants = (index_variants(good, len(trip[1])) if part == 0 else index_variants(good, n_rows)
                        if part == 1 else itertools.chain(float_variants(good), knn_extremes(good, trip[0])))
            for lab, x in variants:
                t = tuple(x if i == part else trip[i] for i in range(3))
                sc(f"{name} {label}={lab}", names, **{"w" if name == "weights" else "r": t})
        for lab, x in [("pair", trip[:2]), ("quad", trip + trip[:1]), ("list", list(trip)), ("none", None),
                       ("dict", {0: 1}), ("str", "abc"), ("array", np.zeros((3, 2)))]:
            sc(f"{name}={lab}", (name,), **{"w" if name == "weights" else "r": x})
    for lab, x in index_variants(s_rows, 7):
        sc(f"rows={lab}", ("rows",), rows=x)
    for lab, x in int_variants(nc) + [("max_index", nc - 1), ("above", nc + 1), ("2p40", 2**40)]:
        huge = isinstance(x, int) and not isinstance(x, bool) and x > 10**6  # the output would not fit
        sc(f"n_cols={lab}" + " rows0" * huge, ("n_cols",), rows=s_rows[:0] if huge else s_rows, n_cols=x)
    sc("n_cols=2p62 one row", ("n_cols",), n_cols=2**62, rows=s_rows[:1])
    # Products beyond float32 whose sums are not (and the same in float64).
    for lab, sw, sr in [("f32 overflow", 1e30, 1e20), ("f64 overflow", 1e200, 1e200), ("f32 tiny", 1e-30, 1e-20),
                        ("subnormal x huge", 5e-324, 1e300)]:
        sc(lab, ("weights", "ratings"), w=(W[0], W[1], W[2] * sw), r=(ip, ix, v * sr))


# family: (child function, the fewest probes it must make: the grid must not shrink unnoticed)
FAMILIES = {"select": (fuzz_select, 700), "pairs": (fuzz_pairs, 200), "certify": (fuzz_certify, 1600),
            "perturb": (fuzz_perturb, 550), "bpr": (fuzz_bpr, 160), "seq_misc": (fuzz_seq_and_misc, 150),
            "knn": (fuzz_knn, 1650)}


def child_main(family: str) -> None:
    torch.set_num_threads(1)
    F = Fuzz()
    FAMILIES[family][0](F)
    print("DONE", F.count, flush=True)


# ---------------------------------------------------------------------------------------------
# The tests (parent side).

CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("kernels_fuzz_child", {path!r})
mod = importlib.util.module_from_spec(spec)
sys.path.insert(0, {tests!r})
spec.loader.exec_module(mod)
mod.child_main({family!r})
"""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_kernel_survives_hostile_arguments(family, tmp_path):
    here = Path(__file__).resolve()
    res = run_child(CHILD.format(path=str(here), tests=str(here.parent), family=family), tmp_path)
    last = [line for line in res.stderr.splitlines() if line.startswith("CALL")][-1:]
    assert res.returncode == 0, f"child ended with {res.returncode} after {last}:\n{res.stderr[-3000:]}"
    lines = res.stdout.splitlines()
    assert lines and lines[-1].startswith("DONE"), res.stdout[-2000:] + res.stderr[-2000:]
    n = int(lines[-1].split()[1])
    verdicts = Counter(line.split()[0] for line in lines[:-1])
    assert verdicts["OK"] + verdicts["RAISED"] + verdicts["UNCLEAR"] + verdicts["WRONG"] + verdicts["BADTYPE"] == n
    assert n >= FAMILIES[family][1], f"only {n} probes"
    bad = [line for line in lines if line.split()[0] in ("UNCLEAR", "WRONG", "BADTYPE")]
    assert not bad, "\n".join(bad[:40]) + f"\n({len(bad)} of {n})"
    assert verdicts["OK"] > n // 10, verdicts  # the grid also reaches the kernels, not only the checks


# ---------------------------------------------------------------------------------------------
# The defects of issue 15, in process.


def test_float64_scores_are_selected_without_rounding_to_float32():
    from advrec import kernels as K

    base = 0.1  # not a float32 value: every neighbour below differs from it only in float64
    s = np.array([[base, base + 1e-12, base - 1e-12, base + 2e-12, 0.0]])
    assert len(set(s[0, :4].astype(np.float32).tolist())) == 1  # all tied in float32
    idx, val = K.topk_scores(s, 4)
    assert idx.tolist() == [[3, 1, 0, 2]]
    assert val.dtype == np.float64 and val.tolist() == [[s[0, 3], s[0, 1], s[0, 0], s[0, 2]]]
    idx_t, val_t = K.topk_scores(torch.from_numpy(s), 4)
    assert idx_t.tolist() == [[3, 1, 0, 2]] and val_t.dtype == np.float64
    # Excluded and padded, still in double.
    idx, val = K.topk_scores(s, 6, exclude=(np.array([0, 1]), np.array([3])))
    assert idx.tolist() == [[1, 0, 2, 4, -1, -1]] and val[0, 0] == s[0, 1] and np.isneginf(val[0, 5])
    # float32 scores stay float32.
    assert K.topk_scores(s.astype(np.float32), 2)[1].dtype == np.float32


def test_float64_ranks_and_topk_dot_keep_double_precision():
    from advrec import kernels as K

    s = np.array([[0.1, 0.1 + 1e-12, 0.1 - 1e-12, 0.1 + 2e-12]])
    greater, equal, n_neg = K.rank_targets(s, (np.array([0, 1]), np.array([1])))
    assert greater.tolist() == [1] and equal.tolist() == [0] and n_neg.tolist() == [3]
    greater, equal, _ = K.rank_targets(s.astype(np.float32), (np.array([0, 1]), np.array([1])))
    assert greater.tolist() == [0] and equal.tolist() == [3]  # float32: genuinely tied
    # topk_dot: the product is taken in float64 when a factor is float64.
    U = np.array([[1.0, 1e-12]])
    V = np.array([[0.1, 0.0], [0.1, 1.0], [0.1, -1.0], [0.1, 2.0]])
    idx, val = K.topk_dot(U, V, 4)
    assert idx.tolist() == [[3, 1, 0, 2]] and val.dtype == np.float64
    assert np.array_equal(val[0], (V @ U[0])[[3, 1, 0, 2]])
    idx, _ = K.topk_dot(U.astype(np.float32), V.astype(np.float32), 4)
    assert idx.tolist() == [[0, 1, 2, 3]]  # float32 factors: tied, lower index first
    idx, val = K.topk_dot(np.array([[1.0, 0.0]], np.float32), V.astype(np.float32), 4,
                          item_bias=np.array([0, 1e-12, 0, 0]))
    assert idx.tolist() == [[1, 0, 2, 3]] and val.dtype == np.float64  # a float64 bias promotes
    # A Python list of floats is float64, not torch's default float32.
    idx, _ = K.topk_dot(U.tolist(), V.tolist(), 2)
    assert idx.tolist() == [[3, 1]]


def test_longdouble_scores_are_refused_not_rounded():
    from advrec import kernels as K

    with pytest.raises(TypeError, match="scores"):
        K.topk_scores(np.ones((2, 3), np.longdouble), 1)
    with pytest.raises(TypeError, match="user_factors"):
        K.topk_dot(np.ones((2, 3), np.longdouble), np.ones((2, 3)), 1)


@pytest.mark.parametrize("norm", ["l2", "linf", "l2-step-linf-clip"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_delta_is_refused_before_anything_is_written(norm, bad):
    from advrec import kernels as K

    delta = np.full((3, 2), 0.1, np.float32)
    delta[1, 0] = bad
    grad = np.ones((3, 2), np.float32)
    before = delta.copy()
    with pytest.raises(ValueError, match=r"delta contains NaN or inf \(row 1, column 0\)"):
        K.perturb_step(delta, grad, 0.1, 1.0, norm)
    assert np.array_equal(delta, before, equal_nan=True)
    t = torch.from_numpy(delta.copy())
    with pytest.raises(ValueError, match="delta"):
        K.perturb_step(t, torch.from_numpy(grad), 0.1, 1.0, norm)
    # Rows not updated are not read: a bad row outside ``rows`` is left alone.
    K.perturb_step(delta, grad, 0.1, 1.0, norm, rows=np.array([0, 2]))
    assert np.isfinite(delta[[0, 2]]).all() and not np.array_equal(delta[0], before[0])
    assert np.array_equal(delta[1], before[1], equal_nan=True)



class _FakeCudaTensor(torch.Tensor):
    """A CPU tensor that reports is_cuda, so the CUDA dispatch runs without a GPU."""

    @property
    def is_cuda(self):  # noqa: D401
        return True


def test_cuda_float64_scores_are_selected_exactly_on_the_host():
    """The CUDA kernel selects in float32: float64 CUDA scores take the exact host path and
    come back as tensors of their device, values in float64."""
    from advrec import kernels as K

    s = np.array([[0.1, 0.1 + 1e-12, 0.1 - 1e-12, 0.5], [1.0, 1.0 - 1e-12, 2.0, 1.0 + 1e-12]])
    fake = torch.from_numpy(s).as_subclass(_FakeCudaTensor)
    idx, val = K.topk_scores(fake, 3, exclude=(torch.tensor([0, 1, 1]), torch.tensor([3])))
    assert isinstance(idx, torch.Tensor) and isinstance(val, torch.Tensor) and val.dtype == torch.float64
    assert idx.tolist() == [[1, 0, 2], [2, 3, 0]]
    assert val.tolist() == [[s[0, 1], s[0, 0], s[0, 2]], [2.0, 1.0 + 1e-12, 1.0]]


def test_cuda_perturb_step_refuses_a_non_finite_delta(monkeypatch):
    """The CUDA twin's host-side checks (run here on CPU tensors with the core faked)."""
    from advrec.kernels import perturb_cuda

    calls = []

    class FakeCore:
        def perturb_step_cuda(self, *args):
            calls.append(args)

    monkeypatch.setattr(perturb_cuda, "_core", FakeCore())
    monkeypatch.setattr(perturb_cuda, "stream_of", lambda device: 0)
    delta, grad = torch.zeros((3, 2)), torch.ones((3, 2))
    delta[1, 1] = float("inf")
    with pytest.raises(ValueError, match="delta contains NaN or inf"):
        perturb_cuda.perturb_step_cuda(delta, grad, 0.1, 1.0, "l2", None)
    grad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="grad contains NaN or inf"):
        perturb_cuda.perturb_step_cuda(delta, grad, 0.1, 1.0, "l2", None)
    assert not calls
    perturb_cuda.perturb_step_cuda(delta, grad, 0.1, 1.0, "l2", [0])  # rows 1 and 2 are not read
    assert len(calls) == 1


def test_gpu_greedy_checks_its_host_arguments_first_and_caps_q(monkeypatch):
    """fm_greedy_batch (the CUDA twin's host side, the twin faked): perturbable is checked as on
    the CPU (an unsorted one used to shift the history positions silently), and a huge q only
    asks the device for the n flips that exist."""
    from advrec import kernels as K
    from advrec.kernels import certify_cuda

    seen = []

    def twin(p, hist_indptr, hist_indices, diag, V_P, sigma, threshold, q):
        seen.append(q)
        m = p.shape[0]
        return (torch.full((m, q), -1, dtype=torch.int64), torch.zeros(m, dtype=torch.float64),
                torch.zeros(m, dtype=torch.bool))

    monkeypatch.setattr(certify_cuda, "fm_greedy_cuda", twin)
    w = np.linspace(-1, 1, 6).astype(np.float32)
    V = np.ones((6, 2), np.float32)
    P = np.array([1, 3, 4])
    indptr, indices = np.array([0, 2, 3]), np.array([0, 3, 5])
    p = torch.zeros((2, 3)).as_subclass(_FakeCudaTensor)
    VP = torch.from_numpy(V[P])
    out = K.fm_greedy_batch(indptr, indices, -0.5, w, V, P, 2**62, p=p, V_P=VP)
    assert seen == [3] and out.status.tolist() == [0, 0]
    for bad, err, msg in [(np.array([3, 1, 4]), ValueError, "perturbable must be sorted and unique"),
                          (np.array([1, 3, 6]), IndexError, r"perturbable\[2\] = 6 is outside \[0, 6\)"),
                          (np.array([[1, 3, 4]]), ValueError, "perturbable must be 1-D")]:
        with pytest.raises(err, match=msg):
            K.fm_greedy_batch(indptr, indices, -0.5, w, V, bad, 2, p=p, V_P=VP)
    with pytest.raises(ValueError, match="indices of row 0 must be strictly increasing"):
        K.fm_greedy_batch(indptr, np.array([3, 0, 5]), -0.5, w, V, P, 2, p=torch.zeros((2, 3)), V_P=VP)

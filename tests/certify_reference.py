"""Plain NumPy references of the FM certification kernels (docs/certify.md), written naively
from the formulas so that they are obviously right; importable by other tests.

Everything is float64. A "position" is an index into ``perturbable``; flip sets are returned as
sorted positions.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

U32 = 2.0 ** -24


# ----------------------------------------------------------------------------- model and data

def fm_score(feats, w0: float, w, V) -> float:
    """Paper eq. 2 literally: w0 + sum_i w_i + sum_{i <= j} <v_i, v_j> over the active features."""
    w = np.asarray(w, np.float64)
    V = np.asarray(V, np.float64)
    feats = list(feats)
    f = float(w0)
    for i in feats:
        f += w[i]
    for a, i in enumerate(feats):
        for j in feats[a:]:
            f += float(V[i] @ V[j])
    return f


def ref_scores(indptr, indices, w0, w, V) -> np.ndarray:
    return np.array([fm_score(indices[indptr[r]:indptr[r + 1]], w0, w, V)
                     for r in range(len(indptr) - 1)], dtype=np.float64)


def random_fm(rng: np.random.Generator, d: int, k: int, scale: float = 0.5):
    """float32 (w, V) of a random FM."""
    w = (rng.standard_normal(d) * scale).astype(np.float32)
    V = (rng.standard_normal((d, k)) * scale / np.sqrt(k)).astype(np.float32)
    return w, V


def random_rows(rng: np.random.Generator, m: int, d: int, perturbable: np.ndarray,
                max_other: int = 6, max_hist: int = 6):
    """CSR rows: a few non-perturbable features plus, in some rows, some history; some empty."""
    other = np.setdiff1d(np.arange(d), perturbable)
    rows = []
    for r in range(m):
        kind = r % 4
        if kind == 0:
            rows.append(np.empty(0, np.int64))
            continue
        a = rng.choice(other, size=min(len(other), int(rng.integers(1, max_other + 1))), replace=False)
        h = np.empty(0, np.int64)
        if kind >= 2 and len(perturbable):
            h = rng.choice(perturbable, size=min(len(perturbable), int(rng.integers(1, max_hist + 1))),
                           replace=False)
        rows.append(np.unique(np.concatenate([a, h]).astype(np.int64)))
    indptr = np.cumsum([0] + [len(x) for x in rows]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, np.int64)
    return indptr, indices


# ----------------------------------------------------------------------------- per-model tables

class Tables(NamedTuple):
    pair_top: np.ndarray
    pair_bot: np.ndarray
    row_top: np.ndarray
    row_bot: np.ndarray


def gram(V, perturbable) -> np.ndarray:
    VP = np.asarray(V, np.float64)[np.asarray(perturbable)]
    return VP @ VP.T


def ref_tables(V, perturbable, q_max: int) -> Tables:
    """The per-model tables from the full G, by sorting every entry (ties: lower (i, j) /
    lower partner), padded with -inf / +inf."""
    G = gram(V, perturbable)
    n = G.shape[0]
    M = q_max * (q_max + 1) // 2
    t = max(q_max - 1, 0)
    pairs = [(G[i, j], i, j) for i in range(n) for j in range(i, n)]
    top = [v for v, _, _ in sorted(pairs, key=lambda e: (-e[0], e[1], e[2]))][:M]
    bot = [v for v, _, _ in sorted(pairs, key=lambda e: (e[0], e[1], e[2]))][:M]
    pair_top = np.array(top + [-np.inf] * (M - len(top)), np.float64)
    pair_bot = np.array(bot + [np.inf] * (M - len(bot)), np.float64)
    row_top = np.full((n, t), -np.inf)
    row_bot = np.full((n, t), np.inf)
    for j in range(n):
        part = [(G[j, l], l) for l in range(n) if l != j]
        tv = [v for v, _ in sorted(part, key=lambda e: (-e[0], e[1]))][:t]
        bv = [v for v, _ in sorted(part, key=lambda e: (e[0], e[1]))][:t]
        row_top[j, :len(tv)] = tv
        row_bot[j, :len(bv)] = bv
    return Tables(pair_top, pair_bot, row_top, row_bot)


# ----------------------------------------------------------------------------- one instance

class Instance(NamedTuple):
    feats: np.ndarray   # active feature ids
    f: float            # f(x)
    label: int          # +1 if f > 0 else -1
    sigma: int          # +1 for label -1 (adversary maximises delta), -1 for label +1
    C: np.ndarray       # candidate positions (perturbable and inactive)
    p: np.ndarray       # [n] p_j = w_j + <v_j, s>, double
    e: np.ndarray       # [n] |v_j|^2
    G: np.ndarray       # [n, n]
    snorm: float        # |s|


def instance(feats, w0, w, V, perturbable) -> Instance:
    w64 = np.asarray(w, np.float64)
    V64 = np.asarray(V, np.float64)
    P = np.asarray(perturbable)
    feats = np.asarray(feats, np.int64)
    s = V64[feats].sum(axis=0) if len(feats) else np.zeros(V64.shape[1])
    f = fm_score(feats, w0, w, V)
    label = 1 if f > 0 else -1
    C = np.array([a for a in range(len(P)) if P[a] not in set(feats.tolist())], np.int64)
    p = w64[P] + V64[P] @ s
    e = (V64[P] ** 2).sum(axis=1)
    return Instance(feats, f, label, -label, C, p, e, gram(V, P), float(np.sqrt(s @ s)))


def tol(inst: Instance, V, w, perturbable, q: int) -> float:
    VP = np.asarray(V, np.float64)[np.asarray(perturbable)]
    vmax = float(np.sqrt((VP ** 2).sum(axis=1)).max()) if len(VP) else 0.0
    wmax = float(np.abs(np.asarray(w, np.float64)[np.asarray(perturbable)]).max()) if len(VP) else 0.0
    k = VP.shape[1]
    eps_p = 2 * (k + 2) * U32 * (vmax * inst.snorm + wmax)
    eps_g = 2 * (k + 2) * U32 * vmax ** 2
    return q * eps_p + q * q * eps_g


def delta(inst: Instance, S) -> float:
    """delta(S) = sum_{j in S} (p_j + e_j) + sum_{i < j in S} G_ij (paper eq. 5)."""
    S = list(S)
    d = sum(inst.p[j] + inst.e[j] for j in S)
    for a, i in enumerate(S):
        for j in S[a + 1:]:
            d += inst.G[i, j]
    return float(d)


def flips(inst: Instance, f_new: float) -> bool:
    return f_new <= 0 if inst.label == 1 else f_new > 0


def rescore(inst: Instance, S, w0, w, V, perturbable) -> float:
    """f(x u S) from scratch."""
    P = np.asarray(perturbable)
    return fm_score(sorted(set(inst.feats.tolist()) | {int(P[j]) for j in S}), w0, w, V)


# ----------------------------------------------------------------------------- bounds

def ref_bounds(inst: Instance, tables: Tables, q: int) -> Dict[str, float]:
    """paper, joint and best bounds (signed: upper bound on max delta for label -1, lower bound
    on min delta for label +1), straight from the formulas."""
    if q == 0:
        return {"paper": 0.0, "joint": 0.0, "best": 0.0}
    C = list(inst.C)
    npairs = q * (q + 1) // 2
    if inst.label == -1:
        top_p = sorted((inst.p[j] for j in C), reverse=True)[:q]
        paper = sum(max(v, 0.0) for v in top_p) + sum(max(v, 0.0) for v in tables.pair_top[:npairs])
        u = [inst.p[j] + inst.e[j] + 0.5 * sum(max(v, 0.0) for v in tables.row_top[j, :q - 1])
             for j in C]
        joint = sum(max(v, 0.0) for v in sorted(u, reverse=True)[:q])
        best = min(paper, joint)
    else:
        bot_p = sorted(inst.p[j] for j in C)[:q]
        paper = sum(min(v, 0.0) for v in bot_p) + sum(min(v, 0.0) for v in tables.pair_bot[:npairs])
        l = [inst.p[j] + inst.e[j] + 0.5 * sum(min(v, 0.0) for v in tables.row_bot[j, :q - 1])
             for j in C]
        joint = sum(min(v, 0.0) for v in sorted(l)[:q])
        best = max(paper, joint)
    return {"paper": float(paper), "joint": float(joint), "best": float(best)}


def ref_square(inst: Instance, w, perturbable, q: int, beta: float) -> float:
    """The square lower bound on min delta (label +1) at one beta, from the formula:
    sum of the q smallest neg-(w_j + e_j/2 + (1 + beta) <v_j, s>) - beta^2 |s|^2 / 2."""
    wP = np.asarray(w, np.float64)[np.asarray(perturbable)]
    terms = sorted(wP[j] + 0.5 * inst.e[j] + (1 + beta) * (inst.p[j] - wP[j]) for j in inst.C)[:q]
    return float(sum(min(t, 0.0) for t in terms) - 0.5 * beta ** 2 * inst.snorm ** 2)


def ref_square_max(inst: Instance, w, perturbable, q: int) -> float:
    """Its best value over beta in [-0.99, 0] on a fine grid (the kernel searches the same range)."""
    return max(ref_square(inst, w, perturbable, q, b) for b in np.linspace(-0.99, 0.0, 1001))


def certified_by_bound(inst: Instance, bound: float, tl: float) -> bool:
    return inst.f + bound <= -tl if inst.label == -1 else inst.f + bound > tl


# ----------------------------------------------------------------------------- greedy (Alg. 1)

def ref_greedy(inst: Instance, q: int, w0, w, V, perturbable) -> Optional[List[int]]:
    """Flip set (sorted positions) found by Alg. 1, or None. Ties go to the lowest position;
    the label is checked by re-scoring x u S from scratch after every addition."""
    g = {int(j): inst.p[j] + inst.e[j] for j in inst.C}
    S: List[int] = []
    for _ in range(q):
        if not g:
            break
        js = max(sorted(g), key=lambda j: inst.sigma * g[j])  # first maximum = lowest position
        S.append(js)
        del g[js]
        if flips(inst, rescore(inst, S, w0, w, V, perturbable)):
            return sorted(S)
        for j in g:
            g[j] += inst.G[j, js]
    return None


# ----------------------------------------------------------------------------- brute force

def brute_force(inst: Instance, q: int) -> Tuple[float, float, bool, float]:
    """Over every S subset of C with |S| <= q (the empty set included): (max delta, min delta,
    whether some S flips the label, distance of the closest set to the threshold)."""
    C = list(inst.C)
    parts = [np.zeros(1)]
    for size in range(1, min(q, len(C)) + 1):
        idx = np.array(list(itertools.combinations(C, size)), np.int64).reshape(-1, size)
        d = (inst.p + inst.e)[idx].sum(axis=1)
        for a, b in itertools.combinations(range(size), 2):
            d = d + inst.G[idx[:, a], idx[:, b]]
        parts.append(d)
    v = np.concatenate(parts)
    fv = inst.f + v
    flipped = bool(np.any(fv > 0)) if inst.label == -1 else bool(np.any(fv <= 0))
    return float(v.max()), float(v.min()), flipped, float(np.abs(fv).min())

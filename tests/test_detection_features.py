"""advrec.detection.profile_features: a hand-worked log, a per-user loop reference on random
logs, a sanity check on ML-100K with an injected average attack, and named errors."""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from advrec.data import Interactions
from advrec.detection import FEATURES, RATING_FEATURES, ProfileFeatures, profile_features


def log(rows: List[Tuple[int, int, float]], n_users: int, n_items: int, implicit: bool = False) -> Interactions:
    u, i, r = (np.array(c) for c in zip(*rows))
    return Interactions(user=u, item=i, rating=None if implicit else r.astype(np.float32), timestamp=None,
                        n_users=n_users, n_items=n_items, user_ids=np.arange(n_users),
                        item_ids=np.arange(n_items))


# --------------------------------------------------------------------------- hand-worked log
#
# 5 users, 6 items, ratings 1..5 (r_max = 5). User 1 rates item 1 twice: 5 then 2; the last
# row counts (2). User 3 has one rating, of an item nobody else rated; user 4 has none.
#
#            i0   i1   i2   i3   i4   i5      n_u   user mean
#   u0        5    3    4                      3     4
#   u1        4    2    5    5                 4     4
#   u2        5    3    4         1            4     13/4
#   u3                                 3       1     3
#   u4                                         0
#   NR_i      3    3    3    1    1    1
#   mean     14/3 8/3 13/3   5    1    3
#
# Deviations r_ui - mean_i:  u0: +1/3 +1/3 -1/3;  u1: -2/3 -2/3 +2/3 0;  u2: +1/3 +1/3 -1/3 . 0;  u3: 0.
HAND_ROWS = [(0, 0, 5), (0, 1, 3), (0, 2, 4),
             (1, 1, 5), (1, 0, 4), (1, 2, 5), (1, 3, 5), (1, 1, 2),
             (2, 0, 5), (2, 1, 3), (2, 2, 4), (2, 4, 1),
             (3, 5, 3)]
nan = math.nan
HAND: Dict[str, List[float]] = {
    # RDMA = (1/n_u) sum |dev| / NR_i.  u0: 3 x (1/3)/3 = 1/3, / 3.  u1: 3 x (2/3)/3 + 0 = 2/3, / 4.
    # u2: 1/3, / 4.  u3: 0.
    "RDMA": [1 / 9, 1 / 6, 1 / 12, 0.0, nan],
    # WDMA = (1/n_u) sum |dev| / NR_i^2.  u0: 3 x (1/3)/9 = 1/9, / 3.  u1: 3 x (2/3)/9 = 2/9, / 4.
    # u2: 1/9, / 4.
    "WDMA": [1 / 27, 1 / 18, 1 / 36, 0.0, nan],
    # WDA = sum |dev| / NR_i (no division by n_u).
    "WDA": [1 / 3, 2 / 3, 1 / 3, 0.0, nan],
    # LengthVar over the users with a profile: lengths 3, 4, 4, 1, mean 3, sum of squared
    # deviations 0 + 1 + 1 + 4 = 6: |n_u - 3| / 6.
    "LengthVar": [0.0, 1 / 6, 1 / 6, 1 / 3, nan],
    # DegSim (k = 2, min_overlap = 3): Pearson over co-rated items, centred on the user's mean.
    # Centred: u0 (1, -1, 0) on i0..i2; u1 (0, -2, 1, 1); u2 (7/4, -1/4, 3/4, -9/4); u3 (0):
    # constant, no similarity. Co-rated {i0, i1, i2} for each pair of u0..u2:
    #   s01 = 2 / sqrt(2 * 5)        (dot 2; norms 2 and 5)
    #   s02 = 2 / sqrt(2 * 59/16)    (dot 7/4 + 1/4 = 2; norms 2 and 49/16 + 1/16 + 9/16 = 59/16)
    #   s12 = 5/4 / sqrt(5 * 59/16)  (dot 0 + 1/2 + 3/4 = 5/4)
    # DegSim = mean of the two: u0 (s01 + s02)/2, u1 (s01 + s12)/2, u2 (s02 + s12)/2.
    "DegSim": [(2 / math.sqrt(10) + 2 / math.sqrt(59 / 8)) / 2,
               (2 / math.sqrt(10) + 1.25 / math.sqrt(295 / 16)) / 2,
               (2 / math.sqrt(59 / 8) + 1.25 / math.sqrt(295 / 16)) / 2, nan, nan],
    # Average-attack model: t_u = the item rated 5 with the largest squared deviation.
    #   u0: {i0: 1/9} -> t = i0; filler i1, i2: 1/9 + 1/9 = 2/9.
    #   u1: {i2: 4/9, i3: 0} -> t = i2; filler i0, i1, i3: 4/9 + 4/9 + 0 = 8/9.
    #   u2: {i0: 1/9} -> t = i0; filler i1, i2, i4: 1/9 + 1/9 + 0 = 2/9.
    #   u3: no 5 -> no target, filler = {i5}: 0.
    # MeanVar = filler sum / n_u; FMV = filler sum / |filler|.
    "MeanVar": [2 / 27, 2 / 9, 1 / 18, 0.0, nan],
    "FMV": [1 / 9, 8 / 27, 2 / 27, 0.0, nan],
    # FMTD = |mean of the 5s - mean of the rest|: u0 5 - (3+4)/2; u1 5 - (4+2)/2; u2 5 - (3+4+1)/3;
    # u3 has no 5: undefined.
    "FMTD": [1.5, 2.0, 7 / 3, nan, nan],
    # TMF: targets u0 -> i0, u1 -> i2, u2 -> i0 (3 users with a target): F_i0 = 2/3, F_i2 = 1/3;
    # u3 has no target: 0.
    "TMF": [2 / 3, 1 / 3, 2 / 3, 0.0, nan],
}


def hand_log(implicit: bool = False) -> Interactions:
    return log(HAND_ROWS, 5, 6, implicit)


def test_hand_worked_example():
    pf = profile_features(hand_log(), k=2, min_overlap=3)
    assert pf.names == FEATURES
    assert pf.matrix.shape == (5, len(FEATURES)) and pf.matrix.dtype == np.float64
    np.testing.assert_array_equal(pf.users, np.arange(5))
    for name, want in HAND.items():
        tol = 1e-6 if name == "DegSim" else 1e-12  # the kernel's similarities are float32
        np.testing.assert_allclose(pf.column(name), want, rtol=tol, atol=tol, err_msg=name)


def test_hand_worked_degsim_k1_and_implicit_cosine():
    # k = 1: the single most similar user (s02 > s01 > s12).
    s01, s02 = 2 / math.sqrt(10), 2 / math.sqrt(59 / 8)
    d = profile_features(hand_log(), ["DegSim"], k=1, min_overlap=3).column("DegSim")
    np.testing.assert_allclose(d, [s02, s01, s02, nan, nan], rtol=1e-6)
    # min_overlap = 4: no pair shares 4 items.
    d = profile_features(hand_log(), ["DegSim"], k=2, min_overlap=4).column("DegSim")
    assert np.isnan(d).all()
    # Implicit: binary cosine |I_u & I_v| / sqrt(n_u n_v); u0-u1 3/sqrt(12), u0-u2 3/sqrt(12),
    # u1-u2 3/4; u3 shares nothing.
    pf = profile_features(hand_log(implicit=True), k=2, min_overlap=3)
    assert pf.names == ("LengthVar", "DegSim")
    c = 3 / math.sqrt(12)
    np.testing.assert_allclose(pf.column("DegSim"), [c, (c + 0.75) / 2, (c + 0.75) / 2, nan, nan], rtol=1e-6)
    np.testing.assert_allclose(pf.column("LengthVar"), HAND["LengthVar"], rtol=1e-12)


def test_target_ties_go_to_the_lower_item_and_r_max_is_a_choice():
    # u0 rates i1 and i2 both 5; both items' means are 4 (u1 rates them 3): equal deviations,
    # so t_0 = i1. u1's ratings are below 5: no target.
    rows = [(0, 0, 2), (0, 2, 5), (0, 1, 5), (1, 1, 3), (1, 2, 3), (1, 0, 2)]
    pf = profile_features(log(rows, 2, 3), ["TMF", "MeanVar", "FMTD"])
    # Means: i0 2, i1 4, i2 4. t_0 = i1 (F = 1); filler i0 (dev 0) and i2 (dev 1): MeanVar = 1/3;
    # FMTD = 5 - 2 = 3. u1: devs 0, -1, -1, all filler: MeanVar = 2/3.
    np.testing.assert_allclose(pf.matrix, [[1.0, 1 / 3, 3.0], [0.0, 2 / 3, nan]])
    # r_max = 3: u1 rates i1, i2 at 3 (deviations -1 each): t_1 = i1, filler i0 (0), i2 (1).
    # u0 has no 3: no target, filler sum 0 + 1 + 1 = 2 over 3 items.
    pf = profile_features(log(rows, 2, 3), ["TMF", "MeanVar", "FMTD"], r_max=3)
    np.testing.assert_allclose(pf.matrix, [[0.0, 2 / 3, nan], [1.0, 1 / 3, 1.0]])


# ------------------------------------------------------------------ per-user loop reference


def reference(train: Interactions, k: int, min_overlap: int, r_max: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Every feature by plain loops over per-user dicts (repeated pairs: the last row wins)."""
    prof: List[Dict[int, float]] = [dict() for _ in range(train.n_users)]
    ratings = train.rating if train.rating is not None else np.ones(len(train))
    for u, i, r in zip(train.user.tolist(), train.item.tolist(), ratings.tolist()):
        prof[u][i] = float(r)
    raters: Dict[int, List[float]] = {}
    for p in prof:
        for i, r in p.items():
            raters.setdefault(i, []).append(r)
    nr = {i: len(v) for i, v in raters.items()}
    mean = {i: sum(v) / len(v) for i, v in raters.items()}
    top = max(max(p.values()) for p in prof if p) if r_max is None else r_max
    n = train.n_users
    out = {f: np.full(n, np.nan) for f in FEATURES}
    lengths = [len(p) for p in prof if p]
    avg = sum(lengths) / len(lengths)
    ss = sum((x - avg) ** 2 for x in lengths)
    targets: Dict[int, int] = {}
    for u, p in enumerate(prof):
        if not p:
            continue
        out["LengthVar"][u] = abs(len(p) - avg) / ss if ss > 0 else 0.0
        dev = {i: r - mean[i] for i, r in p.items()}
        out["RDMA"][u] = sum(abs(d) / nr[i] for i, d in dev.items()) / len(p)
        out["WDMA"][u] = sum(abs(d) / nr[i] ** 2 for i, d in dev.items()) / len(p)
        out["WDA"][u] = sum(abs(d) / nr[i] for i, d in dev.items())
        cands = sorted(i for i, r in p.items() if r == top)
        best, t = math.inf, None
        for c in cands:  # the partition minimising the filler sum; ties to the lower item
            s = sum(d * d for i, d in dev.items() if i != c)
            if s < best:
                best, t = s, c
        if t is None:
            best = sum(d * d for d in dev.values())
        else:
            targets[u] = t
        out["MeanVar"][u] = best / len(p)
        n_fill = len(p) - (t is not None)
        out["FMV"][u] = best / n_fill if n_fill else np.nan
        tr = [r for r in p.values() if r == top]
        rest = [r for r in p.values() if r != top]
        out["FMTD"][u] = abs(sum(tr) / len(tr) - sum(rest) / len(rest)) if tr and rest else np.nan
    counts: Dict[int, int] = {}
    for t in targets.values():
        counts[t] = counts.get(t, 0) + 1
    for u, p in enumerate(prof):
        if p:
            out["TMF"][u] = counts[targets[u]] / len(targets) if u in targets else 0.0
    # DegSim: Pearson over co-rated items centred on each user's mean (cosine of binary rows
    # when implicit), pairs with >= min_overlap co-rated items and a defined similarity.
    means = [sum(p.values()) / len(p) if p else 0.0 for p in prof]
    for u, p in enumerate(prof):
        sims = []
        for v, q in enumerate(prof):
            if v == u:
                continue
            common = sorted(set(p) & set(q))
            if len(common) < min_overlap:
                continue
            if train.rating is None:
                sims.append(len(common) / math.sqrt(len(p) * len(q)))
                continue
            xa = [p[i] - means[u] for i in common]
            xb = [q[i] - means[v] for i in common]
            aa, bb = sum(a * a for a in xa), sum(b * b for b in xb)
            if aa * bb > 0:
                sims.append(sum(a * b for a, b in zip(xa, xb)) / math.sqrt(aa * bb))
        best_k = sorted(sims, reverse=True)[:k]
        if best_k:
            out["DegSim"][u] = sum(best_k) / len(best_k)
    if train.rating is None:
        for f in RATING_FEATURES:
            out[f][:] = np.nan
    return out


def random_log(seed: int, implicit: bool = False) -> Interactions:
    """~40 users x 15 items, integer ratings 1..5 (so ties at r_max), with repeated pairs, a
    user with one rating, an item rated once, and users without ratings."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 15
    rows = []
    for u in range(n_users - 3):  # the last 3 users rate nothing
        m = int(rng.integers(2, 12))
        items = rng.choice(n_items - 1, m, replace=False)  # the last item is kept for one user
        rows += [(u, int(i), int(rng.integers(1, 6))) for i in items]
    rows.append((n_users - 4, n_items - 1, 4))  # an item rated once
    rows = [r for r in rows if r[0] != 5] + [(5, 3, 2)]  # a user with one rating
    for _ in range(10):  # repeated pairs, other ratings
        u, i, _r = rows[int(rng.integers(len(rows)))]
        rows.append((u, i, int(rng.integers(1, 6))))
    order = rng.permutation(len(rows))
    return log([rows[j] for j in order], n_users, n_items, implicit)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_a_per_user_loop_reference(seed):
    train = random_log(seed)
    for k, mo in ((3, 2), (10, 1)):
        pf = profile_features(train, k=k, min_overlap=mo)
        ref = reference(train, k, mo)
        for j, name in enumerate(pf.names):
            tol = 1e-6 if name == "DegSim" else 1e-12
            np.testing.assert_allclose(pf.matrix[:, j], ref[name], rtol=tol, atol=tol,
                                       err_msg=f"{name} seed {seed} k {k}")
    # the user with no rating, the user with one
    assert np.isnan(pf.matrix[-1]).all()
    assert np.isfinite(pf.column("RDMA")[5])


@pytest.mark.parametrize("seed", [4, 5])
def test_implicit_and_r_max_match_the_reference(seed):
    imp = random_log(seed, implicit=True)
    pf = profile_features(imp, k=4, min_overlap=2)
    ref = reference(imp, 4, 2)
    assert pf.names == ("LengthVar", "DegSim")
    for j, name in enumerate(pf.names):
        np.testing.assert_allclose(pf.matrix[:, j], ref[name], rtol=1e-6, atol=1e-6, err_msg=name)
    exp = random_log(seed)
    pf = profile_features(exp, k=4, min_overlap=2, r_max=4)
    ref = reference(exp, 4, 2, r_max=4)
    for j, name in enumerate(pf.names):
        tol = 1e-6 if name == "DegSim" else 1e-12
        np.testing.assert_allclose(pf.matrix[:, j], ref[name], rtol=tol, atol=tol, err_msg=name)


def test_row_order_subsets_and_unpacking():
    train = random_log(7)
    full = profile_features(train)
    names, matrix = full  # unpacks as (names, matrix)
    assert names == FEATURES and matrix is full.matrix
    # the same log, rows shuffled (no repeats, so the order cannot matter) and sorted
    key = train.user * train.n_items + train.item
    _, last = np.unique(key[::-1], return_index=True)
    distinct = train.subset(np.sort(len(key) - 1 - last))
    base = profile_features(distinct)
    perm = np.random.default_rng(0).permutation(len(distinct))
    np.testing.assert_array_equal(profile_features(distinct.subset(perm)).matrix, base.matrix)
    np.testing.assert_array_equal(base.matrix, full.matrix)  # the last rating of each pair won
    # a subset, in the order asked
    sub = profile_features(train, ["TMF", "DegSim", "RDMA"])
    assert sub.names == ("TMF", "DegSim", "RDMA")
    for name in sub.names:
        np.testing.assert_array_equal(sub.column(name), full.column(name))
    assert set(full.to_dict()) == set(FEATURES)
    assert isinstance(full, ProfileFeatures) and "users=40" in repr(full)


def test_implicit_rating_features_are_nan_and_reported(caplog):
    imp = random_log(1, implicit=True)
    with caplog.at_level(logging.INFO, logger="advrec"):
        pf = profile_features(imp, ["RDMA", "LengthVar"])
    assert np.isnan(pf.column("RDMA")).all()
    assert np.isfinite(pf.column("LengthVar")[:37]).all()
    with pytest.raises(ValueError, match="train has no ratings"):
        profile_features(imp, ["RDMA", "TMF"])


# ------------------------------------------------------------------------------ ML-100K


def test_average_attack_on_ml100k_stands_out():
    """Sanity check that can fail: 5% average-attack profiles (filler 5%, one unpopular target)
    injected into ML-100K. Their neighbourhoods are tighter (DegSim higher: item-mean ratings
    agree with many users), their lengths sit near the mean profile length (LengthVar lower:
    real lengths spread from 20 to 700), and they rate rarely rated filler items away from the
    items' means (RDMA higher: popular items dominate real profiles)."""
    from advrec.attacks import AverageAttack
    from advrec.data import fake_users, inject, load

    try:
        train = load("ml-100k").interactions
    except Exception as err:  # no cached copy and no network
        pytest.skip(f"ML-100K unavailable: {err}")
    counts = np.bincount(train.item, minlength=train.n_items)
    target = int(np.flatnonzero(counts == 5)[0])
    poisoned = inject(train, AverageAttack(targets=[target], n_fake=47, filler=0.05, seed=0)(train))
    fake = fake_users(poisoned)
    assert fake.sum() == 47
    pf = profile_features(poisoned)
    assert not np.isnan(pf.column("DegSim")).any()

    def means(name: str) -> Tuple[float, float]:
        c = pf.column(name)
        return float(np.nanmean(c[fake])), float(np.nanmean(c[~fake]))

    fake_d, real_d = means("DegSim")
    assert fake_d > real_d, (fake_d, real_d)
    fake_l, real_l = means("LengthVar")
    assert fake_l < real_l, (fake_l, real_l)
    fake_r, real_r = means("RDMA")
    assert fake_r > real_r, (fake_r, real_r)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"features": ["RDMA", "nope"]}, "features: unknown feature 'nope'"),
    ({"features": "RDMA"}, "features must be a sequence"),
    ({"features": []}, "features must name at least one"),
    ({"features": ["RDMA", "RDMA"]}, r"features: \['RDMA'\] named more than once"),
    ({"features": [1]}, "features: unknown feature 1"),
    ({"features": 3}, "features must be a sequence"),
    ({"k": 0}, "k must be a positive int"),
    ({"k": 2.0}, "k must be a positive int"),
    ({"k": True}, "k must be a positive int"),
    ({"min_overlap": 0}, "min_overlap must be a positive int"),
    ({"r_max": float("nan")}, "r_max must be finite"),
    ({"r_max": "5"}, "r_max must be a real number"),
    ({"r_max": True}, "r_max must be a real number"),
])
def test_bad_arguments_raise_named_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        profile_features(hand_log(), **kwargs)


def test_bad_train_raises_named_errors():
    with pytest.raises(ValueError, match="train must be an advrec.data.Interactions"):
        profile_features(np.zeros((3, 3)))
    empty = Interactions(user=np.zeros(0, np.int64), item=np.zeros(0, np.int64), rating=np.zeros(0), timestamp=None,
                         n_users=3, n_items=2, user_ids=np.arange(3), item_ids=np.arange(2))
    with pytest.raises(ValueError, match="train is empty"):
        profile_features(empty)
    with pytest.raises(ValueError, match="train has no ratings"):
        profile_features(hand_log(implicit=True), ["FMTD"])
    with pytest.raises(ValueError, match="name must be one of"):
        profile_features(hand_log()).column("Nope")

"""GCE, MADr and MADR against hand-worked examples and plain loop references."""
import math
from itertools import combinations

import numpy as np
import pytest

from advrec.evaluation import EvalResult
from advrec.metrics import (
    accuracy_metrics,
    gce,
    group_means,
    group_shares,
    item_fairness,
    per_item_ndcg,
    ideal_distribution,
    mad_ranking,
    mad_rating,
    user_fairness,
)


def gce_reference(pf, pm, beta):
    return (sum(f ** beta * m ** (1 - beta) for f, m in zip(pf, pm)) - 1) / (beta * (1 - beta))


def mad_reference(values, labels):
    groups = sorted(set(labels))
    means = [np.mean([v for v, g in zip(values, labels) if g == k]) for k in groups]
    return np.mean([abs(means[a] - means[b]) for a, b in combinations(range(len(groups)), 2)])


# ---------------------------------------------------------------- ideal distributions

def test_ideal_distributions():
    assert ideal_distribution(2).tolist() == [0.5, 0.5]
    assert ideal_distribution(4) == pytest.approx([0.25] * 4)
    # the MSAP paper's f1 for gender: [0.75, 0.25]
    assert ideal_distribution(2, favoured=0) == pytest.approx([0.75, 0.25])
    assert ideal_distribution(2, favoured=1) == pytest.approx([0.25, 0.75])
    # quartiles: favoured weighs 3x each other group: 3/6, 1/6, 1/6, 1/6
    assert ideal_distribution(4, favoured=0) == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert ideal_distribution(4, favoured=3, mass=0.7) == pytest.approx([0.1, 0.1, 0.1, 0.7])
    for n in range(1, 7):
        for k in [None] + list(range(n)):
            assert ideal_distribution(n, k).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("kw, match", [
    (dict(n_groups=0), "n_groups"),
    (dict(n_groups=2, favoured=2), "favoured"),
    (dict(n_groups=2, favoured=-1), "favoured"),
    (dict(n_groups=3, favoured=0, mass=1.5), "mass"),
    (dict(n_groups=3, mass=0.5), "mass"),
])
def test_ideal_distribution_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        ideal_distribution(**kw)


# ---------------------------------------------------------------- GCE

def test_gce_identical_distributions_is_zero():
    for p in ([0.5, 0.5], [0.1, 0.2, 0.7], [1.0, 0.0]):
        for beta in (2.0, 0.5, -1.0, 3.0):
            assert gce(p, p, beta) == pytest.approx(0.0, abs=1e-12)


def test_gce_hand_worked_beta_2():
    # beta = 2: GCE = (sum pf^2 / pm - 1) / (2 * (1 - 2)) = -(sum pf^2/pm - 1) / 2
    # pf = [0.75, 0.25], pm = [0.5, 0.5]: 0.5625/0.5 + 0.0625/0.5 = 1.125 + 0.125 = 1.25 -> -0.125
    assert gce([0.75, 0.25], [0.5, 0.5]) == pytest.approx(-0.125)
    # pf = uniform, pm = [0.8, 0.2]: 0.25/0.8 + 0.25/0.2 = 0.3125 + 1.25 = 1.5625 -> -0.28125
    assert gce([0.5, 0.5], [0.8, 0.2], beta=2) == pytest.approx(-0.28125)
    # beta = 0.5: (sqrt(0.4) + sqrt(0.1) - 1) / 0.25 = (0.632456 + 0.316228 - 1) / 0.25 = -0.205267
    assert gce([0.5, 0.5], [0.8, 0.2], beta=0.5) == pytest.approx(-0.2052668, abs=1e-6)


def test_gce_against_reference_on_random_distributions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        pf, pm = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
        for beta in (2.0, 0.5, -0.5, 3.0):
            assert gce(pf, pm, beta) == pytest.approx(gce_reference(pf, pm, beta), rel=1e-10)
            assert gce(pf, pm, beta) <= 1e-12  # never above 0


def test_gce_zero_model_share():
    # a favoured group that gets nothing: pf^2/0 = inf -> -inf for beta > 1; 0 for beta < 1
    assert gce([0.5, 0.5], [1.0, 0.0]) == -math.inf
    # sqrt(0.5 * 1) + 0 = 0.707107 -> (0.707107 - 1) / 0.25 = -1.171573
    assert gce([0.5, 0.5], [1.0, 0.0], beta=0.5) == pytest.approx(-1.1715729, abs=1e-6)
    # a group neither distribution serves contributes nothing
    assert gce([1.0, 0.0], [1.0, 0.0]) == 0.0


@pytest.mark.parametrize("pf, pm, beta, match", [
    ([0.5, 0.5], [0.2, 0.3, 0.5], 2.0, "groups"),
    ([0.5, 0.6], [0.5, 0.5], 2.0, "p_ideal must sum to 1"),
    ([0.5, 0.5], [0.4, 0.4], 2.0, "p_model must sum to 1"),
    ([1.5, -0.5], [0.5, 0.5], 2.0, "p_ideal has negative"),
    ([0.5, 0.5], [1.5, -0.5], 2.0, "p_model has negative"),
    ([0.5, 0.5], [0.5, 0.5], 1.0, "beta"),
    ([0.5, 0.5], [0.5, 0.5], 0.0, "beta"),
    ([], [], 2.0, "p_ideal"),
    ([[0.5, 0.5]], [[0.5, 0.5]], 2.0, "p_ideal"),
    ([0.5, np.nan], [0.5, 0.5], 2.0, "p_ideal"),
])
def test_gce_bad_input(pf, pm, beta, match):
    with pytest.raises(ValueError, match=match):
        gce(pf, pm, beta)


# ---------------------------------------------------------------- group shares

def test_group_shares():
    # sums: group 0 0.2 + 0.4 = 0.6, group 1 0.6 + 0.0 = 0.6 -> [0.5, 0.5]
    assert group_shares([0.2, 0.4, 0.6, 0.0], [0, 0, 1, 1]) == pytest.approx([0.5, 0.5])
    # group 2 has no member: share 0; NaN (undefined metric) is left out
    assert group_shares([1.0, 3.0, np.nan], [0, 1, 2], n_groups=3) == pytest.approx([0.25, 0.75, 0.0])
    assert group_shares([1.0, 3.0], [0, 1], n_groups=4) == pytest.approx([0.25, 0.75, 0.0, 0.0])


@pytest.mark.parametrize("values, labels, kw, match", [
    ([0.0, 0.0], [0, 1], {}, "sum to 0"),
    ([1.0, -0.5], [0, 1], {}, "non-negative"),
    ([1.0, 2.0], [0], {}, "labels has length 1"),
    ([1.0, 2.0], [0, -1], {}, "negative group labels"),
    ([1.0, 2.0], [0.0, 1.0], {}, "integer"),
    ([1.0, 2.0], [0, 3], dict(n_groups=2), "n_groups"),
    ([1.0, np.inf], [0, 1], {}, "infinite"),
])
def test_group_shares_bad_input(values, labels, kw, match):
    with pytest.raises(ValueError, match=match):
        group_shares(values, labels, **kw)


# ---------------------------------------------------------------- MADR / MADr

def test_mad_ranking_two_and_three_groups():
    # means 0.75 and 0.15 -> 0.6
    assert mad_ranking([1.0, 0.5, 0.0, 0.3], [0, 0, 1, 1]) == pytest.approx(0.6)
    # means 1.0, 0.3, 0.6: pairs |1-0.3| = 0.7, |1-0.6| = 0.4, |0.3-0.6| = 0.3 -> 1.4 / 3
    assert mad_ranking([1.0, 0.4, 0.2, 0.6], [0, 1, 1, 2]) == pytest.approx(1.4 / 3)
    # NaN values are left out: group 0 mean stays 1.0
    assert mad_ranking([1.0, np.nan, 0.25], [0, 0, 1]) == pytest.approx(0.75)


def test_mad_rating_flat_and_per_row():
    # flat: group 0 mean (3 + 1) / 2 = 2, group 1 mean 0.5 -> 1.5
    assert mad_rating([3.0, 1.0, 0.5], [0, 0, 1]) == pytest.approx(1.5)
    # rows share their user's label: group 0 {3, 1} mean 2, group 1 {2, 2, 0, 1} mean 1.25 -> 0.75
    assert mad_rating([[3.0, 1.0], [2.0, 2.0], [0.0, 1.0]], [0, 1, 1]) == pytest.approx(0.75)
    # three groups of rows: means 2, 2, 0.5 -> (0 + 1.5 + 1.5) / 3 = 1
    assert mad_rating([[3.0, 1.0], [2.0, 2.0], [0.0, 1.0]], [0, 1, 2]) == pytest.approx(1.0)


def test_mad_against_reference_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n_groups = int(rng.integers(2, 6))
        labels = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, 40)])
        values = rng.random(len(labels))
        expect = mad_reference(values.tolist(), labels.tolist())
        assert mad_ranking(values, labels) == pytest.approx(expect, rel=1e-12)
        assert mad_rating(values, labels) == pytest.approx(expect, rel=1e-12)


def test_mad_symmetric_in_group_order():
    values, labels = np.array([0.1, 0.9, 0.4, 0.3]), np.array([0, 1, 2, 2])
    assert mad_ranking(values, labels) == pytest.approx(mad_ranking(values, 2 - labels))


@pytest.mark.parametrize("fn", [mad_ranking, mad_rating])
def test_mad_bad_input(fn):
    with pytest.raises(ValueError, match=r"group\(s\) \[1\]"):
        fn([1.0, 2.0], [0, 2])  # group 1 has no member
    with pytest.raises(ValueError, match=r"group\(s\) \[2\]"):
        fn([1.0, 2.0], [0, 1], n_groups=3)
    with pytest.raises(ValueError, match="at least two groups"):
        fn([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="length"):
        fn([1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(ValueError, match="no \\(defined\\) values"):
        fn([1.0, np.nan], [0, 1])


def test_mad_rating_bad_shapes():
    with pytest.raises(ValueError, match="scores"):
        mad_rating(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="labels has length 3"):
        mad_rating(np.zeros((2, 4)), [0, 1, 1])


# ---------------------------------------------------------------- from an EvalResult

def test_user_fairness_from_eval_result():
    # users 0, 2, 3, 5 evaluated; user 5's nDCG is undefined (NaN) and left out
    res = EvalResult(np.array([0, 2, 3, 5]), {"nDCG@10": np.array([0.6, 0.2, 0.2, np.nan])})
    labels = np.array([0, 1, 1, 0, 0, 1])  # indexed by user id: evaluated users get 0, 1, 0, 1
    out = user_fairness(res, labels, favoured=(0, 1))
    # group sums 0.6 + 0.2 = 0.8 and 0.2 -> pm = [0.8, 0.2]
    assert out["GCE_f0"] == pytest.approx(-0.28125)
    # f1 = [0.75, 0.25]: 0.5625/0.8 + 0.0625/0.2 = 0.703125 + 0.3125 = 1.015625 -> -0.0078125
    assert out["GCE_f1"] == pytest.approx(-0.0078125)
    # f2 = [0.25, 0.75]: 0.0625/0.8 + 0.5625/0.2 = 0.078125 + 2.8125 = 2.890625 -> -0.9453125
    assert out["GCE_f2"] == pytest.approx(-0.9453125)
    # means 0.4 and 0.2 -> 0.2
    assert out["MADR"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="metric"):
        user_fairness(res, labels, metric="HR@10")
    with pytest.raises(ValueError, match="user_labels has 4 entries"):
        user_fairness(res, labels[:4])


def test_same_inputs_same_numbers():
    rng = np.random.default_rng(7)
    v, lab = rng.random(100), rng.integers(0, 4, 100)
    a = gce(ideal_distribution(4, 1), group_shares(v, lab)), mad_ranking(v, lab)
    b = gce(ideal_distribution(4, 1), group_shares(v.copy(), lab.copy())), mad_ranking(v.copy(), lab.copy())
    assert a == b


# ---------------------------------------------------------------- item side (MSAP Tables 2-3)

def test_per_item_ndcg_hand_worked():
    # 3 users, lists of 3; relevant: u0 {2}, u1 {2, 4}, u2 {5} (5 never listed)
    topk = np.array([[1, 2, 3], [4, 0, 2], [0, 1, 3]])
    truth = (np.array([0, 1, 3, 4]), np.array([2, 2, 4, 5]))
    got = per_item_ndcg(topk, truth, n_items=7, k=3)
    d = lambda pos: 1 / math.log2(pos + 1)  # noqa: E731
    idcg2 = d(1) + d(2)
    # item 2: u0 at position 2 (IDCG 1), u1 at position 3 (IDCG over 2 relevant)
    assert got[2] == pytest.approx((d(2) / 1 + d(3) / idcg2) / 2)
    assert got[4] == pytest.approx(d(1) / idcg2)
    assert got[5] == 0.0
    assert np.isnan(got[[0, 1, 3, 6]]).all()  # nobody's relevant item
    # a row's gains sum to its nDCG: u1's two items give u1's nDCG@3
    _, acc = accuracy_metrics(topk, truth, k=3)
    assert acc["nDCG@3"][1] == pytest.approx(d(1) / idcg2 + d(3) / idcg2)
    # k cuts the list: at k=2 item 2 is found only for u0
    assert per_item_ndcg(topk, truth, 7, k=2)[2] == pytest.approx(d(2) / 2)


def test_per_item_ndcg_leave_one_out_means_match_user_ndcg():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 200, 30, 5
    topk = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    targets = rng.integers(0, n_items, n_users)
    truth = (np.arange(n_users + 1), targets)
    per_item = per_item_ndcg(topk, truth, n_items, k)
    _, acc = accuracy_metrics(topk, truth, k=k)
    for i in range(n_items):
        users = targets == i
        if users.any():
            assert per_item[i] == pytest.approx(acc[f"nDCG@{k}"][users].mean())
        else:
            assert np.isnan(per_item[i])
    # padding (-1) never matches
    padded = topk.copy()
    padded[:, -1] = -1
    assert np.all(per_item_ndcg(padded, truth, n_items, k)[~np.isnan(per_item)] <= per_item[~np.isnan(per_item)] + 1e-12)


@pytest.mark.parametrize("kw, match", [
    (dict(n_items=0), "n_items"),
    (dict(n_items=3), "n_items-1"),
    (dict(k=0), "k"),
])
def test_per_item_ndcg_bad_input(kw, match):
    args = dict(topk=np.array([[0, 1]]), truth=(np.array([0, 1]), np.array([4])), n_items=5, k=2)
    args.update(kw)
    with pytest.raises((ValueError, IndexError), match=match):
        per_item_ndcg(**args)


def test_group_means():
    values = np.array([1.0, 3.0, np.nan, 4.0, 10.0])
    labels = np.array([0, 0, 1, 1, 2])
    assert group_means(values, labels).tolist() == [2.0, 4.0, 10.0]
    got = group_means(values, labels, n_groups=4)
    assert got[:3].tolist() == [2.0, 4.0, 10.0] and np.isnan(got[3])  # empty group: NaN
    with pytest.raises(ValueError, match="labels"):
        group_means(values, labels[:3])


def test_item_fairness_hand_worked():
    # items 0..3 in groups [0, 0, 1, 1]; item 3 is nobody's test item
    per_item = np.array([0.2, 0.4, 0.3, np.nan])
    labels = np.array([0, 0, 1, 1])
    got = item_fairness(per_item, labels, favoured=(0, 1))
    pm = [0.6 / 0.9, 0.3 / 0.9]
    assert got["GCE_f0"] == pytest.approx(gce_reference([0.5, 0.5], pm, 2))
    assert got["GCE_f1"] == pytest.approx(gce_reference([0.75, 0.25], pm, 2))
    assert got["GCE_f2"] == pytest.approx(gce_reference([0.25, 0.75], pm, 2))
    assert got["MADR"] == pytest.approx(abs(0.3 - 0.3))
    # a group that gets nothing: GCE is -inf (beta = 2), MADR still defined
    zero = item_fairness(np.array([0.0, 0.0, 0.5, 0.1]), labels)
    assert zero["GCE_f0"] == -math.inf and zero["MADR"] == pytest.approx(0.3)


def test_no_benefit_at_all_leaves_gce_undefined_not_an_error():
    """A strong attack can zero every user's nDCG: GCE has no distribution to score (NaN), and the
    groups are equally unserved (MADR 0)."""
    out = item_fairness([0.0, 0.0, np.nan, 0.0], [0, 1, 1, 2], favoured=[0, 2], n_groups=3)
    assert set(out) == {"GCE_f0", "GCE_f1", "GCE_f3", "MADR"}
    assert all(np.isnan(out[k]) for k in ("GCE_f0", "GCE_f1", "GCE_f3")) and out["MADR"] == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        item_fairness([0.0, -1.0], [0, 1])

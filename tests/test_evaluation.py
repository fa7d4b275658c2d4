"""Evaluation protocols with a fake model whose scores are a fixed table (results worked by hand)."""
import json
import math

import numpy as np
import pytest
import torch

from advrec.data import Interactions
from advrec.evaluation import (
    HEAD,
    TAIL,
    EvalResult,
    evaluate,
    exposure_by_group,
    items_by_popularity,
    sample_negatives,
    users_by_activity,
)
from advrec.metrics import paired_ttest, wilcoxon

L3 = 1 / math.log2(3)


class TableModel(torch.nn.Module):
    """Scores come from a [n_users, n_items] table; delta["table"] is added to it."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(np.asarray(table), dtype=torch.float32))
        self.n_users, self.n_items = self.table.shape
        self.full_calls = []  # tile sizes seen by full_scores
        self.scored_items = []  # (users, items) seen by score

    def _table(self, delta):
        return self.table if delta is None else self.table + delta["table"]

    def full_scores(self, users, delta=None):
        self.full_calls.append(len(users))
        return self._table(delta)[users]

    def score(self, users, items, delta=None):
        self.scored_items.append((users.numpy().copy(), items.numpy().copy()))
        return self._table(delta)[users[:, None], items]


def inter(pairs, n_users, n_items):
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return Interactions(u, i, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


# 4 users x 6 items.
# u0: train {0} (its best-scored item), test {2}; item 3 ties with the target at 0.7.
# u1: train {1}, no test item -> never evaluated.
# u2: train {4, 5} (its two best), test {3, 0}.
# u3: train {0, 2}, test {2}: item 2 is in train AND test (overlap) and must stay rankable.
TABLE = [
    [0.9, 0.8, 0.7, 0.7, 0.5, 0.4],
    [0.1, 0.9, 0.2, 0.3, 0.4, 0.5],
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    [0.5, 0.5, 0.9, 0.1, 0.2, 0.3],
]
TRAIN = inter([(0, 0), (1, 1), (2, 4), (2, 5), (3, 0), (3, 2)], 4, 6)
TEST = inter([(0, 2), (2, 3), (2, 0), (3, 2)], 4, 6)


def full_result(**kw):
    return evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), k=(1, 3), popularity=TRAIN, **kw)


def test_full_ranking_hand_worked():
    r = full_result()
    assert r.users.tolist() == [0, 2, 3]  # u1 has no test item
    # u0 ranks 1, 2, 3 (item 0 excluded; 2 before 3 on the tie); u2 ranks 3, 2, 1; u3 ranks 2, 1, 5
    assert r.topk.tolist() == [[1, 2, 3], [3, 2, 1], [2, 1, 5]]
    assert r.info["n_test_excluded_overlap"] == 1
    want = {
        "HR@1": [0, 1, 1],
        "HR@3": [1, 1, 1],
        "Precision@3": [1 / 3, 1 / 3, 1 / 3],
        "Recall@1": [0, 1 / 2, 1],
        "Recall@3": [1, 1 / 2, 1],
        "nDCG@1": [0, 1, 1],
        "nDCG@3": [L3, 1 / (1 + L3), 1],  # u2: 1 hit at top of 2 relevant, IDCG = 1 + L3
        "MRR@3": [1 / 2, 1, 1],
        "MAP@1": [0, 1, 1],
        "MAP@3": [1 / 2, 1 / 2, 1],  # u2: precision 1 at the hit / min(2, 3)
        # u0: negatives {1, 3, 4, 5}: one higher (1), one tie (3) -> (4 - 1 - 0.5) / 4
        # u2: negatives {1, 2}: target 3 beats both (1), target 0 beats none (0) -> 0.5
        # u3: negatives {1, 3, 4, 5}, target 2 is the best -> 1
        "AUC": [0.625, 0.5, 1.0],
    }
    for name, values in want.items():
        np.testing.assert_allclose(r.per_user[name], values, rtol=1e-12, err_msg=name)
    # lists at k=3 expose items 1, 2 (3 times), 3 (twice), 5 (once): 4 of 6 items, 9 slots;
    # Gini: sorted [0, 0, 1, 2, 3, 3], weights [-5, -3, -1, 1, 3, 5] -> 25 / (5 * 9)
    g = r.global_metrics
    assert g["ItemCoverage@3"] == pytest.approx(4 / 6) and g["ItemCount@3"] == 4
    shares = np.array([3, 3, 2, 1]) / 9
    assert g["Entropy@3"] == pytest.approx(-(shares * np.log(shares)).sum())
    assert g["Gini@3"] == pytest.approx(25 / 45)
    # EPC/EFD (relevance-aware): training users per item [2, 1, 1, 0, 1, 1] of 4 users.
    # u0's relevant item 2 sits at position 2: nov 1 - 1/4 (EPC), -log2(1/4) = 2 (EFD)
    norm = 1 + L3 + 0.5
    assert r.per_user["EPC@3"][0] == pytest.approx(L3 * 0.75 / norm)
    assert r.per_user["EFD@3"][0] == pytest.approx(L3 * 2 / norm)
    # u3's relevant item 2 is first: EPC@1 = 3/4
    assert r.per_user["EPC@1"][2] == pytest.approx(0.75)


def test_training_items_are_never_recommended():
    r = full_result()
    train_indptr, train_items = TRAIN.to_csr()
    test_indptr, test_items = TEST.to_csr()
    for row, u in enumerate(r.users):
        seen = set(train_items[train_indptr[u]:train_indptr[u + 1]])
        keep = set(test_items[test_indptr[u]:test_indptr[u + 1]])
        assert not (set(r.topk[row]) & (seen - keep))
    assert 0 not in r.topk[0]  # u0's top-scored item was a training item


def test_without_exclude_the_training_item_comes_first():
    r = evaluate(TableModel(TABLE), TEST, k=1)
    assert r.topk[:, 0].tolist() == [0, 5, 2]
    assert r.info["n_test_excluded_overlap"] == 0
    # a single Interactions is accepted for exclude
    assert evaluate(TableModel(TABLE), TEST, exclude=TRAIN, k=1).topk[:, 0].tolist() == [1, 3, 2]


def test_summary_table_and_json():
    r = full_result()
    s = r.summary()
    assert s["HR@1"] == pytest.approx(2 / 3) and s["AUC"] == pytest.approx((0.625 + 0.5 + 1) / 3)
    assert s["Gini@3"] == pytest.approx(25 / 45)
    table = r.table()
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1 and "nDCG@3" in table and len(lines) == 2 + len(s)
    doc = json.loads(r.to_json())
    assert doc["n_users"] == 3 and doc["summary"]["HR@3"] == 1.0 and "per_user" not in doc
    back = EvalResult.from_json(r.to_json(per_user=True))
    assert back.users.tolist() == r.users.tolist()
    for name in r.per_user:
        np.testing.assert_array_equal(back.per_user[name], r.per_user[name])
    with pytest.raises(ValueError, match="per_user"):
        EvalResult.from_json(r.to_json())


def random_setup(n_users=37, n_items=23, seed=3):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(n_users, n_items)).round(1)  # rounding makes ties
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 300), rng.integers(0, n_items, 300))}
    pairs = sorted(pairs)
    test_mask = rng.random(len(pairs)) < 0.25
    train = inter([p for p, t in zip(pairs, test_mask) if not t], n_users, n_items)
    test = inter([p for p, t in zip(pairs, test_mask) if t] + [(0, pairs[0][1])], n_users, n_items)
    return table, train, test


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_tiling_invariance(protocol):
    table, train, test = random_setup()
    kw = dict(exclude=(train,), k=(1, 5, 10), protocol=protocol, n_negatives=7, seed=11)
    if protocol == "full":
        kw["popularity"] = train
    one = TableModel(table)
    a = evaluate(one, test, batch_size=1, **kw)
    b = evaluate(TableModel(table), test, batch_size=1024, **kw)
    assert protocol == "sampled" or max(one.full_calls) == 1
    assert a.users.tolist() == b.users.tolist()
    assert set(a.per_user) == set(b.per_user)
    for name in a.per_user:
        np.testing.assert_array_equal(a.per_user[name], b.per_user[name], err_msg=name)
    assert a.global_metrics == b.global_metrics
    if protocol == "full":
        np.testing.assert_array_equal(a.topk, b.topk)


def test_users_without_test_items_are_not_evaluated():
    table, train, test = random_setup()
    has_test = np.flatnonzero(np.diff(test.to_csr()[0]) > 0)
    assert len(has_test) < test.n_users
    for protocol in ("full", "sampled"):
        r = evaluate(TableModel(table), test, exclude=(train,), protocol=protocol, n_negatives=5)
        assert r.users.tolist() == has_test.tolist()


def test_sampled_hand_worked():
    # n_negatives=10 exceeds every user's candidates, so each case is ranked against all of them.
    # u0: candidates {1, 3, 4, 5}; target 2 (0.7) has 1 higher (item 1) and 1 tie (item 3):
    #     position 1 or 2 with equal chance -> HR@1 0, nDCG@3 (L3 + 1/2)/2, MRR@3 (1/2 + 1/3)/2
    # u2: candidates {1, 2}; target 3 is first (all 1), target 0 is third (HR@3 1, nDCG@3 1/2,
    #     MRR@3 1/3, AUC 0) -> user means
    # u3: candidates {1, 3, 4, 5}; target 2 is first
    r = evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), k=(1, 3), protocol="sampled", n_negatives=10)
    assert r.users.tolist() == [0, 2, 3] and r.topk is None
    assert r.info["n_cases"] == 4 and r.info["n_short_cases"] == 4
    assert r.info["n_test_excluded_overlap"] == 1
    want = {
        "HR@1": [0, 1 / 2, 1],
        "HR@3": [1, 1, 1],
        "nDCG@1": [0, 1 / 2, 1],
        "nDCG@3": [(L3 + 0.5) / 2, (1 + 0.5) / 2, 1],
        "MRR@3": [(1 / 2 + 1 / 3) / 2, (1 + 1 / 3) / 2, 1],
        "AUC": [0.625, 0.5, 1],
    }
    assert set(r.per_user) == {"HR@1", "nDCG@1", "MRR@1", "HR@3", "nDCG@3", "MRR@3", "AUC"}
    for name, values in want.items():
        np.testing.assert_allclose(r.per_user[name], values, rtol=1e-12, err_msg=name)


def test_sampled_constant_scores_are_chance_level():
    # every negative ties with the target: expected position uniform over 0..9
    table = np.zeros((3, 20))
    test = inter([(0, 1), (1, 2), (2, 3)], 3, 20)
    r = evaluate(TableModel(table), test, k=(1, 5), protocol="sampled", n_negatives=9)
    np.testing.assert_allclose(r.per_user["HR@1"], 0.1)
    np.testing.assert_allclose(r.per_user["HR@5"], 0.5)
    np.testing.assert_allclose(r.per_user["MRR@5"], sum(1 / p for p in range(1, 6)) / 10)
    np.testing.assert_allclose(r.per_user["AUC"], 0.5)


def test_sampled_reproducible_and_negatives_allowed():
    table, train, test = random_setup()
    kw = dict(exclude=(train,), k=(5,), protocol="sampled", n_negatives=6)
    m1, m2, m3 = TableModel(table), TableModel(table), TableModel(table)
    a = evaluate(m1, test, seed=5, **kw)
    b = evaluate(m2, test, seed=5, **kw)
    evaluate(m3, test, seed=6, **kw)
    for name in a.per_user:
        np.testing.assert_array_equal(a.per_user[name], b.per_user[name])
    items_a = np.concatenate([it for _, it in m1.scored_items])
    items_b = np.concatenate([it for _, it in m2.scored_items])
    items_c = np.concatenate([it for _, it in m3.scored_items])
    np.testing.assert_array_equal(items_a, items_b)
    assert not np.array_equal(items_a, items_c)

    train_indptr, train_items = train.to_csr()
    test_indptr, test_items = test.to_csr()
    users = np.concatenate([u for u, _ in m1.scored_items])
    for u, row in zip(users, items_a):
        forbidden = set(train_items[train_indptr[u]:train_indptr[u + 1]]) | set(
            test_items[test_indptr[u]:test_indptr[u + 1]])
        n_allowed = test.n_items - len(forbidden)
        negatives = row[1:1 + min(6, n_allowed)]
        assert row[0] in test_items[test_indptr[u]:test_indptr[u + 1]]
        assert not set(negatives) & forbidden
        assert len(set(negatives)) == len(negatives)


def test_sample_negatives_covers_allowed_items_uniformly():
    rng = np.random.default_rng(0)
    forbidden = np.array([0, 3, 4, 9])
    assert sorted(sample_negatives(rng, forbidden, 10, 100).tolist()) == [1, 2, 5, 6, 7, 8]
    seen = np.zeros(10, dtype=int)
    for _ in range(600):
        seen[sample_negatives(rng, forbidden, 10, 1)] += 1
    assert seen[forbidden].sum() == 0 and seen[[1, 2, 5, 6, 7, 8]].min() > 60  # ~100 each
    assert sample_negatives(rng, np.arange(5), 5, 3).size == 0


def test_delta_is_passed_to_the_model():
    delta = {"table": torch.zeros(4, 6)}
    delta["table"][0, 4] = 1.0  # u0's item 4 jumps to the top
    r = evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), k=1, delta=delta)
    assert r.topk[0, 0] == 4 and r.per_user["HR@1"][0] == 0


def test_compare_is_paired_on_common_users():
    table, train, test = random_setup()
    a = evaluate(TableModel(table), test, exclude=(train,), k=(5,))
    b = evaluate(TableModel(table[:, ::-1].copy()), test, exclude=(train,), k=(5,))
    out = a.compare(b)
    x, y = a.per_user["AUC"], b.per_user["AUC"]
    assert out["AUC"] == pytest.approx(paired_ttest(x, y))
    assert a.compare(b, test="wilcoxon")["nDCG@5"] == pytest.approx(
        wilcoxon(a.per_user["nDCG@5"], b.per_user["nDCG@5"]))
    # restrict b to a subset of users: the comparison uses only those
    keep = np.arange(0, len(b.users), 2)
    sub = EvalResult(b.users[keep], {n: v[keep] for n, v in b.per_user.items()})
    assert a.compare(sub)["AUC"] == pytest.approx(paired_ttest(x[keep], y[keep]))
    assert all(math.isnan(v) for v in a.compare(a)["AUC"])  # identical: nothing to test
    with pytest.raises(ValueError, match="test"):
        a.compare(b, test="anova")


def test_groups_and_by_group():
    # training activity: u0 1, u1 1, u2 2, u3 2 -> halves {u0, u1}, {u2, u3}
    labels = users_by_activity(TRAIN, n_groups=2)
    assert labels.tolist() == [0, 0, 1, 1]
    groups = full_result().by_group(labels)
    assert groups[0]["n_users"] == 1 and groups[1]["n_users"] == 2  # u1 is not evaluated
    assert groups[0]["HR@1"] == 0 and groups[1]["HR@1"] == 1
    assert groups[1]["AUC"] == pytest.approx(0.75)
    # training users per item [2, 1, 1, 0, 1, 1]: head = ceil(0.2 * 6) = 2 items, ties by lower id
    items = items_by_popularity(TRAIN, head_fraction=0.2)
    assert items.tolist() == [HEAD, HEAD, TAIL, TAIL, TAIL, TAIL]
    # the lists [1, 2, 3], [3, 2, 1], [2, 1, 5] give item 1 three of nine slots
    share = exposure_by_group(full_result().topk, items, 3)
    assert share == pytest.approx({HEAD: 3 / 9, TAIL: 6 / 9})
    with pytest.raises(ValueError, match="labels"):
        full_result().by_group(np.zeros(2))
    with pytest.raises(ValueError, match="n_groups"):
        users_by_activity(TRAIN, n_groups=0)
    with pytest.raises(ValueError, match="head_fraction"):
        items_by_popularity(TRAIN, head_fraction=1.0)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(protocol="leave-one-out"), "protocol"),
        (dict(batch_size=0), "batch_size"),
        (dict(k=0), "k"),
        (dict(n_negatives=0, protocol="sampled"), "n_negatives"),
        (dict(popularity=TRAIN, protocol="sampled"), "popularity"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), **kw)


def test_model_mismatch_and_nan_scores():
    with pytest.raises(ValueError, match="n_items"):
        evaluate(TableModel(np.zeros((4, 5))), TEST)
    bad = np.array(TABLE)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(TableModel(bad), TEST)


def test_tie_expectation_matches_enumeration():
    from advrec.evaluation.protocols import _tie_expected

    greater = np.array([0, 0, 3, 8, 12, 2])
    equal = np.array([0, 4, 2, 5, 0, 30])
    for k in (1, 5, 10):
        got = _tie_expected(greater, equal, k)
        for j, (g, e) in enumerate(zip(greater, equal)):
            positions = range(g, g + e + 1)  # 0-based, equally likely
            assert got[f"HR@{k}"][j] == pytest.approx(np.mean([p < k for p in positions]))
            assert got[f"nDCG@{k}"][j] == pytest.approx(np.mean([(p < k) / math.log2(p + 2) for p in positions]))
            assert got[f"MRR@{k}"][j] == pytest.approx(np.mean([(p < k) / (p + 1) for p in positions]))


def test_progress_bar_does_not_change_results():
    a = evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), k=(1, 3), progress=True, batch_size=2)
    b = evaluate(TableModel(TABLE), TEST, exclude=(TRAIN,), k=(1, 3), progress=False)
    for name in a.per_user:
        np.testing.assert_array_equal(a.per_user[name], b.per_user[name])


@pytest.mark.parametrize("metric", ["nDCG@3", "HR@1", "Recall@2", "MRR@3", "Precision@2", "MAP@3",
                                    "ItemCoverage@2"])
def test_validator_gives_evaluates_number_with_masks_built_once(metric):
    """Issue 18: the validator builds the masks once and skips AUC and catalogue metrics for an
    accuracy metric; its number must still be evaluate's, including the train/test overlap kept
    rankable (u3), and on a table that changed between calls."""
    from advrec.evaluation import validator

    model = TableModel(TABLE)
    val = validator(TEST, exclude=TRAIN, metric=metric, batch_size=2)
    for shift in (0.0, 0.35):
        with torch.no_grad():
            model.table[:, 3] += shift
        want = evaluate(model, TEST, exclude=TRAIN, k=(int(metric.split("@")[1]),), batch_size=2,
                        auc=False).summary()[metric]
        assert val(model) == pytest.approx(want)

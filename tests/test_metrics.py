"""Accuracy and beyond-accuracy metrics against hand-worked examples."""
import math

import numpy as np
import pytest

from advrec.metrics import (
    accuracy_metrics,
    auc_from_counts,
    gini_index,
    hit_matrix,
    item_coverage,
    item_exposure,
    item_user_counts,
    novelty,
    shannon_entropy,
)

L3 = 1 / math.log2(3)  # discount of position 2
L5 = 1 / math.log2(5)  # discount of position 4


def csr(rows):
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return indptr, indices


# Row 0: list 3 1 4 0, relevant {0, 1, 7} -> hits at positions 2 and 4.
# Row 1: list 2 5 (padded), relevant {5} -> hit at position 2.
# Row 2: no relevant item -> not evaluated.
TOPK = np.array([[3, 1, 4, 0], [2, 5, -1, -1], [0, 1, 2, 3]])
TRUTH = csr([[0, 1, 7], [5], []])


def test_hit_matrix():
    h = hit_matrix(TOPK, TRUTH)
    assert h.tolist() == [[False, True, False, True], [False, True, False, False], [False] * 4]


def test_accuracy_hand_worked():
    rows, v = accuracy_metrics(TOPK, TRUTH, k=(2, 4))
    assert rows.tolist() == [0, 1]
    expected = {
        # row 0 @2: one hit at position 2 of 3 relevant; IDCG over min(3, 2) = 2 positions
        # row 1 @2: one hit at position 2 of 1 relevant; IDCG = 1
        "HR@2": [1, 1],
        "Precision@2": [1 / 2, 1 / 2],
        "Recall@2": [1 / 3, 1],
        "nDCG@2": [L3 / (1 + L3), L3],
        "MRR@2": [1 / 2, 1 / 2],
        "MAP@2": [(1 / 2) / 2, (1 / 2) / 1],  # precision at the hit / min(|rel|, k)
        # row 0 @4: hits at 2 and 4; IDCG over 3 positions = 1 + L3 + 1/2
        # row 1 @4: padding counts as a miss in the precision denominator
        "HR@4": [1, 1],
        "Precision@4": [2 / 4, 1 / 4],
        "Recall@4": [2 / 3, 1],
        "nDCG@4": [(L3 + L5) / (1 + L3 + 0.5), L3],
        "MRR@4": [1 / 2, 1 / 2],
        "MAP@4": [(1 / 2 + 2 / 4) / 3, 1 / 2],
    }
    assert set(v) == set(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(v[name], want, rtol=1e-12, err_msg=name)


def test_accuracy_perfect_and_empty_lists():
    # relevant {4, 2}, ranked first and second: every metric is 1 (precision 2/3 at k=3)
    rows, v = accuracy_metrics(np.array([[4, 2, 0], [-1, -1, -1]]), csr([[2, 4], [1]]), k=3)
    assert rows.tolist() == [0, 1]
    assert v["nDCG@3"].tolist() == [1.0, 0.0]
    assert v["MAP@3"].tolist() == [1.0, 0.0]
    assert v["MRR@3"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(v["Precision@3"], [2 / 3, 0.0])


def test_accuracy_no_relevant_rows_are_dropped_not_zero():
    rows, v = accuracy_metrics(np.array([[0], [1]]), csr([[], []]), k=1)
    assert rows.size == 0 and v["HR@1"].size == 0


@pytest.mark.parametrize(
    "topk, truth, k, match",
    [
        (np.array([[0, 1]]), csr([[0]]), 3, "k=3"),
        (np.array([[0, 1]]), csr([[0]]), 0, ">= 1"),
        (np.array([[0, 0]]), csr([[0]]), 1, "topk"),
        (np.array([[-1, 0]]), csr([[0]]), 1, "topk"),
        (np.array([[-2, 0]]), csr([[0]]), 1, "topk"),
        (np.array([0, 1]), csr([[0]]), 1, "topk"),
        (np.array([[0, 1]]), csr([[0], [1]]), 1, "truth"),
        (np.array([[0, 1]]), csr([[2, 2]]), 1, "truth"),
        (np.array([[0, 1]]), csr([[-3]]), 1, "truth"),
    ],
)
def test_accuracy_bad_arguments(topk, truth, k, match):
    with pytest.raises(ValueError, match=match):
        accuracy_metrics(topk, truth, k=k)


def test_auc_from_counts_hand_worked():
    # row 0: targets (greater 0, equal 2) and (3, 0) among 4 negatives -> (4-0-1)/4, (4-3)/4 -> 0.5
    # row 1: target (1, 1) among 5 -> (5 - 1 - 0.5)/5 = 0.7
    # row 2: no target; row 3: a target but no negative -> both undefined, left out
    indptr = np.array([0, 2, 3, 3, 4])
    rows, v = auc_from_counts([0, 3, 1, 0], [2, 0, 1, 0], [4, 5, 6, 0], indptr)
    assert rows.tolist() == [0, 1]
    np.testing.assert_allclose(v["AUC"], [0.5, 0.7])


def test_auc_from_counts_bad_arguments():
    with pytest.raises(ValueError, match="greater"):
        auc_from_counts([0], [0, 0], [3], [0, 2])
    with pytest.raises(ValueError, match="n_neg"):
        auc_from_counts([0, 0], [0, 0], [3, 3], [0, 2])
    with pytest.raises(ValueError, match="greater"):
        auc_from_counts([2, 0], [2, 0], [3], [0, 2])  # 2 + 2 > 3 negatives


# Beyond accuracy. Lists at k=2: {0, 1}, {1, 2}, {1}: exposure over 5 items = [1, 3, 1, 0, 0].
BTOPK = np.array([[0, 1, -1], [1, 2, -1], [1, -1, -1]])


def test_exposure_coverage_entropy_gini():
    assert item_exposure(BTOPK, 5, 2).tolist() == [1, 3, 1, 0, 0]
    assert item_coverage(BTOPK, 5, 2) == (3 / 5, 3)
    assert item_coverage(BTOPK, 5, 1) == (2 / 5, 2)  # lists {0}, {1}, {1}
    # shares 0.2, 0.6, 0.2
    want_h = -(2 * 0.2 * math.log(0.2) + 0.6 * math.log(0.6))
    assert shannon_entropy(BTOPK, 5, 2) == pytest.approx(want_h, rel=1e-12)
    # sorted exposure [0, 0, 1, 1, 3], weights 2i - n - 1 = [-4, -2, 0, 2, 4] -> 14 / ((5 - 1) * 5)
    assert gini_index(BTOPK, 5, 2) == pytest.approx(0.7, rel=1e-12)


def test_gini_and_entropy_extremes():
    assert gini_index(np.array([[0], [1]]), 2, 1) == 0.0  # equal exposure
    assert gini_index(np.array([[0], [0]]), 3, 1) == pytest.approx(1.0)  # one item takes all
    assert shannon_entropy(np.array([[0], [0]]), 3, 1) == 0.0
    assert shannon_entropy(np.array([[0], [1]]), 2, 1) == pytest.approx(math.log(2))
    empty = np.array([[-1], [-1]])
    assert math.isnan(gini_index(empty, 3, 1)) and math.isnan(shannon_entropy(empty, 3, 1))
    assert item_coverage(empty, 3, 1) == (0.0, 0)


def test_beyond_bad_arguments():
    with pytest.raises(ValueError, match="n_items"):
        item_coverage(BTOPK, 2, 2)  # item 2 outside a 2-item catalogue
    with pytest.raises(ValueError, match="n_items"):
        gini_index(BTOPK, 0, 2)
    with pytest.raises(ValueError, match="k"):
        shannon_entropy(BTOPK, 5, 4)


# Novelty. Training: user0 {0, 1}, user1 {1}, user2 {1, 2}, user3 {} (n_users = 4), 4 items.
# Distinct users per item [1, 3, 1, 0]: p(seen) = [1/4, 3/4, 1/4, 0].
# EPC novelty 1 - p = [3/4, 1/4, 3/4, 1]; EFD novelty -log2 p = [2, log2(4/3), 2, 2 (unseen -> p=1/4)].
TRAIN = csr([[0, 1], [1], [1, 2], []])
NTOPK = np.array([[3, 1, 0], [1, -1, -1], [-1, -1, -1]])
LOG43 = math.log2(4 / 3)


def test_item_user_counts_counts_users_once():
    assert item_user_counts(TRAIN, 4).tolist() == [1, 3, 1, 0]
    assert item_user_counts(csr([[1, 1], [1]]), 3).tolist() == [0, 2, 0]


def test_novelty_plain_hand_worked():
    rows, v = novelty(NTOPK, item_user_counts(TRAIN, 4), 4, k=(1, 3))
    assert rows.tolist() == [0, 1]  # row 2 recommends nothing
    norm = 1 + L3 + 0.5  # discounts of positions 1..3
    # row 0: items 3, 1, 0 at discounts 1, L3, 1/2; row 1: item 1 alone (normaliser 1)
    np.testing.assert_allclose(v["EPC@3"], [(1 * 1 + L3 * 0.25 + 0.5 * 0.75) / norm, 0.25])
    np.testing.assert_allclose(v["EFD@3"], [(1 * 2 + L3 * LOG43 + 0.5 * 2) / norm, LOG43])
    np.testing.assert_allclose(v["EPC@1"], [1.0, 0.25])
    np.testing.assert_allclose(v["EFD@1"], [2.0, LOG43])


def test_novelty_relevance_aware_hand_worked():
    # relevant: row 0 {0}, row 1 {} (left out), row 2 {2} (empty list, left out)
    rows, v = novelty(NTOPK, item_user_counts(TRAIN, 4), 4, k=(1, 3), truth=csr([[0], [], [2]]))
    assert rows.tolist() == [0]
    norm = 1 + L3 + 0.5
    np.testing.assert_allclose(v["EPC@3"], [0.5 * 0.75 / norm])  # only item 0 (position 3) counts
    np.testing.assert_allclose(v["EFD@3"], [0.5 * 2 / norm])
    np.testing.assert_allclose(v["EPC@1"], [0.0])  # item 3 at position 1 is not relevant
    np.testing.assert_allclose(v["EFD@1"], [0.0])


def test_novelty_bad_arguments():
    counts = item_user_counts(TRAIN, 4)
    with pytest.raises(ValueError, match="n_users"):
        novelty(NTOPK, counts, 0, k=1)
    with pytest.raises(ValueError, match="item_users"):
        novelty(NTOPK, counts, 2, k=1)  # item 1 seen by 3 > 2 users
    with pytest.raises(ValueError, match="n_items"):
        novelty(NTOPK, counts[:2], 4, k=1)
    with pytest.raises(ValueError, match="truth"):
        novelty(NTOPK, counts, 4, k=1, truth=csr([[0]]))


# Property checks against direct per-row loops (hypothesis deadline off: tests never time anything).
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(1, 12))
    rows = draw(st.integers(1, 6))
    width = draw(st.integers(1, 8))
    topk, truth = [], []
    for _ in range(rows):
        perm = draw(st.permutations(range(n_items)))
        length = draw(st.integers(0, min(width, n_items)))
        topk.append(list(perm[:length]) + [-1] * (width - length))
        truth.append(sorted(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))))
    return np.array(topk, dtype=np.int64), truth, n_items


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_accuracy_matches_direct_loop(case):
    topk, truth, _ = case
    ks = tuple(range(1, topk.shape[1] + 1))
    rows, v = accuracy_metrics(topk, csr(truth), k=ks)
    assert rows.tolist() == [r for r, rel in enumerate(truth) if rel]
    for j, r in enumerate(rows):
        rel = set(truth[r])
        for kk in ks:
            hits = [int(x) in rel for x in topk[r, :kk]]
            dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits))
            idcg = sum(1 / math.log2(p + 2) for p in range(min(len(rel), kk)))
            ap = sum(sum(hits[: p + 1]) / (p + 1) for p, h in enumerate(hits) if h) / min(len(rel), kk)
            rr = next((1 / (p + 1) for p, h in enumerate(hits) if h), 0.0)
            assert v[f"HR@{kk}"][j] == float(any(hits))
            assert v[f"Precision@{kk}"][j] == pytest.approx(sum(hits) / kk)
            assert v[f"Recall@{kk}"][j] == pytest.approx(sum(hits) / len(rel))
            assert v[f"nDCG@{kk}"][j] == pytest.approx(dcg / idcg)
            assert v[f"MRR@{kk}"][j] == pytest.approx(rr)
            assert v[f"MAP@{kk}"][j] == pytest.approx(ap)


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_gini_matches_mean_absolute_difference(case):
    topk, _, n_items = case
    x = item_exposure(topk, n_items, topk.shape[1]).astype(float)
    if x.sum() == 0 or n_items == 1:
        return
    # Gini = sum_ij |x_i - x_j| / (2 n^2 mean), rescaled by n / (n - 1) so that the maximum is 1
    g = np.abs(x[:, None] - x[None, :]).sum() / (2 * n_items**2 * x.mean()) * n_items / (n_items - 1)
    assert gini_index(topk, n_items, topk.shape[1]) == pytest.approx(g, abs=1e-12)

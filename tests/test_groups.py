"""Quantile, attribute and gender groups: hand examples including ties, and ML-100K gender."""
import numpy as np
import pytest

from advrec.data import Interactions
from advrec.evaluation import (
    Groups,
    attribute_groups,
    item_popularity_groups,
    quantile_groups,
    user_activity_groups,
    user_gender_groups,
)


def inter(pairs, n_users, n_items):
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return Interactions(u, i, None, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


VALUES = [5, 1, 3, 3, 3, 0, 9, 7]


def test_quantile_groups_split_ties_by_index():
    # sorted (value, index): (0,5) (1,1) | (3,2) (3,3) | (3,4) (5,0) | (7,7) (9,6)
    # -> the three 3s straddle groups 1 and 2; the later index goes to the higher group
    assert quantile_groups(VALUES, 4).tolist() == [2, 0, 1, 1, 2, 0, 3, 3]
    # sizes differ by at most one, larger groups first: 7 values -> 2, 2, 2, 1
    assert np.bincount(quantile_groups(np.arange(7)[::-1], 4)).tolist() == [2, 2, 2, 1]


def test_quantile_groups_together_keeps_ties():
    # group = floor(4 * #strictly smaller / 8): 5 -> 5 smaller -> 2; 1 -> 1 -> 0; 3 -> 2 -> 1;
    # 0 -> 0 -> 0; 9 -> 7 -> 3; 7 -> 6 -> 3
    assert quantile_groups(VALUES, 4, ties="together").tolist() == [2, 0, 1, 1, 1, 0, 3, 3]
    # heavy ties leave groups empty: [0, 0, 0, 1] -> 0, 0, 0, floor(4 * 3 / 4) = 3
    assert quantile_groups([0, 0, 0, 1], 4, ties="together").tolist() == [0, 0, 0, 3]
    assert quantile_groups([0, 0, 0, 1], 4).tolist() == [0, 1, 2, 3]


def test_quantile_groups_reference_on_random_values():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.integers(0, 5, int(rng.integers(4, 30)))
        g = int(rng.integers(1, 5))
        split = quantile_groups(v, g)
        together = quantile_groups(v, g, ties="together")
        # monotone: a strictly larger value never sits in a lower group
        for lab in (split, together):
            for a in range(len(v)):
                for b in range(len(v)):
                    if v[a] < v[b]:
                        assert lab[a] <= lab[b]
        assert np.bincount(split, minlength=g).max() - np.bincount(split, minlength=g).min() <= 1
        for a in range(len(v)):
            assert together[a] == (g * int(np.sum(v < v[a]))) // len(v)
        assert quantile_groups(v, g).tolist() == split.tolist()  # deterministic


@pytest.mark.parametrize("args, kw, match", [
    (([1, 2], 0), {}, "n_groups"),
    (([1, 2], 3), {}, "exceeds"),
    (([1, 2], 2), dict(ties="random"), "ties"),
    (([[1, 2]], 1), {}, "1-D"),
    ((["a", "b"], 1), {}, "numeric"),
    (([1.0, np.nan], 1), {}, "NaN"),
])
def test_quantile_groups_bad_input(args, kw, match):
    with pytest.raises(ValueError, match=match):
        quantile_groups(*args, **kw)


def test_popularity_and_activity_groups():
    train = inter([(0, 0), (1, 1), (2, 4), (2, 5), (3, 0), (3, 2), (3, 0)], 4, 6)
    # distinct users per item [2, 1, 1, 0, 1, 1] (the repeated (3, 0) counts once);
    # sorted: item 3 (0), 1, 2, 4, 5 (1 each, by id), 0 (2) -> pairs [3, 1] [2, 4] [5, 0]
    pop = item_popularity_groups(train, n_groups=3)
    assert isinstance(pop, Groups)
    assert pop.labels.tolist() == [2, 0, 1, 0, 1, 2]
    assert pop.names == ("C1", "C2", "C3")
    # distinct items per user [1, 1, 2, 2]
    act = user_activity_groups(train, n_groups=2)
    assert act.labels.tolist() == [0, 0, 1, 1]
    labels, names = user_activity_groups(train, n_groups=4)
    assert labels.tolist() == [0, 1, 2, 3] and names == ("C1", "C2", "C3", "C4")


def test_attribute_groups():
    g = attribute_groups(np.array(["b", "a", "b", "c"]))
    assert g.labels.tolist() == [1, 0, 1, 2] and g.names == ("a", "b", "c")
    g = attribute_groups(["b", "a", "b", "c"], order=("c", "b", "a"))
    assert g.labels.tolist() == [1, 2, 1, 0] and g.names == ("c", "b", "a")
    g = attribute_groups(np.array([25, 18, 25]))
    assert g.labels.tolist() == [1, 0, 1] and g.names == ("18", "25")
    with pytest.raises(ValueError, match="order does not list"):
        attribute_groups(["a", "x"], order=("a", "b"))
    with pytest.raises(ValueError, match="twice"):
        attribute_groups(["a"], order=("a", "a"))
    with pytest.raises(ValueError, match="empty"):
        attribute_groups([])
    with pytest.raises(ValueError, match="1-D"):
        attribute_groups([["a"]])


def test_gender_groups_need_the_feature():
    class NoGender:
        user_features = {"age": np.array([1])}

    with pytest.raises(ValueError, match="gender"):
        user_gender_groups(NoGender())


def test_gender_groups_on_ml100k(monkeypatch):
    from advrec.data import load

    monkeypatch.delenv("ADVREC_DATA", raising=False)
    try:
        ds = load("ml-100k")
    except RuntimeError as e:
        pytest.skip(f"ML-100K not cached and not fetchable here: {e}")
    g = user_gender_groups(ds)
    assert g.names == ("M", "F")
    assert len(g.labels) == ds.interactions.n_users == 943
    # ML-100K has 670 men and 273 women
    assert np.bincount(g.labels).tolist() == [670, 273]
    assert np.array_equal(g.labels == 1, ds.user_features["gender"] == "F")

"""advrec.detection detectors and their evaluation: one shape for every detector (score, decide),
hand-worked degree features and metrics, PCA-SelectUsers against a dense reference, the
leave-one-type-out protocol's no-leak promise, named errors, the optional scikit-learn, and
ML-100K checks."""
from __future__ import annotations

import math
import sys
from typing import Any, List

import numpy as np
import pytest

from advrec.attacks import AverageAttack, BandwagonAttack, RandomAttack
from advrec.data import Interactions, fake_users, inject
from advrec.detection import detectors as det_mod
from advrec.detection.detectors import (DEGREE_FEATURES, AnyOf, DegreeSAD, PCASelectUsers, SupervisedDetector, TargetFocus,
                                        degree_features)
from advrec.detection.evaluation import detection_metrics, leave_one_type_out


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Small matrices, a busy 2-core machine: one BLAS thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1):
        yield


def random_log(n_users: int = 60, n_items: int = 80, seed: int = 0) -> Interactions:
    """An explicit log: each user rates 15-40 items, popularity skewed to low item indices."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.7
    users, items = [], []
    for u in range(n_users):
        k = int(rng.integers(15, 41))
        users.append(np.full(k, u))
        items.append(rng.choice(n_items, size=k, replace=False, p=pop / pop.sum()))
    user, item = np.concatenate(users), np.concatenate(items)
    rating = rng.integers(1, 6, size=len(user)).astype(np.float32)
    return Interactions(user, item, rating, None, n_users, n_items, np.arange(n_users), np.arange(n_items))


@pytest.fixture(scope="module")
def small() -> Interactions:
    return random_log()


def poisoned(train: Interactions, cls: Any = RandomAttack, seed: int = 0, target: int = 70) -> Interactions:
    return inject(train, cls(targets=[target], n_fake=6, filler=10, seed=seed)(train))


ALL_DETECTORS = [
    pytest.param(lambda: SupervisedDetector("svm"), id="svm"),
    pytest.param(lambda: SupervisedDetector("forest", seed=3), id="forest"),
    pytest.param(lambda: SupervisedDetector("svm", features=["RDMA", "DegSim"], k=5, min_overlap=2), id="svm-2f"),
    pytest.param(lambda: DegreeSAD(), id="degreesad"),
    pytest.param(lambda: DegreeSAD("svm"), id="degreesad-svm"),
    pytest.param(lambda: PCASelectUsers(n_suspects=6), id="pca"),
    pytest.param(lambda: AnyOf([SupervisedDetector("svm"), DegreeSAD("svm")]), id="anyof"),
]


# --------------------------------------------------------------------------- one shape


@pytest.mark.parametrize("make", ALL_DETECTORS)
def test_score_and_decide_shape(small, make):
    logs = [poisoned(small, RandomAttack, 0), poisoned(small, AverageAttack, 1)]
    test = poisoned(small, BandwagonAttack, 2)
    d = make().fit(logs)
    s = d.score(test)
    assert s.shape == (test.n_users,) and s.dtype == np.float64 and np.isfinite(s).all()
    flags = d.decide(test)
    assert flags.shape == (test.n_users,) and flags.dtype == bool
    assert np.array_equal(flags, s >= d.default_threshold(s))
    assert np.array_equal(d.decide(test, threshold=-np.finfo(float).max), np.ones(test.n_users, bool))
    # same construction, same data: same scores
    again = make().fit(logs).score(test)
    assert np.array_equal(s, again)


def test_any_of_flags_the_union_of_its_members(small):
    """AnyOf's decision is exactly the OR of its members' own decisions (each at its default
    threshold: the SVM's 0, the forest's 0.5, PCA's top n), and its score is the largest
    threshold-shifted member score."""
    logs = [poisoned(small, RandomAttack, 0), poisoned(small, BandwagonAttack, 1)]
    test = poisoned(small, AverageAttack, 2)
    members = [SupervisedDetector("forest", seed=1), DegreeSAD("svm"), PCASelectUsers(n_suspects=4)]
    union = AnyOf(members).fit(logs)
    flags = [m.decide(test) for m in members]   # the members as fitted by AnyOf
    assert np.array_equal(union.decide(test), flags[0] | flags[1] | flags[2])
    assert union.default_threshold() == 0.0
    shifted = [m.score(test) - m.default_threshold(m.score(test)) for m in members]
    assert np.array_equal(union.score(test), np.maximum.reduce(shifted))
    assert union.decide(test).sum() >= max(f.sum() for f in flags)
    assert "AnyOf([SupervisedDetector" in repr(union)
    for bad, match in (([SupervisedDetector("svm")], "at least two"), ("svm", "at least two"),
                       ([SupervisedDetector("svm"), object()], r"detectors\[1\]")):
        with pytest.raises(ValueError, match=match):
            AnyOf(bad)


def test_default_thresholds(small):
    assert SupervisedDetector("svm").default_threshold() == 0.0
    assert SupervisedDetector("forest").default_threshold() == 0.5
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    assert PCASelectUsers(n_suspects=2).default_threshold(scores) == 0.7
    assert PCASelectUsers(n_suspects=0.4).default_threshold(scores) == 0.7  # floor(0.4 * 5) = 2
    assert PCASelectUsers().suspects(990) == 49  # 5% by default
    assert PCASelectUsers(n_suspects=0.01).suspects(10) == 1  # at least one
    log = poisoned(small)
    assert PCASelectUsers(n_suspects=6).decide(log).sum() == 6


def test_forest_seed_changes_scores(small):
    logs = [poisoned(small, RandomAttack, 0)]
    test = poisoned(small, AverageAttack, 1)
    a = SupervisedDetector("forest", seed=0).fit(logs).score(test)
    b = SupervisedDetector("forest", seed=1).fit(logs).score(test)
    assert not np.array_equal(a, b)


def test_implicit_log(small):
    """Degree features and PCA need no ratings; profile features fall back to LengthVar/DegSim."""
    imp = Interactions(small.user, small.item, None, None, small.n_users, small.n_items,
                       small.user_ids, small.item_ids)
    log = poisoned(imp)
    assert np.isfinite(PCASelectUsers(6).score(log)).all()
    assert DegreeSAD().fit([log]).score(log).shape == (log.n_users,)
    d = SupervisedDetector("svm", k=5, min_overlap=2).fit([log])
    assert d.names_ == ("LengthVar", "DegSim")
    assert d.score(log).shape == (log.n_users,)


# --------------------------------------------------------------------------- degree features


def test_degree_features_hand_worked():
    # u0 rates items 0, 1, 2 (item 0 twice), u1 items 0, 1, u2 item 0, u3 nothing; item 3 unrated.
    # Degrees: item 0 -> 3 users, item 1 -> 2, item 2 -> 1.
    u = np.array([0, 0, 0, 0, 1, 1, 2])
    i = np.array([0, 1, 2, 0, 0, 1, 0])
    log = Interactions(u, i, np.full(7, 4.0, np.float32), None, 4, 4, np.arange(4), np.arange(4))
    pf = degree_features(log)
    assert pf.names == DEGREE_FEATURES
    want = np.array([[2.0, 2.0, 1.0],    # degrees 3, 2, 1: mean 2, range 2, sorted[floor(2/4)=0] = 1
                     [2.5, 1.0, 2.0],    # 3, 2: mean 2.5, range 1, sorted[0] = 2
                     [3.0, 0.0, 3.0],    # 3
                     [np.nan] * 3])
    np.testing.assert_array_equal(pf.matrix, want)


def test_degree_features_quartile_index():
    # one user rating 9 items of degrees 1..9 (item j rated by j + 1 users): QUD = sorted[floor(8/4)] = 3
    rows = [(0, j) for j in range(9)] + [(1 + v, j) for j in range(9) for v in range(j)]
    u, i = (np.array(c) for c in zip(*rows))
    n_users = int(u.max()) + 1
    log = Interactions(u, i, None, None, n_users, 9, np.arange(n_users), np.arange(9))
    np.testing.assert_array_equal(degree_features(log).matrix[0], [5.0, 8.0, 3.0])


# --------------------------------------------------------------------------- PCA-SelectUsers


def dense_pca_reference(log: Interactions, k: int) -> np.ndarray:
    x = np.zeros((log.n_users, log.n_items))
    x[log.user, log.item] = log.rating  # last row wins: the log has no repeats here
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    _, vecs = np.linalg.eigh(z @ z.T)
    return np.sum(vecs[:, -k:] ** 2, axis=1)


@pytest.mark.parametrize("dense_users", [10_000, 0], ids=["dense", "svds"])
def test_pca_select_users_matches_reference(small, monkeypatch, dense_users):
    monkeypatch.setattr(det_mod, "_DENSE_USERS", dense_users)
    log = poisoned(small, AverageAttack)
    d = PCASelectUsers(n_suspects=6, n_components=3)
    c = d.contributions(log)
    np.testing.assert_allclose(c, dense_pca_reference(log, 3), atol=1e-10)
    np.testing.assert_array_equal(d.score(log), -c)
    assert d.fit([log]) is d


def test_pca_user_without_ratings_scores_minus_one(small):
    log = poisoned(small)
    empty = Interactions(log.user, log.item, log.rating, None, log.n_users + 1, log.n_items,
                         np.append(log.user_ids, 10_000), log.item_ids)
    s = PCASelectUsers(6).score(empty)
    assert s[-1] == -1.0 and (s[:-1] > -1.0).all()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make, match", [
    (lambda: SupervisedDetector("tree"), "model must be one of"),
    (lambda: DegreeSAD("tree"), "model must be one of"),
    (lambda: SupervisedDetector("svm", knn=3), "feature_kwargs: unknown"),
    (lambda: SupervisedDetector("svm", seed=-1), "seed"),
    (lambda: PCASelectUsers(n_suspects=0), "n_suspects"),
    (lambda: PCASelectUsers(n_suspects=1.5), "n_suspects"),
    (lambda: PCASelectUsers(n_suspects=True), "n_suspects"),
    (lambda: PCASelectUsers(n_components=0), "n_components"),
])
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_fit_and_score(small):
    clean = small
    log = poisoned(small)
    d = SupervisedDetector("svm")
    with pytest.raises(ValueError, match="logs is empty"):
        d.fit([])
    with pytest.raises(ValueError, match="logs must be a list"):
        d.fit(log)
    with pytest.raises(ValueError, match=r"logs\[1\] has no fake users"):
        d.fit([log, clean])
    with pytest.raises(ValueError, match=r"logs\[0\] must be an advrec.data.Interactions"):
        d.fit(["log"])
    with pytest.raises(ValueError, match="call fit"):
        d.score(log)
    d.fit([log])
    for bad in (math.nan, math.inf, "0", True):
        with pytest.raises(ValueError, match="threshold"):
            d.decide(log, threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        PCASelectUsers(6).decide(log, threshold=math.nan)
    with pytest.raises(ValueError, match="n_components must be below"):
        PCASelectUsers(n_components=small.n_users).score(small)
    with pytest.raises(ValueError, match="train must be"):
        PCASelectUsers().score(None)


def test_missing_sklearn_says_how_to_install(small, monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    hint = r'pip install "advrec\[detect\]"'
    with pytest.raises(ImportError, match=hint):
        SupervisedDetector("svm")
    with pytest.raises(ImportError, match=hint):
        DegreeSAD()
    with pytest.raises(ImportError, match=hint):
        detection_metrics([0.2, 0.8], [False, True], 0.5)
    # what needs no scikit-learn still works without it
    assert PCASelectUsers(6).score(poisoned(small)).shape == (small.n_users + 6,)
    assert math.isnan(detection_metrics([0.2, 0.8], [False, False], 0.5)["auc"])


# --------------------------------------------------------------------------- metrics


def test_detection_metrics_hand_computed():
    scores = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
    labels = [1, 0, 1, 1, 0, 0]
    m = detection_metrics(scores, labels, 0.5)
    # flagged: the first three -> tp 2 (0.9, 0.7), fp 1 (0.8), fn 1 (0.3)
    assert (m["tp"], m["fp"], m["fn"], m["n_flagged"], m["n_fake"], m["n_users"]) == (2, 1, 1, 3, 3, 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # AUC: of the 9 (fake, real) pairs the fake scores higher in 3 (0.9) + 2 (0.7) + 2 (0.3) = 7
    assert m["auc"] == pytest.approx(7 / 9)
    fpr, tpr, thr = m["roc_curve"]
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0 and len(fpr) == len(tpr) == len(thr)
    # ties flag: threshold equal to a score
    assert detection_metrics(scores, labels, 0.7)["n_flagged"] == 3
    # nothing flagged: precision undefined, recall 0, F1 0
    none = detection_metrics(scores, np.array(labels, bool), 1.0)
    assert math.isnan(none["precision"]) and none["recall"] == 0.0 and none["f1"] == 0.0
    # one class absent: AUC undefined, no curve
    real = detection_metrics(scores, [0] * 6, 0.5)
    assert math.isnan(real["auc"]) and math.isnan(real["recall"]) and real["precision"] == 0.0
    assert real["roc_curve"][0].size == 0


@pytest.mark.parametrize("scores, labels, threshold, match", [
    ([0.1, math.nan], [0, 1], 0.5, "scores contains NaN"),
    ([], [], 0.5, "scores must be a non-empty"),
    ([0.1, 0.2], [0, 1, 1], 0.5, "labels must have the shape"),
    ([0.1, 0.2], [0, 2], 0.5, "labels must be booleans"),
    ([0.1, 0.2], [0, 1], math.nan, "threshold"),
])
def test_detection_metrics_errors(scores, labels, threshold, match):
    with pytest.raises(ValueError, match=match):
        detection_metrics(scores, labels, threshold)


# --------------------------------------------------------------------------- leave one type out


class Spy:
    """A PCASelectUsers that records what it was trained on and what it scored."""

    fitted: List[Interactions] = []
    scored: List[Interactions] = []

    def __init__(self) -> None:
        self.inner = PCASelectUsers(n_suspects=6)

    def fit(self, logs):
        Spy.fitted.extend(logs)
        return self

    def score(self, log):
        Spy.scored.append(log)
        return self.inner.score(log)

    def default_threshold(self, scores):
        return self.inner.default_threshold(scores)


def profiles(log: Interactions) -> set:
    fake = fake_users(log)
    return {(tuple(log.item[log.user == u]), tuple(log.rating[log.user == u])) for u in np.flatnonzero(fake)}


def test_leave_one_type_out_never_scores_what_it_trained_on(small):
    Spy.fitted, Spy.scored = [], []
    attacks = {"random": RandomAttack, "average": AverageAttack, "bandwagon": BandwagonAttack}
    recs = leave_one_type_out(small, attacks, Spy, sizes=(0.1, 5), fillers=(10,), seeds=(0, 1),
                              test_seeds=(7,), n_targets=2)
    assert [(r["held_out"], r["size"]) for r in recs] == [(h, s) for h in attacks for s in (0.1, 5)]
    assert recs[0]["trained_on"] == ("average", "bandwagon")
    assert all(len(r["targets"]) == 2 and 0 <= r["auc"] <= 1 for r in recs)
    assert len(Spy.fitted) == 3 * 2 * 2 * 2 and len(Spy.scored) == 3 * 2  # 2 other types x 2 sizes x 2 seeds
    for j, test in enumerate(Spy.scored):
        train_logs = Spy.fitted[8 * (j // 2): 8 * (j // 2 + 1)]
        real_test = set(test.user_ids[~fake_users(test)].tolist())
        for log in train_logs:
            assert not real_test & set(log.user_ids[~fake_users(log)].tolist())
            assert not profiles(test) & profiles(log)
    # the split: half the real users each side
    assert fake_users(Spy.scored[0]).sum() == 3  # 10% of 30 real users
    # without a split the real users are shared, the fakes still are not
    Spy.fitted, Spy.scored = [], []
    leave_one_type_out(small, attacks, Spy, test_users=None, held_out=["average"])
    assert Spy.scored[0].n_users == small.n_users + 3  # 5% of 60
    assert all(not profiles(Spy.scored[0]) & profiles(log) for log in Spy.fitted)


def test_leave_one_type_out_refuses_indistinguishable_types(small):
    # every rated item a target, no filler: a random and an average profile are the same
    n = int((small.item_counts() > 0).sum())
    attacks = {"random": RandomAttack, "average": AverageAttack}
    with pytest.raises(ValueError, match="attacks: 'random' builds fake profiles identical"):
        leave_one_type_out(small, attacks, Spy, fillers=(0,), n_targets=n, test_users=None)


def test_leave_one_type_out_errors(small):
    a = {"random": RandomAttack, "average": AverageAttack}
    with pytest.raises(ValueError, match="train already has"):
        leave_one_type_out(poisoned(small), a, Spy)
    with pytest.raises(ValueError, match="attacks must map at least two"):
        leave_one_type_out(small, {"random": RandomAttack}, Spy)
    with pytest.raises(ValueError, match="held_out must name"):
        leave_one_type_out(small, a, Spy, held_out=["segment"])
    with pytest.raises(ValueError, match="sizes must be a non-empty"):
        leave_one_type_out(small, a, Spy, sizes=())
    with pytest.raises(ValueError, match="test_users must be a fraction"):
        leave_one_type_out(small, a, Spy, test_users=1.0)
    with pytest.raises(ValueError, match="test_seeds"):
        leave_one_type_out(small, a, Spy, test_seeds=(-1,))
    with pytest.raises(ValueError, match="n_targets"):
        leave_one_type_out(small, a, Spy, n_targets=0)


# --------------------------------------------------------------------------- ML-100K


@pytest.fixture(scope="module")
def ml100k() -> Interactions:
    from advrec.data import load

    try:
        return load("ml-100k").interactions
    except Exception as err:  # no cached copy and no network
        pytest.skip(f"ML-100K unavailable: {err}")


@pytest.mark.xfail(strict=False, reason=(
    "measured (split_seed 0, test seed 100): SVM over profile_features trained on random + "
    "bandwagon 5%/5%, tested on average 5%/5% (23 fakes among 472 held-out real users): "
    "precision 1.000, recall 0.565, F1 0.722, AUC 0.978 at threshold 0; other seeds give recall "
    "0.04-0.57 at AUC 0.975-0.992. The ranking is near perfect but the boundary learnt on other "
    "attack types is too strict for the average attack (trained on average itself: P 0.958, "
    "R 1.0, AUC 1.000)"))
def test_ml100k_svm_generalises_to_average_attack(ml100k):
    attacks = {"random": RandomAttack, "bandwagon": BandwagonAttack, "average": AverageAttack}
    (rec,) = leave_one_type_out(ml100k, attacks, lambda: SupervisedDetector("svm"), held_out=["average"],
                                sizes=(0.05,), fillers=(0.05,), seeds=(0, 1), test_seeds=(100,))
    assert rec["trained_on"] == ("random", "bandwagon") and rec["n_fake"] == 23
    assert rec["auc"] > 0.95, rec["auc"]
    assert rec["recall"] >= 0.8 and rec["precision"] >= 0.8, (rec["precision"], rec["recall"])


def test_ml100k_pca_select_users_finds_average_attack(ml100k):
    counts = ml100k.item_counts()
    target = int(np.random.default_rng(0).choice(np.flatnonzero(counts > 0)))
    log = inject(ml100k, AverageAttack(targets=[target], n_fake=0.05, filler=0.05, seed=0)(ml100k))
    y = fake_users(log)
    d = PCASelectUsers(n_suspects=int(y.sum()))
    s = d.score(log)
    m = detection_metrics(s, y, d.default_threshold(s))
    # measured: 46 of the 47 fakes in the top 47, precision = recall = 0.979, AUC 1.000
    assert m["recall"] >= 0.9 and m["precision"] >= 0.9, (m["precision"], m["recall"])
    assert m["auc"] > 0.99


class Fixed:
    """A stand-in base detector: given scores, threshold 0."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float64)
        self.fitted = None

    def fit(self, logs=None):
        self.fitted = logs
        return self

    def score(self, train):
        return self.scores

    def default_threshold(self, scores=None):
        return 0.0


def focus_log() -> Interactions:
    """Hand-worked: 8 users, 5 items, ratings 1-5. Users 0-2 push item 3 (rated 5) and also rate
    the popular item 0 at 5; real users 3-7 rate item 0 at 5 (users 3 and 4 too: the base detector
    wrongly suspects them), and user 5 rates item 3 at 5 without being a suspect."""
    rows = [(0, 3, 5), (0, 0, 5), (0, 1, 3), (1, 3, 5), (1, 0, 5), (1, 2, 3), (2, 3, 5), (2, 0, 5), (2, 4, 2),
            (3, 0, 5), (3, 1, 4), (4, 0, 5), (4, 2, 5), (5, 0, 5), (5, 3, 5), (6, 0, 5), (6, 4, 3), (7, 0, 4),
            (7, 1, 5)]
    u, i, r = (np.array(c) for c in zip(*rows))
    return Interactions(u, i, r.astype(np.float32), None, 8, 5, np.arange(8), np.arange(5))


def test_target_focus_hand_worked():
    """Suspects {0, 1, 2, 3, 4} (base score >= 0). Top (5) ratings: item 0 by users 0-6 (5 of them
    suspects), item 3 by 0, 1, 2, 5 (3 suspects), item 1 by user 7, item 2 by user 4. k_s^2 / k_all:
    item 0 25/7 = 3.57, item 3 9/4 = 2.25, item 2 1/1: the focus is item 0, whose pushers are all
    five suspects (the failure mode: wrongly flagged real users who share a popular favourite).
    With users 3 and 4 rating item 0 at 4 instead, item 0 gives 9/5 = 1.8 < item 3's 2.25: the
    focus is item 3 and only its pushers 0-2 stay flagged."""
    base = [2.0, 1.5, 1.0, 0.5, 0.2, -1.0, -2.0, -3.0]
    tf = TargetFocus(Fixed(base)).fit(["a log"])
    assert tf.detector.fitted == ["a log"]
    log = focus_log()
    s = tf.score(log)
    assert tf.focus_item == 0 and tf.default_threshold(s) == 0.0
    assert (s >= 0).tolist() == [True] * 5 + [False] * 3
    rating = log.rating.copy()
    rating[(log.user == 3) & (log.item == 0)] = 4
    rating[(log.user == 4) & (log.item == 0)] = 4
    log2 = Interactions(log.user, log.item, rating, None, 8, 5, np.arange(8), np.arange(5))
    s2 = tf.score(log2)
    assert tf.focus_item == 3
    assert tf.decide(log2).tolist() == [True, True, True, False, False, False, False, False]
    span = 2.0 - (-3.0)
    np.testing.assert_allclose(s2, [2.0, 1.5, 1.0, 0.5 - span - 1, 0.2 - span - 1, -1.0, -2.0 - span - 1,
                                    -3.0 - span - 1])  # user 5 pushes item 3: its score is kept, below 0


def test_target_focus_without_suspects_and_errors():
    tf = TargetFocus(Fixed([-1.0] * 8))
    with pytest.raises(ValueError, match="scored first"):
        tf.default_threshold()
    s = tf.score(focus_log())
    assert tf.focus_item is None and (s == -1.0).all() and not tf.decide(focus_log()).any()
    with pytest.raises(ValueError, match="fit/score/default_threshold"):
        TargetFocus(object())


def test_target_focus_on_a_log_without_ratings_uses_rated():
    log = focus_log()
    implicit = Interactions(log.user, log.item, None, None, 8, 5, np.arange(8), np.arange(5))
    tf = TargetFocus(Fixed([2.0, 1.5, 1.0, -1, -1, -1, -1, -1]))
    tf.score(implicit)
    assert tf.focus_item == 3      # 3 suspects of 4 raters: 9/4 against item 0's 9/8

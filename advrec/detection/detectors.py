"""Fake-profile detectors: one shape for supervised and unsupervised ones.

Every detector scores every user of an ``Interactions`` log, higher = more suspicious, and
flags the users whose score reaches a threshold:

- ``fit(...)``: learns where the detector learns (a no-op returning ``self`` otherwise);
- ``score(train) -> float64 [n_users]``: every user of the log, fake or not, scored;
- ``default_threshold(scores) -> float``: the threshold ``decide`` uses when given none
  (documented per detector);
- ``decide(train, threshold=None) -> bool [n_users]``: ``score(train) >= threshold``.

Detectors (sources and choices in each class's docstring):

- ``SupervisedDetector``: an SVM (RBF) or a random forest over ``profile_features`` (Burke et
  al. 2006; Williams et al. 2007), trained on labelled poisoned logs.
- ``DegreeSAD``: the same machinery over item-popularity features of a profile (``degree_features``:
  MUD, RUD, QUD; Li & Gao 2016, as implemented in SDLib's ``method/DegreeSAD.py``).
- ``PCASelectUsers``: unsupervised, Mehta & Nejdl 2009: the users that contribute least to the
  top principal components of the user covariance are flagged.
- ``AnyOf``: the union of several detectors' suspects.

scikit-learn is an optional dependency (``pip install "advrec[detect]"``), imported only by the
supervised detectors.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._checks import positive_int, seed_arg
from ..data.interactions import Interactions
from ..data.poison import fake_users
from .features import ProfileFeatures, profile_features

__all__ = ["MODELS", "DEGREE_FEATURES", "SupervisedDetector", "DegreeSAD", "PCASelectUsers", "AnyOf",
           "TargetFocus", "degree_features", "require_sklearn"]

#: the classifiers ``SupervisedDetector`` trains
MODELS = ("svm", "forest")
#: ``degree_features``' columns: mean, range and lower quartile of the profile's item degrees
DEGREE_FEATURES: Tuple[str, ...] = ("MUD", "RUD", "QUD")
_FEATURE_KWARGS = ("k", "min_overlap", "r_max")
_SKLEARN_HINT = 'pip install "advrec[detect]"'


def require_sklearn(what: str) -> Any:
    """The ``sklearn`` module, or an ImportError telling how to install the optional extra.

    The parent package is imported first, so a blocked or missing ``sklearn`` is caught even
    when one of its submodules is already loaded.
    """
    try:
        import sklearn  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        import sklearn.impute  # noqa: F401
        import sklearn.metrics  # noqa: F401
        import sklearn.pipeline  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
        import sklearn.svm  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{what} needs scikit-learn, an optional dependency of advrec: "
                          f"{_SKLEARN_HINT}") from err
    return sklearn


def _check_log(train: Any, name: str = "train") -> Interactions:
    if not isinstance(train, Interactions):
        raise ValueError(f"{name} must be an advrec.data.Interactions, got {type(train).__name__}")
    if len(train) == 0:
        raise ValueError(f"{name} is empty: a detector needs at least one interaction")
    return train


def _threshold(threshold: Any) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, Real):
        raise ValueError(f"threshold must be a real number, got {type(threshold).__name__}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return float(threshold)


class _Detector:
    """``decide`` from ``score`` and ``default_threshold``: flag ``score >= threshold``."""

    def score(self, train: Interactions) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def default_threshold(self, scores: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, train: Interactions, threshold: Optional[float] = None) -> np.ndarray:
        """Bool mask over ``train``'s users: True where ``score >= threshold`` (default: the
        detector's ``default_threshold``). ``threshold`` must be a finite real."""
        t = None if threshold is None else _threshold(threshold)
        scores = self.score(train)
        return scores >= (self.default_threshold(scores) if t is None else t)


# --------------------------------------------------------------------------- degree features


def _distinct_pairs(train: Interactions) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(user, item, rating) with one row per (user, item): the last in log order (the
    ``profile_features`` convention), sorted by user then item."""
    key = train.user * np.int64(train.n_items) + train.item
    last = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]  # sorted by key
    rating = None if train.rating is None else train.rating[last].astype(np.float64)
    return train.user[last], train.item[last], rating


def degree_features(train: Interactions) -> ProfileFeatures:
    """Item-popularity features of every profile (DegreeSAD, Li & Gao 2016; SDLib's
    ``method/DegreeSAD.py``), from the degrees ``NR_i`` (distinct users who rated item ``i``,
    over the whole log given, fakes included):

    - MUD: the mean ``NR_i`` over the user's items (fakes' fillers are drawn uniformly, so they
      rate far less popular items than real users do). SDLib's code leaves the sum (its division
      by ``n_u`` is computed and discarded); the mean keeps MUD apart from the profile length;
    - RUD: ``max NR_i - min NR_i`` over the user's items;
    - QUD: the lower quartile, the ``floor((n_u - 1) / 4)``-th smallest ``NR_i`` (SDLib's rule).

    Users without a rating get NaN. Works on implicit logs (degrees need no ratings).
    """
    train = _check_log(train)
    user, item, _ = _distinct_pairs(train)
    degree = np.bincount(item, minlength=train.n_items).astype(np.float64)
    d = degree[item]
    order = np.lexsort((d, user))  # by user, then degree ascending
    d = d[order]
    n = np.bincount(user, minlength=train.n_users)
    has = n > 0
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    out = np.full((train.n_users, len(DEGREE_FEATURES)), np.nan)
    total = np.bincount(user, weights=degree[item], minlength=train.n_users)
    out[has, 0] = total[has] / n[has]
    out[has, 1] = d[start[has] + n[has] - 1] - d[start[has]]
    out[has, 2] = d[start[has] + (n[has] - 1) // 4]
    return ProfileFeatures(names=DEGREE_FEATURES, matrix=out,
                           users=np.arange(train.n_users, dtype=np.int64))


# --------------------------------------------------------------------------- supervised


class SupervisedDetector(_Detector):
    """A classifier over profile features, trained on labelled poisoned logs.

    ``model``: ``"svm"``, a ``Pipeline`` of ``SimpleImputer(strategy="median")`` (features are
    NaN where undefined), ``StandardScaler`` and ``SVC(kernel="rbf", class_weight="balanced")``
    (fakes are a few percent of a log), scored by ``decision_function``, default threshold 0 (the
    SVM's own boundary); or ``"forest"``, the imputer then ``RandomForestClassifier(
    n_estimators=200, class_weight="balanced", random_state=seed)``, scored by
    ``predict_proba[:, 1]``, default threshold 0.5 (ties flag).

    ``features``: the ``profile_features`` names (default: every feature the first training log
    supports; the columns are fixed at ``fit`` and asked for by name when scoring).
    ``feature_kwargs``: ``k``, ``min_overlap``, ``r_max`` for ``profile_features``.
    Features are computed on each log as a whole, fakes included, as a deployed detector would
    see it. Needs scikit-learn (``pip install "advrec[detect]"``).
    """

    def __init__(self, model: str = "svm", features: Optional[Sequence[str]] = None, seed: int = 0,
                 **feature_kwargs: Any) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        unknown = sorted(set(feature_kwargs) - set(_FEATURE_KWARGS))
        if unknown:
            raise ValueError(f"feature_kwargs: unknown argument(s) {unknown}; profile_features "
                             f"takes {list(_FEATURE_KWARGS)}")
        require_sklearn(type(self).__name__)
        self.model = model
        self.features = None if features is None else tuple(features)
        self.seed = seed_arg(seed)
        self.feature_kwargs: Dict[str, Any] = dict(feature_kwargs)
        self.names_: Optional[Tuple[str, ...]] = None
        self.pipeline_: Any = None

    def __repr__(self) -> str:
        kw = "".join(f", {k}={v!r}" for k, v in self.feature_kwargs.items())
        return f"{type(self).__name__}(model={self.model!r}, features={self.features!r}, seed={self.seed}{kw})"

    # what subclasses change: the feature function
    def _features(self, train: Interactions, names: Optional[Sequence[str]]) -> ProfileFeatures:
        return profile_features(train, names, **self.feature_kwargs)

    def _pipeline(self) -> Any:
        require_sklearn(type(self).__name__)
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        impute = ("impute", SimpleImputer(strategy="median"))
        if self.model == "svm":
            return Pipeline([impute, ("scale", StandardScaler()),
                             ("svm", SVC(kernel="rbf", class_weight="balanced"))])
        return Pipeline([impute, ("forest", RandomForestClassifier(
            n_estimators=200, class_weight="balanced", random_state=self.seed, n_jobs=1))])

    def fit(self, logs: Sequence[Interactions]) -> "SupervisedDetector":
        """Train on ``logs``, poisoned logs whose fake users are marked (labels from
        ``advrec.data.fake_users``). Each log needs at least one fake and one real user with a
        profile; users without any rating are left out of training (nothing to learn from)."""
        if isinstance(logs, Interactions) or not isinstance(logs, Sequence):
            raise ValueError(f"logs must be a list of Interactions, got {type(logs).__name__}")
        if len(logs) == 0:
            raise ValueError("logs is empty: give at least one labelled poisoned log")
        xs: List[np.ndarray] = []
        ys: List[np.ndarray] = []
        names = self.features
        for j, log in enumerate(logs):
            _check_log(log, f"logs[{j}]")
            y = fake_users(log)
            if not y.any():
                raise ValueError(f"logs[{j}] has no fake users (advrec.data.fake_users marks "
                                 "none): a supervised detector needs labelled attack profiles")
            if y.all():
                raise ValueError(f"logs[{j}] has no real users: inject the fakes into a real log")
            pf = self._features(log, names)
            names = pf.names
            rated = np.bincount(log.user, minlength=log.n_users) > 0
            xs.append(pf.matrix[rated])
            ys.append(y[rated])
        pipeline = self._pipeline()
        pipeline.fit(np.vstack(xs), np.concatenate(ys).astype(np.int64))
        self.names_, self.pipeline_ = names, pipeline
        return self

    def score(self, train: Interactions) -> np.ndarray:
        """float64 [n_users]: the SVM's decision function or the forest's fake probability."""
        if self.pipeline_ is None:
            raise ValueError(f"{type(self).__name__}: call fit(logs) before score/decide")
        x = self._features(_check_log(train), self.names_).matrix
        if self.model == "svm":
            return np.asarray(self.pipeline_.decision_function(x), dtype=np.float64)
        return np.asarray(self.pipeline_.predict_proba(x)[:, 1], dtype=np.float64)

    def default_threshold(self, scores: Optional[np.ndarray] = None) -> float:
        """0 for the SVM (its decision boundary), 0.5 for the forest (majority of trees)."""
        return 0.0 if self.model == "svm" else 0.5


class DegreeSAD(SupervisedDetector):
    """``SupervisedDetector`` over ``degree_features`` (MUD, RUD, QUD): how popular the items a
    profile rates are. Source: Li & Gao, "Shilling attack detection in recommender systems via
    selecting patterns analysis", IEICE Trans. Inf. & Syst. 2016, as implemented in SDLib
    (github.com/Coder-Yu/SDLib, ``method/DegreeSAD.py``), which trains a decision tree; here the
    ``"forest"`` of such trees by default, or ``"svm"``. Same thresholds as ``SupervisedDetector``.
    """

    def __init__(self, model: str = "forest", seed: int = 0) -> None:
        super().__init__(model=model, features=DEGREE_FEATURES, seed=seed)

    def __repr__(self) -> str:
        return f"DegreeSAD(model={self.model!r}, seed={self.seed})"

    def _features(self, train: Interactions, names: Optional[Sequence[str]]) -> ProfileFeatures:
        return degree_features(train)


# --------------------------------------------------------------------------- unsupervised

#: below this many users the user covariance is formed and eigendecomposed densely
_DENSE_USERS = 500


def _count_or_fraction(x: Any, name: str) -> Union[int, float]:
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be an int >= 1 or a fraction in (0, 1), got {x!r}")
    if isinstance(x, (int, np.integer)):
        return positive_int(x, name)
    if isinstance(x, Real) and 0.0 < float(x) < 1.0:
        return float(x)
    raise ValueError(f"{name} must be an int >= 1 or a fraction in (0, 1), got {x!r}")


class PCASelectUsers(_Detector):
    """PCA-SelectUsers (Mehta & Nejdl, "Unsupervised strategies for shilling detection and
    robust collaborative filtering", UMUAI 19(1-2), 2009; SDLib's ``method/PCASelectUsers.py``
    implements a variant), unsupervised.

    Algorithm (the paper's): the user x item matrix ``X``, missing entries 0, is z-scored per
    user over all items (each row centred and scaled to unit variance, the unrated items
    included, as MATLAB's ``zscore`` of the zero-filled matrix does); the users are the
    variables, so their covariance ``Z Zᵀ`` is eigendecomposed, and a user's contribution is the
    sum of its squared loadings on the top ``n_components`` eigenvectors. Shilling profiles carry
    little of the structure that real users share (their filler is spread over the catalogue,
    real users pile onto popular items), so, as in variable selection by PCA, they are the users
    of SMALLEST contribution: the paper outputs the ``r`` users of smallest distance, SDLib sorts
    ascending and flags the first. ``score`` is minus the contribution, in ``[-1, 0]`` (a row of an
    orthonormal basis has norm <= 1): higher = more suspicious. Attacks whose profiles share
    that structure are missed: of a 5% bandwagon attack (filler 5%) the top 47 hold 8 fakes.

    Z-scoring over the rated items only (missing = the user's mean after scaling) ranks far worse
    on ML-100K: of a 5% average attack (47 fakes, filler 5%) the top 47 hold 3 fakes against 46
    here. On implicit logs ``X`` is binary and the same procedure applies.

    ``n_suspects``: how many users ``decide`` flags by default, the assumed attack size: an int
    >= 1, or a fraction of the log's users (default 0.05, floored, at least 1).
    ``default_threshold(scores)`` is the ``n_suspects``-th largest score (ties at it flag too).
    A user without ratings scores -1 (nothing to flag). Repeated (user, item) rows count once,
    the last rating. Needs only numpy/scipy; ``fit`` is a no-op.
    """

    def __init__(self, n_suspects: Union[None, int, float] = None, n_components: int = 3) -> None:
        self.n_suspects = 0.05 if n_suspects is None else _count_or_fraction(n_suspects, "n_suspects")
        self.n_components = positive_int(n_components, "n_components")

    def __repr__(self) -> str:
        return f"PCASelectUsers(n_suspects={self.n_suspects!r}, n_components={self.n_components})"

    def fit(self, logs: Any = None) -> "PCASelectUsers":
        """Nothing to learn: returns ``self`` (the one-shape protocol)."""
        return self

    def contributions(self, train: Interactions) -> np.ndarray:
        """float64 [n_users]: each user's sum of squared loadings on the top ``n_components``
        eigenvectors of the user covariance (NaN for users without ratings)."""
        import scipy.sparse as sp

        _check_log(train)
        k = self.n_components
        n_users, n_items = train.n_users, train.n_items
        if k >= min(n_users, n_items):
            raise ValueError(f"n_components must be below min(n_users, n_items) = "
                             f"{min(n_users, n_items)}, got {k}")
        user, item, r = _distinct_pairs(train)
        x = np.ones(len(user)) if r is None else r
        X = sp.csr_matrix((x, (user, item)), shape=(n_users, n_items))
        mean = np.bincount(user, weights=x, minlength=n_users) / n_items
        var = np.bincount(user, weights=x * x, minlength=n_users) / n_items - mean ** 2
        std = np.sqrt(np.maximum(var, 0.0))
        inv = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)  # zero rows stay zero
        if n_users <= _DENSE_USERS:  # Z Zᵀ = S⁻¹ (X Xᵀ - n_items m mᵀ) S⁻¹, formed densely
            import scipy.linalg

            gram = (X @ X.T).toarray() - n_items * np.outer(mean, mean)
            gram *= np.outer(inv, inv)
            _, vecs = scipy.linalg.eigh(gram, subset_by_index=[n_users - k, n_users - 1])
        else:  # the top left singular vectors of Z, never formed: Z = S⁻¹ (X - m 1ᵀ)
            from scipy.sparse.linalg import LinearOperator, svds

            Xt = X.T.tocsr()
            op = LinearOperator(
                (n_users, n_items), dtype=np.float64,
                matvec=lambda v: inv * (X @ np.ravel(v) - mean * np.sum(v)),
                rmatvec=lambda u: Xt @ (inv * np.ravel(u)) - np.dot(mean, inv * np.ravel(u)))
            v0 = np.full(min(n_users, n_items), 1.0 / math.sqrt(min(n_users, n_items)))
            vecs, _, _ = svds(op, k=k, v0=v0)
        out = np.sum(vecs * vecs, axis=1)
        out[np.bincount(user, minlength=n_users) == 0] = np.nan
        return out

    def score(self, train: Interactions) -> np.ndarray:
        """float64 [n_users]: minus the contribution (``-1`` for users without ratings)."""
        c = self.contributions(train)
        return np.where(np.isnan(c), -1.0, -c)

    def suspects(self, n_users: int) -> int:
        """The number of users flagged by default in a log of ``n_users`` users."""
        if isinstance(self.n_suspects, int):
            return min(self.n_suspects, n_users)
        return max(1, min(n_users, int(math.floor(self.n_suspects * n_users + 1e-9))))

    def default_threshold(self, scores: np.ndarray) -> float:
        """The ``n_suspects``-th largest of ``scores``: ``decide`` flags the top ``n_suspects``."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or scores.size == 0:
            raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
        k = self.suspects(scores.size)
        return float(np.partition(scores, scores.size - k)[scores.size - k])


class AnyOf(_Detector):
    """Flags a user when any of ``detectors`` flags it at its own default threshold: the union
    of their suspects, for detectors that catch different attacks (on ML-100K DegreeSAD's item
    degrees catch random and average profiles, which rate obscure filler, while the profile
    features' SVM catches bandwagon profiles, which rate the most popular items;
    ``docs/detection.md``).

    ``score(train)`` is ``max_d (score_d - threshold_d)``, each detector's score shifted by its
    default threshold on the same log, so ``default_threshold`` is 0 and ``decide`` is exactly
    the union. ``fit(logs)`` fits every member on the same logs (the unsupervised ones ignore
    them). The shifted scores of different detectors are on different scales: the ROC of
    ``score`` ranks by the largest margin, not by a calibrated probability.
    """

    def __init__(self, detectors: Sequence[Any]) -> None:
        if isinstance(detectors, (str, bytes)) or not isinstance(detectors, Sequence) or len(detectors) < 2:
            raise ValueError(f"detectors must be a list of at least two detectors, got {detectors!r}")
        for i, d in enumerate(detectors):
            if not all(callable(getattr(d, m, None)) for m in ("fit", "score", "default_threshold")):
                raise ValueError(f"detectors[{i}] has no fit/score/default_threshold: got {type(d).__name__}")
        self.detectors = list(detectors)

    def __repr__(self) -> str:
        return f"AnyOf([{', '.join(repr(d) for d in self.detectors)}])"

    def fit(self, logs: Any = None) -> "AnyOf":
        for d in self.detectors:
            d.fit(logs)
        return self

    def score(self, train: Interactions) -> np.ndarray:
        """float64 [n_users]: the largest of the members' scores minus their default thresholds."""
        shifted = []
        for d in self.detectors:
            s = np.asarray(d.score(train), dtype=np.float64)
            shifted.append(s - float(d.default_threshold(s)))
        return np.max(np.vstack(shifted), axis=0)

    def default_threshold(self, scores: Optional[np.ndarray] = None) -> float:
        """0: a user is flagged when some member's score reaches that member's threshold."""
        return 0.0


class TargetFocus(_Detector):
    """A detector's suspects, kept only where they push the item its suspects push most.

    Every profile of a push attack rates its target at the top rating, and the few real users a
    detector wrongly flags almost never rate that (obscure) item at all. So, on each log: the
    base detector flags its suspects (at its default threshold); the *focus item* is the item
    the suspects rate at the top far more often than its base rate predicts: the largest
    ``(k_s - n_s p) / sqrt(n_s p (1 - p))``, with ``k_s`` of the ``n_s`` suspects rating it at
    the top and ``p`` the share of all users who do (ties to the lower item id; on a log without
    ratings, "rated" replaces "rated at the top"); the final suspects are the base suspects who
    rated the focus item at the top. A plain difference of shares picked a popular item that
    wrongly flagged real users also rate highly over the target; the standardised excess does
    not. No label is read: the refinement is the target-focus idea
    of FMTD / TMF (Williams et al. 2007) applied to the detector's own suspects.

    ``score(train)``: the base score, lowered by ``span + 1`` (``span`` = the base scores' range)
    for every user who is not a focus-item pusher, so the pushers rank first and
    ``default_threshold`` (the base detector's) flags exactly the final suspects. What it
    cannot catch: a push on several targets where profiles split them (one focus item), a nuke
    attack (the target is rated at the bottom), and fakes the base detector misses.
    """

    def __init__(self, detector: Any) -> None:
        if not all(callable(getattr(detector, m, None)) for m in ("fit", "score", "default_threshold")):
            raise ValueError(f"detector has no fit/score/default_threshold: got {type(detector).__name__}")
        self.detector = detector
        self.focus_item: Optional[int] = None  # the last scored log's focus item (None: no suspect)
        self._threshold: Optional[float] = None  # the base threshold on the last scored log

    def __repr__(self) -> str:
        return f"TargetFocus({self.detector!r})"

    def fit(self, logs: Any = None) -> "TargetFocus":
        self.detector.fit(logs)
        return self

    def _pushers(self, train: Interactions) -> np.ndarray:
        """Bool over the log's rows: rated at the log's top rating (every row without ratings)."""
        if train.rating is None:
            return np.ones(len(train), dtype=bool)
        rating = np.asarray(train.rating, dtype=np.float64)
        return rating >= rating.max() if rating.size else np.zeros(0, dtype=bool)

    def score(self, train: Interactions) -> np.ndarray:
        """float64 [n_users]: the base score, lowered below every focus-item pusher's for the rest."""
        train = _check_log(train)
        base = np.asarray(self.detector.score(train), dtype=np.float64)
        self._threshold = float(self.detector.default_threshold(base))
        suspects = base >= self._threshold
        top = self._pushers(train)
        users, items = np.asarray(train.user)[top], np.asarray(train.item)[top]
        pairs = np.unique(users * np.int64(train.n_items) + items)  # a user counts once per item
        users, items = pairs // train.n_items, pairs % train.n_items
        n_s = int(suspects.sum())
        if n_s == 0:
            self.focus_item = None
            return base
        from_suspects = suspects[users]
        k_s = np.bincount(items[from_suspects], minlength=train.n_items).astype(np.float64)
        k_all = np.bincount(items, minlength=train.n_items).astype(np.float64)
        # how many suspects push it, times the share of its pushers that are suspects
        self.focus_item = int(np.argmax(np.where(k_all > 0, k_s * k_s / np.maximum(k_all, 1.0), -np.inf)))
        pushes = np.zeros(train.n_users, dtype=bool)
        pushes[users[items == self.focus_item]] = True
        span = float(base.max() - base.min()) if base.size else 0.0
        return np.where(pushes, base, base - (span + 1.0))

    def default_threshold(self, scores: Optional[np.ndarray] = None) -> float:
        """The base detector's default threshold on the last log ``score`` was given (the base
        threshold may depend on the base scores, e.g. PCA-SelectUsers' fraction)."""
        if self._threshold is None:
            raise ValueError("TargetFocus.default_threshold needs a log scored first (call score(train))")
        return self._threshold

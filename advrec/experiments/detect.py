"""The detection experiment of issue 17: fake-profile detectors under leave-one-attack-type-out,
and the defences they enable (detector + retrain, trimmed ALS) against the poisoning experiment's
attacks, on ML-100K explicit ratings or your own log.

Per seed (the seed draws the split, the targets, the fake profiles and the detectors' seeds):

* a random 80/20 split of the ratings (``ratio_split(order="random")``, per user);
* **detection** (``advrec.detection.leave_one_type_out`` on the training log): for each detector
  (``"svm"`` / ``"forest"``: ``SupervisedDetector`` over the profile features; ``"degreesad"``:
  ``DegreeSAD``, a forest over item-degree features; ``"degreesad-svm"``: the same with the SVM;
  ``"svm-or-degreesad"``: ``AnyOf`` the two SVMs, the union of their suspects;
  ``"svm-or-degreesad-focus"``: ``TargetFocus`` of that union, its suspects kept where they push
  the item the suspects push most; ``"forest-or-degreesad-focus"``: the same over the forest (the
  profile-feature detector with the best held-out bandwagon recall) and DegreeSAD's SVM;
  ``"pca"``: ``PCASelectUsers``, unsupervised, flags the 5% of users contributing least to the top principal components) and each held-out
  hand-crafted attack type: the detector is trained on poisoned logs of the OTHER types (every
  size x filler of the grid, training seeds ``1000 seed + 1``, ``1000 seed + 2``), built on one
  half of the real users, and scored on poisoned logs of the held-out type (every size x filler,
  test seed ``1000 seed``) built on the other half: no scored user, real or fake, was seen in
  training. Each log pushes ``n_targets`` targets (default 1) drawn among the rated items. Sizes
  are fractions of the part's real users, fillers fractions of the items. Recorded per cell:
  precision, recall, F1 at the detector's own threshold (SVM 0, forest 0.5, PCA its top 5%), ROC
  AUC, and at the table size and filler the ROC curve's points;
* **defences**: ``defence_targets`` targets (default 5) drawn from the least rated fifth of the
  rated training items (``poison.draw_targets``), filler the real users' mean profile length
  (``poison.mean_profile_length``), and for each attack and size the poisoned log, on which
  ``ExplicitMF`` (ALS, default settings, the run's seed) is fitted four ways: on the clean log
  (once per seed), on the poisoned log (no defence), after removing the users a detector flags
  (``filter_users``, then refitted from scratch), and by trimmed ALS (``TrimmedExplicitMF``,
  ``trim`` of the rows with the largest residual dropped per sweep). A supervised detector here
  is trained on poisoned logs of the OTHER attack types only, built on the same training log with
  other targets and attack seeds (``1000 seed + 500 + i`` for the i-th of ``train_sizes``) and the
  same filler: it never saw the profiles it removes (checked, not assumed). The unsupervised
  detector is applied as is. Recorded per fit: the targets' HR@50 over the real users who have
  not rated them (per target), the real users' test nDCG@10 and RMSE, the users (and rows)
  removed, real and fake, and the seconds;
* optionally (``unseen_attacks``, e.g. ``("pga",)``: about 20 s per seed) an optimised attack
  (``poison.fake_profiles``: white box on ExplicitMF with the run's seed) at the table size and
  the mean-length filler, scored by each defence detector, the supervised ones trained on every
  hand-crafted type of the run: how detection fares on an attack whose filler is optimised.

``detect_report`` aggregates the seeds.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from .._checks import SEED_MAX, seed_arg
from .. import data as D
from ..data.datasets import FORMATS
from ..data.interactions import Interactions
from ..data.poison import fake_users
from ..detection import AnyOf, DegreeSAD, PCASelectUsers, SupervisedDetector, TargetFocus, detection_metrics, filter_users, \
    leave_one_type_out
from ..evaluation.targets import target_exposure
from ..models import ExplicitMF
from ..training import TrimmedExplicitMF
from . import poison as P
from .inputs import check_dataset
from .poison import HAND_CRAFTED, draw_targets, explicit_interactions, mean_profile_length
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import config_from_dict, number, numbers

#: detector name -> a fresh detector for a seed
DETECTORS: Dict[str, Callable[[int], Any]] = {
    "svm": lambda seed: SupervisedDetector("svm", seed=seed),
    "forest": lambda seed: SupervisedDetector("forest", seed=seed),
    "degreesad": lambda seed: DegreeSAD(seed=seed),
    "degreesad-svm": lambda seed: DegreeSAD("svm", seed=seed),
    # the union of the two SVMs' suspects: degrees catch random/average, profile features bandwagon
    "svm-or-degreesad": lambda seed: AnyOf([SupervisedDetector("svm", seed=seed), DegreeSAD("svm", seed=seed)]),
    "svm-or-degreesad-focus": lambda seed: TargetFocus(AnyOf([SupervisedDetector("svm", seed=seed),
                                                              DegreeSAD("svm", seed=seed)])),
    "forest-or-degreesad-focus": lambda seed: TargetFocus(AnyOf([SupervisedDetector("forest", seed=seed),
                                                                 DegreeSAD("svm", seed=seed)])),
    "pca": lambda seed: PCASelectUsers(),
}
#: the detectors trained on labelled attack profiles (the others need no training)
SUPERVISED = ("svm", "forest", "degreesad", "degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus",
              "forest-or-degreesad-focus")
#: the training-time defence (no detector): trimmed ALS
TRIMMED = "trimmed"
#: "no defence": ExplicitMF refitted on the poisoned log as is
NO_DEFENCE = "none"
#: what a config's ``defences`` may name: a detector (remove the flagged users, refit) or trimmed ALS
DEFENCES = tuple(DETECTORS) + (TRIMMED,)
#: the optimised attacks a config may add as unseen (explicit ones, crafted on ExplicitMF)
UNSEEN_ATTACKS = ("pga", "sgld")
#: HR@k of the targets that the defence part measures
K = 50
#: derived seeds: the detection grid's training seeds are ``SEED_STRIDE * seed + 1 ...``, its test
#: seed ``SEED_STRIDE * seed``, the defence detectors' training logs ``SEED_STRIDE * seed + 500 + i``
SEED_STRIDE = 1000
DEFENCE_SEED_OFFSET = 500
#: the largest run seed whose derived seeds stay valid seeds
MAX_SEED = (SEED_MAX - SEED_STRIDE + 1) // SEED_STRIDE
#: the table's size and filler unless the config names them: the largest grid value up to this
TABLE_MAX = 0.05


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(value: Any, known: Tuple[str, ...], field_name: str, allow_empty: bool = False) -> None:
    names = tuple(value) if isinstance(value, (tuple, list)) else None
    if names is None or (not names and not allow_empty) or any(n not in known for n in names) \
            or len(set(names)) != len(names):
        raise ValueError(f"{field_name} must name distinct entries of {known}, got {value!r}")


def _fractions(value: Any, field_name: str, what: str) -> Tuple[float, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else ()
    if not values or any(not _finite(s) or not 0 < s < 1 for s in values) or len(set(values)) != len(values):
        raise ValueError(f"{field_name} must be distinct fractions of {what} in (0, 1), got {value!r}")
    return values


def _positive_int(value: Any, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field_name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class DetectConfig:
    """Settings of the experiment (issue 17's where it gives them).

    ``sizes``: attack sizes (fractions of the real users) of the detection grid AND of the defence
    part; ``fillers``: the detection grid's fillers (fractions of the items; the defence part uses
    the real users' mean profile length); ``table_size`` / ``table_filler`` None: the largest grid
    value <= 5% (the smallest when none is), where the detection table, the ROC curves and the
    unseen attacks are read. ``n_targets``: targets per detection log; ``defence_targets``: targets
    of the defence part, from the least rated ``unpopular_share`` of the rated items.
    ``train_sizes``: the sizes of the poisoned logs a supervised defence detector is trained on.
    ``test_users``: the share of real users the detection grid scores (the rest train)."""

    dataset: str = "ml-100k"
    data_path: Optional[str] = None
    data_format: Optional[str] = None
    seeds: Tuple[int, ...] = (0, 1, 2)
    detectors: Tuple[str, ...] = tuple(DETECTORS)
    attacks: Tuple[str, ...] = tuple(HAND_CRAFTED)
    sizes: Tuple[float, ...] = (0.01, 0.03, 0.05, 0.10)
    fillers: Tuple[float, ...] = (0.01, 0.03, 0.05)
    n_train_seeds: int = 2
    n_targets: int = 1
    test_users: float = 0.5
    table_size: Optional[float] = None
    table_filler: Optional[float] = None
    defences: Tuple[str, ...] = ("svm", "degreesad-svm", "svm-or-degreesad", "svm-or-degreesad-focus",
                                 "forest-or-degreesad-focus", "pca", TRIMMED)
    defence_targets: int = 5
    unpopular_share: float = 0.2
    train_sizes: Tuple[float, ...] = (0.03, 0.05, 0.10)
    trim: float = 0.05
    unseen_attacks: Tuple[str, ...] = ()
    test_share: float = 0.2
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "DetectConfig":
        """One seed, one size (5%) and filler (5%), the SVM and PCA detectors: well under a minute."""
        base: Dict[str, Any] = dict(seeds=(0,), sizes=(0.05,), fillers=(0.05,), detectors=("svm", "pca"))
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check_dataset(self.dataset, self.data_path)
        if self.data_path is not None and (not isinstance(self.data_path, str) or not self.data_path):
            raise ValueError(f"data_path must be a path or None, got {self.data_path!r}")
        if self.data_format is not None and self.data_format not in FORMATS:
            raise ValueError(f"data_format must be one of {FORMATS} or None, got {self.data_format!r}")
        seeds = self.seeds if isinstance(self.seeds, (tuple, list)) else ()
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty sequence of distinct ints, got {self.seeds!r}")
        for s in seeds:
            seed_arg(s, "seeds entries")
            if s > MAX_SEED:
                raise ValueError(f"seeds entries must be at most {MAX_SEED} (the derived seeds "
                                 f"{SEED_STRIDE} * seed + k must stay below {SEED_MAX + 1}), got {s}")
        _names(self.detectors, tuple(DETECTORS), "detectors")
        _names(self.attacks, tuple(HAND_CRAFTED), "attacks")
        if len(self.attacks) < 2:
            raise ValueError(f"attacks must name at least two hand-crafted attacks (one held out, the others "
                             f"to train on), got {self.attacks!r}")
        sizes = _fractions(self.sizes, "sizes", "the real users")
        fillers = _fractions(self.fillers, "fillers", "the items")
        if isinstance(self.n_train_seeds, bool) or not isinstance(self.n_train_seeds, int) \
                or not 1 <= self.n_train_seeds < DEFENCE_SEED_OFFSET:
            raise ValueError(f"n_train_seeds must be an int in [1, {DEFENCE_SEED_OFFSET - 1}], "
                             f"got {self.n_train_seeds!r}")
        _positive_int(self.n_targets, "n_targets")
        if not _finite(self.test_users) or not 0 < self.test_users < 1:
            raise ValueError(f"test_users must be in (0, 1), got {self.test_users!r}")
        if self.table_size is not None and self.table_size not in sizes:
            raise ValueError(f"table_size must be one of sizes {sizes} or None, got {self.table_size!r}")
        if self.table_filler is not None and self.table_filler not in fillers:
            raise ValueError(f"table_filler must be one of fillers {fillers} or None, got {self.table_filler!r}")
        _names(self.defences, DEFENCES, "defences", allow_empty=True)
        _positive_int(self.defence_targets, "defence_targets")
        if not _finite(self.unpopular_share) or not 0 < self.unpopular_share <= 1:
            raise ValueError(f"unpopular_share must be in (0, 1], got {self.unpopular_share!r}")
        train_sizes = _fractions(self.train_sizes, "train_sizes", "the real users")
        if len(train_sizes) >= SEED_STRIDE - DEFENCE_SEED_OFFSET:
            raise ValueError(f"train_sizes: at most {SEED_STRIDE - DEFENCE_SEED_OFFSET - 1} sizes, "
                             f"got {len(train_sizes)}")
        if not _finite(self.trim) or not 0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim!r}")
        _names(self.unseen_attacks, UNSEEN_ATTACKS, "unseen_attacks", allow_empty=True)
        if not _finite(self.test_share) or not 0 < self.test_share < 1:
            raise ValueError(f"test_share must be in (0, 1), got {self.test_share!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"progress must be True, False or None, got {self.progress!r}")


def _table_value(values: Sequence[float], chosen: Optional[float]) -> float:
    if chosen is not None:
        return float(chosen)
    ordered = sorted(float(v) for v in values)
    small = [v for v in ordered if v <= TABLE_MAX + 1e-12]
    return small[-1] if small else ordered[0]


def table_size(config: DetectConfig) -> float:
    """The detection table's size: ``config.table_size``, else the largest size <= 5%, else the smallest."""
    return _table_value(config.sizes, config.table_size)


def table_filler(config: DetectConfig) -> float:
    """The detection table's filler: ``config.table_filler``, else the largest filler <= 5%, else the smallest."""
    return _table_value(config.fillers, config.table_filler)


def grid_train_seeds(config: DetectConfig, seed: int) -> Tuple[int, ...]:
    """The detection grid's training seeds for run seed ``seed``."""
    return tuple(SEED_STRIDE * seed + 1 + k for k in range(config.n_train_seeds))


def grid_test_seeds(seed: int) -> Tuple[int, ...]:
    """The detection grid's test seed for run seed ``seed``."""
    return (SEED_STRIDE * seed,)


def defence_train_seed(seed: int, i: int) -> int:
    """The target and attack seed of a defence detector's training log at the ``i``-th training size."""
    return SEED_STRIDE * seed + DEFENCE_SEED_OFFSET + i


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class DetectionCell:
    """One held-out attack at one size and filler, one test seed: what ``leave_one_type_out``
    measured (the detector trained on ``trained_on``). ``roc_fpr`` / ``roc_tpr``: the ROC curve's
    points at the table size and filler (empty elsewhere, to keep the JSON small)."""

    held_out: str
    trained_on: List[str]
    size: float
    filler: float
    seed: int
    targets: List[int]
    n_users: int
    n_fake: int
    n_flagged: int
    threshold: float
    precision: float
    recall: float
    f1: float
    auc: float
    roc_fpr: List[float]
    roc_tpr: List[float]

    def to_dict(self) -> Dict[str, Any]:
        return {"held_out": self.held_out, "trained_on": list(self.trained_on), "size": self.size,
                "filler": self.filler, "seed": self.seed, "targets": list(self.targets), "n_users": self.n_users,
                "n_fake": self.n_fake, "n_flagged": self.n_flagged, "threshold": self.threshold,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "auc": self.auc,
                "roc_fpr": list(self.roc_fpr), "roc_tpr": list(self.roc_tpr)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DetectionCell":
        return cls(d["held_out"], list(d["trained_on"]), d["size"], d["filler"], d["seed"], list(d["targets"]),
                   d["n_users"], d["n_fake"], d["n_flagged"], d["threshold"], d["precision"], d["recall"], d["f1"],
                   d["auc"], list(d["roc_fpr"]), list(d["roc_tpr"]))


@dataclass(frozen=True)
class DetectorRun:
    """One detector's leave-one-type-out run on one seed: its settings, the seconds the whole
    grid took (building the logs, training, scoring), and every cell in run order."""

    settings: str
    seconds: float
    cells: List[DetectionCell]

    def cell(self, held_out: str, size: float, filler: float) -> DetectionCell:
        for c in self.cells:
            if c.held_out == held_out and c.size == size and c.filler == filler:
                return c
        raise KeyError(f"no detection cell for {held_out!r} at size {size!r}, filler {filler!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"settings": self.settings, "seconds": self.seconds, "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DetectorRun":
        return cls(d["settings"], d["seconds"], [DetectionCell.from_dict(c) for c in d["cells"]])


@dataclass(frozen=True)
class FitRecord:
    """One ExplicitMF fit of the defence part: the targets' HR@50 (one value per target), the
    real users' test nDCG@10 and RMSE, the seconds (a detector defence: scoring, filtering and
    the refit; its training is in ``DefenceDetector``), and what was dropped: the users removed
    (real, fake; a detector defence) and the rows removed (a detector defence) or trimmed in the
    last sweep (trimmed ALS), real and fake."""

    hr50: List[float]
    ndcg: float
    rmse: float
    seconds: float
    removed_real: int = 0
    removed_fake: int = 0
    rows_real: int = 0
    rows_fake: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {"hr50": list(self.hr50), "ndcg": self.ndcg, "rmse": self.rmse, "seconds": self.seconds,
                "removed_real": self.removed_real, "removed_fake": self.removed_fake, "rows_real": self.rows_real,
                "rows_fake": self.rows_fake}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FitRecord":
        return cls(list(d["hr50"]), d["ndcg"], d["rmse"], d["seconds"], d["removed_real"], d["removed_fake"],
                   d["rows_real"], d["rows_fake"])


@dataclass(frozen=True)
class DefenceCell:
    """One attack at one size: the fake users injected and each fit on the poisoned log
    (``fits[NO_DEFENCE]``, then one per defence of the config)."""

    attack: str
    size: float
    n_fake: int
    fits: Dict[str, FitRecord]

    def to_dict(self) -> Dict[str, Any]:
        return {"attack": self.attack, "size": self.size, "n_fake": self.n_fake,
                "fits": {k: f.to_dict() for k, f in self.fits.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DefenceCell":
        return cls(d["attack"], d["size"], d["n_fake"], {k: FitRecord.from_dict(f) for k, f in d["fits"].items()})


@dataclass(frozen=True)
class DefenceDetector:
    """A detector as the defence part used it against ``against`` (an attack of the run, or an
    unseen one): the attack types it was trained on (empty: unsupervised, no training), the
    training logs' sizes, filler, seeds and targets, and the training seconds."""

    detector: str
    against: str
    trained_on: List[str]
    sizes: List[float]
    filler: int
    seeds: List[int]
    targets: List[List[int]]
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {"detector": self.detector, "against": self.against, "trained_on": list(self.trained_on),
                "sizes": list(self.sizes), "filler": self.filler, "seeds": list(self.seeds),
                "targets": [list(t) for t in self.targets], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DefenceDetector":
        return cls(d["detector"], d["against"], list(d["trained_on"]), list(d["sizes"]), d["filler"],
                   list(d["seeds"]), [list(t) for t in d["targets"]], d["seconds"])


@dataclass(frozen=True)
class DefenceRecord:
    """One seed's defence part: the targets (indices, raw ids, training rating counts, real users
    eligible per target), the filler per fake profile, the clean fit, the detectors used and every
    (attack, size) cell in run order."""

    targets: List[int]
    target_ids: List[Any]
    target_counts: List[int]
    eligible: List[int]
    filler: int
    clean: FitRecord
    detectors: List[DefenceDetector]
    cells: List[DefenceCell]

    def cell(self, attack: str, size: float) -> DefenceCell:
        for c in self.cells:
            if c.attack == attack and c.size == size:
                return c
        raise KeyError(f"no defence cell for attack {attack!r} at size {size!r}")

    def detector(self, name: str, against: str) -> DefenceDetector:
        for d in self.detectors:
            if d.detector == name and d.against == against:
                return d
        raise KeyError(f"no defence detector {name!r} against {against!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"targets": list(self.targets), "target_ids": list(self.target_ids),
                "target_counts": list(self.target_counts), "eligible": list(self.eligible), "filler": self.filler,
                "clean": self.clean.to_dict(), "detectors": [d.to_dict() for d in self.detectors],
                "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DefenceRecord":
        return cls(list(d["targets"]), list(d["target_ids"]), list(d["target_counts"]), list(d["eligible"]),
                   d["filler"], FitRecord.from_dict(d["clean"]),
                   [DefenceDetector.from_dict(x) for x in d["detectors"]],
                   [DefenceCell.from_dict(c) for c in d["cells"]])


@dataclass(frozen=True)
class UnseenRecord:
    """An optimised attack the detectors never trained on, on the defence targets: its size,
    filler and fake users, the seconds crafting it took, and per detector of the defences the
    detection measures at the detector's own threshold."""

    attack: str
    size: float
    filler: int
    n_fake: int
    seconds: float
    detection: Dict[str, Dict[str, float]]

    def to_dict(self) -> Dict[str, Any]:
        return {"attack": self.attack, "size": self.size, "filler": self.filler, "n_fake": self.n_fake,
                "seconds": self.seconds, "detection": {k: dict(v) for k, v in self.detection.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UnseenRecord":
        return cls(d["attack"], d["size"], d["filler"], d["n_fake"], d["seconds"],
                   {k: dict(v) for k, v in d["detection"].items()})


@dataclass(frozen=True)
class DetectSeed:
    """Everything one seed measured: the real users (and how many of them the detection grid
    scored), the grid's derived seeds, each detector's grid run, the defence part and the unseen
    attacks."""

    seed: int
    n_real_users: int
    n_test_users: int
    train_seeds: List[int]
    test_seeds: List[int]
    detection: Dict[str, DetectorRun]
    defence: DefenceRecord
    unseen: List[UnseenRecord]

    def to_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "n_real_users": self.n_real_users, "n_test_users": self.n_test_users,
                "train_seeds": list(self.train_seeds), "test_seeds": list(self.test_seeds),
                "detection": {k: r.to_dict() for k, r in self.detection.items()},
                "defence": self.defence.to_dict(), "unseen": [u.to_dict() for u in self.unseen]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DetectSeed":
        return cls(d["seed"], d["n_real_users"], d["n_test_users"], list(d["train_seeds"]), list(d["test_seeds"]),
                   {k: DetectorRun.from_dict(r) for k, r in d["detection"].items()},
                   DefenceRecord.from_dict(d["defence"]), [UnseenRecord.from_dict(u) for u in d["unseen"]])


@dataclass(frozen=True)
class DetectResult:
    """Per-seed records (plain numbers, JSON-ready); ``detect_report`` aggregates them."""

    config: DetectConfig
    data: str = ""
    seeds: List[DetectSeed] = field(default_factory=list)
    seconds: float = float("nan")
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "data": self.data, "seeds": [s.to_dict() for s in self.seeds],
                "seconds": self.seconds, **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DetectResult":
        """From a loaded detect.json (strict JSON: null back to NaN, "inf" to infinity)."""
        return cls(config=config_from_dict(DetectConfig, d["config"]), data=d.get("data", ""),
                   seeds=[DetectSeed.from_dict(numbers(s)) for s in d["seeds"]], seconds=number(d.get("seconds")),
                   provenance=provenance_from(d))


# ----------------------------------------------------------------------------- measures

def ndcg_at_10(model: Any, train: Interactions, test: Interactions) -> float:
    """The real users' test nDCG@10, their test items ranked among the items they have no
    training row of (the poisoning experiment's measure, ``poison``'s)."""
    return P._ndcg(model, train, test)


def rmse(model: Any, test: Interactions) -> float:
    """RMSE of an explicit model's predictions on the test ratings (every test user is real)."""
    return P._rmse("ExplicitMF", model, test)


def target_hr(model: Any, log: Interactions, targets: np.ndarray, n_real: int) -> Tuple[List[float], List[int]]:
    """Per target: HR@50 over the real users of ``log`` who have not rated it, and how many they are."""
    result = target_exposure(model, log, targets, k=K, real_users=n_real, progress=False)
    return [float(v) for v in result.per_target[f"HR@{K}"]], [int(n) for n in result.n_users]


def fake_profile_set(log: Interactions) -> Set[Tuple[bytes, bytes]]:
    """Each fake user's profile of ``log`` as (items, ratings) bytes sorted by item: identity by content."""
    fake = fake_users(log)
    rows = np.flatnonzero(fake[log.user])
    order = rows[np.lexsort((log.item[rows], log.user[rows]))]
    users, starts = np.unique(log.user[order], return_index=True)
    bounds = np.append(starts, len(order))
    out = set()
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = order[a:b]
        out.add((log.item[part].tobytes(), b"" if log.rating is None else log.rating[part].tobytes()))
    return out


def _progress_bar(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="detect steps", disable=not show, leave=False, file=sys.stderr)


# ----------------------------------------------------------------------------- detection grid

def _run_detector(config: DetectConfig, name: str, train: Interactions, seed: int) -> DetectorRun:
    """``leave_one_type_out`` for one detector on one seed's training log."""
    attacks = {a: HAND_CRAFTED[a] for a in config.attacks}
    at_size, at_filler = table_size(config), table_filler(config)
    start = time.perf_counter()
    records = leave_one_type_out(train, attacks, lambda: DETECTORS[name](seed), sizes=config.sizes,
                                 fillers=config.fillers, seeds=grid_train_seeds(config, seed),
                                 test_seeds=grid_test_seeds(seed),
                                 n_targets=config.n_targets, test_users=config.test_users, split_seed=seed)
    seconds = time.perf_counter() - start
    cells = []
    for r in records:
        if r["held_out"] in r["trained_on"]:  # the protocol's promise, checked again on the record
            raise AssertionError(f"detector {name}: held-out attack {r['held_out']!r} among its training types")
        roc = r["size"] == at_size and r["filler"] == at_filler
        fpr, tpr, _ = r["roc_curve"]
        cells.append(DetectionCell(r["held_out"], list(r["trained_on"]), float(r["size"]), float(r["filler"]),
                                   int(r["seed"]), [int(t) for t in r["targets"]], int(r["n_users"]),
                                   int(r["n_fake"]), int(r["n_flagged"]), float(r["threshold"]),
                                   float(r["precision"]), float(r["recall"]), float(r["f1"]), float(r["auc"]),
                                   [float(v) for v in fpr] if roc else [], [float(v) for v in tpr] if roc else []))
    return DetectorRun(repr(DETECTORS[name](seed)), seconds, cells)


# ----------------------------------------------------------------------------- defences

@dataclass(frozen=True)
class _SeedData:
    """One seed's split, drawn before any fit so bad settings fail at once."""

    seed: int
    train: Interactions
    test: Interactions
    targets: np.ndarray


def _prepare(config: DetectConfig, inter: Interactions, seed: int) -> _SeedData:
    split = D.ratio_split(inter, (1 - config.test_share, config.test_share), order="random", seed=seed)
    train = split.train
    targets, _ = draw_targets(train, config.defence_targets, config.unpopular_share, seed)
    n_part = int(round(config.test_users * train.n_users))
    smaller = min(n_part, train.n_users - n_part)
    for size in config.sizes:
        if math.floor(size * smaller) < 1:
            raise ValueError(f"sizes: {size:g} of the {smaller} real users of the detection grid's smaller part "
                             "is no fake user")
    for size in config.train_sizes:
        if math.floor(size * train.n_users) < 1:
            raise ValueError(f"train_sizes: {size:g} of the {train.n_users} real users is no fake user")
    for filler in config.fillers:
        if math.floor(filler * train.n_items) < 1:
            raise ValueError(f"fillers: {filler:g} of the {train.n_items} items is no filler item")
    return _SeedData(seed, train, split.test, targets)


def _fit_mf(log: Interactions, seed: int) -> Tuple[ExplicitMF, float]:
    start = time.perf_counter()
    model = ExplicitMF(seed=seed).fit(log, progress=False)
    return model, time.perf_counter() - start


def _fit_record(model: Any, log: Interactions, data: _SeedData, seconds: float, **dropped: int) -> FitRecord:
    hr, _ = target_hr(model, log, data.targets, data.train.n_users)
    return FitRecord(hr, ndcg_at_10(model, data.train, data.test), rmse(model, data.test), seconds, **dropped)


def _training_logs(config: DetectConfig, data: _SeedData, filler: int) -> Dict[str, List[Tuple[Interactions, int,
                                                                                               np.ndarray]]]:
    """Per hand-crafted attack type: (poisoned log, seed, targets) at each training size, built on
    the training log with other targets and attack seeds than the defended attack's."""
    out: Dict[str, List[Tuple[Interactions, int, np.ndarray]]] = {}
    for attack in config.attacks:
        logs = []
        for i, size in enumerate(config.train_sizes):
            s = defence_train_seed(data.seed, i)
            targets, _ = draw_targets(data.train, config.defence_targets, config.unpopular_share, s)
            fake = HAND_CRAFTED[attack](targets=targets, n_fake=size, filler=filler, seed=s)(data.train)
            logs.append((D.inject(data.train, fake), s, targets))
        out[attack] = logs
    return out


def _train_defence_detector(config: DetectConfig, name: str, against: str, types: Sequence[str],
                            logs: Mapping[str, List[Tuple[Interactions, int, np.ndarray]]], filler: int,
                            seed: int) -> Tuple[Any, DefenceDetector]:
    """A defence detector for ``against``: a supervised one trained on the logs of ``types``
    (never ``against``), an unsupervised one as is."""
    detector = DETECTORS[name](seed)
    if name not in SUPERVISED:
        return detector, DefenceDetector(name, against, [], [], filler, [], [], 0.0)
    if against in types:
        raise AssertionError(f"defence detector {name}: trained on the attack {against!r} it defends against")
    chosen = [(t, entry) for t in types for entry in logs[t]]
    start = time.perf_counter()
    detector.fit([log for _, (log, _, _) in chosen])
    seconds = time.perf_counter() - start
    return detector, DefenceDetector(name, against, list(types), [float(s) for s in config.train_sizes], int(filler),
                                     [int(s) for _, (_, s, _) in chosen],
                                     [[int(x) for x in t] for _, (_, _, t) in chosen], seconds)


def _unseen_profiles(seen: Set[Tuple[bytes, bytes]], log: Interactions, name: str, against: str) -> None:
    """No fake profile of ``log`` was among a detector's training profiles (``seen``)."""
    if fake_profile_set(log) & seen:
        raise AssertionError(f"defence detector {name} against {against!r}: a fake profile of the defended log "
                             "was among its training profiles")


def _run_defences(config: DetectConfig, data: _SeedData, bar: Any) -> Tuple[DefenceRecord, List[UnseenRecord]]:
    seed, train = data.seed, data.train
    n_real = train.n_users
    filler = mean_profile_length(train)
    clean_model, clean_seconds = _fit_mf(train, seed)
    clean_hr, eligible = target_hr(clean_model, train, data.targets, n_real)
    clean = FitRecord(clean_hr, ndcg_at_10(clean_model, train, data.test), rmse(clean_model, data.test),
                      clean_seconds)
    detector_names = [d for d in config.defences if d in DETECTORS]
    need_logs = any(d in SUPERVISED for d in detector_names)
    logs = _training_logs(config, data, filler) if need_logs else {}
    seen = {t: set().union(*(fake_profile_set(log) for log, _, _ in entries)) for t, entries in logs.items()}
    used: List[DefenceDetector] = []
    cells: List[DefenceCell] = []
    for attack in config.attacks:
        others = [a for a in config.attacks if a != attack]
        detectors = {}
        for name in detector_names:
            det, record = _train_defence_detector(config, name, attack, others, logs, filler, seed)
            detectors[name] = (det, set().union(*(seen[t] for t in record.trained_on)))
            used.append(record)
        for size in config.sizes:
            fake = HAND_CRAFTED[attack](targets=data.targets, n_fake=size, filler=filler, seed=seed)(train)
            log = D.inject(train, fake)
            is_fake = fake_users(log)
            fits: Dict[str, FitRecord] = {}
            model, seconds = _fit_mf(log, seed)
            fits[NO_DEFENCE] = _fit_record(model, log, data, seconds)
            for defence in config.defences:
                if defence == TRIMMED:
                    start = time.perf_counter()
                    model = TrimmedExplicitMF(trim=config.trim, seed=seed).fit(log, progress=False)
                    seconds = time.perf_counter() - start
                    rows = model.trimmed_rows_
                    fake_rows = is_fake[log.user]
                    fits[defence] = _fit_record(model, log, data, seconds, rows_real=int((rows & ~fake_rows).sum()),
                                                rows_fake=int((rows & fake_rows).sum()))
                    continue
                det, seen_profiles = detectors[defence]
                _unseen_profiles(seen_profiles, log, defence, attack)
                start = time.perf_counter()
                filtered = filter_users(log, det.decide(log))
                model = ExplicitMF(seed=seed).fit(filtered.log, progress=False)
                seconds = time.perf_counter() - start
                removed, rows = filtered.removed_users, filtered.removed_rows
                fake_rows = is_fake[log.user]
                # exposure on the poisoned log: the same eligible users and exclusions as without defence
                fits[defence] = _fit_record(model, log, data, seconds,
                                            removed_real=int((removed & ~is_fake).sum()),
                                            removed_fake=int((removed & is_fake).sum()),
                                            rows_real=int((rows & ~fake_rows).sum()),
                                            rows_fake=int((rows & fake_rows).sum()))
            cells.append(DefenceCell(attack, float(size), int(log.n_users - n_real), fits))
            bar.update(1)
    unseen = []
    for attack in config.unseen_attacks:
        unseen.append(_run_unseen(config, attack, data, filler, logs, seen, detector_names, used))
        bar.update(1)
    record = DefenceRecord([int(t) for t in data.targets], np.asarray(train.item_ids)[data.targets].tolist(),
                           [int(c) for c in train.item_counts()[data.targets]], eligible, int(filler), clean, used,
                           cells)
    return record, unseen


def _run_unseen(config: DetectConfig, attack: str, data: _SeedData, filler: int, logs: Mapping[str, Any],
                seen: Mapping[str, Set[Tuple[bytes, bytes]]], detector_names: Sequence[str],
                used: List[DefenceDetector]) -> UnseenRecord:
    """An optimised attack at the table size, scored by each defence detector (the supervised ones
    trained on every hand-crafted type of the run)."""
    size = table_size(config)
    start = time.perf_counter()
    fake = P.fake_profiles(attack, data.train, data.targets, size, filler, data.seed)
    seconds = time.perf_counter() - start
    log = D.inject(data.train, fake)
    labels = fake_users(log)
    detection: Dict[str, Dict[str, float]] = {}
    for name in detector_names:
        det, record = _train_defence_detector(config, name, attack, list(config.attacks), logs, filler, data.seed)
        used.append(record)
        if record.trained_on:
            _unseen_profiles(set().union(*(seen[t] for t in record.trained_on)), log, name, attack)
        scores = det.score(log)
        m = detection_metrics(scores, labels, det.default_threshold(scores))
        detection[name] = {k: float(m[k]) for k in ("precision", "recall", "f1", "auc")}
        detection[name]["n_flagged"] = float(m["n_flagged"])
    return UnseenRecord(attack, float(size), int(filler), int(log.n_users - data.train.n_users), seconds, detection)


# ----------------------------------------------------------------------------- the run

def _run_seed(config: DetectConfig, data: _SeedData, bar: Any) -> DetectSeed:
    detection = {}
    for name in config.detectors:
        detection[name] = _run_detector(config, name, data.train, data.seed)
        bar.update(1)
    defence, unseen = _run_defences(config, data, bar)
    n_test = int(round(config.test_users * data.train.n_users))
    return DetectSeed(data.seed, int(data.train.n_users), n_test, list(grid_train_seeds(config, data.seed)),
                      list(grid_test_seeds(data.seed)), detection, defence, unseen)


def _interactions(config: DetectConfig) -> Tuple[Interactions, str]:
    """``poison.explicit_interactions``, its refusal of a log without ratings worded for this experiment."""
    try:
        return explicit_interactions(config)
    except ValueError as err:
        msg = str(err)
        if "has no explicit ratings" not in msg:
            raise
        raise ValueError(msg.replace("the poisoning experiment's victims predict ratings",
                                     "the detectors' rating features and ExplicitMF need them")) from None


def run_detect(config: Optional[DetectConfig] = None) -> DetectResult:
    """Run every seed of ``config``: the detection grid per detector, then the defences."""
    config = config or DetectConfig()
    config.validate()
    start = time.perf_counter()
    inter, source = _interactions(config)
    prepared = [_prepare(config, inter, seed) for seed in config.seeds]
    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    per_seed = len(config.detectors) + len(config.attacks) * len(config.sizes) + len(config.unseen_attacks)
    with _progress_bar(len(config.seeds) * per_seed, show) as bar:
        seeds = [_run_seed(config, data, bar) for data in prepared]
    return DetectResult(config=config, data=source, seeds=seeds, seconds=time.perf_counter() - start,
                        provenance=collect(inter, config))


__all__ = ["DETECTORS", "SUPERVISED", "TRIMMED", "NO_DEFENCE", "DEFENCES", "UNSEEN_ATTACKS", "K", "DetectConfig",
           "DetectionCell", "DetectorRun", "FitRecord", "DefenceCell", "DefenceDetector", "DefenceRecord",
           "UnseenRecord", "DetectSeed", "DetectResult", "table_size", "table_filler", "grid_train_seeds",
           "grid_test_seeds",
           "defence_train_seed", "ndcg_at_10", "rmse", "target_hr", "fake_profile_set", "run_detect"]

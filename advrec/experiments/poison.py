"""The poisoning experiment of issue 16: hand-crafted and optimised fake-profile attacks against
retrained victims, explicit and implicit, measured on the targets and on the clean users, on
ML-100K explicit ratings or your own log.

Per seed (the seed draws the split, the targets, the fake profiles and the victims' initialisation):

* a random 80/20 split of the ratings (``ratio_split(order="random")``, per user);
* per target pool, ``n_targets`` targets drawn from the training items that have at least one
  rating: ``"unpopular"``, the least rated ``unpopular_share`` of them (the bottom quintile; ties
  in rating count broken at random), and ``"all"``, all of them. Pushing an item nobody rates is
  the attack the literature reports; pushing an ordinary item is what a seller would try, and
  the two answer differently (the pools are measured and reported apart);
* for each pool, attack and size (a fraction of the real users, ``floor(size * n_real)`` fake users),
  the fake profiles: ``random``, ``average`` and ``bandwagon`` push every target at once (each fake
  user rates every target r_max); ``pga`` and ``sgld`` (``advrec.attacks.poisoning``, asked for
  by name: not in the defaults) do too, their filler ratings optimised white box against
  ``ExplicitMF`` with the run's own settings and seed; ``revadv`` (``advrec.attacks.revadv``, by
  name) optimises implicit profiles (no ratings) white box against ``WRMF`` (Tang et al. 2020);
  every poisoned log is scored on every victim that can take it (implicit profiles: the implicit
  victims only): the others measure the grey-box transfer; ``control`` is the random attack's fake
  users (same seed, same filler items and ratings) with their target ratings removed: what
  injecting that many random users does to the targets without pushing them. Filler: the mean
  profile length of the real users, as a count (ML-100K, 80% split: 85 items; the bandwagon
  profile adds its 10 selected items);
* each victim fitted once on the clean training log, then refitted from scratch with the same
  settings on every poisoned log: the explicit ones on the ratings (``UserKNN``: Pearson, k = 20;
  ``ExplicitMF``: ALS, default settings, seeded with the run's seed), the implicit ones on the
  same log with every rating a positive (``WRMF``, ``BPR-MF``, ``LightGCN``, with the fixed
  recipes of ``poison_victims``).

Measured per (seed, pool, victim, attack, size), per target: HR@10, HR@20, HR@50 and mean rank of
the target over the real users who have not rated it (``target_exposure``), the prediction shift
against the clean victim (``prediction_shift``; explicit victims), and, per cell, the clean
users' test RMSE (explicit victims: predictions on the test pairs) and nDCG@10 (every victim: the
real users' test items ranked among the items they have no training row of), and the seconds the
refit took. ``poison_report`` aggregates the seeds.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .._checks import seed_arg
from .. import data as D
from ..attacks.poisoning import PGAAttack, SGLDAttack
from ..attacks.revadv import RevAdvAttack
from ..attacks.shilling import AverageAttack, BandwagonAttack, RandomAttack, ShillingAttack
from ..data.datasets import FORMATS
from ..data.interactions import Interactions
from ..evaluation import evaluate
from ..evaluation.targets import prediction_shift, target_exposure
from ..models import WRMF, ExplicitMF, UserKNN
from .inputs import check_dataset
from .poison_victims import BPR_RECIPE, LIGHTGCN_RECIPE, fit_bpr_mf, fit_lightgcn, fit_wrmf
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import config_from_dict, number, numbers

#: the hand-crafted push attacks, by the name the config and the report use
HAND_CRAFTED: Dict[str, Callable[..., ShillingAttack]] = {
    "random": RandomAttack, "average": AverageAttack, "bandwagon": BandwagonAttack}
#: the optimised push attacks: white box, crafted on the victim named in ``CRAFTED_ON`` with the
#: run's own settings and seed, then scored on every victim of the run that can take them
OPTIMISED: Dict[str, Callable[..., ShillingAttack]] = {"pga": PGAAttack, "sgld": SGLDAttack, "revadv": RevAdvAttack}
#: optimised attack -> the victim it is crafted on (the others measure its transfer)
CRAFTED_ON: Dict[str, str] = {"pga": "ExplicitMF", "sgld": "ExplicitMF", "revadv": "WRMF"}
#: attacks that craft implicit profiles (no ratings): scored on the implicit victims only
IMPLICIT_ATTACKS = ("revadv",)
#: every push attack
PUSH_ATTACKS: Dict[str, Callable[..., ShillingAttack]] = {**HAND_CRAFTED, **OPTIMISED}
#: fake users with the random attack's profiles and no target
CONTROL = "control"
#: the default attacks: the hand-crafted ones and the control (the optimised ones cost 20 s to a
#: minute per seed, size and pool on ML-100K: ask for them by name)
ATTACKS = tuple(HAND_CRAFTED) + (CONTROL,)
#: every attack a config may name
ALL_ATTACKS = ATTACKS + tuple(OPTIMISED)
#: victim name -> how to fit it on a log for a seed (the clean fit and every refit use the same
#: settings). The explicit victims predict ratings; the implicit ones (``IMPLICIT_VICTIMS``) are
#: fitted on the same log with every rating a positive interaction.
VICTIMS: Dict[str, Callable[[Interactions, int], Any]] = {
    "UserKNN": lambda log, seed: UserKNN(k=20, similarity="pearson").fit(log),
    "ExplicitMF": lambda log, seed: ExplicitMF(seed=seed).fit(log, progress=False),
    "WRMF": fit_wrmf,
    "BPR-MF": fit_bpr_mf,
    "LightGCN": fit_lightgcn,
}
#: the victims trained on implicit feedback (no prediction shift, no RMSE: ranking measures only)
IMPLICIT_VICTIMS = ("WRMF", "BPR-MF", "LightGCN")
#: the white-box copy an optimised attack reads its victim's settings from, per seed
WHITE_BOX: Dict[str, Callable[[int], Any]] = {"ExplicitMF": lambda seed: ExplicitMF(seed=seed),
                                              "WRMF": lambda seed: WRMF(seed=seed)}
KS = (10, 20, 50)
#: the per-target exposure measures, in record order
EXPOSURE = tuple(f"HR@{k}" for k in KS) + ("MeanRank",)
#: where the targets are drawn from: the least rated items, or every rated item
POOLS = ("unpopular", "all")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(value: Any, known: Tuple[str, ...], field_name: str) -> None:
    names = tuple(value) if isinstance(value, (tuple, list)) else None
    if not names or any(n not in known for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{field_name} must name distinct entries of {known}, got {value!r}")


@dataclass(frozen=True)
class PoisonConfig:
    """Settings of the experiment (issue 16's where it gives them). ``filler`` None: the mean
    real profile length of the training log; ``table_size`` None: the largest size <= 5%
    (the smallest size when none is), the attack x victim table's and the checks' size."""

    dataset: str = "ml-100k"
    data_path: Optional[str] = None
    data_format: Optional[str] = None
    seeds: Tuple[int, ...] = (0, 1, 2)
    n_targets: int = 5
    unpopular_share: float = 0.2
    target_pools: Tuple[str, ...] = POOLS
    attacks: Tuple[str, ...] = ATTACKS
    sizes: Tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.10)
    filler: Optional[int] = None
    victims: Tuple[str, ...] = ("UserKNN", "ExplicitMF", "WRMF", "BPR-MF", "LightGCN")
    test_share: float = 0.2
    table_size: Optional[float] = None
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "PoisonConfig":
        """One seed, 3 targets per pool, random and average at 5%, UserKNN only: seconds on 2 cores."""
        base: Dict[str, Any] = dict(seeds=(0,), n_targets=3, attacks=("random", "average"), sizes=(0.05,),
                                    victims=("UserKNN",))
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
        if isinstance(self.n_targets, bool) or not isinstance(self.n_targets, int) or self.n_targets < 1:
            raise ValueError(f"n_targets must be a positive int, got {self.n_targets!r}")
        if not _finite(self.unpopular_share) or not 0 < self.unpopular_share <= 1:
            raise ValueError(f"unpopular_share must be in (0, 1], got {self.unpopular_share!r}")
        _names(self.target_pools, POOLS, "target_pools")
        _names(self.attacks, ALL_ATTACKS, "attacks")
        sizes = tuple(self.sizes) if isinstance(self.sizes, (tuple, list)) else ()
        if not sizes or any(not _finite(s) or not 0 < s < 1 for s in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"sizes must be distinct fractions of the real users in (0, 1), got {self.sizes!r}")
        if self.filler is not None and (isinstance(self.filler, bool) or not isinstance(self.filler, int)
                                        or self.filler < 1):
            raise ValueError(f"filler must be a positive int (filler items per profile) or None, got {self.filler!r}")
        _names(self.victims, tuple(VICTIMS), "victims")
        if not _finite(self.test_share) or not 0 < self.test_share < 1:
            raise ValueError(f"test_share must be in (0, 1), got {self.test_share!r}")
        if self.table_size is not None and self.table_size not in sizes:
            raise ValueError(f"table_size must be one of sizes {sizes} or None, got {self.table_size!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"progress must be True, False or None, got {self.progress!r}")


# ----------------------------------------------------------------------------- records

def _exposure_to_dict(e: Mapping[str, List[float]]) -> Dict[str, List[float]]:
    return {m: list(e[m]) for m in EXPOSURE}


@dataclass(frozen=True)
class CleanRecord:
    """The victim fitted on the clean log: per-target exposure (``EXPOSURE`` -> one value per
    target), the clean users' test RMSE (NaN for an implicit victim) and nDCG@10, and the fit's
    seconds. One clean fit serves every pool, so its accuracy and seconds repeat in each pool's
    record."""

    exposure: Dict[str, List[float]]
    rmse: float
    ndcg: float
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {"exposure": _exposure_to_dict(self.exposure), "rmse": self.rmse, "ndcg": self.ndcg,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CleanRecord":
        return cls(_exposure_to_dict(d["exposure"]), d["rmse"], d["ndcg"], d["seconds"])


@dataclass(frozen=True)
class CellRecord:
    """One attack at one size against one victim: the fake users injected, per-target exposure
    after the refit, per-target prediction shift (poisoned minus clean, mean over the real users
    who have not rated the target; NaN for an implicit victim, which predicts no rating), the
    clean users' test RMSE (NaN for an implicit victim) and nDCG@10 after, and the refit's
    seconds."""

    attack: str
    size: float
    n_fake: int
    exposure: Dict[str, List[float]]
    shift: List[float]
    rmse: float
    ndcg: float
    seconds: float

    def to_dict(self) -> Dict[str, Any]:
        return {"attack": self.attack, "size": self.size, "n_fake": self.n_fake,
                "exposure": _exposure_to_dict(self.exposure), "shift": list(self.shift), "rmse": self.rmse,
                "ndcg": self.ndcg, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CellRecord":
        return cls(d["attack"], d["size"], d["n_fake"], _exposure_to_dict(d["exposure"]), list(d["shift"]),
                   d["rmse"], d["ndcg"], d["seconds"])


@dataclass(frozen=True)
class VictimRecord:
    """One victim on one seed's targets of one pool: its settings (``model.config()``, the same
    for every fit), the clean fit and every (attack, size) cell in run order (an attack the
    victim cannot take, ``applies``, has no cell)."""

    settings: Dict[str, Any]
    clean: CleanRecord
    cells: List[CellRecord]

    def cell(self, attack: str, size: float) -> CellRecord:
        for c in self.cells:
            if c.attack == attack and c.size == size:
                return c
        raise KeyError(f"no cell for attack {attack!r} at size {size!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"settings": self.settings, "clean": self.clean.to_dict(), "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VictimRecord":
        return cls(dict(d["settings"]), CleanRecord.from_dict(d["clean"]),
                   [CellRecord.from_dict(c) for c in d["cells"]])


@dataclass(frozen=True)
class PoolRecord:
    """The targets one pool gave a seed (item indices, their raw ids, their training rating
    counts, the real users eligible per target), the most training ratings an item of the pool
    has, and each victim measured on those targets."""

    targets: List[int]
    target_ids: List[Any]
    target_counts: List[int]
    eligible: List[int]
    pool_max_count: int
    victims: Dict[str, VictimRecord]

    def to_dict(self) -> Dict[str, Any]:
        return {"targets": list(self.targets), "target_ids": list(self.target_ids),
                "target_counts": list(self.target_counts), "eligible": list(self.eligible),
                "pool_max_count": self.pool_max_count, "victims": {k: v.to_dict() for k, v in self.victims.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PoolRecord":
        return cls(list(d["targets"]), list(d["target_ids"]), list(d["target_counts"]), list(d["eligible"]),
                   d["pool_max_count"], {k: VictimRecord.from_dict(v) for k, v in d["victims"].items()})


@dataclass(frozen=True)
class PoisonSeed:
    """Everything one seed measured: the real users, the filler count per profile, and each
    target pool's record (``pools[name]``, in the config's order)."""

    seed: int
    n_real_users: int
    filler: int
    pools: Dict[str, PoolRecord]

    def to_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "n_real_users": self.n_real_users, "filler": self.filler,
                "pools": {k: p.to_dict() for k, p in self.pools.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PoisonSeed":
        return cls(d["seed"], d["n_real_users"], d["filler"],
                   {k: PoolRecord.from_dict(p) for k, p in d["pools"].items()})


@dataclass(frozen=True)
class PoisonResult:
    """Per-seed records (plain numbers, JSON-ready); ``poison_report`` aggregates them."""

    config: PoisonConfig
    data: str = ""
    seeds: List[PoisonSeed] = field(default_factory=list)
    seconds: float = float("nan")
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "data": self.data, "seeds": [s.to_dict() for s in self.seeds],
                "seconds": self.seconds, **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PoisonResult":
        """From a loaded poison.json (strict JSON: null back to NaN, "inf" to infinity)."""
        return cls(config=config_from_dict(PoisonConfig, d["config"]), data=d.get("data", ""),
                   seeds=[PoisonSeed.from_dict(numbers(s)) for s in d["seeds"]], seconds=number(d.get("seconds")),
                   provenance=provenance_from(d))


# ----------------------------------------------------------------------------- the steps

def explicit_interactions(config: PoisonConfig) -> Tuple[Interactions, str]:
    """The rating log and a description of its source: ``data_path`` (read by
    ``advrec.data.load_file``) wins over ``dataset``. The victims predict ratings, so a log
    without them (or with one rating value) is refused, naming ``data_path``."""
    if config.data_path is None:
        registered = D.load(config.dataset)
        inter, source = registered.interactions, f"{config.dataset} ({registered.portable_source()})"
    else:
        loaded = D.load_file(config.data_path, config.data_format)
        inter = loaded.interactions if isinstance(loaded, D.Dataset) else loaded
        source = str(config.data_path)
        if not hasattr(inter, "to_csr"):
            raise ValueError(f"data_path: {config.data_path} holds no user-item interactions")
    if inter.rating is None or len(np.unique(inter.rating)) < 2:
        raise ValueError(f"data_path: {source} has no explicit ratings (at least two rating values); the "
                         "poisoning experiment's victims predict ratings")
    return inter, source


def mean_profile_length(train: Interactions) -> int:
    """The real users' mean number of training ratings, rounded (users without any not counted)."""
    counts = train.user_counts()
    return max(1, int(round(float(counts[counts > 0].mean()))))


def draw_targets(train: Interactions, n: int, share: float, seed: int) -> Tuple[np.ndarray, int]:
    """``n`` distinct target items (sorted) drawn with ``seed`` from the ``share`` least rated
    items among those with a training rating (ties in count broken at random), and the most
    ratings an item of that pool has."""
    counts = train.item_counts()
    rated = np.flatnonzero(counts > 0)
    rng = np.random.default_rng(seed)
    shuffled = rated[rng.permutation(len(rated))]
    by_count = shuffled[np.argsort(counts[shuffled], kind="stable")]
    pool = by_count[:max(1, int(math.ceil(share * len(rated))))]
    if n > len(pool):
        raise ValueError(f"n_targets: {n} targets asked for, but the least rated {share:g} of the "
                         f"{len(rated)} rated items is {len(pool)} items")
    return np.sort(rng.choice(pool, size=n, replace=False)), int(counts[pool].max())


def pool_share(config: PoisonConfig, pool: str) -> float:
    """The share of the rated items (least rated first) that ``pool`` draws its targets from."""
    return config.unpopular_share if pool == "unpopular" else 1.0


def applies(attack: str, victim: str) -> bool:
    """Whether ``victim`` can be fitted on ``attack``'s poisoned log: an implicit attack's
    profiles have no ratings, so only the implicit victims take them."""
    return attack not in IMPLICIT_ATTACKS or victim in IMPLICIT_VICTIMS


def implicit_log(log: Interactions) -> Interactions:
    """``log`` with its ratings dropped: every rating a positive interaction (what the implicit
    victims train on)."""
    return Interactions(log.user, log.item, None, log.timestamp, log.n_users, log.n_items, log.user_ids,
                        log.item_ids)


def fake_profiles(attack: str, train: Interactions, targets: np.ndarray, size: float, filler: int,
                  seed: int) -> Interactions:
    """The fake users' rows of ``attack`` (``ALL_ATTACKS``) at ``size``: ``CONTROL`` is the random
    attack's rows with the targets' rows removed, so it differs from ``random`` only there. An
    optimised attack (``OPTIMISED``) is white box: crafted on ``WHITE_BOX[CRAFTED_ON[attack]](seed)``,
    the very settings and seed the experiment fits that victim with; an implicit one
    (``IMPLICIT_ATTACKS``) on ``implicit_log(train)``, and its rows have no ratings."""
    make = RandomAttack if attack == CONTROL else PUSH_ATTACKS[attack]
    extra: Dict[str, Any] = {}
    if attack in OPTIMISED:
        extra = dict(victim=WHITE_BOX[CRAFTED_ON[attack]](seed), progress=False)
    log = implicit_log(train) if attack in IMPLICIT_ATTACKS else train
    fake = make(targets=targets, n_fake=size, filler=filler, seed=seed, **extra)(log)
    return fake.subset(~np.isin(fake.item, targets)) if attack == CONTROL else fake


def _fit(victim: str, log: Interactions, seed: int) -> Tuple[Any, float]:
    """Fit ``victim`` on ``log`` (its ratings dropped for an implicit victim): the model, seconds."""
    if victim in IMPLICIT_VICTIMS and log.rating is not None:
        log = implicit_log(log)
    start = time.perf_counter()
    model = VICTIMS[victim](log, seed)
    return model, time.perf_counter() - start


def _exposure(model: Any, log: Interactions, targets: np.ndarray, n_real: int) -> Tuple[Dict[str, List[float]],
                                                                                        List[int]]:
    result = target_exposure(model, log, targets, k=KS, real_users=n_real, progress=False)
    return {m: [float(v) for v in result.per_target[m]] for m in EXPOSURE}, [int(n) for n in result.n_users]


def _rmse(victim: str, model: Any, test: Interactions) -> float:
    """RMSE of the model's predictions on the test pairs (every test user is real); NaN for an
    implicit victim."""
    if victim in IMPLICIT_VICTIMS:
        return float("nan")
    pred = np.asarray(model.predict(test.user, test.item), dtype=np.float64)
    return float(np.sqrt(np.mean((pred - test.rating.astype(np.float64)) ** 2)))


def _ndcg(model: Any, train: Interactions, test: Interactions) -> float:
    """The real users' nDCG@10 on their test items, ranked among every item they have no
    training interaction with (the fake users' rows, past ``train.n_users``, are not evaluated)."""
    n_users = int(model.n_users)
    widen = lambda log: Interactions(log.user, log.item, None, None, n_users, log.n_items,  # noqa: E731
                                     np.arange(n_users), log.item_ids)
    result = evaluate(model, widen(test), exclude=widen(train), k=(10,), progress=False, auc=False)
    return float(result.summary()["nDCG@10"])


def _progress_bar(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="poison cells", disable=not show, leave=False, file=sys.stderr)


@dataclass(frozen=True)
class _SeedData:
    """One seed's split and each pool's targets (with the pool's largest rating count), drawn
    before any fit so bad settings fail at once."""

    seed: int
    train: Interactions
    test: Interactions
    targets: Dict[str, Tuple[np.ndarray, int]]


def _prepare(config: PoisonConfig, inter: Interactions, seed: int) -> _SeedData:
    split = D.ratio_split(inter, (1 - config.test_share, config.test_share), order="random", seed=seed)
    targets = {pool: draw_targets(split.train, config.n_targets, pool_share(config, pool), seed)
               for pool in config.target_pools}
    for size in config.sizes:
        if math.floor(size * split.train.n_users) < 1:
            raise ValueError(f"sizes: {size:g} of {split.train.n_users} real users is no fake user")
    return _SeedData(seed, split.train, split.test, targets)


def _run_pool(config: PoisonConfig, data: _SeedData, targets: np.ndarray, pool_max: int, filler: int,
              clean: Mapping[str, Tuple[Any, float, float, float]], bar: Any) -> PoolRecord:
    """Every victim, attack and size on one pool's targets; ``clean[victim]``: the clean fit, its
    seconds, its test RMSE and nDCG@10 (one per seed, shared by the pools)."""
    seed, train, test = data.seed, data.train, data.test
    n_real = train.n_users
    logs = {}
    for attack in config.attacks:
        for size in config.sizes:
            fake = fake_profiles(attack, train, targets, size, filler, seed)
            base = implicit_log(train) if fake.rating is None else train
            logs[attack, size] = D.inject(base, fake)
    victims: Dict[str, VictimRecord] = {}
    eligible: List[int] = []
    for name in config.victims:
        model0, seconds0, rmse0, ndcg0 = clean[name]
        exposure, eligible = _exposure(model0, train, targets, n_real)
        cells = []
        for (attack, size), log in logs.items():
            if not applies(attack, name):
                continue
            model, seconds = _fit(name, log, seed)
            shift = ([float("nan")] * len(targets) if name in IMPLICIT_VICTIMS
                     else [float(v) for v in prediction_shift(model0, model, train, targets).per_target])
            cells.append(CellRecord(attack, float(size), int(log.n_users - n_real),
                                    _exposure(model, log, targets, n_real)[0], shift, _rmse(name, model, test),
                                    _ndcg(model, train, test), seconds))
            bar.update(1)
        settings = _settings(name, model0)
        victims[name] = VictimRecord(settings, CleanRecord(exposure, rmse0, ndcg0, seconds0), cells)
    return PoolRecord([int(t) for t in targets], np.asarray(train.item_ids)[targets].tolist(),
                      [int(c) for c in train.item_counts()[targets]], eligible, pool_max, victims)


#: the training recipe of each gradient-trained victim (``poison_victims``)
RECIPES = {"BPR-MF": BPR_RECIPE, "LightGCN": LIGHTGCN_RECIPE}


def _settings(victim: str, model: Any) -> Dict[str, Any]:
    """What a victim was fitted with: its ``config()`` without the table sizes, plus the training
    recipe of a gradient-trained one."""
    settings = {k: v for k, v in model.config().items() if k not in ("n_users", "n_items")}
    if victim in RECIPES:
        settings["recipe"] = asdict(RECIPES[victim])
    return settings


def _run_seed(config: PoisonConfig, data: _SeedData, bar: Any) -> PoisonSeed:
    train = data.train
    filler = config.filler if config.filler is not None else mean_profile_length(train)
    clean = {}
    for name in config.victims:
        model, seconds = _fit(name, train, data.seed)
        clean[name] = (model, seconds, _rmse(name, model, data.test), _ndcg(model, train, data.test))
    pools = {pool: _run_pool(config, data, targets, pool_max, filler, clean, bar)
             for pool, (targets, pool_max) in data.targets.items()}
    return PoisonSeed(data.seed, int(train.n_users), int(filler), pools)


def run_poison(config: Optional[PoisonConfig] = None) -> PoisonResult:
    """Run every seed, target pool, victim, attack and size of ``config``."""
    config = config or PoisonConfig()
    config.validate()
    start = time.perf_counter()
    inter, source = explicit_interactions(config)
    prepared = [_prepare(config, inter, seed) for seed in config.seeds]
    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    pairs = sum(applies(a, v) for a in config.attacks for v in config.victims)
    total = len(config.seeds) * len(config.target_pools) * pairs * len(config.sizes)
    with _progress_bar(total, show) as bar:
        seeds = [_run_seed(config, data, bar) for data in prepared]
    return PoisonResult(config=config, data=source, seeds=seeds, seconds=time.perf_counter() - start,
                        provenance=collect(inter, config))


__all__ = ["ATTACKS", "ALL_ATTACKS", "HAND_CRAFTED", "OPTIMISED", "CRAFTED_ON", "IMPLICIT_ATTACKS", "PUSH_ATTACKS",
           "CONTROL", "VICTIMS", "IMPLICIT_VICTIMS", "WHITE_BOX", "KS", "EXPOSURE", "POOLS", "PoisonConfig",
           "CleanRecord", "CellRecord", "VictimRecord", "PoolRecord", "PoisonSeed", "PoisonResult",
           "explicit_interactions", "mean_profile_length", "draw_targets", "pool_share", "applies", "implicit_log",
           "fake_profiles", "run_poison"]

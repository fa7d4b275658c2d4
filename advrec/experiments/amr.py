"""The AMR experiment (Tang et al., "Adversarial Training Towards Robust Multimedia Recommender
System", TKDE 2020) on ML-100K with text features of each movie (or your data and features).

Per seed, on a random leave-one-out split (the paper's protocol; the seed draws the split, the
initialisations and the sampled negatives):

* Table 2: Pop, MF (BPR), MF-eALS, DUIF, VBPR and AMR (VBPR trained further with the adversarial
  regulariser on its content features), HR and nDCG at 5, 10, 20, the test item ranked against
  999 sampled non-interacted items, with paired t-tests of AMR against every baseline;
* Table 3 and its sweep: the relative nDCG@10 drop of VBPR and AMR when every item's features
  are perturbed, adversarially (FGSM on the BPR loss over the training set, each row of L2 norm
  eps) or randomly (rows of the same norm, the same rows);
* Figure 5: per test case, the change of the test item's rank under those perturbations;
* Figure 3: test HR/nDCG@10 while VBPR and AMR are trained on from the same VBPR checkpoint;
* the cold-item split: a share of the test items never appears in training (their ID embedding
  is zero, content only), every model trained again on it and evaluated on cold and warm cases.

Items absent from a training split are never drawn as negatives (the paper: "they can not be
used as negative samples to avoid information leak"). The report lives in ``amr_report``.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .._checks import seed_arg
from .. import data as D
from ..attacks import FGSM, RandomNoise
from ..data.sampling import BPRSampler
from ..evaluation import case_ranks, evaluate, sampled_cases, validator
from ..models import DUIF, MF, VBPR, Pop
from ..training import Trainer, fit_eals, train_amr
from .inputs import check_dataset, implicit_interactions
from .provenance import Provenance, collect, provenance_entry, provenance_from
from .records import TrainingRecord, config_from_dict, number, numbers

#: Table 2 rows, in the paper's order.
MODELS = ("Pop", "MF", "MF-eALS", "DUIF", "VBPR", "AMR")
#: Models the robustness part perturbs (the ones with content features).
ROBUST_MODELS = ("VBPR", "AMR")
PERTURBATIONS = ("adversarial", "random")


@dataclass
class AMRConfig:
    """Settings of the AMR experiment, chosen on seed 0's validation split of ML-100K with the text
    features (``docs/results/amr/tuning.md``; eps 10 scored higher there than the default 1).

    VBPR, DUIF and MF train with Adam (the paper uses Adagrad; Adam converged faster here for the
    same result, ``optimizer`` switches), batches of 512, per-batch L2 ``l2`` and early stopping on
    validation ``valid_metric``. AMR continues the trained VBPR with adversarial ``amr_eps`` and
    ``amr_lam`` (the paper tunes eps in 0.01..10 with lambda 1, then lambda)."""

    dataset: str = "ml-100k"
    data_path: Optional[str] = None       # your interactions (advrec.data.load_file) instead of ML-100K
    data_format: Optional[str] = None
    features_path: Optional[str] = None   # your item features (.npy / .npz, advrec.data.load_item_features)
    seeds: Tuple[int, ...] = (0, 1, 2)
    dim: int = 64
    init_std: float = 0.01
    optimizer: str = "adam"
    lr: float = 1e-3
    l2: float = 1e-5
    batch_size: int = 512
    epochs: int = 400
    patience: int = 20
    valid_metric: str = "nDCG@20"
    eals_epochs: int = 30
    amr_eps: float = 1.0
    amr_lam: float = 1.0
    amr_epochs: int = 200
    amr_patience: int = 20
    k: Tuple[int, ...] = (5, 10, 20)
    n_negatives: int = 999
    robust_eps: Tuple[float, ...] = (0.05, 0.1, 0.2)
    sweep_eps: Tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    rank_eps: float = 0.1                 # Figure 5's perturbation size
    curve_epochs: int = 50                # Figure 3: epochs trained on from the VBPR checkpoint (0: skip)
    curve_every: int = 5
    cold_share: float = 0.05              # share of test cases drawn cold in the cold-item split (0: skip);
                                          # on ML-100K 0.05 makes ~15% of test cases cold, 8% of training out
    baselines: bool = True                # also Pop, MF, MF-eALS, DUIF (False: VBPR and AMR only)
    threads: Optional[int] = 1
    progress: Optional[bool] = None

    @classmethod
    def quick(cls, **overrides: Any) -> "AMRConfig":
        """One seed, shorter AMR and curve, no cold split: a few minutes on 2 cores."""
        base = dict(seeds=(0,), amr_epochs=40, amr_patience=10, curve_epochs=20, curve_every=5,
                    cold_share=0.0, sweep_eps=(0.05, 0.1, 0.2, 0.5), eals_epochs=15)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check_dataset(self.dataset, self.data_path)
        ints = {"dim": self.dim, "batch_size": self.batch_size, "epochs": self.epochs, "patience": self.patience,
                "eals_epochs": self.eals_epochs, "amr_epochs": self.amr_epochs, "amr_patience": self.amr_patience,
                "n_negatives": self.n_negatives, "curve_every": self.curve_every}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.curve_epochs, bool) or not isinstance(self.curve_epochs, int) or self.curve_epochs < 0:
            raise ValueError(f"curve_epochs must be an int >= 0, got {self.curve_epochs!r}")
        for name, v in (("init_std", self.init_std), ("lr", self.lr), ("amr_eps", self.amr_eps),
                        ("rank_eps", self.rank_eps)):
            if not _finite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name, v in (("l2", self.l2), ("amr_lam", self.amr_lam)):
            if not _finite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not _finite(self.cold_share) or not 0 <= self.cold_share < 1:
            raise ValueError(f"cold_share must be in [0, 1), got {self.cold_share!r}")
        if self.optimizer.lower() not in ("adam", "adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adam', 'adagrad' or 'sgd', got {self.optimizer!r}")
        seeds = tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be a non-empty sequence of ints, got {self.seeds!r}")
        for s in seeds:
            seed_arg(s, "seeds entries")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        ks = tuple(self.k)
        if not ks or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ks) or 10 not in ks:
            raise ValueError(f"k must be positive ints including 10 (Table 3 and Figure 3 use @10), got {self.k!r}")
        for name, values in (("robust_eps", self.robust_eps), ("sweep_eps", self.sweep_eps)):
            if any(not _finite(e) or e <= 0 for e in values):
                raise ValueError(f"{name} must hold finite numbers > 0, got {values!r}")
        if not self.robust_eps:
            raise ValueError("robust_eps must hold at least one eps (Table 3)")
        if self.data_path is not None and self.features_path is None:
            raise ValueError("data_path: your own interactions need features_path (item features in the same ids)")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class AccuracyTable:
    """Table 2 on one split: each model's HR/nDCG at every k, AMR's paired t-test against each
    other model (model -> metric -> {"t", "p"}) and, on the cold-item split, each model's metrics
    on cold and warm test cases (model -> "cold"/"warm" -> metric, with ``n_users``)."""

    metrics: Dict[str, Dict[str, float]]
    ttest: Dict[str, Dict[str, Dict[str, float]]]
    by_case: Optional[Dict[str, Dict[str, Dict[str, float]]]] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"metrics": self.metrics, "ttest": self.ttest}
        if self.by_case is not None:
            out["by_case"] = self.by_case
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AccuracyTable":
        return cls(d["metrics"], d["ttest"], d.get("by_case"))


@dataclass(frozen=True)
class PerturbedModel:
    """Table 3, its sweep and Figure 5 for one model: clean @10 metrics, the metrics under each
    perturbation (kind -> metric -> one value per eps) and the per-case rank changes at
    ``rank_eps`` (kind -> changes)."""

    clean: Dict[str, float]
    perturbed: Dict[str, Dict[str, List[float]]]
    rank_change: Dict[str, List[float]]

    def to_dict(self) -> Dict[str, Any]:
        return {"clean": self.clean, **self.perturbed, "rank_change": self.rank_change}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PerturbedModel":
        return cls(d["clean"], {k: v for k, v in d.items() if k not in ("clean", "rank_change")}, d["rank_change"])


@dataclass(frozen=True)
class Robustness:
    """Every eps measured (sorted) and, per robust model, its ``PerturbedModel``."""

    eps: List[float]
    models: Dict[str, PerturbedModel]

    def to_dict(self) -> Dict[str, Any]:
        return {"eps": self.eps, **{k: m.to_dict() for k, m in self.models.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Robustness":
        return cls(d["eps"], {k: PerturbedModel.from_dict(v) for k, v in d.items() if k != "eps"})


@dataclass(frozen=True)
class TrainingCurves:
    """Figure 3: the epochs measured and, per model trained on, test metric -> values."""

    epoch: List[int]
    models: Dict[str, Dict[str, List[float]]]

    def to_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, **self.models}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainingCurves":
        return cls(d["epoch"], {k: v for k, v in d.items() if k != "epoch"})


@dataclass(frozen=True)
class ColdSplitRecord:
    """The cold-item split: its sizes, how each model trained on it, and its Table 2 with the
    cold / warm breakdown."""

    split: Dict[str, int]
    training: Dict[str, TrainingRecord]
    table: AccuracyTable

    def to_dict(self) -> Dict[str, Any]:
        return {"split": self.split, "training": {k: t.to_dict() for k, t in self.training.items()},
                **self.table.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ColdSplitRecord":
        return cls(d["split"], {k: TrainingRecord.from_dict(t) for k, t in d["training"].items()},
                   AccuracyTable.from_dict(d))


@dataclass(frozen=True)
class AMRSeed:
    """Everything one seed measured."""

    seed: int
    split: Dict[str, int]
    training: Dict[str, TrainingRecord]
    table2: AccuracyTable
    robustness: Robustness
    curves: Optional[TrainingCurves] = None
    cold: Optional[ColdSplitRecord] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"seed": self.seed, "split": self.split,
                               "training": {k: t.to_dict() for k, t in self.training.items()},
                               "table2": self.table2.to_dict(), "robustness": self.robustness.to_dict()}
        if self.curves is not None:
            out["curves"] = self.curves.to_dict()
        if self.cold is not None:
            out["cold"] = self.cold.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AMRSeed":
        return cls(d["seed"], d["split"], {k: TrainingRecord.from_dict(t) for k, t in d["training"].items()},
                   AccuracyTable.from_dict(d["table2"]), Robustness.from_dict(d["robustness"]),
                   TrainingCurves.from_dict(d["curves"]) if "curves" in d else None,
                   ColdSplitRecord.from_dict(d["cold"]) if "cold" in d else None)


@dataclass(frozen=True)
class AMRResult:
    """Per-seed records (plain numbers, JSON-ready) and the run's context; ``amr_report``
    aggregates them over seeds into the tables and figures."""

    config: AMRConfig
    data: str = ""
    features: str = ""
    seeds: List[AMRSeed] = field(default_factory=list)
    seconds: float = float("nan")
    provenance: Optional[Provenance] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"config": asdict(self.config), "data": self.data, "features": self.features,
                "seeds": [s.to_dict() for s in self.seeds], "seconds": self.seconds,
                **provenance_entry(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AMRResult":
        """From a loaded amr.json (strict JSON: null back to NaN, "inf" to infinity)."""
        return cls(config=config_from_dict(AMRConfig, d["config"]), data=d.get("data", ""),
                   features=d.get("features", ""), seeds=[AMRSeed.from_dict(numbers(s)) for s in d["seeds"]],
                   seconds=number(d.get("seconds")), provenance=provenance_from(d))


# ----------------------------------------------------------------------------- data

@dataclass
class AMRData:
    inter: Any
    features: np.ndarray
    source: str
    feature_source: str


def load_data(config: AMRConfig) -> AMRData:
    """The implicit interactions and the item feature matrix (text features of ML-100K by default)."""
    inter, source, dataset = implicit_interactions(config.dataset, config.data_path, config.data_format)
    if config.features_path is not None:
        features = D.load_item_features(config.features_path, inter.item_ids)
        feature_source = f"{config.features_path} ({features.shape[1]} columns)"
    else:
        if config.dataset != "ml-100k":
            raise ValueError("features_path: only ML-100K has built-in (text) features; pass your item features")
        features = D.ml100k_text_features(dataset, progress=config.progress)
        feature_source = ("all-MiniLM-L6-v2 sentence embeddings of 'title (year) - genres' "
                          f"({features.shape[1]} columns; text, not images)")
    return AMRData(inter, features, source, feature_source)


# ----------------------------------------------------------------------------- training

@dataclass
class SplitView:
    """One training/evaluation setting: the split, what evaluation excludes, and the items that
    appear in training (the only ones drawn as negatives)."""

    train: Any
    valid: Any
    test: Any
    exclude: Tuple[Any, ...]
    warm: np.ndarray

    @classmethod
    def of(cls, split: Any, dropped: Any = None) -> "SplitView":
        exclude = tuple(p for p in (split.train, split.valid, dropped) if p is not None and len(p))
        warm = np.flatnonzero(split.train.item_counts() > 0).astype(np.int64)
        return cls(split.train, split.valid, split.test, exclude, warm)


def _trainer(config: AMRConfig, seed: int, **overrides: Any) -> Dict[str, Any]:
    kwargs = dict(optimizer=config.optimizer, lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                  l2=config.l2, patience=config.patience, seed=seed, progress=config.progress,
                  threads=config.threads)
    kwargs.update(overrides)
    return kwargs


def _fit(model, view: SplitView, config: AMRConfig, seed: int) -> TrainingRecord:
    start = time.perf_counter()
    history = Trainer(negative_items=view.warm, **_trainer(config, seed)).fit(
        model, view.train, validator(view.valid, exclude=view.train, metric=config.valid_metric))
    return TrainingRecord(history.epochs, history.best_epoch + 1, time.perf_counter() - start)


def _fit_amr(vbpr: VBPR, view: SplitView, config: AMRConfig, seed: int, **overrides: Any
             ) -> Tuple[VBPR, TrainingRecord]:
    amr = copy.deepcopy(vbpr)
    start = time.perf_counter()
    kwargs = _trainer(config, seed, epochs=config.amr_epochs, patience=config.amr_patience)
    kwargs.update(overrides)
    valid = kwargs.pop("validator", validator(view.valid, exclude=view.train, metric=config.valid_metric))
    history = train_amr(amr, view.train, eps=config.amr_eps, lam=config.amr_lam, validator=valid,
                        negative_items=view.warm, **kwargs)
    return amr, TrainingRecord(history.epochs, history.best_epoch + 1, time.perf_counter() - start)


def _zero_cold(mf: MF, warm: np.ndarray) -> None:
    """MF has no content: an item never trained on gets a zero factor (scores 0), as AMR does for
    the ID part of cold items, instead of its random initialisation."""
    cold = np.ones(mf.n_items, dtype=bool)
    cold[warm] = False
    with torch.no_grad():
        mf.item_factors[torch.from_numpy(cold)] = 0.0


def train_models(view: SplitView, features: np.ndarray, config: AMRConfig, seed: int
                 ) -> Tuple[Dict[str, Any], Dict[str, TrainingRecord]]:
    """Every model of Table 2 trained on ``view``: (name -> model, name -> training record)."""
    n_users, n_items = view.train.n_users, view.train.n_items
    models: Dict[str, Any] = {}
    records: Dict[str, TrainingRecord] = {}
    if config.baselines:
        models["Pop"], records["Pop"] = Pop.fit(view.train), TrainingRecord(seconds=0.0)
        mf = MF(n_users, n_items, dim=config.dim, init_std=config.init_std, seed=seed)
        records["MF"] = _fit(mf, view, config, seed)
        _zero_cold(mf, view.warm)
        models["MF"] = mf
        start = time.perf_counter()
        eals = fit_eals(view.train, config.dim, epochs=config.eals_epochs, seed=seed, progress=config.progress)
        _zero_cold(eals, view.warm)
        models["MF-eALS"], records["MF-eALS"] = eals, TrainingRecord(epochs=config.eals_epochs,
                                                                     seconds=time.perf_counter() - start)
    for name, cls in ((("DUIF", DUIF),) if config.baselines else ()) + (("VBPR", VBPR),):
        model = cls(n_users, n_items, features, dim=config.dim, init_std=config.init_std, seed=seed)
        model.mark_cold(view.train)
        records[name] = _fit(model, view, config, seed)
        models[name] = model
    models["AMR"], records["AMR"] = _fit_amr(models["VBPR"], view, config, seed)
    for model in models.values():
        if isinstance(model, torch.nn.Module):
            model.eval()
    return models, records


# ----------------------------------------------------------------------------- measuring

def _evaluate(model, view: SplitView, config: AMRConfig, seed: int, delta=None):
    return evaluate(model, view.test, exclude=view.exclude, k=config.k, protocol="sampled",
                    n_negatives=config.n_negatives, seed=seed, delta=delta, progress=False)


def _summary(result, ks) -> Dict[str, float]:
    s = result.summary()
    return {f"{m}@{k}": float(s[f"{m}@{k}"]) for k in ks for m in ("HR", "nDCG")}


def accuracy_table(models: Dict[str, Any], view: SplitView, config: AMRConfig, seed: int,
                   cold_users: Optional[np.ndarray] = None) -> AccuracyTable:
    """Table 2 for one seed: each model's metrics, AMR's paired t-test against each baseline and,
    with ``cold_users`` (a user-indexed bool mask), the metrics on cold and warm test cases."""
    results = {name: _evaluate(model, view, config, seed) for name, model in models.items()}
    metrics = {n: _summary(r, config.k) for n, r in results.items()}
    ttest: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name, res in results.items():
        if name != "AMR":
            ttest[name] = {m: {"t": t, "p": p} for m, (t, p) in results["AMR"].compare(res).items()
                           if m.split("@")[0] in ("HR", "nDCG")}
    by_case: Optional[Dict[str, Dict[str, Dict[str, float]]]] = None
    if cold_users is not None:
        by_case = {}
        for name, res in results.items():
            groups = res.by_group(cold_users.astype(np.int64))
            by_case[name] = {("cold" if g == 1 else "warm"): {**{m: float(v[m]) for m in _summary(res, config.k)},
                                                               "n_users": int(v["n_users"])}
                             for g, v in groups.items()}
    return AccuracyTable(metrics, ttest, by_case)


def attack_batch(train, warm: np.ndarray, seed: int) -> Dict[str, torch.Tensor]:
    """The training set as one batch, one BPR triple per interaction, negatives drawn from the
    training items with ``seed``: the loss the adversarial perturbations of Table 3 increase."""
    indptr, indices = train.to_csr()
    users, pos, neg = BPRSampler(indptr, indices, train.n_items, seed=seed, candidates=warm).epoch()
    return {"user": torch.from_numpy(users), "pos": torch.from_numpy(pos), "neg": torch.from_numpy(neg)}


def _perturbations(model, batch, eps: float, seed: int) -> Dict[str, Dict[str, torch.Tensor]]:
    """FGSM on the features and random rows of the same norm on the same rows."""
    return {"adversarial": FGSM(model, eps, targets="feature", norm="l2")(batch),
            "random": RandomNoise(model, eps, targets="feature", norm="l2", seed=seed, only_touched=True)(batch)}


def robustness(models: Dict[str, Any], view: SplitView, config: AMRConfig, seed: int,
               bar: Callable[[], None]) -> Robustness:
    """Table 3, its sweep and Figure 5 for VBPR and AMR: nDCG@10 and HR@10 under adversarial and
    random feature perturbations at every eps, and per-case rank changes at ``rank_eps``."""
    batch = attack_batch(view.train, view.warm, seed)
    cases = sampled_cases(view.test, exclude=view.exclude, n_negatives=config.n_negatives, seed=seed)
    eps_all = sorted(set(config.robust_eps) | set(config.sweep_eps) | {config.rank_eps})
    out: Dict[str, PerturbedModel] = {}
    for name in ROBUST_MODELS:
        model = models[name]
        clean = _summary(_evaluate(model, view, config, seed), (10,))
        g0, e0 = case_ranks(model, cases)
        rank0 = g0 + 0.5 * e0
        record: Dict[str, Any] = {"clean": clean, **{p: {"nDCG@10": [], "HR@10": []} for p in PERTURBATIONS},
                                  "rank_change": {}}
        for eps in eps_all:
            deltas = _perturbations(model, batch, eps, seed)
            for kind, delta in deltas.items():
                values = _summary(_evaluate(model, view, config, seed, delta), (10,))
                record[kind]["nDCG@10"].append(values["nDCG@10"])
                record[kind]["HR@10"].append(values["HR@10"])
                if eps == config.rank_eps:
                    g, e = case_ranks(model, cases, delta)
                    record["rank_change"][kind] = (g + 0.5 * e - rank0).tolist()
            bar()
        out[name] = PerturbedModel(record["clean"], {p: record[p] for p in PERTURBATIONS}, record["rank_change"])
    return Robustness(eps_all, out)


def training_curves(vbpr: VBPR, view: SplitView, config: AMRConfig, seed: int) -> TrainingCurves:
    """Figure 3: test HR@10 and nDCG@10 every ``curve_every`` epochs while a copy of the trained
    VBPR is trained on plainly and another as AMR, with no early stopping, from one checkpoint."""
    out: Dict[str, Any] = {"epoch": [0]}
    clean = _summary(_evaluate(vbpr, view, config, seed), (10,))
    for name in ROBUST_MODELS:
        out[name] = {m: [clean[m]] for m in ("HR@10", "nDCG@10")}

    def recorder(name: str, epochs: List[int]) -> Callable[[Any], float]:
        def record(model) -> float:
            values = _summary(_evaluate(model, view, config, seed), (10,))
            for m in ("HR@10", "nDCG@10"):
                out[name][m].append(values[m])
            epochs.append(epochs[-1] + config.curve_every)
            return values["nDCG@10"]
        return record

    plain = copy.deepcopy(vbpr)
    epochs_vbpr: List[int] = [0]
    Trainer(negative_items=view.warm, **_trainer(config, seed + 1, epochs=config.curve_epochs, patience=None,
                                                  eval_every=config.curve_every)
            ).fit(plain, view.train, recorder("VBPR", epochs_vbpr))
    epochs_amr: List[int] = [0]
    _fit_amr(vbpr, view, config, seed + 1, epochs=config.curve_epochs, patience=None,
             eval_every=config.curve_every, validator=recorder("AMR", epochs_amr))
    return TrainingCurves(epochs_vbpr, {name: out[name] for name in ROBUST_MODELS})


# ----------------------------------------------------------------------------- one seed

def _bar(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, leave=False, file=sys.stderr)


def _run_seed(data: AMRData, config: AMRConfig, seed: int, show: bool) -> AMRSeed:
    split = D.leave_one_out(data.inter, order="random", validation=True, seed=seed)
    view = SplitView.of(split)
    n_cold = int(np.count_nonzero(np.isin(view.test.item, view.warm, invert=True)))
    sizes = {"train": len(view.train), "valid": len(view.valid), "test": len(view.test), "cold_test_cases": n_cold}
    models, training = train_models(view, data.features, config, seed)
    table2 = accuracy_table(models, view, config, seed)
    eps_count = len(set(config.robust_eps) | set(config.sweep_eps) | {config.rank_eps})
    with _bar(eps_count * len(ROBUST_MODELS), f"seed {seed} perturbations", show) as bar:
        robust = robustness(models, view, config, seed, lambda: bar.update(1))
    curves = training_curves(models["VBPR"], view, config, seed) if config.curve_epochs else None
    cold = _cold_split(data, config, seed) if config.cold_share > 0 else None
    return AMRSeed(seed, sizes, training, table2, robust, curves, cold)


def _cold_split(data: AMRData, config: AMRConfig, seed: int) -> ColdSplitRecord:
    """Every model trained again on the cold-item split, evaluated on cold and warm test cases."""
    split = D.cold_item_split(data.inter, share=config.cold_share, seed=seed)
    view = SplitView.of(split, split.dropped)
    cold_users = np.zeros(data.inter.n_users, dtype=bool)
    cold_users[split.cold_users] = True
    models, training = train_models(view, data.features, config, seed)
    table = accuracy_table(models, view, config, seed, cold_users=cold_users)
    return ColdSplitRecord({"train": len(view.train), "dropped": len(split.dropped),
                            "cold_items": len(split.cold_items), "cold_test_cases": int(cold_users.sum()),
                            "test": len(view.test)}, training, table)


def run_amr(config: Optional[AMRConfig] = None) -> AMRResult:
    """Run the experiment for every seed of ``config``."""
    config = config or AMRConfig()
    config.validate()
    start = time.perf_counter()
    data = load_data(config)
    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    seeds = [_run_seed(data, config, seed, show) for seed in config.seeds]
    return AMRResult(config=config, data=data.source, features=data.feature_source, seeds=seeds,
                     seconds=time.perf_counter() - start, provenance=collect(data.inter, config))
